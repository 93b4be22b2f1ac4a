"""Which leaves a sample uses (:class:`Uses`): the structure that choices gating other
choices (a LayerChoice, a Repeat's depth) describe, and :func:`check_used`, which checks
a sample against only those leaves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.mutable._sample import SampleMissingError, SampleValidationError

if TYPE_CHECKING:
    from engine.mutable._base import Mutable
    from engine.mutable._leaves import LabeledMutable


class Uses:
    """Which leaves a sample uses: the ``always`` leaves, those of every part in
    ``parts``, and, when there is a ``gate``, the gate's leaves and the ``branches`` its
    value picks: the branch at the value's position among the values of a
    :class:`Categorical` gate, or, with ``prefix``, the first ``value`` branches (a
    Repeat's depth, which may also be a :class:`MutableExpression`).

    It holds leaves only, never modules, so a simplified space can keep it.
    """

    __slots__ = ("always", "branches", "gate", "parts", "prefix")
    always: tuple[LabeledMutable, ...]
    parts: tuple[Uses, ...]
    gate: Mutable | None
    branches: tuple[Uses, ...]
    prefix: bool

    def __init__(self, always: Sequence[LabeledMutable] = (), parts: Sequence[Uses] = (), *,
                 gate: Mutable | None = None, branches: Sequence[Uses] = (),
                 prefix: bool = False) -> None:
        # Flattened, for a cheap walk: parts without a gate merge into this one, so only
        # gated parts remain, and each label is listed once.
        merged: dict[str, LabeledMutable] = {}
        gated: list[Uses] = []
        for leaf in always:
            merged.setdefault(leaf.label, leaf)
        for part in parts:
            if part.gate is None:
                for leaf in part.always:
                    merged.setdefault(leaf.label, leaf)
                gated.extend(part.parts)
            else:
                gated.append(part)
        self.always = tuple(merged.values())
        self.parts = tuple(gated)
        self.gate = gate
        self.branches = tuple(branches)
        self.prefix = prefix

    @property
    def empty(self) -> bool:
        """Whether no sample uses anything here."""
        return not self.always and not self.parts and self.gate is None

    def walk(self, sample: Mapping[str, Any], found: dict[str, LabeledMutable]
             ) -> SampleValidationError | None:
        """Add the used leaves to ``found``; the error of a gate that ``sample`` does not
        fit (then ``found`` is partial)."""
        for leaf in self.always:
            found.setdefault(leaf.label, leaf)
        for part in self.parts:
            error = part.walk(sample, found)
            if error is not None:
                return error
        gate = self.gate
        if gate is None:
            return None
        for leaf in gate.leaf_mutables():
            found.setdefault(leaf.label, leaf)
            error = _check_leaf(leaf, sample)
            if error is not None:
                return error
        # The gate reads its own value and picks its own branch: this module sits below
        # the leaf classes (Mutable uses it), so it cannot test for them.
        value = gate._gate_value(sample)
        if self.prefix:
            picked = self.branches[: int(value)]
        else:
            index = gate._branch_index(value)
            picked = self.branches[index: index + 1]
        for branch in picked:
            error = branch.walk(sample, found)
            if error is not None:
                return error
        return None


def _check_leaf(leaf: LabeledMutable, sample: Mapping[str, Any]
                ) -> SampleValidationError | None:
    """:meth:`LabeledMutable.check_contains` without checking the sample's type again."""
    if leaf.label not in sample:
        return SampleMissingError(f"label {leaf.label!r} is missing from the sample",
                                  [leaf.label])
    reason = leaf.check_value(sample[leaf.label])
    return None if reason is None else SampleValidationError(reason, [leaf.label])


def check_used(uses: Uses, leaves: Mapping[str, LabeledMutable], sample: Mapping[str, Any]
               ) -> SampleValidationError | None:
    """Why ``sample`` does not fit the used ``leaves`` (checked in their order), or None."""
    found: dict[str, LabeledMutable] = {}
    error = uses.walk(sample, found)
    if error is not None:
        return error
    for label, leaf in leaves.items():
        if label in found:
            error = leaf.check_contains(sample)
            if error is not None:
                return error
    return None
