"""Events: one tagged union; every type round-trips through JSON and msgpack."""

from __future__ import annotations

import enum
import inspect
import math
import types
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import events as ev

_INTS = st.integers(-(2**63), 2**63 - 1)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | _INTS | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a field's type; a type not listed here fails the test, so add it."""
    simple: dict[Any, st.SearchStrategy[Any]] = {
        int: _INTS, bool: st.booleans(), str: st.text(),
        float: st.floats(allow_nan=False, allow_infinity=False),
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else _strategy(a) for a in args))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(_strategy(args[0]), max_size=4).map(tuple)
    if origin is dict and args == (str, float):  # several metrics
        return st.dictionaries(st.text(min_size=1, max_size=8), simple[float], min_size=1,
                               max_size=4)
    if origin is dict and args == (str, Any):
        return st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=4)
    raise AssertionError(f"no strategy for field type {tp!r}: add one to _strategy")


def _events(cls: type[ev.EventBase]) -> st.SearchStrategy[ev.EventBase]:
    fields = {f.name: _strategy(f.type) for f in msgspec.structs.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_the_union_holds_every_event_type_once() -> None:
    assert set(typing.get_args(ev.Event)) == set(ev.EVENT_TYPES)
    assert len(ev.EVENT_TYPES) == len(set(ev.EVENT_TYPES))
    concrete = {c for c in _subclasses(ev.EventBase) if not c.__subclasses__()}
    assert concrete == set(ev.EVENT_TYPES)
    tags = [c.__struct_config__.tag for c in ev.EVENT_TYPES]
    assert len(set(tags)) == len(tags)
    for cls in ev.EVENT_TYPES:
        config = cls.__struct_config__
        assert (config.frozen, config.tag_field) == (True, "kind"), cls
        kinds = {p.kind for p in inspect.signature(cls).parameters.values()}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}, cls


@settings(max_examples=150, deadline=None, database=None)
@given(event=st.sampled_from(ev.EVENT_TYPES).flatmap(_events))
def test_every_event_round_trips_through_json_and_msgpack(event: ev.EventBase) -> None:
    for encode, decode in ((ev.encode_json, ev.decode_json),
                           (ev.encode_msgpack, ev.decode_msgpack)):
        back = decode(encode(event))
        assert type(back) is type(event)
        assert back == event
    assert msgspec.json.decode(ev.encode_json(event), type=ev.Event) == event


def test_the_tag_is_the_kind_field() -> None:
    event = ev.ModelInterrupted(seq=3, time=1.5, model_id=7, reason=ev.InterruptReason.timeout)
    assert ev.encode_json(event) == (
        b'{"kind":"interrupted","seq":3,"time":1.5,"model_id":7,"reason":"timeout"}')
    assert ev.decode_json(ev.encode_json(event).decode()) == event  # str input too


@settings(max_examples=50, deadline=None, database=None)
@given(event=st.sampled_from(ev.EVENT_TYPES).flatmap(_events))
def test_every_event_has_its_tag_as_kind(event: ev.EventBase) -> None:
    assert event.kind == type(event).__struct_config__.tag
    assert msgspec.json.decode(ev.encode_json(event))["kind"] == event.kind
    assert ev.decode_json(ev.encode_json(event)).kind == event.kind


def test_kind_reads_in_a_match_statement() -> None:
    event: ev.Event = ev.ModelTrained(seq=1, time=0.0, model_id=2, final=0.5, duration=1.0)
    match event.kind:
        case "trained":
            found = True
        case _:
            found = False
    assert found


_GOOD = '"seq":1,"time":2.0,"model_id":3'


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ('{"kind":"metric","seq":"1","time":2.0,"model_id":3,"value":0.5,"step":1}',
         r"Expected `int`, got `str` - at `\$.seq`"),
        (f'{{"kind":"metric",{_GOOD},"value":null,"step":1}}',
         r"Expected `float \| object`, got `null` - at `\$.value`"),
        (f'{{"kind":"nope",{_GOOD}}}', r"Invalid value 'nope' - at `\$.kind`"),
        (f'{{{_GOOD},"final":1.0,"duration":1.0}}', r"Object missing required field `kind`"),
        ('{"kind":"trained","seq":1,"time":2.0,"final":1.0,"duration":1.0}',
         r"Object missing required field `model_id`"),
        (f'{{"kind":"training",{_GOOD},"worker":"w","attempt":1,"gpus":[0,"1"]}}',
         r"Expected `int`, got `str` - at `\$.gpus\[1\]`"),
        (f'{{"kind":"interrupted",{_GOOD},"reason":"later"}}',
         r"Invalid enum value 'later' - at `\$.reason`"),
        (f'{{"kind":"queued",{_GOOD},"sample":[1]}}',
         r"Expected `object`, got `array` - at `\$.sample`"),
        (f'{{"kind":"invalid",{_GOOD},"message":"m","paths":["model",3]}}',
         r"Expected `str`, got `int` - at `\$.paths\[1\]`"),
        ('[1, 2]', r"Expected `object`, got `array`"),
    ],
)
def test_bad_json_names_the_field(data: str, match: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=match):
        ev.decode_json(data)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_metrics_round_trip_through_json(value: float) -> None:
    """A diverged training reports NaN or infinity, which JSON lacks: the codec spells
    them and reads them back as floats (msgspec alone writes null and cannot read it)."""
    events = [ev.MetricReported(seq=1, time=2.0, model_id=3, value=value, step=1),
              ev.ModelTrained(seq=2, time=3.0, model_id=3, final=value, duration=value)]
    for event in events:
        data = ev.encode_json(event)
        assert b"null" not in data
        back = ev.decode_json(data)
        assert type(back) is type(event)
        assert msgspec.structs.asdict(back).keys() == msgspec.structs.asdict(event).keys()
        for name, got in msgspec.structs.asdict(back).items():
            want = getattr(event, name)
            assert (math.isnan(got) and math.isnan(want)) if want != want else got == want
        assert ev.decode_msgpack(ev.encode_msgpack(event)).kind == event.kind


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (f'{{"kind":"metric",{_GOOD},"value":"nope","step":1}}',
         r"Expected `float \| object`, got `str` - at `\$.value`"),
        ('{"kind":"metric","seq":"1","time":2.0,"model_id":3,"value":"nan","step":1}',
         r"Expected `int`, got `str` - at `\$.seq`"),
        (f'{{"kind":"queued",{_GOOD},"sample":"nan"}}',
         r"Expected `object`, got `str` - at `\$.sample`"),
    ],
)
def test_only_a_metric_field_may_be_spelled_nan(data: str, match: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=match):
        ev.decode_json(data)


def test_bad_msgpack_names_the_field_and_broken_input_is_a_decode_error() -> None:
    data = msgspec.msgpack.encode({"kind": "engine_started", "seq": 1, "time": 0.0,
                                   "pool": "inline", "capacity": "two"})
    with pytest.raises(msgspec.ValidationError,
                       match=r"Expected `int`, got `str` - at `\$.capacity`"):
        ev.decode_msgpack(data)
    with pytest.raises(msgspec.DecodeError):
        ev.decode_json(b'{"kind":')
    with pytest.raises(msgspec.DecodeError):
        ev.decode_msgpack(b"\xc1")
