"""engine.nn: torch model spaces, their choices, labels and frozen models (in-process)."""

from __future__ import annotations

import copy
import random
import re
import threading
from typing import Any

import pytest
import torch
from torch import nn

import engine.nn as enn
from engine import (
    Categorical,
    DuplicateLabelError,
    Mutable,
    Numerical,
    RawFormatModelSpace,
    SampleMissingError,
    SampleValidationError,
    SimplifiedModelSpace,
    ensure_frozen,
    model_context,
)
from engine.nn import (
    CategoricalMultiple,
    ChosenInputs,
    InputChoice,
    LayerChoice,
    ModelSpace,
    MutableLayer,
    Repeat,
)


def search_modules(module: nn.Module) -> list[str]:
    """Names of the modules under ``module`` (itself excluded) that still hold choices."""
    return [name for name, m in module.named_modules() if name and isinstance(m, Mutable)]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Net(ModelSpace):
    """Every primitive, auto-labelled except the shared width."""

    def __init__(self, classes: Any = 2) -> None:
        super().__init__()
        width = Categorical([4, 8], label="width")
        self.stem = enn.Linear(3, width)
        self.act = LayerChoice([nn.ReLU(), nn.Tanh(), nn.Identity()])
        self.body = Repeat(lambda i: enn.Linear(width, width), (1, 3))
        self.skip = InputChoice(2, 1, "sum")
        self.head = enn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.stem(x))
        return self.head(self.skip([h, self.body(h)]))  # type: ignore[no-any-return]


SAMPLE = {"width": 8, "layerchoice_1": 1, "repeat_1": 3, "inputchoice_1": 1}


# ---------------------------------------------------------------- ModelSpace


def test_space_discovers_mutables_in_definition_order() -> None:
    space = Net(classes=Categorical([2, 5], label="classes"))
    assert list(space.simplify()) == [
        "classes", "width", "layerchoice_1", "repeat_1", "inputchoice_1"]


def test_space_runs_as_its_default_architecture() -> None:
    space = Net()
    assert space(torch.ones(2, 3)).shape == (2, 2)
    default = space.default()
    assert search_modules(default) == []
    assert default(torch.ones(2, 3)).shape == (2, 2)
    assert n_params(default) == 3 * 4 + 4 + (4 * 4 + 4) + 4 * 2 + 2


def test_freeze_builds_a_plain_module_tree() -> None:
    frozen = Net().freeze(SAMPLE)
    assert search_modules(frozen) == []
    assert type(frozen.stem) is nn.Linear
    assert frozen.stem.out_features == 8
    assert type(frozen.act) is nn.Tanh
    assert type(frozen.body) is nn.Sequential
    assert len(frozen.body) == 3
    assert type(frozen.skip) is ChosenInputs
    assert frozen.skip.chosen == [1]
    assert frozen(torch.ones(2, 3)).shape == (2, 2)
    assert n_params(frozen) == 3 * 8 + 8 + 3 * (8 * 8 + 8) + 8 * 2 + 2


def test_freeze_replaces_init_argument_mutables() -> None:
    space = Net(classes=Categorical([2, 5], label="classes"))
    frozen = space.freeze({**SAMPLE, "classes": 5})
    assert frozen.head.out_features == 5
    assert frozen.init_call().kwargs == {"classes": 5}
    assert frozen.simplify() == {}


def test_raw_format_space_builds_the_frozen_model() -> None:
    space = RawFormatModelSpace(Net(), None)
    model = space.freeze(SAMPLE).executable_model()
    assert search_modules(model) == []
    assert type(model.act) is nn.Tanh


def test_simplified_space_rebuilds_from_the_recipe() -> None:
    space = SimplifiedModelSpace.from_model(Net(classes=Categorical([2, 5], label="classes")))
    model = space.freeze({**SAMPLE, "classes": 5})
    assert model.model.kwargs == {"classes": 5}
    built = model.executable_model()
    assert search_modules(built) == []
    assert n_params(built) == n_params(Net(classes=5).freeze(SAMPLE))


