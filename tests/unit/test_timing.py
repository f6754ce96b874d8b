"""Resyncs spread over the interval, each fleet on its own phase, the same on every run."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st

from controllers.reconcile.timing import next_resync_delay_s, resync_phase

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
