"""A small CNN model space and its evaluator, trained on scikit-learn's handwritten digits.

The data is ``sklearn.datasets.load_digits()`` (1797 grey 8x8 images, 10 classes,
shipped inside scikit-learn: no download), split once into train / validation / test
(60 / 20 / 20 %, stratified, fixed seed; :func:`ensure_split` takes other fractions)
and saved as a small ``.npz`` file by :func:`ensure_split`. Worker processes read that
file with numpy only: importing scikit-learn costs a few seconds per process, and every
worker sees the same split.

The space (:class:`DigitsNet`): a stem convolution of ``width`` channels, then ``depth``
blocks (1 to 3, a ``Repeat``), block ``i`` being one operation chosen by the LayerChoice
``op{i}``, then global average pooling and a linear classifier. ``width`` is one choice
shared by every layer (a mutable layer argument): 4 x 3 x 5**3 = 1500 samples.

The scripts beside this file import it as ``_digits``: a script's own folder is on
``sys.path``, and a worker process gets the same ``sys.path``.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import engine as e
from engine import nn as enn

OPS = ("conv3x3", "conv5x5", "sepconv3x3", "maxpool3x3", "skip")
WIDTHS = (4, 8, 16, 32)
MAX_DEPTH = 3
SPLIT_SEED = 0
DEFAULT_DATA = Path("runs") / "digits-split.npz"


# --- the data ---------------------------------------------------------------------------


def ensure_split(path: str | Path = DEFAULT_DATA, *, val: float = 0.2,
                 test: float = 0.2) -> Path:
    """The split digits data at ``path`` (absolute), made from ``load_digits()`` when the
    file is missing: a stratified ``test`` fraction of the images is held out, then a
    ``val`` fraction (of all images) for validation, the rest for training (the defaults,
    60 / 20 / 20 %, are the examples' split). An existing file is returned as it is,
    whatever split it holds: give each split its own path. Written to a temporary name
    and renamed, so concurrent callers never see half a file."""
    if not (0 < val and 0 < test and val + test < 1):
        raise ValueError(f"the validation and test fractions must be positive and leave "
                         f"images to train on, got val={val}, test={test}")
    path = Path(path).resolve()
    if path.exists():
        return path
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=test, stratify=labels, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val / (1 - test), stratify=y_rest,
        random_state=SPLIT_SEED)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(handle, "wb") as file:
        np.savez(file, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                 x_test=x_test, y_test=y_test)
    os.replace(temporary, path)
    return path


@functools.lru_cache(maxsize=2)
def load_split(path: str) -> dict[str, torch.Tensor]:
    """The split as tensors: images ``(n, 1, 8, 8)`` scaled to [0, 1], int64 labels.
    Cached: a worker reads the file once for all its trials."""
    with np.load(path) as arrays:
        split = {}
        for part in ("train", "val", "test"):
            images = torch.tensor(arrays[f"x_{part}"], dtype=torch.float32) / 16.0
            split[f"x_{part}"] = images.reshape(-1, 1, 8, 8)
            split[f"y_{part}"] = torch.tensor(arrays[f"y_{part}"], dtype=torch.int64)
    return split


def describe_split(path: str | Path) -> str:
    split = load_split(str(path))
    sizes = [len(split[f"y_{part}"]) for part in ("train", "val", "test")]
    return (f"digits: {sizes[0]} train / {sizes[1]} validation / {sizes[2]} test images "
            "(8x8, from sklearn.datasets.load_digits)")


# --- the space --------------------------------------------------------------------------


def operation(name: str, width: Any) -> nn.Module:
    """One candidate operation on ``width`` channels (``width`` may be a mutable)."""
    if name == "conv3x3":
        return nn.Sequential(enn.Conv2d(width, width, 3, padding=1), enn.BatchNorm2d(width),
                             nn.ReLU())
    if name == "conv5x5":
        return nn.Sequential(enn.Conv2d(width, width, 5, padding=2), enn.BatchNorm2d(width),
                             nn.ReLU())
    if name == "sepconv3x3":  # depthwise then pointwise
        return nn.Sequential(enn.Conv2d(width, width, 3, padding=1, groups=width),
                             enn.Conv2d(width, width, 1), enn.BatchNorm2d(width), nn.ReLU())
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    if name == "skip":
        return nn.Identity()
    raise ValueError(f"unknown operation {name!r}: pick one of {OPS}")


class DigitsNet(enn.ModelSpace):
    """Stem, ``depth`` chosen blocks, pooling, classifier (see the module docstring)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, max_depth: int = MAX_DEPTH) -> None:
        super().__init__()
        width = e.Categorical(list(widths), label="width")
        self.stem = nn.Sequential(enn.Conv2d(1, width, 3, padding=1), enn.BatchNorm2d(width),
                                  nn.ReLU())
        self.blocks = enn.Repeat(
            lambda i: enn.LayerChoice({op: operation(op, width) for op in OPS},
                                      label=f"op{i + 1}"),
            (1, max_depth), label="depth")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), enn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.blocks(self.stem(x)))
        return logits


