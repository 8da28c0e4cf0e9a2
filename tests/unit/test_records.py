"""A record's life in the core: one enum, one total table, checked like states.py's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svtree.core.records import LIFE_TABLE, Do, Life, LifeError, LifeEv, Service, next_life
from svtree.plan import ServiceSpec
from svtree.states import State, Want

WITH_MONITOR = {Life.HELD, Life.UP_SENT, Life.RETIRING, Life.EXIT_SENT}
# What each effect leads into: `up` is sent only on the way to UP_SENT, and so on.
EFFECT_INTO = {Do.SEND_UP: {Life.UP_SENT}, Do.SEND_EXIT: {Life.EXIT_SENT},
               Do.FORK: {Life.NO_MONITOR}, Do.ENDED: {Life.GONE}}


def test_the_table_is_total():
    assert set(LIFE_TABLE) == set(Life)
    for life in Life:
        assert set(LIFE_TABLE[life]) == set(LifeEv), life


def test_impossible_pairs_raise_and_the_others_give_a_life_and_an_effect():
    for life in Life:
        for ev in LifeEv:
            row = LIFE_TABLE[life][ev]
            if row is None:
                with pytest.raises(LifeError):
                    next_life(life, ev)
            else:
                new, do = next_life(life, ev)
                assert isinstance(new, Life) and isinstance(do, Do)
                if do in EFFECT_INTO:
                    assert new in EFFECT_INTO[do], (life, ev, new, do)


def test_a_monitor_comes_only_by_a_fork_and_goes_only_by_its_exit():
    for life in Life:
        for ev in LifeEv:
            row = LIFE_TABLE[life][ev]
            if row is None:
                continue
            new, _ = row
            if ev is LifeEv.FORKED:
                assert life not in WITH_MONITOR and new in WITH_MONITOR
            elif ev is LifeEv.MONITOR_EXITED:
                assert life in WITH_MONITOR and new not in WITH_MONITOR
            else:
                assert (life in WITH_MONITOR) == (new in WITH_MONITOR) or new is Life.GONE, (life, ev)
        # its monitor's exit can be reaped whenever it has one, and only then
        assert (LIFE_TABLE[life][LifeEv.MONITOR_EXITED] is not None) == (life in WITH_MONITOR)


def test_ctl_stop_is_taken_in_every_life():
    for life in Life:
        assert LIFE_TABLE[life][LifeEv.STOP] is not None, life


def test_gone_is_final_and_every_entry_into_it_ends_the_record():
    for ev in LifeEv:
        assert LIFE_TABLE[Life.GONE][ev] in (None, (Life.GONE, Do.NOTHING))
    for life in Life:
        for ev in LifeEv:
            row = LIFE_TABLE[life][ev]
            if row is not None and row[0] is Life.GONE and life is not Life.GONE:
                assert row[1] is Do.ENDED, (life, ev)


def test_every_life_is_reachable_from_a_new_record():
    seen, todo = {Life.NO_MONITOR}, [Life.NO_MONITOR]
    while todo:
        life = todo.pop()
        for row in LIFE_TABLE[life].values():
            if row is not None and row[0] not in seen:
                seen.add(row[0])
                todo.append(row[0])
    assert seen == set(Life)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(LifeEv), max_size=40))
def test_any_sequence_of_possible_events_keeps_the_monitor_bookkeeping(events):
    life, has_monitor, sent_up = Life.NO_MONITOR, False, False
    for ev in events:
        if LIFE_TABLE[life][ev] is None:
            continue
        life, do = next_life(life, ev)
        has_monitor = (has_monitor or ev is LifeEv.FORKED) and ev is not LifeEv.MONITOR_EXITED
        if do is Do.SEND_UP:
            sent_up = True
        if ev in (LifeEv.STOP, LifeEv.MONITOR_EXITED):
            sent_up = False
        assert (life in WITH_MONITOR) == has_monitor, (life, events)
        assert (life is Life.UP_SENT) <= sent_up


def test_a_record_wanted_up_shows_starting_while_it_waits():
    svc = Service(ServiceSpec(name="s", path="/x", run="/x/run"))
    assert svc.want is Want.UP and svc.state is State.STARTING  # no monitor yet
    svc.life = Life.UP_SENT
    assert svc.state is State.DOWN  # told up: the monitor's state from now on
    svc.life = Life.HELD
    svc.want = Want.DOWN
    assert svc.state is State.DOWN
