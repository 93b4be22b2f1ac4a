"""A script without ``if __name__ == "__main__":`` fails fast instead of multiplying."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import engine as e
from engine._checks import WORKER_MARK, refuse_in_worker

SCRIPT = textwrap.dedent('''
    import anyio
    import engine as e
    from strategies import RandomSearch, search

    class Toy(e.BaseModelSpace):
        def __init__(self):
            self.x = e.ensure_frozen(e.Categorical([1, 2, 3, 4], label="x"))

    def train(model):
        return float(model.x)

    async def main():
        space = e.SimplifiedModelSpace.from_model(Toy(), e.FunctionEvaluator(train))
        async with e.Engine(e.ProcessPool(2), max_trials=4) as engine:
            print(await search(space, RandomSearch(seed=0), engine))

    anyio.run(main)  # no main guard: a worker loading this script runs it again
''')


def test_a_script_without_the_main_guard_fails_fast(tmp_path: Path) -> None:
    script = tmp_path / "no_guard.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    seen: set[int] = set()
    most = 0
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            descendants = watched.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        seen.update(p.pid for p in descendants)
        most = max(most, len(descendants))
        time.sleep(0.05)  # sampling the process count, not waiting for a state
    if process.poll() is None:  # pragma: no cover - the bug: kill what it started
        for child in watched.children(recursive=True):
            child.kill()
        process.kill()
    _, stderr = process.communicate()
    text = stderr.decode()
    assert process.returncode != 0
    assert "SearchFailed" in text
    assert 'if __name__ == "__main__":' in text
    assert "InWorkerProcess" in text
    assert most <= 2  # the pool's two workers, none of their own
    assert not [pid for pid in seen if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_the_guard_refuses_only_the_worker_process_itself(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKER_MARK, str(os.getpid() + 1))  # a trial's own subprocess
    refuse_in_worker()
    monkeypatch.setenv(WORKER_MARK, str(os.getpid()))
    with pytest.raises(e.InWorkerProcess, match="main guard"):
        refuse_in_worker()
