"""The dashboard page in a real headless Chromium (Debian's package, driven by
Playwright) on a live run: a real engine (InlinePool) writes the journal while the page
watches. Each model's training waits on an anyio.Event that the test sets, so the test
decides when a model finishes. In CI (CI=true) a missing browser fails the test."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from anyio.abc import TaskStatus

import engine as e
from engine.web import dashboard_app
from tests._fidelity_runs import mixed_run
from tests._results_fixtures import Grid, grid_space

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FAILING = 2  # the sample x whose training raises
SCREENSHOT = os.environ.get("NAS_ENGINE_DASHBOARD_SCREENSHOT")  # also save it here


def chromium() -> str:
    """The system's Chromium, or a skip (a failure in CI) naming what is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = [] if path else ["Chromium (apt-get install chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert path is not None
    return path


GATES: dict[str, dict[int, anyio.Event]] = {}  # per test: sample x -> its gate


async def gated(model: Grid, run: str, steps: int = 8) -> float:
    """Reports half its curve, waits for its gate, reports the rest; fails for FAILING."""
    gate = GATES[run][model.x]
    for step in range(steps):
        if step == steps // 2:
            await gate.wait()
        e.report_intermediate((model.x % 7) / 10 * (step + 1) / steps + model.x / 100)
    if model.x == FAILING:
        raise ValueError(f"x={model.x}: this width does not fit the input")
    return (model.x % 7) / 10 + model.x / 100


async def live_run(path: Path, models: int, *, task_status: TaskStatus[Any]) -> None:
    """A search of ``models`` models over two inline workers, writing ``path``."""
    key = str(path)
    GATES[key] = {x: anyio.Event() for x in range(models)}
    space = grid_space(gated, run=key)
    try:
        async with e.Engine(e.InlinePool(2), journal=path, queue_size=models) as engine:
            samples = [{"x": x, "act": ("relu", "tanh", "gelu")[x % 3]} for x in range(models)]
            handles = [await engine.submit(space.freeze(sample)) for sample in samples]
            task_status.started((GATES[key], handles))
            for handle in handles:
                await handle
    finally:
        del GATES[key]


