"""The dashboard's rows say what each model ranks by and at which fidelity, so the page's
best-so-far can rank paused and stopped models at the step they reached, like
``nas-engine plot`` (the page itself: test_dashboard_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events import ModelPaused
from engine.web import dashboard_app
from tests._fidelity_runs import mixed_events
from tests._results_fixtures import write

httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.anyio


async def test_rows_carry_the_ranked_value_its_fidelity_and_when(tmp_path: Path) -> None:
    events = mixed_events()
    await write(tmp_path / "run.nasrun", events)
    app = dashboard_app(tmp_path / "run.nasrun")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://dash") as http:
        rows = {r["id"]: r for r in (await http.get("/api/models")).json()}
        detail = (await http.get("/api/models/4")).json()
    app.close()
    ranking = {i: (r["status"], r["ranked"], r["fidelity"]) for i, r in rows.items()}
    assert ranking == {1: ("trained", 0.7, None), 2: ("trained", 0.95, 1),
                       3: ("failed", None, None), 4: ("paused", 0.99, 2)}
    assert rows[4]["final"] is None  # a paused model has no final: it ranks all the same
    assert [rows[i]["ranked_at"] for i in (1, 2, 3)] == [rows[i]["ended_at"] for i in (1, 2, 3)]
    paused = next(e for e in events if isinstance(e, ModelPaused))
    assert rows[4]["ranked_at"] == detail["paused_at"] == paused.time
    assert rows[2]["ranked_at"] < rows[3]["ranked_at"] < rows[4]["ranked_at"]
