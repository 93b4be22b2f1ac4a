"""Automatic labels for mutables created without one.

Labels must come out the same when a space is built again in another process, so they
are counted per construction scope (a context variable), not per process.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ("auto_label", "label_scope")

_scope: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "nas_engine_label_scope", default=None
)


@contextlib.contextmanager
def label_scope() -> Iterator[None]:
    """Count automatic labels from 1 inside this block (nested scopes share the outer one)."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set({})
    try:
        yield
    finally:
        _scope.reset(token)


def auto_label(kind: str) -> str:
    """The next label for ``kind`` (``"layerchoice_1"``, ...) in the current scope."""
    counters = _scope.get()
    if counters is None:
        raise TypeError(
            f"a {kind} outside a ModelSpace needs an explicit label: pass label='...'"
        )
    counters[kind] = counters.get(kind, 0) + 1
    return f"{kind}_{counters[kind]}"
