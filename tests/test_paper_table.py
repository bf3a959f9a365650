"""``benchmarks/paper_table.py --whole-test``: parts of the test set scored by several processes
merge into one whole-set record only when they tile the set."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from paper_table import build_parser, merge_test_parts  # noqa: E402

NAME = "nonlinear_concrete1_lr0.001_s0_test_k50"


def write_part(folder, start, stop, log_px, *, step=100, k=50):
    record = {
        "script": "benchmarks/paper_table.py --whole-test",
        "cell": "nonlinear_concrete1_lr0.001_s0",
        "step": step, "images": f"test[{start}:{stop}]", "range": [start, stop],
        "n": stop - start, "k": k, "data": "larochelle", "codes_seed": 12345 + start,
        "seconds": 1.5, "log_px": log_px,
    }
    (folder / f"{NAME}_{start}-{stop}.json").write_text(json.dumps(record))


def test_parts_that_tile_the_set_merge_into_its_mean_and_standard_error(tmp_path):
    values = torch.linspace(-120.0, -80.0, 10, dtype=torch.float64)
    write_part(tmp_path, 4, 10, values[4:].tolist())
    assert merge_test_parts(tmp_path, NAME, 10) is None          # images 0-3 are missing
    write_part(tmp_path, 0, 4, values[:4].tolist())
    merged = merge_test_parts(tmp_path, NAME, 10)
    assert merged["n"] == 10 and merged["range"] == [0, 10]
    assert merged["log_px"] == values.tolist()                     # in the test set's order
    assert merged["test_neg_lk"] == pytest.approx(-float(values.mean()), abs=1e-3)
    assert merged["test_stderr"] == pytest.approx(float(values.std() / 10**0.5), abs=1e-3)
    assert merged["codes_seed"] == [12345, 12349] and merged["seconds"] == 3.0
    assert json.loads((tmp_path / f"{NAME}.json").read_text()) == merged


def test_overlapping_parts_do_not_merge(tmp_path):
    write_part(tmp_path, 0, 6, [-100.0] * 6)
    write_part(tmp_path, 5, 10, [-90.0] * 5)
    assert merge_test_parts(tmp_path, NAME, 10) is None
    assert not (tmp_path / f"{NAME}.json").exists()


def test_parts_of_different_checkpoints_are_refused(tmp_path):
    write_part(tmp_path, 0, 5, [-100.0] * 5, step=100)
    write_part(tmp_path, 5, 10, [-90.0] * 5, step=200)
    with pytest.raises(ValueError, match="different checkpoints"):
        merge_test_parts(tmp_path, NAME, 10)


def test_the_command_line_names_a_test_range():
    args = build_parser().parse_args(["--whole-test", "--test-range", "0", "5000",
                                      "--eval-k", "50000"])
    assert args.whole_test and args.test_range == [0, 5000] and args.eval_k == 50_000
