"""engine.web: the dashboard's ASGI app on real run files, over HTTP (httpx, uvicorn) and
through its raw ASGI interface; the page itself is tested in a browser in
test_dashboard_browser.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.cli import main
from engine.store import RunFileError, RunStore
from engine.web import DashboardApp, dashboard_app
from tests._results_fixtures import TRACEBACK, failed_loud_run, run_events, write_run

httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run.nasrun")


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream."""
    messages = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                      and not line.startswith(":"))
        messages.append((fields["event"], json.loads(fields["data"])))
    return messages


def client(app: Any, base: str = "http://dash") -> Any:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base)


@pytest.mark.anyio
async def test_page_assets_and_models(run: Path) -> None:
    app = dashboard_app(run)
    async with client(app) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="static/app.js"' in page.text
        assert "cdn" not in page.text.lower()
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = await http.get("/static/app.js")
        assert script.status_code == 200
        assert "EventSource" in script.text
        assert (await http.get("/static/style.css")).status_code == 200
        assert (await http.get("/static/../results.py")).status_code == 404
        rows = (await http.get("/api/models")).json()
        assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert rows[3] | {"sample": None} == rows[3] | {
            "sample": None, "status": "trained", "final": 0.3, "steps": 1, "attempts": 2}
        failed = (await http.get("/api/models/5")).json()
        assert (failed["traceback"], failed["error_type"]) == (TRACEBACK, "ValueError")
        assert (await http.get("/api/models/99")).status_code == 404
    app.close()


@pytest.mark.anyio
async def test_a_failed_model_shows_its_kept_output(tmp_path: Path) -> None:
    """The model detail endpoint carries the full output the run file kept of a failed
    trial (the page lists each stream under its name)."""
    app = dashboard_app(await failed_loud_run(tmp_path / "loud.nasrun"))
    async with client(app) as http:
        detail = (await http.get("/api/models/1")).json()
    app.close()
    assert (detail["status"], detail["error_type"]) == ("failed", "RuntimeError")
    assert detail["output"]["stdout"].count("line ") == 3
    assert "the end of stderr" in detail["output"]["stderr"]


@pytest.mark.anyio
async def test_read_only(run: Path) -> None:
    app = dashboard_app(run)
    before = await anyio.Path(run).read_bytes()
    async with client(app) as http:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = await http.request(method, "/api/models/1")
            assert response.status_code == 405
            assert response.headers["allow"] == "GET, HEAD"
        head = await http.head("/")
        assert head.status_code == 200
        assert head.content == b""
    app.close()
    assert await anyio.Path(run).read_bytes() == before


@pytest.mark.anyio
async def test_stream_of_a_finished_run_is_a_snapshot_then_end(run: Path) -> None:
    app = dashboard_app(run, interval=0.01)
    async with client(app) as http:
        response = await http.get("/api/stream")
    app.close()
    assert response.headers["content-type"].startswith("text/event-stream")
    (kind, snapshot), (end, _) = sse(response.text)
    assert (kind, end) == ("snapshot", "end")
    assert [m["id"] for m in snapshot["models"]] == [1, 2, 3, 4, 5, 6]
    assert snapshot["curves"]["1"] == [[1, 0.5 / 3], [2, 0.5 * 2 / 3], [3, 0.5]]
    assert snapshot["run"] | {"meta": None} == snapshot["run"] | {
        "meta": None, "name": "run.nasrun", "stopped": "finished", "writing": False,
        "seq": len(run_events()), "mode": "max"}


