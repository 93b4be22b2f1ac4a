"""Recipes: how to rebuild an object in another process (an importable symbol and
init arguments), as msgspec messages.

A symbol defined in a script run as ``python script.py`` lives in ``__main__``; its
recipe keeps the script's path, and another process loads that file as a module (its
``if __name__ == "__main__":`` block does not run there).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from engine.errors import NasEngineError
from engine.mutable import Mutable

__all__ = ("Call", "Recipe", "RecipeError", "Symbol", "check_plain_data")

_SCRIPT_MODULE = "__nas_engine_main__"


@functools.lru_cache(maxsize=64)
def _real_path(file: str) -> str:
    """``file`` made absolute with links resolved (cached: every trial of a script asks)."""
    return str(Path(file).resolve())


@functools.lru_cache(maxsize=256)
def _known_symbol(obj: Any) -> Symbol:
    """Symbol.of, once per object: every model of a space names the same class and
    function. Failures are not cached (lru_cache does not keep exceptions)."""
    return Symbol._checked(obj)


class RecipeError(NasEngineError, ImportError):
    """A recipe's symbol cannot be found or imported; the message says which and why."""


class Symbol(msgspec.Struct, frozen=True, kw_only=True):
    """An importable object: ``module`` + ``qualname`` (+ the script path for ``__main__``)."""

    module: str
    qualname: str
    path: str | None = None

    @classmethod
    def of(cls, obj: Any) -> Symbol:
        """The symbol of a class or function, checked to resolve back to ``obj``."""
        try:
            return _known_symbol(obj)
        except TypeError:  # not hashable: check it every time
            return cls._checked(obj)

    @classmethod
    def _checked(cls, obj: Any) -> Symbol:
        symbol = cls._locate(obj)
        try:
            resolved = symbol.resolve()
        except RecipeError as exc:
            raise RecipeError(f"{obj!r} cannot be imported back: {exc}") from None
        if resolved is not obj:
            raise RecipeError(
                f"{symbol.display()} is not {obj!r} (a bound method, or a name rebound after "
                "definition?): pass a class or function defined at the top level of a module "
                "or script"
            )
        return symbol

    @classmethod
    def _locate(cls, obj: Any) -> Symbol:
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
            raise RecipeError(
                f"{obj!r} is not importable (a lambda, a local or a nested function?): "
                "define it at the top level of a module or script"
            )
        path = None
        if module in ("__main__", _SCRIPT_MODULE, "__mp_main__"):
            main = sys.modules.get(module)
            file = getattr(main, "__file__", None)
            if file is None:
                raise RecipeError(
                    f"{qualname} is defined in an interactive session: move it into a module "
                    "or a script file so other processes can import it"
                )
            module, path = "__main__", _real_path(file)
        return cls(module=module, qualname=qualname, path=path)

    def resolve(self) -> Any:
        """Import and return the object; RecipeError says what failed."""
        target: Any = self._module()
        for part in self.qualname.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise RecipeError(f"{self.display()} not found: module "
                                  f"{self.module!r} has no {self.qualname!r}") from None
        return target

    def display(self) -> str:
        return f"{self.module}:{self.qualname}"

    def _module(self) -> ModuleType:
        if self.path is not None:
            main = sys.modules.get("__main__")
            file = getattr(main, "__file__", None)
            if main is not None and file and _real_path(file) == _real_path(self.path):
                return main
            return _load_script(self.path)
        try:
            return importlib.import_module(_MOVED.get(self.module, self.module))
        except Exception as exc:
            raise RecipeError(f"cannot import {self.display()}: {exc!r}") from exc


# Private modules that moved into sub-packages; recipes in older run files name the old
# places (an engine.nn class given as a space's init argument, say).
_MOVED = {f"engine._nn_{name}": f"engine.nn._{name}"
          for name in ("base", "choice", "layers", "multiple", "repeat", "space")}


def _load_script(path: str) -> ModuleType:
    loaded = sys.modules.get(_SCRIPT_MODULE)
    if loaded is not None and getattr(loaded, "__file__", None) == path:
        return loaded
    if not Path(path).is_file():
        raise RecipeError(f"cannot load script {path!r}: the file is missing (moved or "
                          "deleted since the model was dumped?)")
    spec = importlib.util.spec_from_file_location(_SCRIPT_MODULE, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"cannot load script {path!r}: it is not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_SCRIPT_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[_SCRIPT_MODULE]
        raise RecipeError(f"cannot load script {path!r}: {exc!r}") from exc
    return module


class Recipe(msgspec.Struct, frozen=True, kw_only=True):
    """``symbol(*args, **kwargs)``, as data."""

    symbol: Symbol
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}

    def build(self) -> Any:
        return self.symbol.resolve()(*self.args, **self.kwargs)


class Call:
    """``factory(*args, **kwargs)`` in memory. ``factory`` is a live callable, or a
    :class:`Symbol` that is imported when the call is built (in a worker, say)."""

    __slots__ = ("args", "factory", "kwargs")

    def __init__(
        self, factory: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> None:
        self.factory, self.args, self.kwargs = factory, tuple(args), dict(kwargs or {})

    @classmethod
    def of(cls, recipe: Recipe) -> Call:
        return cls(recipe.symbol, recipe.args, recipe.kwargs)

    def build(self) -> Any:
        factory = self.factory.resolve() if isinstance(self.factory, Symbol) else self.factory
        return factory(*self.args, **self.kwargs)

    def recipe(self) -> Recipe:
        """This call as data; RecipeError when the factory cannot be imported elsewhere."""
        symbol = self.factory if isinstance(self.factory, Symbol) else Symbol.of(self.factory)
        return Recipe(symbol=symbol, args=self.args, kwargs=self.kwargs)

    def display(self) -> str:
        if isinstance(self.factory, Symbol):
            return self.factory.display()
        return str(getattr(self.factory, "__qualname__", self.factory))


_SCALARS = (type(None), bool, int, float, str, bytes)


def check_plain_data(value: Any, what: str) -> None:
    """Raise TypeError unless ``value`` comes back from msgpack as an equal value of the same
    kind: None, bool, int, float, str, bytes, and lists, tuples and dicts of them.

    Anything else (a dataclass, a set, an enum, a class) would either fail to encode or
    arrive in the worker as something else. ``what`` names the value in the message.
    """
    problem = _not_plain(value, "")
    if problem is not None:
        where, found = problem
        kind = ("an int outside [-2**63, 2**64)" if isinstance(found, int)
                else f"a {type(found).__name__}")
        hint = (" (a mutable inside plain data is never frozen: use MutableList or "
                "MutableDict)" if isinstance(found, Mutable) else "")
        raise TypeError(
            f"{what}{where} is {kind} and cannot be sent to a worker{hint}: "
            "pass plain data (None, bool, int, float, str, bytes, lists, tuples, dicts)"
        )


def _not_plain(value: Any, where: str) -> tuple[str, Any] | None:
    """Where the first value that is not plain data sits, and that value."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if -(2**63) <= value < 2**64 else (where, value)
    if isinstance(value, _SCALARS):
        return None
    if isinstance(value, list | tuple):
        items: Any = enumerate(value)
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str | int) or isinstance(key, bool):
                return f"{where}[{key!r}]", key
        items = value.items()
    else:
        return where, value
    for key, item in items:
        problem = _not_plain(item, f"{where}[{key!r}]")
        if problem is not None:
            return problem
    return None
