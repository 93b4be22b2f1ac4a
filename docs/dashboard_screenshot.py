"""Make docs/dashboard.png: the dashboard of a 48-model run file (written here with
RunStore: samples, curves, four out-of-memory failures), in headless Chromium.

Run ``python docs/dashboard_screenshot.py`` (needs uvicorn, playwright, Pillow and
/usr/bin/chromium).
"""

from __future__ import annotations

import math
import random
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    MetricReported,
    ModelFailed,
    ModelQueued,
    ModelTrained,
    TrainingStarted,
)
from engine.store import RunStore
from engine.web import dashboard_app

OUT = Path(__file__).resolve().parent / "dashboard.png"
TRACEBACK = ('Traceback (most recent call last):\n  File "train.py", line 41, in train\n'
             "    loss = model(x).cross_entropy(y)\n"
             "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n")


def run_events(models: int = 48, steps: int = 20) -> list[Event]:
    rng = random.Random(3)
    out: list[Event] = [EngineStarted(seq=1, time=1000.0, pool="process", capacity=4)]

    def add(kind: Any, **fields: Any) -> None:
        out.append(kind(seq=len(out) + 1, **fields))

    now = 1000.0
    for model in range(1, models + 1):
        now += rng.uniform(2, 6)
        sample = {"width": rng.choice([16, 32, 64, 128]), "depth": rng.randint(2, 8),
                  "act": rng.choice(["relu", "gelu", "tanh"]),
                  "lr": round(10 ** rng.uniform(-4, -1), 5)}
        quality = (0.55 + 0.1 * (math.log2(sample["width"]) - 4)
                   - abs(math.log10(sample["lr"]) + 2.5) * 0.08 + rng.gauss(0, 0.03))
        add(ModelQueued, time=now, model_id=model, sample=sample)
        add(TrainingStarted, time=now, model_id=model, worker=f"process-{model % 4}",
            attempt=1)
        for step in range(1, steps + 1):
            add(MetricReported, time=now + step * 0.3, model_id=model, step=step,
                value=quality * (1 - math.exp(-step / 4)) + rng.gauss(0, 0.005))
        if model % 11 == 5:
            add(ModelFailed, time=now + steps * 0.3, model_id=model,
                error_type="RuntimeError", message="CUDA out of memory. Tried to allocate "
                "2.00 GiB", traceback=TRACEBACK, attempt=1)
        else:
            add(ModelTrained, time=now + steps * 0.3, model_id=model, final=quality,
                duration=steps * 0.3)
    add(EngineStopped, time=now + 10, reason="finished")
    return out


async def write(path: Path) -> None:
    store = await RunStore.open(path)
    for event in run_events():
        store.append(event)
    await store.aclose()


def screenshot(run: Path, png: Path) -> None:
    app = dashboard_app(run)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            expect(page.locator("#rows tr").first).to_be_visible()
            page.click('th[data-key="final"]')
            page.click('th[data-key="final"]')
            page.fill("#filter", "width=128")
            page.locator('#rows tr[data-status="failed"]').first.click()
            page.wait_for_selector("#traceback:has-text('RuntimeError')")
            page.wait_for_timeout(1500)  # the charts of the selection
            page.screenshot(path=str(png), full_page=True)
            browser.close()
    finally:
        app.stop()
        server.should_exit = True
        thread.join()
        sock.close()
        app.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        run, raw = Path(folder) / "search.nasrun", Path(folder) / "raw.png"
        anyio.run(write, run)
        screenshot(run, raw)
        image = Image.open(raw).convert("RGB")
        image.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(OUT, optimize=True)


if __name__ == "__main__":
    main()
