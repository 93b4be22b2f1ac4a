"""Every Python snippet of README.md runs as written (issue 12.2).

Each ```python block starts with a ``# NAME.py`` comment, the file name the README tells
the reader to save it as; the blocks are saved so, in one folder, and each runs there
as ``python NAME.py`` in a real subprocess. Nothing is filled in or edited. Every
process a snippet starts carries a marker, so a test can tell that none is left.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests._example_support import MARKER, ROOT, marked

README = ROOT / "README.md"
TIMEOUT = 100  # seconds a snippet may take on a loaded 2-core machine


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def snippets() -> dict[str, str]:
    """Each Python block under the file name its first line gives."""
    named = {}
    for block in blocks("python"):
        first = block.splitlines()[0]
        found = re.fullmatch(r"# (\w+\.py)\b.*", first)
        assert found, f"a README python block does not start with '# NAME.py': {first!r}"
        named[found.group(1)] = block
    return named


def run(name: str, folder: Path) -> str:
    """``python NAME`` in ``folder``; its stdout once it exited 0 and left no process."""
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, name], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    finally:
        left = marked(marker)
        for process in left:
            process.kill()
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert left == [], f"{name} left processes behind"
    return done.stdout


def test_every_snippet_that_starts_an_engine_has_the_main_guard() -> None:
    named = snippets()
    assert {"first_search.py", "evolve.py"} <= set(named)
    for name, code in named.items():
        if "Engine(" in code:
            guard = code.index('if __name__ == "__main__":')
            assert "anyio.run(" not in code[:guard], f"{name} starts an engine unguarded"


def test_the_snippets_run_as_written(tmp_path: Path) -> None:
    named = snippets()
    for name, code in named.items():
        (tmp_path / name).write_text(code)
    first = run("first_search.py", tmp_path)
    assert "EngineStopped(" in first
    assert "'trained')" in first.splitlines()[-1]  # engine.best(): a trained model
    ranking = run("evolve.py", tmp_path).splitlines()
    assert len(ranking) == 3, ranking
    metrics = [float(line.split()[0]) for line in ranking]
    assert metrics == sorted(metrics, reverse=True)
    assert metrics[-1] > 0
    assert (tmp_path / "search.nasrun").is_file()
    assert run("evolve.py", tmp_path).splitlines() == ranking  # resumed: the same models
    best_id, best_final, _ = run("results.py", tmp_path).split(maxsplit=2)
    assert float(best_final) == pytest.approx(metrics[0], abs=1e-3)
    assert int(best_id) >= 1
    steps, statuses = run("checkpoints.py", tmp_path).split(maxsplit=1)
    assert steps == "4"  # two steps before its pause, two after: one curve
    assert sorted(ast.literal_eval(statuses)) == ["paused", "paused", "trained"]
    kept = os.listdir(tmp_path / "checkpoints.nasrun.checkpoints")
    assert len(kept) == 2  # the paused models' checkpoints; the trained one's are gone
    run_code = "import serve_dashboard; assert callable(serve_dashboard.app)"
    done = subprocess.run([sys.executable, "-c", run_code], cwd=tmp_path, check=False,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr  # the module as written; its guard serves


@pytest.mark.parametrize("diff", blocks("diff"))
def test_a_diff_in_the_readme_changes_a_line_of_a_snippet(diff: str) -> None:
    code = "\n".join(snippets().values())
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-")]
    assert removed
    for line in removed:
        assert line in code.splitlines(), f"the README's diff removes {line!r}: no snippet has it"


def test_set_up_names_the_cpu_index_with_the_pinned_torch_and_no_published_package() -> None:
    text = README.read_text()
    pinned = re.findall(r'"torch==([\d.]+)"', blocks("bash")[0])
    assert pinned, "the set-up command pins torch"
    ci = (ROOT / ".ci" / "run").read_text()
    assert f'"torch=={pinned[0]}"' in ci  # the README's command is CI's
    assert (f"pip install torch=={pinned[0]} --index-url https://download.pytorch.org/whl/cpu"
            in text)
    assert not re.search(r"pip install [\"']?nas-engine\b", text)  # not on PyPI yet
    assert "not published on PyPI" in text


def test_parts_and_the_engine_docstring_name_what_users_meet() -> None:
    """The README's Parts list and Engine's docstring name the public pieces a user
    meets (errors, options, the pool kit), each of which the code really has."""
    import engine
    import engine.testing
    from engine import Engine

    parts = README.read_text().split("\n## Parts\n", 1)[1].split("\n## ", 1)[0]
    for name in ("handle.error", "model.error", "SearchFailed", "set_objective",
                 "allow_changed_space", "engine.testing", "MockPool", "check_pool",
                 "RunChanged", "show RUN --model ID", "outputs()"):
        assert name in parts, name
    doc = Engine.__doc__ or ""
    for name in ("handle.error", "SearchFailed", "set_objective", "allow_changed_space",
                 "engine.testing", "MockPool"):
        assert name in doc, name
    for module, name in ((engine, "SearchFailed"), (engine, "RunChanged"),
                         (engine.testing, "MockPool"), (engine.testing, "check_pool"),
                         (Engine, "set_objective")):
        assert hasattr(module, name), name
    assert "allow_changed_space" in Engine.__init__.__code__.co_varnames
