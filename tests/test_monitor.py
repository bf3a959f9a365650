"""The training-output switch: live (livelossplot + tqdm) vs headless (log + one figure)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from concrete import monitor as mon  # noqa: E402
from concrete.monitor import HEADLESS_ENV, TrainingMonitor, is_headless  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class _FakeShell:
    """Stands in for IPython's shell; only its class name matters."""


def _pretend_kernel(monkeypatch, name: str | None) -> None:
    """Make ``get_ipython()`` return a shell of class ``name`` (None: no IPython)."""
    import IPython

    if name is None:
        monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    else:
        shell = type(name, (_FakeShell,), {})()
        monkeypatch.setattr(IPython, "get_ipython", lambda: shell)


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_env_truthy_is_headless_even_in_a_kernel(monkeypatch, value):
    monkeypatch.setenv(HEADLESS_ENV, value)
    _pretend_kernel(monkeypatch, "ZMQInteractiveShell")
    assert is_headless() is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_env_falsy_is_live_even_in_a_script(monkeypatch, value):
    monkeypatch.setenv(HEADLESS_ENV, value)
    _pretend_kernel(monkeypatch, None)
    assert is_headless() is False


def test_unset_env_depends_on_the_kernel(monkeypatch):
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    _pretend_kernel(monkeypatch, None)
    assert is_headless() is True  # plain script / pytest
    _pretend_kernel(monkeypatch, "TerminalInteractiveShell")
    assert is_headless() is True  # IPython REPL cannot show live plots
    _pretend_kernel(monkeypatch, "ZMQInteractiveShell")
    assert is_headless() is False  # a person in Jupyter
    monkeypatch.setenv(HEADLESS_ENV, "")
    assert is_headless() is False  # empty counts as unset


def test_bad_env_value_raises_naming_variable_and_value(monkeypatch):
    monkeypatch.setenv(HEADLESS_ENV, "maybe")
    with pytest.raises(ValueError, match=r"CONCRETE_HEADLESS.*'maybe'"):
        is_headless()


def test_live_none_follows_env(monkeypatch):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert TrainingMonitor().live is False
    monkeypatch.setenv(HEADLESS_ENV, "0")
    assert TrainingMonitor(log=False).live is True


def test_headless_never_touches_livelossplot_or_clear_output(monkeypatch, capsys):
    """Headless output must not create a PlotLosses nor call IPython's clear_output."""
    import IPython.display
    import livelossplot
    import livelossplot.outputs.matplotlib_plot as mpl_out

    calls: list[str] = []

    def forbidden(name):
        def f(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called in headless mode")

        return f

    monkeypatch.setattr(livelossplot, "PlotLosses", forbidden("PlotLosses"))
    monkeypatch.setattr(IPython.display, "clear_output", forbidden("clear_output"))
    monkeypatch.setattr(mpl_out, "clear_output", forbidden("clear_output"))
    monkeypatch.setenv(HEADLESS_ENV, "1")
    m = TrainingMonitor(total_epochs=3)
    for epoch in range(1, 4):
        assert list(m.progress(range(5))) == list(range(5))
        m.update(epoch, {"loss": 1.0 / epoch})
    fig = m.close()
    assert calls == []
    assert isinstance(fig, Figure)


def test_headless_progress_returns_the_iterable_itself():
    data = [1, 2, 3]
    m = TrainingMonitor(live=False, log=False)
    assert m.progress(data, total=3, desc="x") is data


def test_live_progress_is_a_tqdm_bar_that_does_not_stay():
    from tqdm.auto import tqdm

    m = TrainingMonitor(live=True)
    bar = m.progress(range(4), desc="batches")
    assert isinstance(bar, tqdm)
    assert bar.leave is False
    assert list(bar) == [0, 1, 2, 3]


def test_live_update_goes_to_plotlosses(monkeypatch):
    sent: list[dict[str, float]] = []

    class FakePlotLosses:
        def __init__(self, outputs=None, groups=None, **kwargs):
            self.groups = groups

        def update(self, logs, current_step=None):
            sent.append(dict(logs, step=current_step))

        def send(self):
            sent.append({"sent": 1.0})

    import livelossplot

    monkeypatch.setattr(livelossplot, "PlotLosses", FakePlotLosses)
    m = TrainingMonitor({"loss": ["loss"]}, live=True)
    m.update(1, {"loss": 2.5})
    assert sent == [{"loss": 2.5, "step": 1}, {"sent": 1.0}]
    assert m.history == {"loss": [2.5]}
    assert m.close() is None  # live: nothing to draw at the end


def test_history_and_log_lines(capsys):
    m = TrainingMonitor(total_epochs=15, live=False, title="shapes VAE")
    m.update(3, {"loss": 12.345_64, "kl": np.float32(0.1234)})
    m.update(4, {"loss": torch.tensor(11.0), "kl": 0.5})
    m.update(5, {"loss": 10})
    assert m.history == {"loss": [12.34564, 11.0, 10.0], "kl": [pytest.approx(0.1234), 0.5]}
    assert m.epochs == {"loss": [3, 4, 5], "kl": [3, 4]}
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "shapes VAE",
        "epoch  3/15 | loss 12.3456 | kl 0.1234",
        "epoch  4/15 | loss 11.0000 | kl 0.5000",
        "epoch  5/15 | loss 10.0000",
    ]


