"""Core <-> monitor messages: every value round-trips, and anything else is a
MessageError (the core logs it; it never crashes on a datagram)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svtree import messages, wire
from svtree.messages import Cmd, Command, MessageError, Report, decode_command, decode_report, encode
from svtree.states import Ev, State, Want

opt_int = st.none() | st.integers(min_value=-2**31, max_value=2**31)
opt_float = st.none() | st.floats(allow_nan=False, allow_infinity=False)
reports = st.builds(
    Report,
    seq=st.integers(min_value=0, max_value=2**53), state=st.sampled_from(State),
    prev=st.sampled_from(State), want=st.sampled_from(Want), pid=opt_int, pgid=opt_int,
    started_at=opt_float, restarts=st.integers(min_value=0, max_value=2**31),
    exit_code=opt_int, exit_signal=st.integers(min_value=0, max_value=64),
    ready=st.booleans(), gave_up=st.booleans(), finish_code=opt_int,
    last_uptime=st.floats(min_value=0, max_value=1e9), delay=opt_float,
    event=st.none() | st.sampled_from(Ev), error=st.none() | st.text(max_size=200),
)


@settings(max_examples=300)
@given(reports)
def test_every_report_round_trips(report):
    assert decode_report(encode(report)) == report


@pytest.mark.parametrize("cmd", list(Command(k) for k in Cmd) + [Command(Cmd.SIGNAL, 10)])
def test_every_command_round_trips(cmd):
    assert decode_command(encode(cmd)) == cmd


def test_every_report_field_has_one_check():
    names = {f for f in messages._REPORT_FIELDS}
    assert names == set(messages._REPORT_CHECKS) | set(messages._REPORT_ENUMS)
    assert not set(messages._REPORT_CHECKS) & set(messages._REPORT_ENUMS)


GOOD = encode(Report(seq=3, state=State.READY, prev=State.STARTING, want=Want.UP, pid=7,
                     pgid=7, started_at=1.5, event=Ev.SPAWNED))


@pytest.mark.parametrize("change", [
    {"state": "running"}, {"prev": None}, {"want": "sideways"}, {"event": "exploded"},
    {"seq": "3"}, {"seq": True}, {"seq": 1.5}, {"pid": "7"}, {"pid": False},
    {"ready": 1}, {"gave_up": None}, {"restarts": None}, {"last_uptime": None},
    {"delay": "soon"}, {"error": 5}, {"started_at": [1]}, {"extra": 1},
])
def test_a_wrong_field_is_a_message_error(change):
    obj = wire.decode(GOOD)
    obj.update(change)
    with pytest.raises(MessageError):
        decode_report(wire.encode(obj))


@pytest.mark.parametrize("data", [
    b"", b"null", b"[]", b"{", b'{"cmd": "up"}', b'{"cmd": "up", "sig": 0, "x": 1}',
    b'{"cmd": "launch", "sig": 0}', b'{"cmd": "signal", "sig": "TERM"}', b"\xff\xfe",
    b'{"cmd": "up", "sig": NaN}',
])
def test_a_bad_command_is_a_message_error(data):
    with pytest.raises(MessageError):
        decode_command(data)


def test_a_missing_report_field_is_a_message_error():
    obj = wire.decode(GOOD)
    del obj["pgid"]
    with pytest.raises(MessageError):
        decode_report(wire.encode(obj))


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.dictionaries(st.sampled_from(messages._REPORT_FIELDS),
                                                 st.none() | st.integers() | st.text(max_size=5)
                                                 | st.booleans() | st.floats(allow_nan=False, allow_infinity=False),
                                                 ).map(wire.encode))
def test_any_datagram_is_a_report_or_a_message_error(data):
    try:
        report = decode_report(data)
    except MessageError:
        return
    assert isinstance(report.state, State) and isinstance(report.seq, int)


def test_a_report_larger_than_a_datagram_is_refused():
    with pytest.raises(MessageError):
        encode(Report(seq=1, state=State.DOWN, prev=State.DOWN, want=Want.DOWN,
                      error="x" * wire.MAX_DATAGRAM))