@pytest.mark.parametrize(
    ("sample", "message", "paths"),
    [
        ({**SAMPLE, "layerchoice_1": 3}, "3 is not one of the choices [0, 1, 2]",
         ["model", "layerchoice_1"]),
        ({**SAMPLE, "repeat_1": 0}, "0 is not one of the choices [1, 2, 3]",
         ["model", "repeat_1"]),
        ({**SAMPLE, "width": 16}, "16 is not one of the choices [4, 8]", ["model", "width"]),
        ({k: v for k, v in SAMPLE.items() if k != "inputchoice_1"},
         "label 'inputchoice_1' is missing", ["model", "inputchoice_1"]),
    ],
)
def test_bad_sample_names_the_label(sample: dict[str, Any], message: str,
                                    paths: list[str]) -> None:
    for space in (RawFormatModelSpace(Net(), None), SimplifiedModelSpace.from_model(Net())):
        with pytest.raises(SampleValidationError) as info:
            space.freeze(sample)
        assert message in str(info.value)
        assert info.value.paths == paths


def test_building_under_a_bad_sample_names_the_label() -> None:
    with model_context({**SAMPLE, "layerchoice_1": 7}), \
            pytest.raises(SampleValidationError) as info:
        Net()
    assert info.value.paths == ["layerchoice_1"]
    assert "7 is not one of the choices [0, 1, 2] of 'layerchoice_1'" in str(info.value)


def test_auto_labels_are_the_same_in_every_build() -> None:
    class Twice(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()])
            self.b = LayerChoice([nn.ReLU(), nn.Tanh()])
            self.size = enn.Linear(2, Categorical([1, 2]))

    first, second = Twice(), Twice()
    labels = ["layerchoice_1", "layerchoice_2", "categorical_1"]
    assert list(first.simplify()) == list(second.simplify()) == labels
    frozen = first.freeze({"layerchoice_1": 0, "layerchoice_2": 1, "categorical_1": 2})
    assert (type(frozen.a), type(frozen.b), frozen.size.out_features) == (nn.ReLU, nn.Tanh, 2)


def test_an_unlabelled_choice_outside_a_space_needs_a_label() -> None:
    with pytest.raises(TypeError, match="a layerchoice outside a ModelSpace needs an explicit"):
        LayerChoice([nn.ReLU()])
    with pytest.raises(TypeError, match="a repeat outside a ModelSpace needs an explicit"):
        Repeat(nn.ReLU(), (1, 2))


def test_same_label_on_equal_choices_is_one_shared_choice() -> None:
    class Shared(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = enn.Linear(2, Categorical([3, 6], label="w"))
            self.b = enn.Linear(Categorical([3, 6], label="w"), 1)

    space = Shared()
    assert list(space.simplify()) == ["w"]
    frozen = space.freeze({"w": 6})
    assert (frozen.a.out_features, frozen.b.in_features) == (6, 6)
    assert nn.Sequential(frozen.a, frozen.b)(torch.ones(1, 2)).shape == (1, 1)


def test_same_label_on_different_choices_is_an_error() -> None:
    class Clash(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()], label="op")
            self.b = LayerChoice([nn.ReLU(), nn.Tanh(), nn.Sigmoid()], label="op")

    with pytest.raises(DuplicateLabelError, match="label 'op' is bound to two different"):
        Clash()