class Page:
    """A raw ASGI client of one event stream: each ``http.response.body`` in a channel."""

    def __init__(self, app: DashboardApp) -> None:
        self.app = app
        self.send_body, self.bodies = anyio.create_memory_object_stream[bytes](100)
        self.gone = anyio.Event()

    async def receive(self) -> MutableMapping[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            await self.send_body.send(message["body"])

    async def serve(self) -> None:
        scope = {"type": "http", "method": "GET", "path": "/api/stream", "root_path": "",
                 "headers": [], "query_string": b""}
        async with self.send_body:
            await self.app(scope, self.receive, self.send)

    async def next(self) -> tuple[str, dict[str, Any]]:
        with anyio.fail_after(10):
            return sse((await self.bodies.receive()).decode())[0]


@pytest.mark.anyio
async def test_a_live_run_streams_what_changed(tmp_path: Path) -> None:
    path, events = tmp_path / "live.nasrun", run_events()
    store = await RunStore.open(path)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        for event in events[:10]:  # model 1 trained, model 2 reported once
            store.append(event)
        await store.flushed(10)
        app = dashboard_app(path, interval=0.01)
        page = Page(app)
        tg.start_soon(page.serve)
        kind, snapshot = await page.next()
        assert kind == "snapshot"
        assert snapshot["run"]["writing"]
        assert [(m["id"], m["status"]) for m in snapshot["models"]] == [
            (1, "trained"), (2, "training")]
        for event in events[10:14]:  # model 2: two more metrics, trained; model 3 queued
            store.append(event)
        await store.flushed(14)
        kind, update = await page.next()
        assert kind == "update"
        assert update["run"]["seq"] == 14
        assert [(m["id"], m["status"]) for m in update["models"]] == [
            (2, "trained"), (3, "frozen")]
        assert update["points"]["2"] == {"reset": False,
                                         "points": [[2, 0.9 * 2 / 3], [3, 0.9 * 3 / 3]]}
        for event in events[14:]:
            store.append(event)
        await store.aclose()
        kind, update = await page.next()
        assert update["points"]["4"]["reset"]  # model 4's second attempt
        assert {m["id"] for m in update["models"]} == {3, 4, 5, 6}
        assert update["run"]["stopped"] == "finished"
        assert (await page.next())[0] == "end"
    page.bodies.close()
    app.close()


@pytest.mark.anyio
async def test_stop_ends_open_streams_and_a_closed_page_ends_its_stream(
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.nasrun"
    store = await RunStore.open(path)
    async with anyio.create_task_group() as writer:
        await writer.start(store.serve)  # a live run: these streams would go on
        for event in run_events(stop=False):
            store.append(event)
        app = dashboard_app(path, interval=0.01)
        stopped, left = Page(app), Page(app)
        async with anyio.create_task_group() as tg:
            tg.start_soon(stopped.serve)
            tg.start_soon(left.serve)
            assert (await stopped.next())[0] == "snapshot"
            assert (await left.next())[0] == "snapshot"
            left.gone.set()  # the page was closed: its stream ends by itself
            with anyio.fail_after(10):
                async for _ in left.bodies:
                    pass
            app.stop()  # a server shutting down: the other one ends too
            with anyio.fail_after(10):
                async for _ in stopped.bodies:
                    pass
        stopped.bodies.close()
        left.bodies.close()
        app.close()
        await store.aclose()


@pytest.mark.anyio
async def test_mounted_under_a_prefix(run: Path) -> None:
    starlette = pytest.importorskip("starlette.applications")
    routing = pytest.importorskip("starlette.routing")
    dashboard = dashboard_app(run)
    app = starlette.Starlette(routes=[routing.Mount("/runs/one", app=dashboard)])
    async with client(app) as http:
        redirect = await http.get("/runs/one")
        assert redirect.status_code in (307, 308)
        assert redirect.headers["location"].endswith("/runs/one/")
        assert 'href="static/style.css"' in (await http.get("/runs/one/")).text
        assert [r["id"] for r in (await http.get("/runs/one/api/models")).json()] == [
            1, 2, 3, 4, 5, 6]
    dashboard.close()


def test_bad_run_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "missing.nasrun"
    with pytest.raises(RunFileError) as caught:
        dashboard_app(bad)
    assert main(["dashboard", str(bad), "--port", "0"]) == 2
    assert capsys.readouterr().err == f"nas-engine: error: {caught.value}\n"
    with pytest.raises(ValueError, match="mode must be"):
        dashboard_app(write_run(tmp_path / "run.nasrun"), mode="best")  # type: ignore[arg-type]


def test_cli_serves_on_localhost_until_interrupted(run: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "dashboard", str(run), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith(f"dashboard of {run} on http://127.0.0.1:"), line
        url = line.split()[4]
        assert httpx.get(url, timeout=30).status_code == 200
        assert [r["id"] for r in httpx.get(url + "api/models", timeout=30).json()] == [
            1, 2, 3, 4, 5, 6]
        with httpx.stream("GET", url + "api/stream", timeout=30) as stream:
            assert next(stream.iter_lines()) == "event: snapshot"
            process.send_signal(signal.SIGINT)  # with a stream open
            process.wait(timeout=30)
        assert process.returncode in (0, 130), process.stderr.read() if process.stderr else ""
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_cli_reports_a_taken_port(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", str(run), "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
