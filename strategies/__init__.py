"""Search strategies for nas-engine."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