def test_add_mutable_returns_default_then_chosen_value() -> None:
    class Activation(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.kind = self.add_mutable(Categorical(["relu", "tanh"], label="act"))

    space = Activation()
    assert space.kind == "relu"
    assert list(space.simplify()) == ["act"]
    frozen = space.freeze({"act": "tanh"})
    assert frozen.kind == "tanh"
    assert frozen.simplify() == {}
    with pytest.raises(TypeError, match="add_mutable takes a mutable, got int"):
        space.add_mutable(3)  # type: ignore[arg-type]


def test_attribute_mutables_are_discovered() -> None:
    class WithAttribute(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.lr = Numerical(0.1, 1.0, label="lr")

    assert list(WithAttribute().simplify()) == ["lr"]


def test_nested_space_and_plain_containers_are_walked() -> None:
    class Inner(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.op = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()})

    class Outer(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.seq = nn.Sequential(nn.Linear(2, 2), Inner(), LayerChoice([nn.ReLU()]))

    space = Outer()
    assert list(space.simplify()) == ["layerchoice_1", "layerchoice_2"]
    frozen = space.freeze({"layerchoice_1": "tanh", "layerchoice_2": 0})
    assert search_modules(frozen) == ["seq.1"]  # the frozen Inner is still a ModelSpace
    assert type(frozen.seq[1].op) is nn.Tanh
    assert type(frozen.seq[2]) is nn.ReLU


def test_random_and_grid_cover_the_space() -> None:
    space = Net()
    models = list(space.grid())
    assert len(models) == 2 * 3 * 3 * 2
    assert all(search_modules(m) == [] for m in models)
    memo: dict[str, Any] = {}
    model = space.random(memo, random_state=random.Random(1))
    assert set(memo) == set(SAMPLE)
    assert search_modules(model) == []


def test_deepcopy_keeps_the_space_even_under_a_model_context() -> None:
    space = Net()
    with model_context(SAMPLE):
        clone = copy.deepcopy(space)
    assert type(clone.act) is LayerChoice
    assert type(clone.body) is Repeat
    assert list(clone.simplify()) == list(space.simplify())


# ---------------------------------------------------------------- LayerChoice


def test_layer_choice_by_name() -> None:
    choice = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="op")
    assert choice.names == ["relu", "tanh"]
    assert len(choice) == 2
    assert type(choice.freeze({"op": "tanh"})) is nn.Tanh
    with model_context({"op": "tanh"}):
        assert type(LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="op")) is nn.Tanh
    with pytest.raises(SampleValidationError) as info:
        choice.freeze({"op": "gelu"})
    assert info.value.paths == ["op"]
    assert str(info.value) == (
        "'gelu' is not one of the choices ['relu', 'tanh'] of 'op' (at op)")
    with pytest.raises(KeyError, match="LayerChoice 'op' has no candidate 'gelu'"):
        choice["gelu"]


def test_layer_choice_returns_the_candidate_object_itself() -> None:
    tanh = nn.Tanh()
    with model_context({"op": 1}):
        assert LayerChoice([nn.ReLU(), tanh], label="op") is tanh


def test_layer_choice_forward_runs_the_default_candidate() -> None:
    choice = LayerChoice([nn.Identity(), nn.ReLU()], label="op")
    x = torch.tensor([-1.0, 2.0])
    assert torch.equal(choice(x), x)


def test_layer_choice_with_nested_choices() -> None:
    inner = LayerChoice([nn.ReLU(), nn.Tanh()], label="inner")
    outer = LayerChoice([nn.Sequential(nn.Linear(2, 2), inner), nn.Identity()], label="outer")
    assert list(outer.simplify()) == ["outer", "inner"]
    frozen = outer.freeze({"outer": 0, "inner": 1})
    assert type(frozen) is nn.Sequential
    assert type(frozen[1]) is nn.Tanh
    assert search_modules(frozen) == []
    assert frozen[0] is outer[0][0]  # parts without choices are reused


@pytest.mark.parametrize(
    ("candidates", "error", "message"),
    [
        ([], ValueError, "LayerChoice 'op' needs at least one candidate"),
        ({}, ValueError, "LayerChoice 'op' needs at least one candidate"),
        ([nn.ReLU(), 3], TypeError, "candidate 1 of LayerChoice 'op' is a int, not an"),
        ({"a.b": nn.ReLU()}, ValueError, "candidate names must be non-empty str without '.'"),
        (nn.ReLU(), TypeError, "takes a list or a dict of modules, got ReLU: wrap a single"),
    ],
)
def test_layer_choice_rejects_bad_candidates(candidates: Any, error: type[Exception],
                                             message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        LayerChoice(candidates, label="op")


# ---------------------------------------------------------------- InputChoice


def tensors() -> list[torch.Tensor]:
    return [torch.full((1, 2), 1.0), torch.full((1, 2), 2.0), torch.full((1, 2), 4.0)]


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [("sum", [[5.0, 5.0]]), ("mean", [[2.5, 2.5]]), ("concat", [[1.0, 1.0, 4.0, 4.0]])],
)
def test_input_choice_reductions(reduction: str, expected: list[list[float]]) -> None:
    choice = InputChoice(3, 2, reduction, label="skip")
    frozen = choice.freeze({"skip": [2, 0]})
    assert type(frozen) is ChosenInputs
    assert frozen.chosen == [0, 2]
    assert frozen(tensors()).tolist() == expected


