"""examples/web_app.py served by a real uvicorn process on 127.0.0.1, driven over HTTP
with httpx: event streams read while searches run, model lists, cancellation, shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    InterruptReason,
    ModelInterrupted,
    ModelQueued,
    ModelTrained,
    TrainingStarted,
    WorkerStarted,
    decode_json,
)
from tests._example_support import marked, split_file

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MARKER = "NAS_ENGINE_EXAMPLE_TEST"
LONG = {"trials": 10, "workers": 1, "epochs": 10000}  # a first model that runs for minutes


class Server:
    """``python examples/web_app.py --port 0`` and the address it printed."""

    def __init__(self, data: Path, cwd: Path) -> None:
        self.marker = uuid.uuid4().hex
        self._err: IO[bytes] = (cwd / "server.err").open("w+b")
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "web_app.py"), "--port", "0", "--data", str(data),
             "--log-level", "warning"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
            env={**os.environ, MARKER: self.marker})
        assert self.process.stdout is not None
        first = self.process.stdout.readline().decode()
        assert first.startswith("listening on http://127.0.0.1:"), first + self.stderr()
        self.url = first.split()[-1]
        self.psutil = psutil.Process(self.process.pid)

    def workers(self) -> set[int]:
        return {p.pid for p in self.psutil.children(recursive=True) if p.status() != "zombie"}

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for process in marked(self.marker):
            process.kill()
        assert self.process.stdout is not None
        self.process.stdout.close()
        self._err.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module; the last test shuts it down."""
    running = Server(split_file(tmp_path_factory.getbasetemp()),
                     tmp_path_factory.mktemp("web_app"))
    try:
        yield running
    finally:
        running.close()


class Stream:
    """An open ``text/event-stream`` response, read one event at a time."""

    def __init__(self, client: Any, path: str, **headers: str) -> None:
        self._context = client.stream("GET", path, headers=headers)
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()
        self.events: list[Event] = []

    def next(self) -> Event | None:
        """The next event; None when the stream ended."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if not line:
                if "data" in fields:
                    event = decode_json(fields["data"])
                    assert fields["id"] == str(event.seq)
                    self.events.append(event)
                    return event
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        return None

    def until(self, kind: type[Any]) -> Any:
        while (event := self.next()) is not None:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"the stream ended without a {kind.__name__}: {self.events}")

    def rest(self) -> list[Event]:
        while self.next() is not None:
            pass
        return self.events

    def close(self) -> None:
        self._context.__exit__(None, None, None)


def test_searches_over_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        created = client.post("/searches", json={"trials": 4, "workers": 1, "epochs": 2,
                                                 "seed": 1})
        assert created.status_code == 201, created.text
        url = f"/searches/{created.json()['id']}"
        assert created.headers["location"] == url
        assert created.json()["state"] == "running"

        stream = Stream(client, f"{url}/events")
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        first = stream.until(ModelTrained)  # read while the search runs
        listed = client.get(f"{url}/models").json()
        assert first.model_id in [m["id"] for m in listed]
        events = stream.rest()
        stream.close()
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert isinstance(events[-1], EngineStopped)
        assert events[-1].reason == "finished"
        assert sum(isinstance(e, EngineStarted) for e in events) == 1
        assert sum(isinstance(e, ModelTrained) for e in events) == 4

        models = client.get(f"{url}/models").json()
        assert [m["id"] for m in models] == [1, 2, 3, 4]
        assert {m["status"] for m in models} == {"trained"}
        assert all(len(m["intermediates"]) == 2 for m in models)  # one per epoch
        best = client.get(url).json()
        assert (best["state"], best["models"], best["trained"]) == ("finished", 4, 4)
        assert best["best"]["metric"] == max(m["metric"] for m in models) > 0.1

        replay = Stream(client, f"{url}/events", **{"last-event-id": str(len(events) - 2)})
        assert replay.rest() == events[-2:]
        replay.close()
        assert server.workers() == set()  # the finished search's workers are gone

        _bad_requests(client)


def _bad_requests(client: Any) -> None:
    bad = client.post("/searches", json={"trials": "many"})
    assert bad.status_code == 422
    assert bad.json() == {"error": "bad search request: Expected `int`, got `str` - at "
                                   "`$.trials`"}
    bad = client.post("/searches", json={"trials": 0})
    assert bad.status_code == 422
    assert "at `$.trials`" in bad.json()["error"]
    bad = client.post("/searches", json={"workers": 1, "gpus": 2})
    assert bad.json() == {"error": "bad search request: Object contains unknown field `gpus`"}
    bad = client.post("/searches", content=b"{not json")
    assert bad.status_code == 400
    for method, path in (("GET", "/searches/7/events"), ("GET", "/searches/7/models"),
                         ("DELETE", "/searches/7")):
        missing = client.request(method, path)
        assert missing.status_code == 404
        assert missing.json() == {"error": "no search 7: POST /searches starts one"}


def test_delete_cancels_a_search_and_shutdown_cancels_the_rest(server: Server) -> None:
    """Last in this module: it shuts the server down."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        urls = [client.post("/searches", json=LONG).headers["location"] for _ in range(2)]
        cancelled, survivor = (Stream(client, f"{url}/events") for url in urls)
        worker = cancelled.until(WorkerStarted)
        training = cancelled.until(TrainingStarted)

        deleted = client.delete(urls[0])
        assert deleted.status_code == 200
        assert deleted.json()["state"] == "cancelled"
        assert worker.pid not in server.workers()  # stopped before DELETE answered
        events = cancelled.rest()
        cancelled.close()
        queued = [e.model_id for e in events if isinstance(e, ModelQueued)]
        interrupted = [e for e in events if isinstance(e, ModelInterrupted)]
        assert training.model_id in queued
        assert sorted(e.model_id for e in interrupted) == sorted(queued)  # running or not
        assert {e.reason for e in interrupted} == {InterruptReason.shutdown}
        assert isinstance(events[-1], EngineStopped)
        assert events[-1].reason == "cancelled"
        models = client.get(f"{urls[0]}/models").json()
        assert sorted(m["id"] for m in models) == sorted(queued)
        assert {m["status"] for m in models} == {"interrupted"}

        other = survivor.until(WorkerStarted)
        survivor.until(TrainingStarted)
        assert server.workers() == {other.pid}
        server.process.send_signal(signal.SIGINT)  # what Ctrl-C does
        events = survivor.rest()  # the stream ends with its search
        survivor.close()
    assert server.process.wait(30) == 130, server.stderr()
    assert "Traceback" not in server.stderr()
    assert isinstance(events[-1], EngineStopped)
    assert events[-1].reason == "cancelled"
    assert {e.reason for e in events if isinstance(e, ModelInterrupted)} == {
        InterruptReason.shutdown}
    assert marked(server.marker) == []
