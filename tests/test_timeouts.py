"""A hung test fails within its pytest-timeout, with a traceback, on asyncio and trio
(tests/conftest.py): pytest runs a tiny hanging test file in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HANGS = '''
import anyio
import pytest

pytestmark = pytest.mark.anyio


async def test_hangs() -> None:
    await anyio.sleep_forever()


async def test_the_next_test_runs() -> None:
    await anyio.sleep(0)
'''

HANGS_SHIELDED = '''
import anyio
import pytest


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_hangs_where_no_cancellation_reaches(anyio_backend: str) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.sleep_forever()
'''

ROOT = Path(__file__).resolve().parent.parent


def start_pytest(folder: Path, name: str, text: str) -> subprocess.Popen[str]:
    """pytest on ``text`` as ``folder/name`` under this project's pytest settings
    (pyproject.toml: its timeout method) and conftest, with a 3 s timeout."""
    (folder / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p",
         "tests.conftest", "-p", "no:randomly", "-p", "no:hypothesispytest", "--tb=native",
         "-o", "timeout=3", str(folder / name)],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen[str]) -> str:
    """Its output, once it ended; it is killed (and the test fails) after 60 s."""
    try:
        return process.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        out = process.communicate()[0]
        raise AssertionError(f"pytest hung on a hung test:\n{out}") from None


def test_a_hung_test_fails_within_its_timeout_on_both_backends(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    hangs = start_pytest(tmp_path / "one", "test_hangs.py", HANGS)
    with hangs:
        shielded = start_pytest(tmp_path / "two", "test_shielded.py", HANGS_SHIELDED)
        with shielded:
            try:
                out, stuck = finish(hangs), finish(shielded)
            finally:  # neither outlives the test
                for process in (hangs, shielded):
                    process.kill()
    # Cancelled inside its event loop: each fails with where it waited, the session goes on.
    assert hangs.returncode == 1, out
    assert "2 failed, 2 passed" in out
    for backend in ("asyncio", "trio"):
        assert f"test_hangs[{backend}] ____" in out
    assert out.count("await anyio.sleep_forever()") >= 2
    # One traceback line each (the short summary repeats the message in full only where
    # pytest does not cut its lines to the terminal, as under CI=true).
    timeouts = [line for line in out.splitlines()
                if line.startswith("TimeoutError: the test did not end within")]
    assert len(timeouts) == 2, out
    assert "trio.Cancelled" in out
    # Beyond cancellation's reach: pytest-timeout's thread method dumps the stacks and
    # ends pytest, instead of waiting for ever in anyio's trio TestRunner.__exit__.
    assert shielded.returncode == 1, stuck
    assert "+ Timeout +" in stuck
    assert "Stack of MainThread" in stuck
