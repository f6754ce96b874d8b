"""When passes run: resyncs spread over the interval, retries backed off, events coalesced.

With every fleet's daemon on the same beat, 1,000 fleets resync in one burst every interval
(and all at once after an operator restart). Each fleet resyncs instead on its own phase of
the interval, derived from its uid: deterministic (a test, or a restart, gets the same
schedule) and uniform over many fleets.
"""

from __future__ import annotations

import hashlib
import math

RETRY_BASE_S = 1.0
# Owned-object events for one fleet run one pass once they have been quiet this long (a rollout
# sends several), and at the latest this long after the first, so a stream of events still
# gets its passes.
COALESCE_S = 0.5
COALESCE_MAX_S = 5.0


def resync_phase(uid: str) -> float:
    """This fleet's phase within its interval, in [0, 1), from its uid alone."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def next_resync_delay_s(uid: str, interval_s: float, now_s: float) -> float:
    """Seconds until this fleet's next resync: the next instant at its phase of the interval
    (wall time `k * interval + phase * interval`), in (0, interval]."""
    offset_s = resync_phase(uid) * interval_s
    ticks = math.floor((now_s - offset_s) / interval_s) + 1
    return max(ticks * interval_s + offset_s - now_s, 0.0) or interval_s


def retry_delay_s(failures: int, interval_s: float) -> float:
    """Exponential backoff from RETRY_BASE_S, never longer than the resync interval."""
    return min(interval_s, RETRY_BASE_S * 2 ** max(0, failures - 1))


def coalesce_wait_s(first_s: float, last_s: float, now_s: float) -> float:
    """How much longer a fleet's waiting pass waits: until its events were quiet for
    COALESCE_S, but never past COALESCE_MAX_S after the first; 0 means run now."""
    due_s = min(last_s + COALESCE_S, first_s + COALESCE_MAX_S)
    return max(0.0, due_s - now_s)
