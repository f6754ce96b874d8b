"""status.conditions: lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controllers.api.conditions import find, is_true, set_condition, timestamp

STATUSES = st.sampled_from(["True", "False", "Unknown"])


def test_new_condition_is_appended_with_now():
    conds = set_condition([], "Sized", "True", "Planned", "ok", generation=3, now_s=0)
    assert conds[0].last_transition_time == "1970-01-01T00:00:00Z"
    assert conds[0].observed_generation == 3
    assert is_true(conds, "Sized") and not is_true(conds, "Ready")


@given(STATUSES, STATUSES, st.floats(min_value=1, max_value=1e6))
def test_transition_time_moves_only_on_status_change(first, second, later_s):
    conds = set_condition([], "Ready", first, "A", "m", generation=1, now_s=0)
    conds = set_condition(conds, "Sized", "True", "B", "m", generation=1, now_s=0)
    conds = set_condition(conds, "Ready", second, "C", "n", generation=2, now_s=later_s)
    ready = find(conds, "Ready")
    assert ready is not None and ready.reason == "C" and ready.observed_generation == 2
    expected = timestamp(0) if first == second else timestamp(later_s)
    assert ready.last_transition_time == expected
    assert [c.type for c in conds] == ["Ready", "Sized"]
