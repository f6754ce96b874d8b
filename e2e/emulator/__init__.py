"""A stand-in for one vLLM replica and its GPUs' dcgm-exporter, timed by the sizing model.

Everything inferfleet talks to in production (the OpenAI-compatible API with SSE streaming,
vLLM's /metrics, dcgm-exporter's metrics, /health during cold start) behaves like the real
thing, so the operator, the autoscaler and `inferfleet bench` are tested against a real
server process instead of mocks. See docs/emulator.md.
"""
