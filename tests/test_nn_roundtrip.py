"""engine.nn across processes: a frozen SimplifiedModelSpace is dumped (msgpack), loaded in
a fresh Python process and built there into the same architecture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
import torch
from torch import nn

import engine.nn as enn
from engine import Categorical, FunctionEvaluator, SimplifiedModelSpace
from engine.nn import InputChoice, LayerChoice, ModelSpace, Repeat

pytestmark = pytest.mark.timeout(120)

# Runs in this process and in the children: builds the model the same way and describes it.
DESCRIBE = '''
def describe(model, shape):
    import torch
    from engine import Mutable

    torch.manual_seed(0)
    net = model.executable_model()
    out = net(torch.ones(*shape))
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "shape": list(out.shape),
        "output": out.flatten().tolist(),
        "modules": [[name, type(m).__module__ + "." + type(m).__name__]
                    for name, m in net.named_modules() if name],
        "searching": [name for name, m in net.named_modules() if name and isinstance(m, Mutable)],
        "sample": model.sample,
        "metric": model.execute(),
    }
'''

LOAD_AND_DESCRIBE = DESCRIBE + '''
import json, sys
from engine import SimplifiedModelSpace

with open(sys.argv[1], "rb") as f:
    model = SimplifiedModelSpace.load(f.read())
print(json.dumps(describe(model, json.loads(sys.argv[2]))))
'''


def describe(model: SimplifiedModelSpace, shape: list[int]) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(DESCRIBE, namespace)
    return namespace["describe"](model, shape)  # type: ignore[no-any-return]


class RoundTripNet(ModelSpace):
    """Auto labels everywhere but the init argument, so a rebuild must count them alike."""

    def __init__(self, width: Any, classes: int = 3) -> None:
        super().__init__()
        self.stem = enn.Linear(4, width)
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()})
        self.body = Repeat(
            lambda i: nn.Sequential(enn.Linear(width, width),
                                    LayerChoice([nn.ReLU(), nn.Identity()])), (1, 3))
        self.skip = InputChoice(2, 2, "mean")
        self.norm = enn.BatchNorm1d(width)
        self.out_act = LayerChoice([nn.Identity(), nn.Sigmoid()])
        self.head = enn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.stem(x))
        h = self.out_act(self.norm(self.skip([h, self.body(h)])))
        return self.head(h)  # type: ignore[no-any-return]


def score(model: nn.Module, scale: float) -> float:
    return scale * sum(p.numel() for p in model.parameters())


def run_python(args: list[str], *, cwd: Path, pythonpath: str | None = None) -> Any:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_root(obj: Any) -> str:
    """The sys.path entry that makes ``obj``'s module importable under its name."""
    module = sys.modules[obj.__module__]
    root = Path(str(module.__file__)).resolve().parent
    for _ in range(obj.__module__.count(".")):
        root = root.parent
    return str(root)


def assert_same_model(here: dict[str, Any], there: dict[str, Any]) -> None:
    assert there["searching"] == here["searching"] == []
    assert there["modules"] == here["modules"]
    for name, kind in there["modules"]:
        plain = not kind.startswith("engine.") or kind.endswith(".ChosenInputs")
        assert plain, f"{name} is still a search wrapper: {kind}"
    assert (there["params"], there["shape"], there["sample"], there["metric"]) == (
        here["params"], here["shape"], here["sample"], here["metric"])
    assert torch.allclose(torch.tensor(there["output"]), torch.tensor(here["output"]),
                          atol=1e-5)


SAMPLE = {"width": 8, "layerchoice_1": "tanh", "repeat_1": 2, "layerchoice_2": 1,
          "layerchoice_3": 0, "layerchoice_4": 1, "inputchoice_1": [0, 1], "layerchoice_5": 0,
          "scale": 2.0}