def test_input_choice_none_reduction_and_single_pick() -> None:
    picked = InputChoice(3, 2, "none", label="skip").freeze({"skip": [1, 2]})(tensors())
    assert [t[0, 0].item() for t in picked] == [2.0, 4.0]
    single = InputChoice(3, label="skip")
    assert single.choice == Categorical([0, 1, 2], label="skip")
    assert single.freeze({"skip": 2})(tensors()).tolist() == [[4.0, 4.0]]
    assert single(tensors()).tolist() == [[1.0, 1.0]]  # the default: the first input


def test_input_choice_any_number() -> None:
    choice = InputChoice(3, None, "sum", label="skip")
    assert isinstance(choice.choice, CategoricalMultiple)
    assert choice.choice.default_value() == [0, 1, 2]
    assert choice.freeze({"skip": [1]})(tensors()).tolist() == [[2.0, 2.0]]
    assert len(choice.choice.grid_values()) == 7


def test_input_choice_under_a_model_context_is_chosen_inputs() -> None:
    with model_context({"skip": [0, 1]}):
        frozen = InputChoice(3, 2, "mean", label="skip")
    assert type(frozen) is ChosenInputs
    assert frozen.chosen == [0, 1]
    assert frozen.reduction == "mean"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0], "'skip' takes exactly 2 of [0, 1, 2], got 1: [0]"),
        ([0, 1, 2], "'skip' takes exactly 2 of [0, 1, 2], got 3: [0, 1, 2]"),
        ([0, 0], "[0, 0] picks 0 twice for 'skip'"),
        ([0, 3], "3 is not one of the choices [0, 1, 2] of 'skip'"),
        (1, "'skip' takes a list of values out of [0, 1, 2], got int 1"),
    ],
)
def test_input_choice_rejects_bad_picks(value: Any, message: str) -> None:
    with pytest.raises(SampleValidationError) as info:
        InputChoice(3, 2, label="skip").freeze({"skip": value})
    assert info.value.message == message
    assert info.value.paths == ["skip"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1, "sum"), "InputChoice 'skip': n_candidates must be an int >= 1, got 0"),
        ((3, 4, "sum"), "n_chosen must be None or an int from 1 to n_candidates (3), got 4"),
        ((3, 0, "sum"), "n_chosen must be None or an int from 1 to n_candidates (3), got 0"),
        ((3, 1, "max"), "reduction must be one of ('sum', 'mean', 'concat', 'none'), got 'max'"),
    ],
)
def test_input_choice_rejects_bad_arguments(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        InputChoice(*args, label="skip")


def test_input_choice_checks_the_number_of_inputs() -> None:
    with pytest.raises(ValueError, match="expects 3 inputs \\(one per candidate\\), got 2"):
        InputChoice(3, label="skip")(tensors()[:2])
    with pytest.raises(ValueError, match="picks input 2, but got only 2 inputs"):
        ChosenInputs([0, 2])(tensors()[:2])


# ---------------------------------------------------------------- Repeat


def test_repeat_factory_gets_the_index() -> None:
    repeat = Repeat(lambda i: nn.Linear(2, 2, bias=i == 0), (0, 2), label="depth")
    assert [b.bias is not None for b in repeat.blocks] == [True, False]
    assert repeat.depth_choice == Categorical([0, 1, 2], label="depth")
    frozen = repeat.freeze({"depth": 0})
    assert type(frozen) is nn.Sequential
    assert len(frozen) == 0
    x = torch.ones(1, 2)
    assert torch.equal(frozen(x), x)


def test_repeat_factory_without_parameters_gets_no_index() -> None:
    repeat = Repeat(nn.ReLU, 2)
    assert [b.inplace for b in repeat.blocks] == [False, False]
    repeat = Repeat(lambda: nn.Linear(2, 2), 2)
    assert repeat.blocks[0].weight is not repeat.blocks[1].weight


def test_repeat_of_a_module_copies_it() -> None:
    block = nn.Linear(2, 2)
    repeat = Repeat(block, Categorical([1, 3], label="depth"))
    assert repeat.label == "depth"
    assert repeat.blocks[0] is block
    assert repeat.blocks[2] is not block
    assert repeat.blocks[2].weight is not block.weight
    with model_context({"depth": 3}):
        frozen = Repeat(block, Categorical([1, 3], label="depth"))
    assert type(frozen) is nn.Sequential
    assert len(frozen) == 3
    assert repeat(torch.ones(1, 2)).shape == (1, 2)  # default depth 1


def test_repeat_of_a_list_and_a_fixed_depth() -> None:
    fixed = Repeat([nn.ReLU(), nn.Tanh()], 2)
    assert fixed.label is None
    assert fixed.simplify() == {}
    assert [type(m) for m in fixed.freeze({})] == [nn.ReLU, nn.Tanh]
    with model_context({}):
        assert type(Repeat(nn.ReLU(), 2)) is nn.Sequential


def test_repeat_with_nested_auto_labels_keeps_later_labels_stable() -> None:
    class Deep(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.body = Repeat(lambda i: LayerChoice([nn.ReLU(), nn.Tanh()]), (1, 3))
            self.tail = LayerChoice([nn.Identity(), nn.Sigmoid()])

    space = Deep()
    labels = ["repeat_1", "layerchoice_1", "layerchoice_2", "layerchoice_3", "layerchoice_4"]
    assert list(space.simplify()) == labels
    frozen = space.freeze({"repeat_1": 1, "layerchoice_1": 1, "layerchoice_2": 0,
                           "layerchoice_3": 0, "layerchoice_4": 1})
    assert [type(m) for m in frozen.body] == [nn.Tanh]
    assert type(frozen.tail) is nn.Sigmoid


@pytest.mark.parametrize(
    ("depth", "error", "message"),
    [
        ((3, 1), ValueError, "Repeat 'depth': the depth range (3, 1) has its minimum 3 above"),
        ((-1, 2), TypeError, "Repeat depth must be an int >= 0, a (min, max) tuple"),
        ((1, 2, 3), TypeError, "Repeat depth must be an int >= 0, a (min, max) tuple"),
        (Numerical(1, 3, label="depth"), TypeError, "or a Categorical of ints, got Numerical"),
        (Categorical([1, "2"], label="depth"), TypeError,
         "Repeat 'depth': depth choices must be ints >= 0, got [1, '2']"),
        (Categorical([1, 2], label="other"), ValueError,
         "Repeat takes its label from the depth Categorical ('other'): drop label='depth'"),
        (2, ValueError, "Repeat 'depth' has a fixed depth 2, so there is no choice to label"),
    ],
)
def test_repeat_rejects_bad_depth(depth: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        Repeat(nn.ReLU(), depth, label="depth")
    assert message in str(info.value)


def test_repeat_rejects_bad_blocks() -> None:
    with pytest.raises(ValueError, match="Repeat 'd' got 2 blocks for a maximum depth of 3"):
        Repeat([nn.ReLU(), nn.ReLU()], (1, 3), label="d")
    with pytest.raises(TypeError, match=r"block 0 of Repeat 'd' is a int, not an nn\.Module"):
        Repeat(lambda i: i, (1, 2), label="d")
    with pytest.raises(TypeError, match="takes a module, a factory or a list of them as blocks"):
        Repeat(3, (1, 2), label="d")  # type: ignore[arg-type]


def test_repeat_depth_out_of_range() -> None:
    repeat = Repeat(nn.ReLU(), (1, 3), label="d")
    with pytest.raises(SampleValidationError) as info:
        repeat.freeze({"d": 4})
    assert info.value.paths == ["d"]
    assert info.value.message == "4 is not one of the choices [1, 2, 3] of 'd'"


# ---------------------------------------------------------------- mutable layer arguments


def test_mutable_layers_build_plain_torch_layers() -> None:
    channels = Categorical([2, 4], label="channels")
    conv = enn.Conv2d(1, channels, kernel_size=Categorical([1, 3], label="k"), padding=1)
    norm = enn.BatchNorm2d(channels)
    assert (conv.out_channels, conv.kernel_size, norm.num_features) == (2, (1, 1), 2)
    assert [leaf.label for leaf in conv.leaf_mutables()] == ["channels", "k"]
    sample = {"channels": 4, "k": 3}
    with model_context(sample):
        layers = [enn.Conv2d(1, channels, kernel_size=Categorical([1, 3], label="k"), padding=1),
                  enn.BatchNorm2d(channels)]
    assert [type(m) for m in layers] == [nn.Conv2d, nn.BatchNorm2d]
    assert (layers[0].out_channels, layers[0].kernel_size, layers[1].num_features) == (
        4, (3, 3), 4)
    frozen = conv.freeze(sample)
    assert type(frozen) is nn.Conv2d
    assert frozen.kernel_size == (3, 3)
    assert nn.Sequential(*layers)(torch.ones(1, 1, 5, 5)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize(
    ("layer", "args", "plain", "attribute"),
    [
        (enn.Linear, (2, Categorical([3, 5], label="c")), nn.Linear, "out_features"),
        (enn.Conv1d, (2, Categorical([3, 5], label="c"), 1), nn.Conv1d, "out_channels"),
        (enn.BatchNorm1d, (Categorical([3, 5], label="c"),), nn.BatchNorm1d, "num_features"),
        (enn.LayerNorm, (Categorical([3, 5], label="c"),), nn.LayerNorm, "normalized_shape"),
        (enn.Dropout, (Categorical([0.1, 5 / 8], label="c"),), nn.Dropout, "p"),
    ],
)
def test_every_mutable_layer_freezes_to_its_plain_layer(
        layer: type[MutableLayer], args: tuple[Any, ...], plain: type[nn.Module],
        attribute: str) -> None:
    assert layer.plain_layer is plain
    chosen = {"c": next(a for a in args if isinstance(a, Categorical)).values[1]}
    frozen = layer(*args).freeze(chosen)
    with model_context(chosen):
        built = layer(*args)
    for module in (frozen, built):
        assert type(module) is plain
        value = getattr(module, attribute)
        assert value in (chosen["c"], (chosen["c"],))


def test_custom_mutable_layer() -> None:
    class Conv3d(MutableLayer, nn.Conv3d):
        pass

    with model_context({"c": 2}):
        frozen = Conv3d(1, Categorical([1, 2], label="c"), 1)
    assert type(frozen) is nn.Conv3d
    assert frozen.out_channels == 2
    with pytest.raises(TypeError, match=r"Broken needs a plain torch layer among its bases"):
        class Broken(MutableLayer):
            pass


# ---------------------------------------------------------------- CategoricalMultiple


def test_categorical_multiple_values() -> None:
    choice = CategoricalMultiple(["a", "b", "c"], n_chosen=2, label="x")
    assert choice.default_value() == ["a", "b"]
    assert choice.grid_values() == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert choice.freeze({"x": ("c", "a")}) == ["a", "c"]
    value = choice.random_value(random.Random(0))
    assert len(value) == 2
    assert choice.contains({"x": value})
    assert choice == CategoricalMultiple(["a", "b", "c"], n_chosen=2, label="x")
    assert choice != CategoricalMultiple(["a", "b", "c"], n_chosen=1, label="x")
    with pytest.raises(ValueError, match="n_chosen must be None or an int from 1 to 3, got 4"):
        CategoricalMultiple(["a", "b", "c"], n_chosen=4, label="x")
    with pytest.raises(SampleValidationError, match="'x' takes at least one of"):
        CategoricalMultiple(["a"], label="x").freeze({"x": []})


class _PlainBlock(nn.Module):
    """A plain module that reads a choice the space never sees."""

    def __init__(self) -> None:
        super().__init__()
        size = ensure_frozen(Categorical([2, 4], label="hidden"))
        self.fc = nn.Linear(3, size if isinstance(size, int) else 2)


class _HiddenChoice(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
        self.block = _PlainBlock()


def test_a_choice_hidden_in_a_plain_module_fails_loudly() -> None:
    space = SimplifiedModelSpace.from_model(_HiddenChoice())
    assert list(space.simplify()) == ["act"]  # "hidden" is not searched ...
    model = space.freeze({"act": 1})
    with pytest.raises(SampleMissingError, match=r"'hidden' is missing .* never searched") as info:
        model.executable_model()  # ... so building the model says so instead of using 2
    assert info.value.paths == ["hidden"]
    with model_context({"act": 1}), pytest.raises(SampleMissingError):
        _HiddenChoice()


class _Weighted(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 4)
        self.op = LayerChoice([nn.Identity(), nn.Sequential(nn.Linear(4, 4), nn.ReLU())],
                              label="op")
        self.blocks = Repeat(lambda i: nn.Linear(4, 4), (1, 2), label="depth")
        self.out = enn.Linear(4, Categorical([2, 3], label="out"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.op(self.stem(x))))  # type: ignore[no-any-return]


@pytest.mark.parametrize("raw", [True, False])
def test_raw_format_freeze_keeps_the_live_weights_and_edits(raw: bool) -> None:
    space = _Weighted()
    with torch.no_grad():
        space.stem.weight.fill_(0.5)
        space.op[1][0].weight.fill_(0.25)
        space.blocks.blocks[1].weight.fill_(2.0)
        space.out.weight.fill_(3.0)
    space.extra = nn.Linear(2, 2)  # an in-place edit the constructor knows nothing of
    sample = {"op": 1, "depth": 2, "out": 2}
    if raw:
        frozen = RawFormatModelSpace.from_model(space).freeze(sample).executable_model()
    else:
        frozen = space.freeze(sample)
    assert search_modules(frozen) == []
    assert bool((frozen.stem.weight == 0.5).all())
    assert bool((frozen.op[0].weight == 0.25).all())
    assert bool((frozen.blocks[1].weight == 2.0).all())
    assert bool((frozen.out.weight == 3.0).all())  # the default size: its weights are kept
    assert type(frozen.out) is nn.Linear
    assert type(frozen.extra) is nn.Linear
    assert frozen(torch.ones(1, 3)).shape == (1, 2)
    with torch.no_grad():
        frozen.stem.weight.fill_(9.0)  # a copy: training it leaves the space as it was
    assert bool((space.stem.weight == 0.5).all())
    resized = space.freeze({**sample, "out": 3}).out
    assert resized.out_features == 3  # a new shape starts from fresh weights
    assert not bool((resized.weight == 3.0).all())


def test_a_space_whose_constructor_applies_a_choice_is_built_again() -> None:
    class Applied(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.width = self.add_mutable(Categorical([2, 4], label="w"))
            self.fc = nn.Linear(3, self.width)

    space = Applied()
    assert space.constructor_choices() == ["w"]
    assert _Weighted().constructor_choices() == []
    assert RawFormatModelSpace.from_model(space).freeze({"w": 4}) \
        .executable_model().fc.out_features == 4


def test_a_layer_choice_iterates_over_its_candidates() -> None:
    ops = [nn.ReLU(), nn.Tanh(), nn.Identity()]
    choice = LayerChoice(ops, label="op")
    assert list(choice) == ops
    assert [type(m) for m in LayerChoice({"a": nn.ReLU(), "b": nn.Tanh()}, label="d")] == [
        nn.ReLU, nn.Tanh]


def test_a_layer_choice_candidate_can_be_replaced() -> None:
    choice = LayerChoice({"a": nn.ReLU(), "b": nn.Tanh()}, label="op")
    choice["b"] = nn.Sigmoid()
    assert [type(m) for m in choice] == [nn.ReLU, nn.Sigmoid]
    assert type(choice.freeze({"op": "b"})) is nn.Sigmoid
    indexed = LayerChoice([nn.ReLU(), nn.Tanh()], label="i")
    indexed[0] = nn.Identity()
    assert type(indexed.freeze({"i": 0})) is nn.Identity
    with pytest.raises(KeyError, match="has no candidate 'c'"):
        choice["c"] = nn.ReLU()
    with pytest.raises(TypeError, match=r"must be an nn\.Module, got int"):
        choice["a"] = 3  # type: ignore[assignment]
    assert choice.names == ["a", "b"]


def test_freezing_a_space_that_cannot_be_copied_says_why() -> None:
    space = _Weighted()
    space.lock = threading.Lock()  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"_Weighted cannot be frozen: freezing deep-copies .*"
                                        r"lock"):
        space.freeze({"op": 0, "depth": 1, "out": 2})
