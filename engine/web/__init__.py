"""The live dashboard of a run: an ASGI app with its page (vanilla JS, no CDN).

Serve it with ``nas-engine dashboard RUN``, or mount it in your own ASGI app::

    from engine.web import dashboard_app
    app = Starlette(routes=[Mount("/dashboard", app=dashboard_app(engine.journal_path))])
"""

from __future__ import annotations

from engine.web._app import DashboardApp as DashboardApp
from engine.web._app import dashboard_app as dashboard_app
from engine.web._serve import DashboardUnavailable as DashboardUnavailable
from engine.web._serve import run_dashboard as run_dashboard

__all__ = ("DashboardApp", "DashboardUnavailable", "dashboard_app", "run_dashboard")
