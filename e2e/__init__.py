"""End-to-end support: the vLLM + DCGM emulator and the kind-cluster suite."""
