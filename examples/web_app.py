"""The engine inside a web application: an ASGI app (Starlette) served by uvicorn.

::

    POST   /searches               start a search; JSON body (every field optional):
                                   {"strategy": "random"|"evolution", "trials": 8,
                                    "workers": 1, "epochs": 1, "seed": 0}
                                   -> 201 and the search (its "id")
    GET    /searches               every search
    GET    /searches/{id}          one search: state, counts, best model
    GET    /searches/{id}/events   its events as server-sent events, from its first event
                                   (or after the `Last-Event-ID` header's seq), ending
                                   when the search ends; each `data:` is msgspec JSON
    GET    /searches/{id}/models   its finished models (JSON)
    GET    /searches/{id}/dashboard/  its live dashboard page (engine.web), from its run file
    DELETE /searches/{id}          cancel it: its running models end interrupted and its
                                   worker processes are stopped; replies once it ended

Each search is one ``Engine`` with its own ``ProcessPool`` on the digits space of
``_digits.py`` (small CNNs, ``epochs`` each), run in a task group that the app's lifespan
owns: shutting the app down cancels every search and leaves no worker process. Served by
:func:`main`, the searches are cancelled as soon as the server begins shutting down, so
their event streams end with them instead of holding the shutdown up.

Run: ``python examples/web_app.py --port 8000``, then::

    curl -X POST localhost:8000/searches -d '{"trials": 6, "workers": 2}'
    curl -N localhost:8000/searches/1/events
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import socket
import sys
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
import msgspec
import uvicorn
from _digits import DEFAULT_DATA, describe, digits_space, ensure_split
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route

import engine as e
from engine.events import Event, encode_json
from engine.web import DashboardApp, dashboard_app
from strategies import RandomSearch, RegularizedEvolution, Strategy, rank, search

logger = logging.getLogger("web_app")

State = Literal["running", "finished", "cancelled", "failed"]


class SearchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    strategy: Literal["random", "evolution"] = "random"
    trials: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 8
    workers: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1
    epochs: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 1
    seed: int = 0


class ModelInfo(msgspec.Struct, kw_only=True):
    id: int
    status: e.ModelStatus
    architecture: str
    sample: dict[str, Any]
    metric: float | None  # validation accuracy once trained
    intermediates: list[float]  # validation accuracy after each epoch


class SearchInfo(msgspec.Struct, kw_only=True):
    id: int
    state: State
    request: SearchRequest
    models: int
    trained: int
    best: ModelInfo | None
    error: str | None = None


class Problem(msgspec.Struct):
    error: str


# --- one search -----------------------------------------------------------------------


class History:
    """Every event of one search, kept so that each reader streams from the first."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False
        self._changed = anyio.Event()

    async def record(self, events: AsyncIterable[Event]) -> None:
        async for event in events:
            self.events.append(event)
            self._notify()

    def close(self) -> None:
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def follow(self, after: int = 0) -> AsyncIterator[Event]:
        """The events with a seq above ``after``, then each new one, until closed."""
        index = 0
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event.seq > after:
                    yield event
            if self.closed:
                return
            await self._changed.wait()


