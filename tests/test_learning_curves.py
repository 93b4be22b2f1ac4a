"""benchmarks/learning_curves.py makes the table multi_fidelity.py replays: one row per
(architecture, seed), appended as trained, skipped when already in the file."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from tests._example_support import split_file

pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import learning_curves as lc
from _simulated import CurveTable, arch_key, architectures


def test_the_space_has_620_architectures() -> None:
    archs = architectures()
    assert len(archs) == 4 * (5 + 25 + 125)
    assert len({arch_key(sample) for sample in archs}) == 620
    assert len(architectures(2)) == 120


def test_rows_are_appended_once_and_replayable(tmp_path: Path) -> None:
    data = split_file(tmp_path)
    out = tmp_path / "curves.jsonl.gz"
    args = ["--epochs", "2", "--seeds", "2", "--sample", "1", "--shallow-first",
            "--data", str(data), "--out", str(out)]
    lc.main(args)
    with gzip.open(out, "rt") as file:
        rows = [json.loads(line) for line in file]
    assert [row["seed"] for row in rows] == [0, 1]
    assert rows[0]["arch"] == rows[1]["arch"]
    assert rows[0]["sample"]["depth"] == 1  # --shallow-first
    for row in rows:
        assert len(row["val_acc"]) == len(row["epoch_seconds"]) == 2
        assert all(0.0 <= acc <= 1.0 for acc in row["val_acc"])
        assert all(secs > 0 for secs in row["epoch_seconds"])  # CPU seconds of real work
    lc.main(args)  # everything is in the file: nothing is trained again
    with gzip.open(out, "rt") as file:
        assert len(file.readlines()) == 2
    table = CurveTable.load(out)
    assert (len(table.curves), table.epochs) == (1, 2)