def describe(sample: Mapping[str, Any]) -> str:
    """``width=32 depth=2 ops=conv3x3,skip`` (the operations of the blocks in use)."""
    depth = int(sample["depth"])
    ops = ",".join(str(sample[f"op{i}"]) for i in range(1, depth + 1))
    return f"width={sample['width']} depth={depth} ops={ops}"


# --- the evaluator ----------------------------------------------------------------------


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def train_digits(model: nn.Module, data: str, epochs: int = 5, lr: float = 0.03,
                 batch_size: int = 32, seed: int = 0, score_on: str = "val") -> float:
    """Train ``model`` on the training images (Adam, one-cycle learning rate); report the
    validation accuracy after each epoch (an intermediate metric) and return the accuracy
    on ``score_on`` (``val`` while searching, ``test`` for the held-out score). The
    weights are re-initialised from ``seed``, so an architecture trains the same way again."""
    if score_on not in ("val", "test"):
        raise ValueError(f"score_on must be 'val' or 'test', got {score_on!r}")
    split = load_split(data)
    for accuracy_now in epochs_of(model, split, epochs, lr, batch_size, seed):
        e.report_intermediate(accuracy_now)
    return accuracy(model, split[f"x_{score_on}"], split[f"y_{score_on}"])


def epochs_of(model: nn.Module, split: Mapping[str, torch.Tensor], epochs: int,
              lr: float = 0.03, batch_size: int = 32, seed: int = 0) -> Iterator[float]:
    """Train ``model`` one epoch at a time (weights re-initialised from ``seed``, Adam,
    a one-cycle learning rate over all ``epochs``), yielding the validation accuracy after
    each: the one training loop of the search and of benchmarks/learning_curves.py."""
    torch.set_num_threads(1)  # one core per worker: the pool runs the trials in parallel
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    x_train, y_train = split["x_train"], split["y_train"]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(y_train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)

    def train() -> Iterator[float]:  # the set-up above runs now, the epochs as iterated
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(y_train), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
                optimizer.step()
                schedule.step()
            yield accuracy(model, split["x_val"], split["y_val"])

    return train()


def digits_space(data: str | Path, epochs: int = 5, seed: int = 0,
                 score_on: str = "val") -> e.SimplifiedModelSpace:
    """The space to search: :class:`DigitsNet` trained by :func:`train_digits`."""
    return e.SimplifiedModelSpace.from_model(
        DigitsNet(), e.FunctionEvaluator(train_digits, data=str(data), epochs=epochs,
                                         seed=seed, score_on=score_on))


def held_out(sample: Mapping[str, Any], data: str | Path, epochs: int,
             seed: int = 0) -> tuple[float, float]:
    """Train ``sample``'s architecture again (same seed) in this process: its validation
    and its test accuracy. Blocking: call it in a thread from async code."""
    model = digits_space(data, epochs, seed, score_on="test").freeze(dict(sample))
    test = model.execute()
    return model.metrics.intermediates[-1], float(test)
