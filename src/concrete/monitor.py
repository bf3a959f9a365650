"""Training output: live plots for a person, one static figure and a text log for machines.

The book's notebooks are run in two ways:

* **interactively**, by a person in Jupyter, who wants a live loss curve
  (``livelossplot``) and progress bars (``tqdm``);
* **headless**, by ``make execute``, ``make test`` (nbval) and CI. Live plots redraw
  their cell with ``IPython.display.clear_output`` on every update, and nbval would
  record (and compare) every redraw, so headless runs print one compact line per
  update and draw a single static figure at the end.

One mechanism selects the mode: the environment variable ``CONCRETE_HEADLESS``
(see :func:`is_headless`). ``make execute``, ``make test`` and ``tests/conftest.py``
set it to ``1``; a person who opens a notebook in Jupyter leaves it unset and gets
live output. Pass ``live=True``/``live=False`` to :class:`TrainingMonitor` to override.

Typical use (``concrete.train.fit`` does exactly this)::

    monitor = TrainingMonitor({"loss": ["loss", "val_loss"], "kl": ["kl"]}, total_epochs=10)
    for epoch in range(1, 11):
        for batch in monitor.progress(loader, desc=f"epoch {epoch}"):
            ...
        monitor.update(epoch, {"loss": loss, "val_loss": val_loss, "kl": kl})
    fig = monitor.close()   # headless: the static figure; live: None
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["HEADLESS_ENV", "TrainingMonitor", "is_headless"]

HEADLESS_ENV = "CONCRETE_HEADLESS"
_TRUTHY = frozenset({"1", "true", "yes", "on"})
_FALSY = frozenset({"0", "false", "no", "off"})

T = TypeVar("T")


def _in_notebook_kernel() -> bool:
    """True when running inside an IPython kernel (Jupyter, nbclient, Colab), not a script."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the dev extra
        return False
    shell = get_ipython()
    if shell is None:
        return False
    # ZMQInteractiveShell: Jupyter/nbclient kernels; Shell: Colab. The terminal REPL
    # (TerminalInteractiveShell) cannot show live plots, so it counts as headless.
    return type(shell).__name__ in {"ZMQInteractiveShell", "Shell"}


def is_headless() -> bool:
    """Whether training output should be headless (static figure + text log).

    Reads ``$CONCRETE_HEADLESS``:

    * ``1``/``true``/``yes``/``on`` (any case) → ``True``;
    * ``0``/``false``/``no``/``off`` → ``False`` (live output, even in a script);
    * unset or empty → ``True`` unless the code runs inside an IPython/Jupyter kernel,
      so scripts and benchmarks are headless and a person in Jupyter gets live output.

    Raises ``ValueError`` naming the variable and its value for anything else.
    """
    raw = os.environ.get(HEADLESS_ENV, "").strip().lower()
    if raw in _TRUTHY:
        return True
    if raw in _FALSY:
        return False
    if raw == "":
        return not _in_notebook_kernel()
    raise ValueError(
        f"${HEADLESS_ENV} must be one of {sorted(_TRUTHY | _FALSY)} or unset, "
        f"got {os.environ[HEADLESS_ENV]!r}"
    )


def _default_group(name: str) -> str:
    """Group a metric with its validation twin: ``val_loss`` and ``loss`` → ``loss``."""
    for prefix in ("val_", "val-", "test_", "test-"):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name


