"""Resyncs spread over the interval, each fleet on its own phase, the same on every run."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st

from controllers.reconcile.timing import (
    COALESCE_MAX_S,
    COALESCE_S,
    coalesce_wait_s,
    next_resync_delay_s,
    resync_phase,
)

UIDS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"fleet-{i}")) for i in range(2000)]


@given(
    uid=st.uuids().map(str),
    interval_s=st.floats(0.1, 3600.0),
    now_s=st.floats(0.0, 2e9),
)
def test_the_next_resync_is_within_one_interval_at_the_fleets_phase(uid, interval_s, now_s):
    delay_s = next_resync_delay_s(uid, interval_s, now_s)
    assert 0.0 < delay_s <= interval_s * (1 + 1e-9)
    assert delay_s == next_resync_delay_s(uid, interval_s, now_s)  # deterministic
    # The resync lands on the fleet's phase of the interval, wherever the pass ended.
    at_phase_s = (now_s + delay_s - resync_phase(uid) * interval_s) % interval_s
    assert min(at_phase_s, interval_s - at_phase_s) < 1e-5  # float rounding at wall-clock size


def test_a_fleet_keeps_its_beat_pass_after_pass():
    uid, interval_s = UIDS[0], 30.0
    now_s, beats = 1_700_000_000.0, []
    for _ in range(5):
        now_s += next_resync_delay_s(uid, interval_s, now_s) + 0.4  # the pass takes 0.4 s
        beats.append(now_s)
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert all(abs(g - interval_s) < 1e-6 for g in gaps)


def test_many_fleets_spread_evenly_over_the_interval():
    phases = [resync_phase(uid) for uid in UIDS]
    assert all(0.0 <= p < 1.0 for p in phases)
    per_tenth = [sum(1 for p in phases if k / 10 <= p < (k + 1) / 10) for k in range(10)]
    assert all(150 <= n <= 250 for n in per_tenth), per_tenth  # 200 expected in each
    assert phases == [resync_phase(uid) for uid in UIDS]  # the same on every run


@given(
    st.floats(min_value=0, max_value=1e6),
    st.lists(st.floats(min_value=0, max_value=20), min_size=1, max_size=30),
)
def test_a_burst_of_events_waits_for_quiet_but_never_past_the_cap(first_s, gaps_s):
    """Each event moves the pass back to COALESCE_S after it, but never past the cap."""
    last_s = first_s
    for gap_s in gaps_s:
        if coalesce_wait_s(first_s, last_s, last_s + gap_s) == 0:
            break  # the pass ran before this event: it would start a pass of its own
        last_s += gap_s
    now_s = last_s
    wait_s = coalesce_wait_s(first_s, last_s, now_s)
    assert 0 <= wait_s <= COALESCE_S + 1e-9  # float rounding of (t + window) - t
    assert now_s + wait_s <= first_s + COALESCE_MAX_S + 1e-9
    assert coalesce_wait_s(first_s, last_s, now_s + wait_s) == 0


def test_events_closer_than_the_window_share_one_pass_however_long_the_burst():
    first_s, gap_s = 100.0, 0.8 * COALESCE_S
    times = [first_s + k * gap_s for k in range(5)]  # 2 windows long, no gap of a window
    assert all(coalesce_wait_s(first_s, t, t) > 0 for t in times)
    assert coalesce_wait_s(first_s, times[-1], times[-1] + COALESCE_S) == 0
