"""Test support shared by tests/, e2e/ and scripts/: the KMock cluster, the Prometheus server
fixture, and launchers for the emulator, a real CPU vLLM and the operator image.

Nothing here is imported by the operator or the CLI; nothing imports `tests`.
"""
