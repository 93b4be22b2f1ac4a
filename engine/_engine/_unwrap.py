"""The cleanup ladder's exception handling: telling a cancellation from an error, and
taking the one error of a failed task group out of its ExceptionGroup."""

from __future__ import annotations

from collections.abc import Awaitable

import anyio

__all__ = ("is_cancel", "unwrapped")


async def unwrapped(leaving: Awaitable[object]) -> None:
    """Await a task group's ``__aexit__``; a failure of one task comes out as itself
    (e.g. one WorkerStartFailed), not wrapped in an ExceptionGroup of one."""
    error: BaseException | None = None
    try:
        await leaving
    except BaseExceptionGroup as group:
        error = _root_cause(group)
    if error is not None:  # raised out here to keep its own __context__
        raise error


def _root_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a failed task group holds (cancellations aside), else the group."""
    errors = [e for e in _leaves(group) if not is_cancel(e)]
    return errors[0] if len(errors) == 1 else group


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]


def is_cancel(exc: BaseException | None) -> bool:
    """``exc`` is a cancellation, or a group of nothing but cancellations."""
    if exc is None:
        return False
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(is_cancel(e) for e in exc.exceptions)
    return False
