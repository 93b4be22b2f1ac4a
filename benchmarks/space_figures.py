"""Model-space figures, one JSON object per line: {"figure", "value", "unit"}.

Run: python benchmarks/space_figures.py

How long the space layer holds the caller (an event loop, in a strategy) for large
choices: building a Categorical and drawing a sample of a space of 10**12 samples.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import engine as e


def emit(figure: str, value: float, unit: str) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 4), "unit": unit}), flush=True)


def best_ms(action: Callable[[], Any], repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs (the machines are shared and noisy)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    emit("categorical_1000_build_ms",
         best_ms(lambda: e.Categorical(range(1000), label="x")), "ms")
    emit("categorical_100k_build_ms",
         best_ms(lambda: e.Categorical(range(100_000), label="x"), repeat=3), "ms")
    big = e.MutableList([e.Categorical(range(1000), label=f"c{i}") for i in range(4)])
    rng = random.Random(0)
    emit("random_sample_1e12_space_ms", best_ms(lambda: big.random(random_state=rng)), "ms")


if __name__ == "__main__":
    main()
