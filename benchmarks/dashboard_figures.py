"""Dashboard figures on a run of 10,000 trained models (20 metric points each), one JSON
object per line: {"figure", "value", "unit"}.

- ``dashboard_open_10k_s``: seconds to fold the run's events (open_run).
- ``dashboard_snapshot_10k_s`` / ``dashboard_snapshot_10k_mb``: time and size of the
  snapshot a page receives first (every table row, curves downsampled to 16 points).
- ``dashboard_delta_idle_ms``: one poll of a live run when nothing changed.
- ``dashboard_page_load_10k_s``: with Chromium and playwright, from navigation to the
  first rendered table page; ``dashboard_sort_10k_ms``: one re-sort of the table.

Run ``python benchmarks/dashboard_figures.py``.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    MetricReported,
    ModelQueued,
    ModelTrained,
    TrainingStarted,
)
from engine.results import open_run
from engine.store import RunStore
from engine.web import dashboard_app
from engine.web._feed import Cursor, Feed

MODELS, STEPS = 10_000, 20


def emit(figure: str, value: float, unit: str) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 4), "unit": unit}), flush=True)


def events() -> list[Event]:
    rng = random.Random(0)
    out: list[Event] = [EngineStarted(seq=1, time=0.0, pool="inline", capacity=8)]
    for model in range(1, MODELS + 1):
        now = float(model)
        sample = {"width": rng.choice([16, 32, 64, 128]), "act": rng.choice(["relu", "gelu"]),
                  "lr": round(rng.uniform(1e-4, 1e-1), 5), "depth": rng.randint(2, 12)}
        top = rng.random()
        more: list[Any] = [(ModelQueued, {"sample": sample}),
                           (TrainingStarted, {"worker": f"w{model % 8}", "attempt": 1})]
        more += [(MetricReported, {"step": s, "value": top * s / STEPS})
                 for s in range(1, STEPS + 1)]
        more += [(ModelTrained, {"final": top, "duration": 1.0})]
        for kind, fields in more:
            out.append(kind(seq=len(out) + 1, time=now, model_id=model, **fields))
    out.append(EngineStopped(seq=len(out) + 1, time=float(MODELS + 1), reason="finished"))
    return out


async def write(path: Path) -> None:
    store = await RunStore.open(path)
    for event in events():
        store.append(event)
    await store.aclose()


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def browser_figures(path: Path) -> None:
    executable = shutil.which("chromium")
    try:
        import uvicorn
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        return
    if executable is None:
        return
    app = dashboard_app(path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            expect(page.locator("#rows tr")).to_have_count(50, timeout=120_000)
            emit("dashboard_page_load_10k_s", time.perf_counter() - start, "s")
            first = page.locator("#rows tr").first
            start = time.perf_counter()
            page.click('th[data-key="final"]')
            page.click('th[data-key="final"]')  # best first: the first row changes
            expect(first).not_to_have_attribute("data-id", "1", timeout=60_000)
            emit("dashboard_sort_10k_ms", (time.perf_counter() - start) * 1000 / 2, "ms")
            browser.close()
    finally:
        app.stop()
        server.should_exit = True
        thread.join()
        sock.close()
        app.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.nasrun"
        anyio.run(write, path)
        seconds, results = timed(lambda: open_run(path))
        results.close()
        emit("dashboard_open_10k_s", seconds, "s")
        feed = Feed(path, "max", refresh_every=0.0)
        cursor = Cursor()
        seconds, snapshot = timed(lambda: feed.snapshot(cursor))
        emit("dashboard_snapshot_10k_s", seconds, "s")
        emit("dashboard_snapshot_10k_mb", len(snapshot) / 1e6, "MB")
        seconds, _ = timed(lambda: feed.delta(cursor))
        emit("dashboard_delta_idle_ms", seconds * 1000, "ms")
        feed.close()
        browser_figures(path)


if __name__ == "__main__":
    sys.exit(main())
