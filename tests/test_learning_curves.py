"""benchmarks/learning_curves.py makes the table multi_fidelity.py replays: one row per
(architecture, seed), appended as trained, skipped when already in the file."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
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


def test_the_table_gets_a_split_of_its_own(tmp_path: Path) -> None:
    out = tmp_path / "curves.jsonl"
    data = tmp_path / "split-10-40-50.npz"
    lc.main(["--epochs", "1", "--seeds", "1", "--sample", "1", "--split", "10,40,50",
             "--data", str(data), "--out", str(out)])
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["images"] == [179, 719, 899]  # of 1797, stratified
    assert sum(row["images"]) == 1797
    with np.load(data) as arrays:  # the file made for that split, stratified
        assert len(arrays["y_val"]) == 719
        assert set(np.bincount(arrays["y_train"])) <= {17, 18, 19}


def test_the_examples_split_is_unchanged(tmp_path: Path) -> None:
    with np.load(split_file(tmp_path)) as arrays:
        sizes = [len(arrays[f"y_{part}"]) for part in ("train", "val", "test")]
    assert sizes == [1077, 360, 360]


@pytest.mark.parametrize("text", ["10,40", "0,50,50", "10,40,40", "a,b,c", "50,-10,60"])
def test_a_bad_split_is_named(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        lc.main(["--split", text])
    err = capsys.readouterr().err
    assert "--split" in err
    assert repr(text) in err


def test_ensure_split_refuses_fractions_that_leave_nothing_to_train(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"val=0\.5, test=0\.5"):
        lc.ensure_split(tmp_path / "x.npz", val=0.5, test=0.5)
    assert not (tmp_path / "x.npz").exists()
