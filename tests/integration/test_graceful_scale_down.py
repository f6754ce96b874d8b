"""A scale-down under load loses no request: the operator's preStop, run for real.

The preStop command and grace period come from the Deployment the operator renders for
`examples/fleet-code-8b.yaml`; the replica it drains is a vLLM-compatible emulator serving a
closed-loop load (see `inferfleet_testing.scale_down`). The same removal without the hook is
the control: it must lose requests, or the test could not tell a drain from luck.
"""

from __future__ import annotations

from inferfleet_testing.scale_down import rendered_stop, scale_down_under_load


def test_a_drained_replica_loses_no_request_and_one_killed_at_once_does():
    command, grace_s = rendered_stop()

    drained = scale_down_under_load(command, grace_s)
    assert drained.in_flight_at_removal > 0  # the removed replica was busy when it went
    assert drained.failed == 0, drained.errors
    assert drained.hook_s is not None and drained.hook_s < grace_s  # it ended by itself

    killed = scale_down_under_load(None, grace_s)
    assert killed.in_flight_at_removal > 0
    assert killed.failed > 0  # the same removal without the drain cuts requests
