"""Scale-down under load: requests sent and failed when a busy replica is removed, with the
operator's preStop drain and without it (SIGTERM right after leaving the endpoints).

Each run starts two emulator replicas, loads them with 16 closed-loop streaming clients, and
removes one (see `inferfleet_testing.scale_down`). The hook is the command rendered for
`examples/fleet-code-8b.yaml`.

Usage: .venv/bin/python scripts/bench_scale_down.py [--repeat 3]
Target (issue 16): no failed request with the drain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inferfleet_testing.scale_down import rendered_stop, scale_down_under_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    command, grace_s = rendered_stop()
    print(f"grace period {grace_s} s (the plan's estimate)")
    print("variant   run  sent  failed  in flight at removal  hook s")
    for variant, hook in (("drained", command), ("killed", None)):
        for run in range(args.repeat):
            r = scale_down_under_load(hook, grace_s)
            hook_s = "-" if r.hook_s is None else f"{r.hook_s:.1f}"
            busy = r.in_flight_at_removal
            print(f"{variant:8}  {run + 1:3}  {r.sent:4}  {r.failed:6}  {busy:20.0f}  {hook_s:>6}",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
