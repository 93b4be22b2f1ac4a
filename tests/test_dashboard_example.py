"""examples/web_app.py mounts each search's dashboard (engine.web) below the search:
served by a real uvicorn process, read over HTTP while and after the search runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.events import EngineStopped
from tests.test_web_app import Server, Stream

httpx = pytest.importorskip("httpx")
pytest.importorskip("sklearn")


def test_each_search_has_its_dashboard(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests._example_support import split_file

    server = Server(split_file(tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("dash"))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            missing = client.get("/searches/1/dashboard/")
            assert missing.status_code == 404
            url = client.post("/searches", json={"trials": 2, "epochs": 1}).headers["location"]
            events = Stream(client, f"{url}/events")
            events.until(EngineStopped)
            events.close()
            page = client.get(f"{url}/dashboard/")
            assert page.status_code == 200
            assert 'src="static/app.js"' in page.text
            assert client.get(f"{url}/dashboard/static/app.js").status_code == 200
            rows = client.get(f"{url}/dashboard/api/models").json()
            assert [(r["id"], r["status"]) for r in rows] == [(1, "trained"), (2, "trained")]
            assert all(r["steps"] == 1 for r in rows)  # one report per epoch
            with client.stream("GET", f"{url}/dashboard/api/stream") as stream:
                lines = list(stream.iter_lines())
            assert lines[0] == "event: snapshot"
            snapshot = json.loads(lines[2].removeprefix("data: "))
            assert snapshot["run"]["stopped"] == "finished"
            assert Path(snapshot["run"]["path"]).parent.name == "runs"
            assert "event: end" in lines
    finally:
        server.close()
