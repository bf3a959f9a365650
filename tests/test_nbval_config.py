"""The nbval set-up of ``make test``: tests/sanitize.cfg and the rules in tests/conftest.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "tests" / "sanitize.cfg"


def _patterns() -> list[tuple[str, str]]:
    return get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8"))


def sanitize(text: str) -> str:
    """Apply the sanitize file exactly as nbval does (re.sub, in file order)."""
    for regex, replace in _patterns():
        text = re.sub(regex, replace, text)
    return text


def test_every_regex_line_parses_into_a_pair():
    text = SANITIZE.read_text(encoding="utf-8")
    n_regex = sum(line.startswith("regex: ") for line in text.splitlines())
    assert n_regex >= 10
    assert len(_patterns()) == n_regex, "a 'regex:' line without its 'replace: ' line is ignored"


@pytest.mark.parametrize(
    ("stored", "fresh"),
    [
        ("took 0.123 s\n", "took 4.5 s\n"),
        ("done in 12ms; 1.5e-05 s per sample\n", "done in 3ms; 2.25e-05 s per sample\n"),
        ("<Figure at 0x7f3a2b1c4d50>\n", "<Figure at 0x7ffe00112233>\n"),
        (" 45%|████▌     | 45/100 [00:01<00:02, 30.1it/s]\n", "100%|██████████| 100/100\n"),
        (
            "CPU times: user 1.2 s, sys: 3 ms\nWall time: 1.3 s\n",
            "CPU times: user 9 s\nWall time: 2 s\n",
        ),
        ("cpu\n", "cuda\n"),
        ("cpu\n", "cuda:1\n"),
        ("device(type='cpu')", "device(type='cuda', index=0)"),
        ("tensor([0.2500, 0.7500])", "tensor([0.2500, 0.7500], device='cuda:0')"),
        ("training on cpu", "training on mps"),
        ("data in /work/shared/data/MNIST\n", "data in /tmp/tmp.x1/shared/data/MNIST\n"),
        ("3.2it/s", "120.5it/s"),
    ],
)
def test_machine_dependent_text_is_masked(stored, fresh):
    assert sanitize(stored) == sanitize(fresh)


@pytest.mark.parametrize(
    ("stored", "fresh"),
    [
        ("epoch  3/15 | loss 12.3456 | kl 0.1234\n", "epoch  3/15 | loss 12.3457 | kl 0.1234\n"),
        ("chi-square p = 0.4312\n", "chi-square p = 0.0001\n"),
        ("10000 samples\n", "20000 samples\n"),
        ("tensor([0.2500, 0.7500])", "tensor([0.2500, 0.7400])"),
        ("mean 0.5772 (Euler-Mascheroni)\n", "mean 0.5773 (Euler-Mascheroni)\n"),
        ("shape (4, 10)\n", "shape (4, 11)\n"),
        ("cpu count 2\n", "cpu count 4\n"),
    ],
)
def test_results_are_not_masked(stored, fresh):
    assert sanitize(stored) != sanitize(fresh)


# --------------------------------------------------------- nbval end to end (2 kernels)
def _code(source: str, outputs: list, n: int):
    return nbformat.v4.new_code_cell(source, execution_count=n, outputs=outputs)


def _stream(text: str, name: str = "stdout"):
    return nbformat.v4.new_output("stream", name=name, text=text)


def _widget(model_id: str):
    return nbformat.v4.new_output(
        "display_data",
        data={
            "application/vnd.jupyter.widget-view+json": {
                "model_id": model_id,
                "version_major": 2,
                "version_minor": 0,
            },
            "text/plain": f"HBox(children=({model_id},))",
        },
    )


def _notebook(last_stored: str) -> nbformat.NotebookNode:
    """Stored outputs differ from a fresh run only in what the harness must ignore."""
    cells = [
        _code(
            "import os\nprint(os.environ['CONCRETE_HEADLESS'], os.environ['CONCRETE_DEVICE'])",
            [_stream("1 cpu\n")],
            1,
        ),
        _code(
            "from concrete.monitor import TrainingMonitor, is_headless\n"
            "print(is_headless(), TrainingMonitor().live)",
            [_stream("True False\n")],
            2,
        ),
        _code(
            "import sys, time\n"
            "print(f'took {time.perf_counter() % 1 + 0.5:.3f} s')\n"
            "print(object())\n"
            "_ = sys.stderr.write(f'warning at {time.time()}\\n')",
            [
                _stream("took 0.937 s\n<object object at 0x7f0000deadbe>\n"),
                _stream("some other warning\n", name="stderr"),
            ],
            3,
        ),
        _code(
            "import uuid\nfrom IPython.display import display\n"
            "mid = uuid.uuid4().hex\n"
            "display({'application/vnd.jupyter.widget-view+json': "
            "{'model_id': mid, 'version_major': 2, 'version_minor': 0}, "
            "'text/plain': f'HBox(children=({mid},))'}, raw=True)",
            [_widget("0123abcd")],
            4,
        ),
        _code("print('exact', 6 * 7)", [_stream(last_stored)], 5),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def test_nbval_ignores_stderr_widgets_timings_and_checks_the_rest(tmp_path):
    """One pytest run with our conftest + sanitize file over a notebook that must pass and
    one whose only difference is a real result (must fail on exactly that cell)."""
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    nbformat.write(_notebook("exact 42\n"), tmp_path / "good.ipynb")
    nbformat.write(_notebook("exact 41\n"), tmp_path / "bad.ipynb")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts =\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {"CONCRETE_HEADLESS", "CONCRETE_DEVICE"}}
    cmd = [
        sys.executable, "-m", "pytest", "good.ipynb", "bad.ipynb", "-p", "no:cacheprovider",
        "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
        "--nbval-kernel-startup-timeout", "180", "-q", "-rA",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    item = re.compile(r"^(PASSED|FAILED) (\S+::Cell \d+)", re.MULTILINE)
    passed = {name for status, name in item.findall(out) if status == "PASSED"}
    failed = {name for status, name in item.findall(out) if status == "FAILED"}
    assert passed == {f"good.ipynb::Cell {i}" for i in range(5)} | {
        f"bad.ipynb::Cell {i}" for i in range(4)
    }, out
    assert failed == {"bad.ipynb::Cell 4"}, out
    assert "exact 41" in out and "exact 42" in out, "the failure report shows both outputs"
