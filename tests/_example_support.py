"""What the example tests share: the digits split, made once, and finding the processes
an example left behind (each run marks its processes' environment)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MARKER = "NAS_ENGINE_EXAMPLE_TEST"


def split_file(base: Path) -> Path:
    """The split digits data, made once per session (importing scikit-learn here once
    instead of in each script)."""
    spec = importlib.util.spec_from_file_location("_digits_for_tests", EXAMPLES / "_digits.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.ensure_split(base / "digits-split.npz")
    return path


def marked(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``marker``."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker and process.status() != "zombie":
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