class Dashboard:
    """uvicorn serving the dashboard app in a thread, on a free port of 127.0.0.1."""

    def __init__(self, run: Path) -> None:
        import uvicorn

        self.app = dashboard_app(run, interval=0.05)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)  # the page's requests wait in the backlog until uvicorn serves
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        config = uvicorn.Config(self.app, log_level="warning", ws="none", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()

    def close(self) -> None:
        self.app.stop()
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        self.app.close()
        assert not self.thread.is_alive()


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def wait_rows(page: Any, status: str, count: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator(f'#rows tr[data-status="{status}"]')).to_have_count(count)


def test_live_page(browser: Any, anyio_backend: str, tmp_path: Path) -> None:
    path = tmp_path / "live.nasrun"
    with anyio.from_thread.start_blocking_portal(anyio_backend) as portal:
        run: Future[None]
        run, (gates, handles) = portal.start_task(live_run, path, 8)
        try:
            # Models 0-3 finish (2 fails) before the page opens; 4 and 5 then train.
            for x in range(4):
                portal.call(gates[x].set)
            for handle in handles[:4]:
                portal.call(handle.wait)
            dashboard = Dashboard(path)
            try:
                check_page(browser.new_page(viewport={"width": 1400, "height": 1100}),
                           dashboard.url, portal, gates, handles, tmp_path)
            finally:
                dashboard.close()
        finally:
            for gate in gates.values():
                portal.call(gate.set)
            run.result(timeout=60)


def check_page(page: Any, url: str, portal: Any, gates: dict[int, anyio.Event],
               handles: list[e.ModelHandle], tmp_path: Path) -> None:
    page.set_default_timeout(30_000)
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    # Everything so far: trained 0, 1, 3; failed 2; training 4, 5; queued 6, 7.
    for status, count in (("trained", 3), ("failed", 1), ("training", 2), ("frozen", 2)):
        wait_rows(page, status, count)
    page.wait_for_selector("#live.live")
    page.evaluate("() => { window.notReloaded = true; }")
    # One more model finishes: it shows up without a reload.
    portal.call(gates[4].set)
    portal.call(handles[4].wait)
    wait_rows(page, "trained", 4)
    assert page.evaluate("() => window.notReloaded") is True
    assert "x=4" in page.locator('#rows tr[data-id="5"]').inner_text()
    assert page.locator("#budget-text").inner_text() == "5 of 8 finished"
    # The table sorts: by final, best first.
    page.click('th[data-key="final"]')
    page.click('th[data-key="final"]')
    page.wait_for_selector('th.desc[data-key="final"]')  # rendered (at the next frame)
    finals = page.locator("#rows tr td:nth-child(4)").all_inner_texts()
    numbers = [float(f) for f in finals if f]
    assert numbers == sorted(numbers, reverse=True)
    # The failed model's traceback.
    page.fill("#filter", "does not fit")
    wait_rows(page, "trained", 0)  # filtered out: only the failed model is left
    wait_rows(page, "failed", 1)
    assert page.locator("#rows tr").count() == 1
    page.click('#rows tr[data-status="failed"]')
    page.wait_for_selector("#traceback:has-text('ValueError')")
    assert "this width does not fit the input" in page.locator("#error-title").inner_text()
    assert "in gated" in page.locator("#traceback").inner_text()
    page.fill("#filter", "")
    wait_rows(page, "trained", 4)
    shot = page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    if SCREENSHOT:
        Path(SCREENSHOT).write_bytes(shot)
    # The rest finishes: the page says the run stopped, and its stream ends.
    for gate in gates.values():
        portal.call(gate.set)
    page.wait_for_selector("#live:has-text('stopped (finished)')")
    wait_rows(page, "trained", 7)
    assert errors == []
    assert all(r.startswith(url) for r in requests), requests  # nothing from elsewhere


def test_best_so_far_ranks_stopped_and_paused_models_at_their_step(
        browser: Any, tmp_path: Path) -> None:
    """Like ``nas-engine plot``: a model stopped at step 1 (0.95) or paused at step 2
    (0.99) never stands above one trained to its end (0.7); without one, the best is
    the best at the highest step reached, and the page says which step."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    for name, full, note, best in (
            ("mixed", True, "best 0.7000 (model 1); \u00d7 ranked at the step it reached",
             [0.7, 0.7, 0.7]),
            ("short", False, "best 0.9900 at step 2 (model 4, paused); \u00d7 ranked at "
             "the step it reached", [0.95, 0.99])):
        # Written in a thread: Playwright's own event loop runs in this one.
        with ThreadPoolExecutor(1) as pool:
            path = pool.submit(mixed_run, tmp_path / f"{name}.nasrun", full=full).result()
        dashboard = Dashboard(path)
        try:
            page.goto(dashboard.url)
            page.wait_for_selector("#live:has-text('stopped (finished)')")
            page.wait_for_function("() => document.getElementById('best-note').textContent")
            assert page.locator("#best-note").inner_text() == note
            points = page.evaluate("() => bestSoFar([...state.models.values()])"
                                   ".map((p) => [p.trial, p.value, p.best.value])")
            # Every ended or paused model is a trial (the failed one too: no point).
            trials = [1, 2, 4] if full else [1, 3]
            assert [p[0] for p in points] == trials
            assert [p[2] for p in points] == best
            # The parallel coordinates draw only models trained to their end: model 2's
            # final is its step-1 value, counted in the caption instead.
            drawn = page.evaluate("() => parallelModels([...state.models.values()])"
                                  ".full.map((m) => m.id)")
            assert drawn == ([1] if full else [])
            assert page.locator("#parallel-note").inner_text() == "(1 stopped early left out)"
        finally:
            dashboard.close()
    assert errors == []


def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")  # no chromium on it
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"needs Chromium \(apt-get install"):
        chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="needs Chromium"):
        chromium()
