"""The request/sequence transition tables and the roll-up of sequence statuses (pure)."""

from __future__ import annotations

import pytest

from routine_manager import lifecycle as lc


def test_final_states_have_no_way_out():
    for status in lc.REQUEST_FINAL:
        assert lc.REQUEST_TRANSITIONS[status] == frozenset()
        with pytest.raises(lc.InvalidStateChange):
            lc.check_request_transition(status, lc.SUBMITTED)


def test_every_target_is_a_known_state():
    for table in (lc.REQUEST_TRANSITIONS, lc.SEQUENCE_TRANSITIONS):
        for targets in table.values():
            assert targets <= set(table)


def test_the_issue_path_is_allowed_and_shortcuts_are_not():
    for old, new in [(lc.DRAFT, lc.SUBMITTED), (lc.SUBMITTED, lc.SCHEDULED), (lc.SCHEDULED, lc.EXECUTING),
                     (lc.EXECUTING, lc.COMPLETED), (lc.EXECUTING, lc.PARTIALLY_COMPLETED), (lc.EXECUTING, lc.FAILED),
                     (lc.SCHEDULED, lc.EXPIRED), (lc.EXECUTING, lc.CANCELLED)]:
        lc.check_request_transition(old, new)
    for old, new in [(lc.DRAFT, lc.EXECUTING), (lc.DRAFT, lc.COMPLETED), (lc.EXECUTING, lc.EXPIRED),
                     (lc.CANCELLED, lc.SUBMITTED)]:
        with pytest.raises(lc.InvalidStateChange):
            lc.check_request_transition(old, new)


@pytest.mark.parametrize("statuses,expected", [
    ([], None),
    (["draft", "draft"], "draft"),
    (["pending", "completed"], "submitted"),
    (["planned", "pending"], "scheduled"),
    (["executing", "pending"], "executing"),
    (["completed", "completed"], "completed"),
    (["completed", "expired"], "partially_completed"),
    (["expired", "expired"], "expired"),
    (["cancelled", "cancelled"], "cancelled"),
    (["failed", "expired"], "failed"),
])
def test_roll_up(statuses, expected):
    assert lc.request_status_for_sequences(statuses) == expected
