"""Recipes: importable symbols (modules and scripts), plain-data checks."""

from __future__ import annotations

import dataclasses
import enum
import functools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine import Categorical, MutableList, RecipeError
from engine._recipe import Call, Recipe, Symbol, check_plain_data
from tests import _spaces

_SCRIPT_MODULE = "__nas_engine_main__"


def top_level(x: int) -> int:
    return x + 1


def _decorate(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        return function(*args)

    return wrapper


@_decorate
def decorated(x: int) -> int:
    return x


class Holder:
    def method(self) -> int:
        return 1


@pytest.fixture
def clean_script_module() -> Iterator[None]:
    """Scripts load as one module name: forget it after the test."""
    saved = sys.modules.pop(_SCRIPT_MODULE, None)
    yield
    sys.modules.pop(_SCRIPT_MODULE, None)
    if saved is not None:
        sys.modules[_SCRIPT_MODULE] = saved


def test_symbol_of_a_module_level_function_and_class_resolves_to_it() -> None:
    for obj in (_spaces.score, _spaces.Net, top_level, decorated, len):
        symbol = Symbol.of(obj)
        assert symbol.path is None
        assert symbol.resolve() is obj
    assert Symbol.of(_spaces.Net) == Symbol(module="tests._spaces", qualname="Net")
    assert Symbol.of(Holder.method).qualname == "Holder.method"


def test_symbol_round_trips_through_msgpack() -> None:
    symbol = Symbol.of(_spaces.score)
    data = msgspec.msgpack.encode(symbol)
    assert msgspec.msgpack.decode(data, type=Symbol) == symbol


def _local_function() -> Any:
    def nested(x: int) -> int:
        return x

    return nested


def _local_class() -> type:
    class Local:
        pass

    return Local


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (lambda x: x, r"<lambda>.* is not importable \(a lambda, a local or a nested function\?\)"),
        (_local_function(), r"nested.* is not importable"),
        (_local_class(), r"Local.* is not importable"),
        (functools.partial(top_level, 1), "is not importable"),
        (Holder().method, r"test_recipe:Holder.method is not <bound method"),
        (decorated.__wrapped__, r"test_recipe:decorated is not <function decorated"),
        (3, "3 is not importable"),
    ],
)
def test_objects_that_cannot_be_imported_back_are_refused(obj: Any, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        Symbol.of(obj)


@pytest.mark.parametrize(
    ("symbol", "match"),
    [
        (Symbol(module="no_such_module_xyz", qualname="f"),
         r"cannot import no_such_module_xyz:f: ModuleNotFoundError"),
        (Symbol(module="tests._spaces", qualname="Missing"),
         r"tests._spaces:Missing not found: module 'tests._spaces' has no 'Missing'"),
        (Symbol(module="tests._spaces", qualname="Net.missing"),
         r"has no 'Net.missing'"),
    ],
)
def test_unresolvable_symbols_name_the_module_and_the_name(symbol: Symbol, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        symbol.resolve()
    assert issubclass(RecipeError, ImportError)


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "user_script.py"
    path.write_text(textwrap.dedent(body))
    return path.resolve()


@pytest.mark.usefixtures("clean_script_module")
def test_a_script_symbol_loads_the_file_without_running_its_main_block(tmp_path: Path) -> None:
    marker = tmp_path / "main_ran"
    path = _script(tmp_path, f"""
        def double(x):
            return 2 * x

        if __name__ == "__main__":
            open({str(marker)!r}, "w").close()
    """)
    symbol = Symbol(module="__main__", qualname="double", path=str(path))
    double = symbol.resolve()
    assert double(4) == 8
    assert not marker.exists()
    assert symbol.resolve() is double  # loaded once
    # An object of a loaded script maps back to the script, not to the loader's module name.
    assert Symbol.of(double) == symbol


@pytest.mark.usefixtures("clean_script_module")
def test_script_errors_name_the_script(tmp_path: Path) -> None:
    missing = Symbol(module="__main__", qualname="f", path=str(tmp_path / "gone.py"))
    with pytest.raises(RecipeError, match=r"cannot load script '.*gone.py': the file is missing"):
        missing.resolve()
    data = tmp_path / "data.txt"
    data.write_text("x = 1\n")
    with pytest.raises(RecipeError, match=r"data\.txt': it is not a Python source file"):
        Symbol(module="__main__", qualname="x", path=str(data)).resolve()
    broken = _script(tmp_path, "raise RuntimeError('boom at import')\n")
    with pytest.raises(RecipeError, match=r"user_script.py': RuntimeError\('boom at import'\)"):
        Symbol(module="__main__", qualname="f", path=str(broken)).resolve()
    assert _SCRIPT_MODULE not in sys.modules
    fine = _script(tmp_path, "x = 1\n")
    with pytest.raises(RecipeError, match=r"__main__:missing not found"):
        Symbol(module="__main__", qualname="missing", path=str(fine)).resolve()


def test_recipe_and_call_build_the_same_object() -> None:
    call = Call(_spaces.Wide, (16,), {"name": "w"})
    recipe = call.recipe()
    assert recipe == Recipe(symbol=Symbol.of(_spaces.Wide), args=(16,), kwargs={"name": "w"})
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(recipe), type=Recipe)
    for built in (call.build(), recipe.build(), decoded.build(), Call.of(decoded).build()):
        assert isinstance(built, _spaces.Wide)
        assert (built.width, built.name) == (16, "w")
    assert Call.of(recipe).display() == "tests._spaces:Wide"
    assert call.display() == "Wide"


def test_a_call_of_a_lambda_has_no_recipe() -> None:
    with pytest.raises(RecipeError, match="is not importable"):
        Call(lambda: 0).recipe()


class Colour(enum.Enum):
    red = 1


@dataclasses.dataclass
class Config:
    depth: int = 1


@pytest.mark.parametrize(
    "value",
    [None, True, 3, -(2**63), 2**64 - 1, 1.5, "s", b"b", [1, (2, "x")], {"a": [1], 2: None}],
)
def test_plain_data_passes(value: Any) -> None:
    check_plain_data(value, "argument 'x'")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(value)) == _as_decoded(value)


def _as_decoded(value: Any) -> Any:
    """``value`` as msgpack gives it back: tuples become lists."""
    if isinstance(value, list | tuple):
        return [_as_decoded(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_decoded(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({1, 2}, r"argument 'x' is a set and cannot be sent to a worker: pass plain data"),
        (Config(), "argument 'x' is a Config"),
        (Colour.red, "argument 'x' is a Colour"),
        (2**64, r"argument 'x' is an int outside \[-2\*\*63, 2\*\*64\)"),
        (object, "argument 'x' is a type"),
        ({"a": [1, {"b": {2}}]}, r"argument 'x'\['a'\]\[1\]\['b'\] is a set"),
        ({(1, 2): 3}, r"argument 'x'\[\(1, 2\)\] is a tuple"),
        ([Categorical([1, 2], label="c")],
         r"argument 'x'\[0\] is a Categorical .*use MutableList or MutableDict"),
        (MutableList([]), "argument 'x' is a MutableList"),
    ],
)
def test_anything_else_is_refused_with_its_path(value: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        check_plain_data(value, "argument 'x'")


def test_a_recipe_naming_a_module_from_before_the_nn_package_still_resolves() -> None:
    """Run files written before engine.nn became a package name engine._nn_*."""
    import engine.nn as enn

    assert Symbol(module="engine._nn_layers", qualname="Linear").resolve() is enn.Linear
    assert Symbol(module="engine._nn_choice", qualname="LayerChoice").resolve() is (
        enn.LayerChoice)
