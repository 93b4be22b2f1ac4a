"""LayerChoice (one module out of several) and InputChoice (some of several inputs)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from engine._context import ensure_frozen
from engine._labels import auto_label
from engine.mutable import Categorical, LabeledMutable, Uses
from engine.nn._base import MutableModule, freeze_module, module_uses
from engine.nn._multiple import CategoricalMultiple

__all__ = ("ChosenInputs", "InputChoice", "LayerChoice")

Candidates = Sequence[nn.Module] | Mapping[str, nn.Module] | nn.ModuleList | nn.ModuleDict


def _named_candidates(candidates: Any, label: str) -> dict[int | str, nn.Module]:
    """The candidates keyed by their choice value: list index or dict key."""
    if isinstance(candidates, Mapping | nn.ModuleDict):
        named: dict[int | str, nn.Module] = dict(candidates.items())
        for key in named:
            if not isinstance(key, str) or not key or "." in key:
                raise ValueError(f"LayerChoice {label!r}: candidate names must be non-empty "
                                 f"str without '.', got {key!r}")
    elif isinstance(candidates, nn.Module | str | bytes) or not isinstance(
            candidates, Iterable):
        raise TypeError(f"LayerChoice {label!r} takes a list or a dict of modules, got "
                        f"{type(candidates).__name__}: wrap a single module in a list")
    else:
        named = dict(enumerate(candidates))
    if not named:
        raise ValueError(f"LayerChoice {label!r} needs at least one candidate")
    for key, module in named.items():
        if not isinstance(module, nn.Module):
            raise TypeError(f"candidate {key!r} of LayerChoice {label!r} is a "
                            f"{type(module).__name__}, not an nn.Module")
    return named


def _layer_choice(candidates: Any, label: str | None, weights: Sequence[float] | None = None
                  ) -> tuple[Categorical, dict[Any, nn.Module]]:
    label = label if label is not None else auto_label("layerchoice")
    named = _named_candidates(candidates, label)
    return Categorical(list(named), weights=weights, label=label), named


class LayerChoice(MutableModule):
    """One module out of ``candidates`` (a list: chosen by index; a dict: by key).

    Under a model context the constructor returns the chosen candidate itself. Before
    freezing, it runs its default (first) candidate. ``weights`` (one per candidate,
    summing to 1) are the prior random sampling draws from, as in the reference.
    """

    def __init__(self, candidates: Candidates, *, weights: Sequence[float] | None = None,
                 label: str | None = None) -> None:
        super().__init__()
        self.choice, named = _layer_choice(candidates, label, weights)
        for key, module in named.items():
            self.add_module(str(key), module)

    @classmethod
    def _build_frozen(cls, candidates: Candidates, *, weights: Sequence[float] | None = None,
                      label: str | None = None) -> nn.Module:
        choice, named = _layer_choice(candidates, label, weights)
        return named[ensure_frozen(choice)]

    @property
    def label(self) -> str:
        return self.choice.label

    @property
    def names(self) -> list[Any]:
        """The choice values: ``0..n-1`` for a list of candidates, the keys for a dict."""
        return list(self.choice.values)

    def __getitem__(self, name: int | str) -> nn.Module:
        if name not in self.choice.values:
            raise KeyError(f"LayerChoice {self.label!r} has no candidate {name!r}; "
                           f"its candidates are {self.names!r}")
        return self.get_submodule(str(name))

    def __setitem__(self, name: int | str, module: nn.Module) -> None:
        """Replace the candidate ``name`` by ``module``; the choice (its label and
        values) stays as it is, so samples drawn before still fit."""
        self[name]  # KeyError naming the candidates when there is no such one
        if not isinstance(module, nn.Module):
            raise TypeError(f"candidate {name!r} of LayerChoice {self.label!r} must be an "
                            f"nn.Module, got {type(module).__name__}")
        self.add_module(str(name), module)

    def __len__(self) -> int:
        return len(self.choice.values)

    def __iter__(self) -> Iterator[nn.Module]:
        """The candidate modules, in order (as the reference iterates a LayerChoice)."""
        return (self.get_submodule(str(name)) for name in self.choice.values)

    def _own_mutables(self) -> Iterable[LabeledMutable]:
        return (self.choice,)

    def uses(self) -> Uses:
        """Its choice, and what the chosen candidate uses (the choices inside the other
        candidates are not used: the reference validates only the chosen branch too)."""
        return Uses(gate=self.choice,
                    branches=[module_uses(self[name]) for name in self.choice.values])

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        self.validate(sample)
        return freeze_module(self[self.choice.freeze(sample)], sample)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self[self.choice.default_value()](*args, **kwargs)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


REDUCTIONS = ("sum", "mean", "concat", "none")


def _input_choice(
    n_candidates: int, n_chosen: int | None, reduction: str, label: str | None,
    weights: Sequence[float] | None = None,
) -> Categorical | CategoricalMultiple:
    label = label if label is not None else auto_label("inputchoice")
    if not isinstance(n_candidates, int) or isinstance(n_candidates, bool) or n_candidates < 1:
        raise ValueError(f"InputChoice {label!r}: n_candidates must be an int >= 1, "
                         f"got {n_candidates!r}")
    if n_chosen is not None and (not isinstance(n_chosen, int) or isinstance(n_chosen, bool)
                                 or not 1 <= n_chosen <= n_candidates):
        raise ValueError(f"InputChoice {label!r}: n_chosen must be None or an int from 1 to "
                         f"n_candidates ({n_candidates}), got {n_chosen!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"InputChoice {label!r}: reduction must be one of {REDUCTIONS}, "
                         f"got {reduction!r}")
    if n_chosen == 1:
        return Categorical(list(range(n_candidates)), weights=weights, label=label)
    return CategoricalMultiple(range(n_candidates), n_chosen=n_chosen, weights=weights,
                               label=label)


class InputChoice(MutableModule):
    """Picks ``n_chosen`` of ``n_candidates`` inputs (any non-empty number when None) and
    reduces them with ``reduction``: sum, mean, concat (along dim 1) or none (a list).

    Its value in a sample is an input index when ``n_chosen`` is 1, else a list of
    indices. Under a model context the constructor returns a :class:`ChosenInputs`.
    ``weights`` are the prior of its choice (see :class:`CategoricalMultiple`).
    """

    def __init__(self, n_candidates: int, n_chosen: int | None = 1, reduction: str = "sum",
                 *, weights: Sequence[float] | None = None, label: str | None = None) -> None:
        super().__init__()
        self.choice = _input_choice(n_candidates, n_chosen, reduction, label, weights)
        self.n_candidates, self.n_chosen, self.reduction = n_candidates, n_chosen, reduction

    @classmethod
    def _build_frozen(cls, n_candidates: int, n_chosen: int | None = 1, reduction: str = "sum",
                      *, weights: Sequence[float] | None = None, label: str | None = None
                      ) -> nn.Module:
        choice = _input_choice(n_candidates, n_chosen, reduction, label, weights)
        return ChosenInputs(ensure_frozen(choice), reduction, n_candidates=n_candidates)

    @property
    def label(self) -> str:
        return self.choice.label

    def _own_mutables(self) -> Iterable[LabeledMutable]:
        return (self.choice,)

    def freeze(self, sample: Mapping[str, Any]) -> ChosenInputs:
        return ChosenInputs(self.choice.freeze(sample), self.reduction,
                            n_candidates=self.n_candidates)

    def forward(self, candidate_inputs: Sequence[Any]) -> Any:
        chosen = ChosenInputs(self.choice.default_value(), self.reduction,
                              n_candidates=self.n_candidates)
        return chosen(candidate_inputs)

    def extra_repr(self) -> str:
        return (f"n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, "
                f"reduction={self.reduction!r}, label={self.label!r}")


class ChosenInputs(nn.Module):
    """A frozen InputChoice: picks the ``chosen`` inputs (an index or a list of indices)
    and reduces them. With one input picked, every reduction but none returns it as is."""

    def __init__(self, chosen: int | Sequence[int], reduction: str = "sum",
                 *, n_candidates: int | None = None) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.chosen = [chosen] if isinstance(chosen, int) else list(chosen)
        self.reduction, self.n_candidates = reduction, n_candidates

    def forward(self, candidate_inputs: Sequence[Any]) -> Any:
        inputs = list(candidate_inputs)
        if self.n_candidates is not None and len(inputs) != self.n_candidates:
            raise ValueError(f"the input choice expects {self.n_candidates} inputs (one per "
                             f"candidate), got {len(inputs)}")
        if max(self.chosen) >= len(inputs):
            raise ValueError(f"the input choice picks input {max(self.chosen)}, but got only "
                             f"{len(inputs)} inputs")
        return _reduce([inputs[i] for i in self.chosen], self.reduction)

    def extra_repr(self) -> str:
        return f"chosen={self.chosen}, reduction={self.reduction!r}"


def _reduce(tensors: list[Any], reduction: str) -> Any:
    if reduction == "none":
        return tensors
    if len(tensors) == 1:
        return tensors[0]
    if reduction == "concat":
        return torch.cat(tensors, dim=1)
    total = functools.reduce(operator.add, tensors)
    return total / len(tensors) if reduction == "mean" else total
