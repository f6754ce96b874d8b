"""The real vLLM server, shared by every test of this folder (see inferfleet_testing.real_vllm)."""

from inferfleet_testing.real_vllm import real_vllm  # noqa: F401  (a pytest fixture)
