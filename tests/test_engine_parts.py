"""The Engine's parts (engine._engine) fit together: its state is declared once, in
EngineBase, and every call a part makes into another (declared there for mypy only)
is defined at run time."""

from __future__ import annotations

import ast
import inspect

from engine._engine._base import EngineBase
from engine.engine import Engine


def _declared_calls() -> list[str]:
    """The names EngineBase declares under ``if TYPE_CHECKING:``."""
    (cls,) = ast.parse(inspect.getsource(EngineBase)).body
    assert isinstance(cls, ast.ClassDef)
    blocks = [node for node in cls.body if isinstance(node, ast.If)]
    return [node.name for block in blocks for node in block.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_every_call_declared_in_the_base_is_defined_by_a_part_or_the_engine() -> None:
    declared = _declared_calls()
    assert {"_interrupt", "_runnable", "budget_left"} <= set(declared)
    defined_by = {name: [k.__name__ for k in Engine.__mro__ if name in vars(k)]
                  for name in declared}
    assert {name: where for name, where in defined_by.items() if not where} == {}
    assert "EngineBase" not in {k for where in defined_by.values() for k in where}


def test_an_engine_sets_exactly_the_state_the_base_declares() -> None:
    state = set(vars(Engine()))
    assert {"pool", "_journal", "_handles", "_checkpoint_root"} <= state
    assert state ^ set(EngineBase.__annotations__) == set()
