"""The shutdown's phases: one enum, one total table, going one way to DONE."""

from __future__ import annotations

import pytest

from svtree.core.shutdown import PHASE_TABLE, Phase, PhaseError, PhaseEv, next_phase

ORDER = [Phase.RUN, Phase.MAIN, Phase.SERVICES, Phase.SWEEP, Phase.SWEEP_KILLED, Phase.DONE]


def test_the_table_is_total():
    assert set(PHASE_TABLE) == set(Phase) == set(ORDER)
    for phase in Phase:
        assert set(PHASE_TABLE[phase]) == set(PhaseEv), phase


def test_impossible_pairs_raise():
    for phase in Phase:
        for ev in PhaseEv:
            if PHASE_TABLE[phase][ev] is None:
                with pytest.raises(PhaseError):
                    next_phase(phase, ev)
            else:
                assert next_phase(phase, ev) is PHASE_TABLE[phase][ev]


def test_phases_only_go_forward_and_a_second_begin_changes_nothing():
    for phase in Phase:
        for ev, new in PHASE_TABLE[phase].items():
            if new is not None:
                assert ORDER.index(new) >= ORDER.index(phase), (phase, ev)
        if phase is not Phase.RUN:
            assert next_phase(phase, PhaseEv.BEGIN) is phase


def test_the_whole_story_and_its_short_cut():
    steps = [PhaseEv.BEGIN, PhaseEv.MAIN_GONE, PhaseEv.SERVICES_GONE, PhaseEv.GRACE_OVER,
             PhaseEv.NOTHING_LEFT]
    phase, seen = Phase.RUN, [Phase.RUN]
    for ev in steps:
        phase = next_phase(phase, ev)
        seen.append(phase)
    assert seen == ORDER
    # nothing left before kill_grace: no SIGKILL
    assert next_phase(Phase.SWEEP, PhaseEv.NOTHING_LEFT) is Phase.DONE


def test_done_is_final():
    assert {new for new in PHASE_TABLE[Phase.DONE].values()} <= {None, Phase.DONE}