class TrainingMonitor:
    """Show training progress live (livelossplot + tqdm) or headless (log + one figure).

    Parameters
    ----------
    groups:
        Plot panels: panel title → metric names drawn in it, e.g.
        ``{"ELBO": ["elbo", "val_elbo"], "KL": ["kl"]}``. ``None`` puts each metric in
        its own panel, except that ``val_x``/``test_x`` share the panel of ``x``.
    total_epochs:
        Number of epochs, shown in the headless log as ``epoch  3/15``; ``None`` omits it.
    live:
        ``True`` live output, ``False`` headless; ``None`` (default) → ``not is_headless()``.
    log:
        Headless only: print one compact line per :meth:`update`.
    title:
        Title of the figure (and of the first headless log line).

    Attributes
    ----------
    history:
        Metric name → list of values, one per :meth:`update` that reported it.
    epochs:
        Metric name → list of the epochs at which it was reported (the x values).
    """

    def __init__(
        self,
        groups: dict[str, list[str]] | None = None,
        *,
        total_epochs: int | None = None,
        live: bool | None = None,
        log: bool = True,
        title: str | None = None,
    ) -> None:
        if groups is not None:
            if not isinstance(groups, Mapping) or not groups:
                raise ValueError(f"groups must be a non-empty dict or None, got {groups!r}")
            for name, metrics in groups.items():
                if isinstance(metrics, str) or not metrics:
                    raise ValueError(
                        f"groups[{name!r}] must be a non-empty list of metric names, "
                        f"got {metrics!r}"
                    )
            groups = {str(k): [str(m) for m in v] for k, v in groups.items()}
        if total_epochs is not None and (
            not isinstance(total_epochs, int) or isinstance(total_epochs, bool) or total_epochs < 1
        ):
            raise ValueError(f"total_epochs must be a positive int or None, got {total_epochs!r}")
        self.groups = groups
        self.total_epochs = total_epochs
        self.live = (not is_headless()) if live is None else bool(live)
        self.log = bool(log)
        self.title = title
        self.history: dict[str, list[float]] = {}
        self.epochs: dict[str, list[int]] = {}
        self._plot: Any = None
        self._closed = False
        if self.live:
            from livelossplot import PlotLosses
            from livelossplot.outputs import MatplotlibPlot

            self._plot = PlotLosses(outputs=[MatplotlibPlot()], groups=groups)
        elif self.log and title:
            print(title)

    # ------------------------------------------------------------------ progress
    def progress(
        self, iterable: Iterable[T], *, total: int | None = None, desc: str | None = None
    ) -> Iterable[T]:
        """Wrap ``iterable`` in a ``tqdm`` bar (``leave=False``) when live.

        Headless: return ``iterable`` itself, unchanged (no bar, no output).
        """
        if not self.live:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)

    # -------------------------------------------------------------------- update
    def update(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` (name → scalar) for ``epoch`` and show them.

        Live: ``PlotLosses.update`` + ``send`` (redraws the plot). Headless: store the
        values and, if ``log``, print one line such as
        ``epoch  3/15 | loss 12.3456 | kl 0.1234``.

        Values may be Python numbers, NumPy scalars or one-element tensors. Raises
        ``ValueError`` naming the metric and its value when a value is NaN or infinite,
        and for an empty ``metrics`` or a negative ``epoch``.
        """
        if self._closed:
            raise RuntimeError("TrainingMonitor.update() called after close()")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValueError(f"metrics must be a non-empty mapping name -> float, got {metrics!r}")
        values: dict[str, float] = {}
        for name, value in metrics.items():
            try:
                v = float(value.item() if hasattr(value, "item") else value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"metric {name!r} must be a scalar number, got {value!r}") from err
            if not math.isfinite(v):
                raise ValueError(f"metric {name!r} is not finite at epoch {epoch}: {v!r}")
            values[str(name)] = v
        for name, v in values.items():
            self.history.setdefault(name, []).append(v)
            self.epochs.setdefault(name, []).append(epoch)
        if self.live:
            self._plot.update(values, current_step=epoch)
            self._plot.send()
        elif self.log:
            print(self._format_line(epoch, values), flush=True)

    def _format_line(self, epoch: int, values: Mapping[str, float]) -> str:
        if self.total_epochs is not None:
            width = len(str(self.total_epochs))
            head = f"epoch {epoch:>{width}d}/{self.total_epochs}"
        else:
            head = f"epoch {epoch}"
        return " | ".join([head, *(f"{k} {v:.4f}" for k, v in values.items())])

    # --------------------------------------------------------------------- close
    def panel_groups(self) -> dict[str, list[str]]:
        """The panels of the static figure: title → metrics that have values, in order."""
        if self.groups is not None:
            panels = {g: [m for m in ms if m in self.history] for g, ms in self.groups.items()}
            grouped = {m for ms in self.groups.values() for m in ms}
            for name in self.history:  # metrics not in any group get their own panel
                if name not in grouped:
                    panels[name] = [name]
        else:
            panels = {}
            for name in self.history:
                panels.setdefault(_default_group(name), []).append(name)
        return {g: ms for g, ms in panels.items() if ms}

    def close(self) -> Figure | None:
        """Finish: headless → draw ONE static figure of :attr:`history`, show and return it.

        The figure has one panel (axes) per group that has values; x is the epoch. Inside
        a Jupyter kernel it is shown with ``plt.show()`` (inline); in a script it is only
        returned (``plt.show()`` would block a GUI backend), so save it if you need it.
        In a notebook, assign the result (``fig = monitor.close()``) so the figure is not
        displayed twice. Live → the live plot already shows everything: return ``None``.
        Also ``None`` when nothing was recorded.
        """
        self._closed = True
        if self.live or not self.history:
            return None
        import matplotlib.pyplot as plt

        panels = self.panel_groups()
        n = len(panels)
        ncols = min(n, 3)
        nrows = math.ceil(n / ncols)
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(min(4.2 * ncols, 9.6), 3.2 * nrows),  # <= 9.6 in: readable in the column
            squeeze=False,
            layout="constrained",
        )
        flat = list(axes.ravel())
        for ax, (group, names) in zip(flat, panels.items(), strict=False):
            for name in names:
                ax.plot(self.epochs[name], self.history[name], marker="o", ms=3, label=name)
            ax.set_title(group)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if len(names) > 1:
                ax.legend()
        for ax in flat[n:]:  # unused cells of the grid
            fig.delaxes(ax)
        if self.title:
            fig.suptitle(self.title)
        if _in_notebook_kernel():  # inline backend: display it in the cell, once
            plt.show()
        return fig
