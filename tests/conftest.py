"""Shared fixtures, and a timeout that ends a hung async test on either backend.

pytest-timeout alone does not end a hung trio test. anyio runs trio tests in guest mode:
the main thread waits on a queue for trio's callbacks. The signal method's SIGALRM
raises in that wait, outside trio, so the test's task is never cancelled; anyio's
TestRunner.__exit__ then waits for trio to finish that task, for ever, and the alarm
does not fire again. So every async test runs under its own deadline, inside its event
loop (:func:`pytest_pyfunc_call`): at :data:`SHARE` of its pytest-timeout (leaving at
least :data:`MARGIN` seconds to clean up and report), counted from its setup, the test
is cancelled where it waits and fails with a TimeoutError whose
traceback shows that place, and the session goes on. What cancellation cannot end (a
shielded wait, a blocking call, an async fixture) is left to pytest-timeout itself,
whose ``thread`` method (pyproject.toml) dumps every thread's stack and ends pytest at
the full timeout, on either backend.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
import pytest

#: The share of a test's pytest-timeout after which an async test is cancelled.
SHARE = 0.9
#: The least time left after that for the test's cleanup and pytest's report.
MARGIN = 2.0
_STARTED = pytest.StashKey[float]()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.monotonic()  # pytest-timeout counts from setup too


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, None, None]:
    """Run an async test (anyio's plugin calls ``pyfuncitem.obj``) under its deadline."""
    original = pyfuncitem.obj
    limit = _timeout_of(pyfuncitem)
    if (limit and "anyio_backend" in pyfuncitem.funcargs
            and inspect.iscoroutinefunction(original)
            and not hasattr(original, "hypothesis")):  # anyio wraps those its own way
        started = pyfuncitem.stash.get(_STARTED, time.monotonic())
        share = limit - max((1 - SHARE) * limit, MARGIN)
        left = max(0.1, started + share - time.monotonic())
        pyfuncitem.obj = _bounded(original, left, limit)
    try:
        yield
    finally:
        pyfuncitem.obj = original


def _bounded(test: Callable[..., Awaitable[Any]], seconds: float,
             limit: float) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def bounded(**kwargs: Any) -> None:
        hung: BaseException | None = None
        with anyio.CancelScope(deadline=anyio.current_time() + seconds) as scope:
            try:
                await test(**kwargs)
            except anyio.get_cancelled_exc_class() as exc:
                hung = exc  # its traceback ends where the test waited
                raise
        if scope.cancelled_caught:
            raise TimeoutError(
                f"the test did not end within {seconds:.1f} s of its call (its "
                f"pytest-timeout is {limit:g} s, from its setup to its report): it was "
                "cancelled where it waited (the traceback above)") from hung

    return bounded


def _timeout_of(item: pytest.Item) -> float | None:
    """The item's pytest-timeout (its ``timeout`` marker, ``--timeout``,
    ``PYTEST_TIMEOUT`` or the ini value), or None when it has none."""
    marker = item.get_closest_marker("timeout")
    value: Any = None
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    for source in (lambda: item.config.getoption("timeout", None),
                   lambda: os.environ.get("PYTEST_TIMEOUT"),
                   lambda: item.config.getini("timeout")):
        if value is None or value == "":
            value = source()
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None
