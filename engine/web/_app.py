"""The dashboard as a plain ASGI application (no web framework needed).

Routes (GET and HEAD only: nothing here changes the run)::

    /                      the page
    /static/<file>         its script and style sheet
    /api/stream            server-sent events: a snapshot, then what changed, then ``end``
    /api/models            every model's table row, as JSON
    /api/models/<id>       one model in full: curve, traceback, captured output
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread

from engine._objective import objective_from_meta
from engine.store._read import RunReader
from engine.store._schema import RunFileError
from engine.web._feed import Cursor, Feed

__all__ = ("DashboardApp", "dashboard_app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_STATIC = {"index.html": "text/html", "app.js": "text/javascript",
           "style.css": "text/css"}
_SECURITY = [(b"x-content-type-options", b"nosniff"),
             (b"content-security-policy",
              b"default-src 'self'; img-src 'self' data:; frame-ancestors 'self'"),
             (b"cache-control", b"no-cache")]
_HEARTBEAT = 15.0  # seconds of quiet after which a stream sends a comment line


class DashboardApp:
    """The live page of one run file, as an ASGI app; mount it anywhere (its links are
    relative). It reads the run read-only, every ``interval`` seconds while a page is
    open. :meth:`stop` ends the open event streams (for a server's shutdown);
    :meth:`close` releases the run file."""

    def __init__(self, run: str | Path, *, mode: Literal["max", "min"] | None = None,
                 interval: float = 0.25) -> None:
        if mode is None:  # the direction the run recorded (Engine.set_objective), else max
            mode = _recorded_mode(Path(run))
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self._feed = Feed(Path(run), mode, refresh_every=interval / 2)
        self.interval = interval
        self._stopping = False
        files = importlib.resources.files("engine.web") / "static"
        self._static = {name: (files / name).read_bytes() for name in _STATIC}

    @property
    def path(self) -> Path:
        return self._feed.path

    def stop(self) -> None:
        """End every open event stream at its next poll; new ones end at once."""
        self._stopping = True

    def close(self) -> None:
        self.stop()
        self._feed.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.stop)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # a websocket: not served here
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = _route(scope), scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"read-only: only GET and HEAD\n", "text/plain",
                           [(b"allow", b"GET, HEAD")])
        elif path == "":
            root = scope.get("root_path", "").encode()
            await _respond(send, 307, b"", "text/plain", [(b"location", root + b"/")])
        elif path in ("/", "/index.html"):
            await self._file(send, method, "index.html")
        elif path.startswith("/static/") and path[8:] in _STATIC:
            await self._file(send, method, path[8:])
        elif path == "/api/stream":
            await self._stream(receive, send, method)
        elif path == "/api/models":
            await self._json(send, method, await anyio.to_thread.run_sync(self._feed.models))
        elif path.startswith("/api/models/") and path[12:].isdigit():
            found = await anyio.to_thread.run_sync(self._feed.model, int(path[12:]))
            await self._json(send, method, found)
        else:
            await _respond(send, 404, b"not found\n", "text/plain")

    async def _file(self, send: Send, method: str, name: str) -> None:
        body = self._static[name] if method == "GET" else b""
        await _respond(send, 200, body, _STATIC[name] + "; charset=utf-8")

    async def _json(self, send: Send, method: str, body: bytes | None) -> None:
        if body is None:
            await _respond(send, 404, b'{"error": "no such model"}', "application/json")
        else:
            await _respond(send, 200, body if method == "GET" else b"", "application/json")

    async def _stream(self, receive: Receive, send: Send, method: str) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), *_SECURITY]})
        if method == "GET":
            with contextlib.suppress(OSError):  # the page went away
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                    await self._events(send)
                    tg.cancel_scope.cancel()
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b""})

    async def _events(self, send: Send) -> None:
        """A snapshot, then every ``interval`` what changed, until the run is over."""
        cursor = Cursor()
        snapshot = await anyio.to_thread.run_sync(self._feed.snapshot, cursor)
        await _sse(send, b"snapshot", snapshot, cursor.seq)
        quiet = 0.0
        while not self._stopping:
            await anyio.sleep(self.interval)  # the journal has no change feed: poll its tail
            message, over = await anyio.to_thread.run_sync(self._feed.delta, cursor)
            if message is not None:
                await _sse(send, b"update", message, cursor.seq)
                quiet = 0.0
            elif over:
                await _sse(send, b"end", b"{}", cursor.seq)
                return
            elif (quiet := quiet + self.interval) >= _HEARTBEAT:
                await send({"type": "http.response.body", "body": b": idle\n\n",
                            "more_body": True})
                quiet = 0.0


def dashboard_app(run: str | Path, *, mode: Literal["max", "min"] | None = None,
                  interval: float = 0.25) -> DashboardApp:
    """The dashboard of the run file ``run`` as an ASGI app. RunFileError (the same
    message as ``nas-engine show``) when ``run`` is not a readable run file."""
    return DashboardApp(run, mode=mode, interval=interval)


def _recorded_mode(run: Path) -> Literal["max", "min"]:
    with RunReader(run) as reader:
        meta = reader.meta()
    try:
        recorded = objective_from_meta(meta)
    except ValueError as exc:  # a damaged meta value: the run file's fault
        raise RunFileError(f"{run}: {exc}") from None
    return recorded.mode if recorded is not None else "max"


def _route(scope: Scope) -> str:
    """The path below the app's mount point (ASGI: ``path`` includes ``root_path``)."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


async def _respond(send: Send, status: int, body: bytes, content_type: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body)),
        *_SECURITY, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _sse(send: Send, kind: bytes, data: bytes, seq: int) -> None:
    body = b"event: %s\nid: %d\ndata: %s\n\n" % (kind, seq, data)
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _lifespan(receive: Receive, send: Send, stop: Callable[[], None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
