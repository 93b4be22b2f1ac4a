"""What a trial prints under ProcessPool reaches the parent's stderr as it comes, each
line prefixed with the model id (on by default when stderr is a terminal), and stays
captured on the handle."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = '''
import sys, time
from pathlib import Path

import anyio

import engine as e


class Space(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical([1, 2], label="x"))


def train(model: Space, flag: str) -> float:
    print(f"step 1 of x={model.x}", flush=True)
    print("a warning", file=sys.stderr, flush=True)
    while not Path(flag).exists():  # the test creates it once it saw the lines above
        time.sleep(0.01)
    print("no newline at the end", end="")
    return 1.0


async def main(echo: bool | None, flag: str) -> None:
    space = e.SimplifiedModelSpace.from_model(Space(), e.FunctionEvaluator(train, flag=flag))
    async with e.Engine(e.ProcessPool(1, echo=echo)) as engine:
        handle = await engine.submit(space.freeze({"x": 2}))
        await handle
    print(repr(handle.output.stdout), repr(handle.output.stderr), flush=True)


if __name__ == "__main__":
    echo = {"on": True, "off": False, "auto": None}[sys.argv[1]]
    anyio.run(main, echo, sys.argv[2])
'''


def start(tmp_path: Path, echo: str, stderr: int) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "echo_search.py"
    script.write_text(textwrap.dedent(SCRIPT))
    flag = tmp_path / "go"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, str(script), echo, str(flag)], stdout=subprocess.PIPE,
        stderr=stderr, env={**os.environ, "PYTHONPATH": path})
    return process, flag


def read_until(stream: object, *wanted: bytes) -> bytes:
    """Lines from ``stream`` (a file, or a pty's fd) until each of ``wanted`` was seen."""
    seen = b""
    while not all(w in seen for w in wanted):
        try:
            chunk = (os.read(stream, 4096) if isinstance(stream, int)
                     else stream.readline())  # type: ignore[attr-defined]
        except OSError:  # a pty whose other end closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


CAPTURED = b"'step 1 of x=2\\nno newline at the end' 'a warning\\n'"


@pytest.mark.timeout(120)
def test_echo_shows_lines_while_the_trial_runs(tmp_path: Path) -> None:
    process, flag = start(tmp_path, "on", subprocess.PIPE)
    try:
        # The trial waits for the flag: these lines can only come from the echo.
        early = read_until(process.stderr, b"[model 1] step 1 of x=2\n",
                           b"[model 1] a warning\n")
        assert b"[model 1] step 1 of x=2\n" in early
        assert b"[model 1] a warning\n" in early
        flag.touch()
        out, rest = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, rest.decode()
    assert b"[model 1] no newline at the end\n" in rest
    assert out.strip() == CAPTURED  # captured as before


@pytest.mark.timeout(120)
@pytest.mark.parametrize("echo", ["off", "auto"])
def test_no_echo_when_off_or_not_a_terminal(tmp_path: Path, echo: str) -> None:
    (tmp_path / "go").touch()
    process, _ = start(tmp_path, echo, subprocess.PIPE)
    out, err = process.communicate(timeout=100)
    assert process.returncode == 0, err.decode()
    assert b"[model" not in err
    assert out.strip() == CAPTURED


@pytest.mark.timeout(120)
def test_echo_is_on_by_default_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "go").touch()
    main, terminal = os.openpty()
    try:
        process, _ = start(tmp_path, "auto", terminal)
        os.close(terminal)
        terminal = -1
        seen = read_until(main, b"[model 1] step 1 of x=2", b"[model 1] no newline at the end")
        out, _ = process.communicate(timeout=100)
    finally:
        os.close(main)
        if terminal != -1:
            os.close(terminal)
    assert process.returncode == 0
    assert b"[model 1] a warning" in seen
    assert out.strip() == CAPTURED