def test_frozen_model_rebuilds_in_a_fresh_process(tmp_path: Path) -> None:
    space = SimplifiedModelSpace.from_model(
        RoundTripNet(Categorical([4, 8], label="width")),
        FunctionEvaluator(score, scale=Categorical([1.0, 2.0], label="scale")))
    assert sorted(space.simplify()) == sorted(SAMPLE)
    model = space.freeze(SAMPLE)
    dump = tmp_path / "model.msgpack"
    dump.write_bytes(model.dump())

    here = describe(model, [2, 4])
    assert here["shape"] == [2, 3]
    kinds = dict(here["modules"])
    assert kinds["body"] == "torch.nn.modules.container.Sequential"
    assert kinds["out_act"] == "torch.nn.modules.linear.Identity"  # labels after the Repeat
    assert here["params"] == (4 * 8 + 8) + 2 * (8 * 8 + 8) + 2 * 8 + (8 * 3 + 3)
    assert here["metric"] == 2.0 * here["params"]
    there = run_python(["-c", LOAD_AND_DESCRIBE, str(dump), "[2, 4]"], cwd=tmp_path,
                       pythonpath=import_root(RoundTripNet))
    assert_same_model(here, there)


SCRIPT = '''
import json, sys

import torch
from torch import nn

from engine import Categorical, FunctionEvaluator, SimplifiedModelSpace
from engine.nn import InputChoice, LayerChoice, Linear, ModelSpace, Repeat


class ScriptNet(ModelSpace):
    def __init__(self, width):
        super().__init__()
        self.stem = Linear(3, width)
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()])
        self.body = Repeat(lambda i: nn.Sequential(Linear(width, width),
                                                   LayerChoice([nn.ReLU(), nn.Identity()])),
                           (1, 3))
        self.skip = InputChoice(2, 1)
        self.head = Linear(width, Categorical([2, 5]))

    def forward(self, x):
        h = self.act(self.stem(x))
        return self.head(self.skip([h, self.body(h)]))


def score(model, scale):
    return scale * sum(p.numel() for p in model.parameters())
''' + DESCRIBE + '''

if __name__ == "__main__":
    space = SimplifiedModelSpace.from_model(
        ScriptNet(width=Categorical([4, 8], label="width")),
        FunctionEvaluator(score, scale=Categorical([1.0, 3.0], label="scale")))
    model = space.freeze(json.loads(sys.argv[1]))
    with open(sys.argv[2], "wb") as f:
        f.write(model.dump())
    print(json.dumps({"labels": list(space.simplify()), **describe(model, [2, 3])}))
'''


def test_space_from_a_script_rebuilds_in_a_fresh_process(tmp_path: Path) -> None:
    script, dump = tmp_path / "space_script.py", tmp_path / "model.msgpack"
    script.write_text(textwrap.dedent(SCRIPT))
    sample = {"width": 8, "layerchoice_1": 1, "repeat_1": 3, "layerchoice_2": 0,
              "layerchoice_3": 1, "layerchoice_4": 0, "inputchoice_1": 1,
              "categorical_1": 5, "scale": 3.0}
    here = run_python([str(script), json.dumps(sample), str(dump)], cwd=tmp_path)
    assert here["labels"] == ["width", "layerchoice_1", "repeat_1", "layerchoice_2",
                              "layerchoice_3", "layerchoice_4", "inputchoice_1",
                              "categorical_1", "scale"]
    assert here["shape"] == [2, 5]
    assert here["params"] == (3 * 8 + 8) + 3 * (8 * 8 + 8) + (8 * 5 + 5)

    recipe = msgspec.msgpack.decode(dump.read_bytes())["model"]
    assert recipe["symbol"] == {"module": "__main__", "qualname": "ScriptNet",
                                "path": str(script.resolve())}
    assert recipe["kwargs"] == {"width": 8}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    there = run_python(["-c", LOAD_AND_DESCRIBE, str(dump), "[2, 3]"], cwd=elsewhere)
    assert_same_model(here, there)


def test_engine_nn_without_torch_names_the_extra_to_install() -> None:
    # A fresh interpreter in which importing torch fails as if it were not installed.
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "try:\n"
        "    import engine.nn\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name)\n"
        "    print(exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    name, message = done.stdout.splitlines()
    assert name == "torch"
    assert "engine.nn needs PyTorch" in message
    assert "pip install 'nas-engine[torch]'" in message