class Search:
    def __init__(self, search_id: int, request: SearchRequest, data: Path) -> None:
        self.id, self.request = search_id, request
        self.space = digits_space(data, request.epochs, request.seed)
        self.engine = e.Engine(e.ProcessPool(request.workers), max_trials=request.trials,
                               journal=True)  # a run file in ./runs: the dashboard reads it
        self.dashboard: DashboardApp | None = None
        self.history = History()
        self.scope = anyio.CancelScope()  # DELETE cancels it
        self.ended = anyio.Event()
        self.state: State = "running"
        self.error: str | None = None

    def strategy(self) -> Strategy:
        if self.request.strategy == "random":
            return RandomSearch(self.request.seed)
        population = max(4, self.request.trials // 4)
        return RegularizedEvolution(population, max(2, population // 3), seed=self.request.seed)

    async def run(self) -> None:
        """The search, with its history recorded; the state says how it ended."""
        events = self.engine.subscribe()  # before the start: every event
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.history.record, events)  # ends with the engine
                with self.scope:
                    await self._search()
                if self.scope.cancelled_caught:
                    self.state = "cancelled"
        finally:
            if self.state == "running":
                self.state = "cancelled"  # the app is shutting down
            self.history.close()
            self.ended.set()

    async def _search(self) -> None:
        try:
            async with self.engine:
                await search(self.space, self.strategy(), self.engine)
            self.state = "finished"
        except Exception as exc:  # a broken search must not take the app down
            logger.exception("search %d failed", self.id)
            self.state, self.error = "failed", repr(exc)

    def open_dashboard(self) -> DashboardApp | None:
        """The search's dashboard app, once its engine has created its run file."""
        if self.dashboard is None and (path := self.engine.journal_path) is not None:
            self.dashboard = dashboard_app(path)
        return self.dashboard

    def models(self) -> list[ModelInfo]:
        # Completed, as its events say (with a journal, a handle is done a moment later).
        return [_model_info(h.model_id, h.model) for h in self.engine.handles()
                if h.status.completed()]

    def info(self) -> SearchInfo:
        handles = self.engine.handles()
        ids = {id(h.model): h.model_id for h in handles}
        ranked = rank(h.model for h in handles)
        best = _model_info(ids[id(ranked[0])], ranked[0]) if ranked else None
        trained = sum(h.status is e.ModelStatus.Trained for h in handles)
        return SearchInfo(id=self.id, state=self.state, request=self.request,
                          models=len(handles), trained=trained, best=best, error=self.error)


def _model_info(model_id: int, model: e.ExecutableModelSpace) -> ModelInfo:
    sample = dict(model.sample or {})
    return ModelInfo(id=model_id, status=model.status, architecture=describe(sample),
                     sample=sample, metric=model.metric,
                     intermediates=list(model.metrics.intermediates))


# --- every search -----------------------------------------------------------------------


class Searches:
    """The app's searches, run in the task group that :meth:`lifespan` owns."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.all: dict[int, Search] = {}
        self._ids = itertools.count(1)
        self._tg: TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """The app's life: make the data, run searches, cancel what runs at the end."""
        self.data = await anyio.to_thread.run_sync(ensure_split, self.data)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()
                for each in self.all.values():
                    if each.dashboard is not None:
                        each.dashboard.close()

    def start(self, request: SearchRequest) -> Search | None:
        """A new running search; None when the app is not running (or shutting down)."""
        if self._tg is None:
            return None
        new = Search(next(self._ids), request, self.data)
        self.all[new.id] = new
        self._tg.start_soon(new.run)
        return new

    async def cancel_all(self) -> None:
        """Stop every search (its models end interrupted, reason ``shutdown``) and wait
        until each has ended."""
        searches = list(self.all.values())
        for each in searches:
            each.scope.cancel()
            if each.dashboard is not None:
                each.dashboard.stop()  # its open pages' streams end too
        for each in searches:
            await each.ended.wait()


# --- the HTTP side ----------------------------------------------------------------------


def _json(value: Any, status: int = 200, **headers: str) -> Response:
    return Response(msgspec.json.encode(value), status, headers or None,
                    media_type="application/json")


def _lookup(request: Request) -> Search | Response:
    searches: Searches = request.app.state.searches
    search_id = request.path_params["id"]
    found = searches.all.get(search_id)
    if found is None:
        return _json(Problem(f"no search {search_id}: POST /searches starts one"), 404)
    return found


async def create_search(request: Request) -> Response:
    try:
        body = msgspec.json.decode(await request.body() or b"{}", type=SearchRequest)
    except msgspec.ValidationError as exc:
        return _json(Problem(f"bad search request: {exc}"), 422)
    except msgspec.DecodeError as exc:
        return _json(Problem(f"the body is not JSON: {exc}"), 400)
    started = request.app.state.searches.start(body)
    if started is None:
        return _json(Problem("the app is shutting down: no new searches"), 503)
    return _json(started.info(), 201, location=f"/searches/{started.id}")


async def list_searches(request: Request) -> Response:
    return _json([s.info() for s in request.app.state.searches.all.values()])


async def get_search(request: Request) -> Response:
    found = _lookup(request)
    return found if isinstance(found, Response) else _json(found.info())


async def cancel_search(request: Request) -> Response:
    found = _lookup(request)
    if isinstance(found, Response):
        return found
    found.scope.cancel()  # the engine stops: its running models end interrupted
    await found.ended.wait()
    return _json(found.info())


async def list_models(request: Request) -> Response:
    found = _lookup(request)
    return found if isinstance(found, Response) else _json(found.models())


async def stream_events(request: Request) -> Response:
    found = _lookup(request)
    if isinstance(found, Response):
        return found
    try:
        after = int(request.headers.get("last-event-id", "0"))
    except ValueError:
        return _json(Problem("Last-Event-ID must be an event's seq (an int)"), 400)
    return StreamingResponse(_server_sent(found.history, after), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


async def _server_sent(history: History, after: int) -> AsyncIterator[bytes]:
    async for event in history.follow(after):
        yield b"id: %d\ndata: %s\n\n" % (event.seq, encode_json(event))


async def dashboard(scope: Any, receive: Any, send: Any) -> None:
    """The dashboard app of the search named in the path (mounted below it)."""
    found = scope["app"].state.searches.all.get(scope["path_params"]["id"])
    app = found.open_dashboard() if found is not None else None
    if app is None:
        await _json(Problem("no such search, or it has not started yet"), 404)(
            scope, receive, send)
        return
    await app(scope, receive, send)


def create_app(data: Path = DEFAULT_DATA) -> Starlette:
    searches = Searches(data)
    app = Starlette(routes=[
        Route("/searches", create_search, methods=["POST"]),
        Route("/searches", list_searches, methods=["GET"]),
        Route("/searches/{id:int}", get_search, methods=["GET"]),
        Route("/searches/{id:int}", cancel_search, methods=["DELETE"]),
        Route("/searches/{id:int}/models", list_models, methods=["GET"]),
        Route("/searches/{id:int}/events", stream_events, methods=["GET"]),
        Mount("/searches/{id:int}/dashboard", app=dashboard),
    ], lifespan=searches.lifespan)
    app.state.searches = searches
    return app


#: For ``uvicorn web_app:app --app-dir examples --timeout-graceful-shutdown 5``: without
#: :class:`Server`, an open event stream holds a shutdown up for that timeout.
app = create_app()


# --- serving ------------------------------------------------------------------------------


class Server(uvicorn.Server):
    """uvicorn, cancelling the searches first when it shuts down: uvicorn waits for open
    responses before it runs the app's lifespan shutdown, and an event stream stays open
    until its search ends."""

    def __init__(self, config: uvicorn.Config, searches: Searches) -> None:
        super().__init__(config)
        self.searches = searches

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with anyio.move_on_after(30):
            await self.searches.cancel_all()
        await super().shutdown(sockets)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Architecture searches behind HTTP.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000,
                        help="port to listen on; 0 picks a free port")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="FILE",
                        help="the split digits data, made on first use")
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug", "trace"),
                        help="uvicorn's log level")
    args = parser.parse_args(argv)
    app = create_app(args.data)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)  # connections wait in the backlog until the app has started
    print(f"listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=10)
    try:
        Server(config, app.state.searches).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises it again once it shut down on Ctrl-C
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv[1:])
