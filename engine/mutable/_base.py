"""The base :class:`Mutable`: validating, freezing, defaulting, drawing and listing the
samples of anything that holds choices, and the helpers that walk values which may be
mutables (:func:`freeze_value`, :func:`leaves_of`)."""

from __future__ import annotations

import itertools
import random as _random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from engine.mutable._sample import (
    DuplicateLabelError,
    Sample,
    SampleValidationError,
    check_sample_type,
)
from engine.mutable._uses import Uses, check_used

if TYPE_CHECKING:
    from engine.mutable._leaves import LabeledMutable


class Mutable:
    """Something that holds choices. Subclasses define leaves or containers."""

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        """Every leaf mutable inside, in definition order (duplicates included)."""
        raise NotImplementedError

    def check_contains(self, sample: Mapping[str, Any]) -> SampleValidationError | None:
        """The reason ``sample`` does not fit, or ``None`` when it does.

        Only the labels the sample uses (see :meth:`uses`) are checked: a label that the
        sample's own choices leave unused may be missing or hold anything. Raises
        TypeError when ``sample`` is not a dict, and DuplicateLabelError when the space
        binds one label to two different mutables (no sample can fit it then).
        """
        check_sample_type(sample)
        return check_used(self.uses(), self.simplify(), sample)

    def uses(self) -> Uses:
        """Which leaves a sample uses. By default every leaf, whatever the sample;
        a mutable whose choices gate others (a LayerChoice, a Repeat) says which."""
        return Uses(always=tuple(self.leaf_mutables()))

    def used_labels(self, sample: Mapping[str, Any]) -> list[str]:
        """The labels ``sample`` uses, in the order :meth:`simplify` lists them. Raises
        :class:`SampleValidationError` when a choice that gates others is missing or
        invalid (which labels are used then is unknown)."""
        check_sample_type(sample)
        found: dict[str, LabeledMutable] = {}
        error = self.uses().walk(sample, found)
        if error is not None:
            raise error
        return [label for label in self.simplify() if label in found]

    def canonical(self, sample: Mapping[str, Any]) -> Sample:
        """``sample`` without the labels it does not use: two samples that build the same
        model have equal canonical forms (and equal ``sample_key``). Raises as
        :meth:`used_labels` does. The reference has no such notion: its samples are flat."""
        used = set(self.used_labels(sample))
        return {label: value for label, value in sample.items() if label in used}

    def canonicalizer(self) -> Callable[[Mapping[str, Any]], Sample]:
        """:meth:`canonical` as a function that walks the space's structure as it is now,
        taken once: much cheaper per call (a strategy calls it for every candidate), but
        blind to later changes of the space."""
        uses = self.uses()

        def canonical(sample: Mapping[str, Any]) -> Sample:
            check_sample_type(sample)
            found: dict[str, LabeledMutable] = {}
            error = uses.walk(sample, found)
            if error is not None:
                raise error
            return {label: value for label, value in sample.items() if label in found}

        return canonical

    def completed(self, sample: Mapping[str, Any]) -> Sample:
        """``sample`` with every label it does not use set to that leaf's default, so a
        constructor that builds unused parts too (and reads their choices) can run; the
        result builds the same model as ``sample``. Raises as :meth:`used_labels` does."""
        used = set(self.used_labels(sample))
        full = {label: leaf.default_value() for label, leaf in self.simplify().items()
                if label not in used}
        full.update((label, value) for label, value in sample.items() if label in used)
        return full

    def freeze(self, sample: Mapping[str, Any]) -> Any:
        """The plain value this mutable stands for under ``sample`` (validated first)."""
        raise NotImplementedError

    def simplify(self) -> dict[str, LabeledMutable]:
        """Leaf mutables keyed by label. Raises DuplicateLabelError on a clash.

        Unlike the reference, it takes no ``is_leaf``: every leaf here is a labelled value
        with no mutable inside, so there is nothing to expand or collapse.
        """
        found: dict[str, LabeledMutable] = {}
        for leaf in self.leaf_mutables():
            known = found.get(leaf.label)
            if known is None:
                found[leaf.label] = leaf
            elif known != leaf:
                raise DuplicateLabelError(
                    f"label {leaf.label!r} is bound to two different mutables: "
                    f"{known!r} and {leaf!r}; give one of them another label"
                )
        return found

    def _gate_value(self, sample: Mapping[str, Any]) -> Any:
        """The value this mutable takes as a :class:`Uses` gate, once :meth:`Uses.walk`
        has checked its leaves: frozen here; a leaf or an expression skips the check."""
        return self.freeze(sample)

    def _branch_index(self, value: Any) -> int:
        """Which of a gate's branches ``value`` picks (-1 for none); only a Categorical
        gate picks branches by value."""
        raise TypeError(f"a gate with branches must be a Categorical, got {self!r}")

    def contains(self, sample: Mapping[str, Any]) -> bool:
        return self.check_contains(sample) is None

    def validate(self, sample: Mapping[str, Any]) -> None:
        """Raise :class:`SampleValidationError` when ``sample`` does not fit."""
        error = self.check_contains(sample)
        if error is not None:
            raise error

    def default(self, memo: Sample | None = None) -> Any:
        """Freeze with every leaf at its default; ``memo`` collects the sample.

        A label already in ``memo`` with another value than its default raises
        :class:`SampleValidationError` (a ValueError), as in the reference.
        """
        memo = {} if memo is None else memo
        for leaf in self.simplify().values():
            leaf.default(memo)
        return self.freeze(memo)

    def random(
        self, memo: Sample | None = None, random_state: _random.Random | None = None
    ) -> Any:
        """Freeze with every leaf drawn from ``random_state``; ``memo`` collects the sample."""
        if isinstance(memo, _random.Random):
            raise TypeError("random() takes the generator as random_state=...: the first "
                            "argument is the memo dict")
        memo = {} if memo is None else memo
        rng = random_state if random_state is not None else _random.Random()
        for label, leaf in self.simplify().items():
            if label not in memo:
                memo[label] = leaf.random_value(rng)
        return self.freeze(memo)

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        """Every combination of the leaves' grid values, frozen, in a fixed order.

        ``memo`` pins labels; after each yield it holds that item's sample.
        """
        memo = {} if memo is None else memo
        pinned = dict(memo)
        leaves = [leaf for label, leaf in self.simplify().items() if label not in pinned]
        axes = [leaf.grid_values(granularity) for leaf in leaves]
        for combo in itertools.product(*axes):
            memo.clear()
            memo.update(pinned)
            memo.update({leaf.label: value for leaf, value in zip(leaves, combo, strict=True)})
            yield self.freeze(memo)


def freeze_value(value: Any, sample: Mapping[str, Any]) -> Any:
    """``value`` frozen when it is a mutable, unchanged otherwise."""
    return value.freeze(sample) if isinstance(value, Mutable) else value


def leaves_of(values: Iterable[Any]) -> Iterator[LabeledMutable]:
    for value in values:
        if isinstance(value, Mutable):
            yield from value.leaf_mutables()
