"""``nas-engine dashboard``: the dashboard app served by uvicorn."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path
from typing import Any, Literal, TextIO

from engine.web._app import DashboardApp

__all__ = ("DashboardUnavailable", "run_dashboard")


class DashboardUnavailable(RuntimeError):
    """The dashboard cannot be served: uvicorn is missing, or the address is taken."""


def run_dashboard(run: Path, *, host: str = "127.0.0.1", port: int = 8080,
                  mode: Literal["max", "min"] | None = None, out: TextIO) -> int:
    """Serve the dashboard of ``run`` on ``host:port`` (0: a free port) until Ctrl-C;
    writes the page's address to ``out`` once it listens. Returns 0."""
    try:
        uvicorn: Any = importlib.import_module("uvicorn")
    except ImportError:
        raise DashboardUnavailable("the dashboard needs uvicorn: install it with "
                                   "pip install 'nas-engine[dashboard]'") from None
    app = DashboardApp(run, mode=mode)
    try:
        sock = _listen(host, port)
        address = sock.getsockname()
        url_host = f"[{address[0]}]" if ":" in address[0] else address[0]
        out.write(f"dashboard of {run} on http://{url_host}:{address[1]}/ (Ctrl-C stops)\n")
        out.flush()
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        server = _server_class(uvicorn)(config)
        server.dashboard = app
        server.run(sockets=[sock])
    finally:
        app.close()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
    except OSError as exc:
        raise DashboardUnavailable(f"cannot listen on {host}:{port}: "
                                   f"{exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)  # connections wait in the backlog until uvicorn serves
    except OSError as exc:
        sock.close()
        raise DashboardUnavailable(f"cannot listen on {host}:{port}: "
                                   f"{exc.strerror or exc}") from None
    return sock


def _server_class(uvicorn: Any) -> Any:
    class Server(uvicorn.Server):  # type: ignore[misc]
        """uvicorn, ending the open event streams first when it shuts down: it waits
        for open responses before it stops."""

        dashboard: DashboardApp

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            self.dashboard.stop()
            await super().shutdown(sockets)

    return Server
