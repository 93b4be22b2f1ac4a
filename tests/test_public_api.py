from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["engine", "strategies", "engine.workers", "engine.nn"])
def test_all_is_complete_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    public = {n for n in vars(module) if not n.startswith("_")}
    public -= {"annotations"}
    public = {n for n in public if not isinstance(getattr(module, n), type(module))}
    assert set(module.__all__) == public
    for item in module.__all__:
        assert getattr(module, item) is not None
