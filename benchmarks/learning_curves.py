"""Make the learning-curve table that benchmarks/multi_fidelity.py replays.

Trains architectures of the digits space of ``examples/digits_search.py``
(``examples/_digits.py``: 4 widths x depth 1-3 x 5 operations per block, 620 distinct
architectures) for ``--epochs`` epochs with each of ``--seeds`` seeds, recording the
validation accuracy and the CPU seconds of every epoch (of this process, one torch
thread: what the epoch costs one core, however loaded the machine is while the table
is made; wall time on a shared machine measures the load). The learning-rate schedule (Adam,
one-cycle over all ``--epochs``) is fixed before training starts, so a curve cut at
epoch k is exactly what a model stopped at epoch k would have reported.

One JSON line per (architecture, seed) is appended to ``--out`` (a ``.jsonl`` file,
gzip-compressed when it ends in ``.gz``) as soon as it is trained, so the script can be
stopped at any time and continued (architectures already in the file are skipped).
``--sample N`` trains a random N of the architectures (``--sample-seed``) instead of all.

The data is a split of its own (``--split TRAIN,VAL,TEST`` in percent, default
10,40,50, saved to ``runs/digits-split-10-40-50.npz`` unless ``--data`` names a file),
not the examples' 60 / 20 / 20; each row records the images of its split (``images``).

Run: ``python benchmarks/learning_curves.py --epochs 12 --seeds 2 --shallow-first``
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path
from typing import IO, Any

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _digits import (
    digits_space,
    ensure_split,
    epochs_of,
    load_split,
)
from _simulated import arch_key, architectures

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "digits_curves_10-40-50.jsonl.gz"
#: The table's split, in percent of the 1797 images: train, validation, test. Not the
#: examples' 60 / 20 / 20: with 10 % to train on the task is harder (the best networks
#: are no longer within one validation image of each other), with 40 % to validate on an
#: image is 0.14 % of accuracy, and a training costs a third of the CPU time.
DEFAULT_SPLIT = (10, 40, 50)


def parse_split(text: str) -> tuple[int, int, int]:
    """``"20,60,20"``: percentages of the images for training, validation and test,
    positive whole numbers that add up to 100."""
    try:
        parts = tuple(int(part) for part in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) <= 0 or sum(parts) != 100:
        raise argparse.ArgumentTypeError(
            f"--split takes three positive whole percentages TRAIN,VAL,TEST adding up to "
            f"100, got {text!r}")
    return parts[0], parts[1], parts[2]


def split_path(split: tuple[int, int, int]) -> Path:
    """Where the split lives unless ``--data`` says: its own file per split."""
    return Path("runs") / "digits-split-{}-{}-{}.npz".format(*split)


def curve(sample: dict[str, Any], data: str, epochs: int, seed: int,
          lr: float = 0.03, batch_size: int = 32) -> tuple[list[float], list[float]]:
    """Validation accuracy and seconds of each epoch of one training run (the search's
    own training loop, ``_digits.epochs_of``)."""
    model: nn.Module = digits_space(data, epochs, seed).freeze(dict(sample)).executable_model()
    accs, secs = [], []
    epochs_left = epochs_of(model, load_split(data), epochs, lr, batch_size, seed)
    # CPU seconds of this process (one torch thread): what the epoch costs one core,
    # whatever else shares the machine (wall time on a loaded machine is not).
    start = time.process_time()  # after the set-up (weights, optimizer), as before
    for value in epochs_left:
        accs.append(value)
        secs.append(time.process_time() - start)
        start = time.process_time()
    return accs, secs


def done_keys(out: Path) -> set[tuple[str, int]]:
    if not out.exists():
        return set()
    keys = set()
    with _open(out, "rt") as file:
        try:
            for line in file:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: retrained
                    continue
                keys.add((row["arch"], row["seed"]))
        except (EOFError, gzip.BadGzipFile):  # the last member cut by a kill
            pass
    return keys


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sample", type=int, default=None, help="architectures to train")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--shallow-first", action="store_true",
                        help="train depth 1, then depth 2, then depth 3 architectures "
                        "(each in the shuffled order): a partial table then covers the "
                        "most samples of the space (a depth-1 architecture is 25 samples)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--split", type=parse_split, default=DEFAULT_SPLIT,
                        metavar="TRAIN,VAL,TEST",
                        help="percent of the images for training, validation and test "
                        "(default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the split's .npz file, made when missing (default: "
                        "runs/digits-split-TRAIN-VAL-TEST.npz)")
    args = parser.parse_args(argv)
    split = args.split
    data = str(ensure_split(args.data or split_path(split), val=split[1] / 100,
                            test=split[2] / 100))
    # The images of each part, as the file holds them (``--data`` may hold another split).
    sizes = [len(load_split(data)[f"y_{part}"]) for part in ("train", "val", "test")]
    archs = architectures()
    random.Random(args.sample_seed).shuffle(archs)
    if args.shallow_first:
        archs.sort(key=lambda sample: sample["depth"])  # stable: shuffled within a depth
    if args.sample is not None:
        archs = archs[:args.sample]
    done = done_keys(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for sample in archs:
        for seed in range(args.seeds):
            key = arch_key(sample)
            if (key, seed) in done:
                continue
            accs, secs = curve(sample, data, args.epochs, seed)
            row = {"arch": key, "sample": sample, "seed": seed, "val_acc": accs,
                   "epoch_seconds": secs, "images": sizes}
            with _open(args.out, "at") as file:  # one gzip member per line: kill-safe
                file.write(json.dumps(row) + "\n")
    print(json.dumps({"figure": "learning_curves_seconds", "value": time.time() - started,
                      "unit": "s"}))


if __name__ == "__main__":
    main(sys.argv[1:])