def test_log_false_prints_nothing(capsys):
    m = TrainingMonitor(live=False, log=False, title="quiet")
    m.update(1, {"loss": 1.0})
    m.close()
    assert capsys.readouterr().out == ""
    assert m.history == {"loss": [1.0]}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, torch.tensor(float("nan"))])
def test_non_finite_metric_raises_naming_metric_and_value(bad):
    m = TrainingMonitor(live=False, log=False)
    with pytest.raises(ValueError, match=r"'kl'.*(nan|inf)"):
        m.update(2, {"loss": 1.0, "kl": bad})
    assert m.history == {}  # nothing half-recorded


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": {}}, "groups"),
        ({"groups": {"loss": "loss"}}, "groups"),
        ({"groups": {"loss": []}}, "groups"),
        ({"total_epochs": 0}, "total_epochs"),
        ({"total_epochs": 2.5}, "total_epochs"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingMonitor(live=False, **kwargs)


def test_bad_update_arguments():
    m = TrainingMonitor(live=False, log=False)
    with pytest.raises(ValueError, match="epoch"):
        m.update(-1, {"loss": 1.0})
    with pytest.raises(ValueError, match="metrics"):
        m.update(1, {})
    with pytest.raises(ValueError, match="'loss'"):
        m.update(1, {"loss": "high"})
    m.close()
    with pytest.raises(RuntimeError, match="after close"):
        m.update(1, {"loss": 1.0})


def test_close_draws_one_panel_per_group():
    m = TrainingMonitor(
        {"ELBO": ["elbo", "val_elbo"], "KL": ["kl"], "temperature": ["tau"]},
        live=False,
        log=False,
        title="run",
    )
    for epoch in range(1, 5):
        m.update(epoch, {"elbo": -epoch, "val_elbo": -epoch - 0.5, "kl": 0.1 * epoch, "tau": 1.0})
    before = len(plt.get_fignums())
    fig = m.close()
    assert isinstance(fig, Figure)
    assert len(plt.get_fignums()) == before + 1  # exactly ONE figure
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["ELBO", "KL", "temperature"]
    assert len(axes[0].get_lines()) == 2 and len(axes[1].get_lines()) == 1
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(axes[1].get_lines()[0].get_xdata(), [1, 2, 3, 4])


def test_default_groups_pair_validation_metrics():
    m = TrainingMonitor(live=False, log=False)
    m.update(1, {"loss": 3.0, "val_loss": 3.5, "kl": 0.2})
    assert m.panel_groups() == {"loss": ["loss", "val_loss"], "kl": ["kl"]}
    fig = m.close()
    assert len(fig.get_axes()) == 2


def test_ungrouped_metric_gets_its_own_panel_and_empty_groups_are_dropped():
    m = TrainingMonitor({"loss": ["loss"], "unused": ["never"]}, live=False, log=False)
    m.update(1, {"loss": 1.0, "lr": 0.1})
    assert m.panel_groups() == {"loss": ["loss"], "lr": ["lr"]}
    assert len(m.close().get_axes()) == 2


def test_close_without_history_returns_none():
    assert TrainingMonitor(live=False).close() is None


def test_close_shows_the_figure_only_inside_a_kernel(monkeypatch):
    shown: list[int] = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    _pretend_kernel(monkeypatch, None)
    m = TrainingMonitor(live=False, log=False)
    m.update(1, {"loss": 1.0})
    m.close()
    assert shown == []
    _pretend_kernel(monkeypatch, "ZMQInteractiveShell")
    m = TrainingMonitor(live=False, log=False)
    m.update(1, {"loss": 1.0})
    m.close()
    assert shown == [1]


def test_module_documents_the_switch():
    assert HEADLESS_ENV in (mon.__doc__ or "")
    assert HEADLESS_ENV in (is_headless.__doc__ or "")


def test_in_a_headless_kernel_a_training_loop_leaves_a_log_and_one_figure(monkeypatch, tmp_path):
    """End to end in a real Jupyter kernel (as nbval and make execute run it)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv(HEADLESS_ENV, "1")
    source = (
        "from concrete.monitor import TrainingMonitor\n"
        "m = TrainingMonitor({'loss': ['loss', 'val_loss']}, total_epochs=3)\n"
        "for epoch in range(1, 4):\n"
        "    for _ in m.progress(range(10)):\n"
        "        pass\n"
        "    m.update(epoch, {'loss': 1 / epoch, 'val_loss': 2 / epoch})\n"
        "fig = m.close()"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = nb.cells[0].outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.splitlines() == [
        "epoch 1/3 | loss 1.0000 | val_loss 2.0000",
        "epoch 2/3 | loss 0.5000 | val_loss 1.0000",
        "epoch 3/3 | loss 0.3333 | val_loss 0.6667",
    ]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, [o.output_type for o in outputs]
    assert not any("widget" in mime for o in outputs for mime in o.get("data", {}))
