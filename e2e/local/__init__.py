"""The whole loop on one machine, no cluster and no GPU.

The real operator runs against a KMock API server; a pod runner turns each Deployment replica
into an emulator process and reports it back as Deployment status; a real Prometheus scrapes
the ready replicas; a load driver replays a per-minute trace, time-compressed, across them.
`python -m e2e.local.demo` runs a compressed day through it.
"""
