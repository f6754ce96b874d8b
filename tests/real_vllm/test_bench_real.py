"""`inferfleet bench` against a real vLLM: what it counts as served is what the server served.

The server's own counters are the reference: every request bench calls completed must show in
vllm:request_success_total with its tokens, and every request the server refused (an HTTP 400,
or an error inside a 200 stream) must be a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from inferfleet_testing.real_vllm import SMALL_VOCAB_MODEL_DIR, RunningVllm, missing, run_vllm
from tests.real_vllm.scrape import REPO


def bench(server: RunningVllm, *flags: str) -> dict[str, object]:
    command = [
        sys.executable, "-m", "inferfleet", "bench", "--url", server.url,
        "--model", server.model, "--output", "json", *flags,
    ]  # fmt: skip
    done = subprocess.run(
        command, check=False, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (point,) = json.loads(done.stdout)["points"]
    return point


def counter(server: RunningVllm, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + "{"))


@pytest.mark.parametrize("endpoint", ["/v1/completions", "/v1/chat/completions"])
def test_streamed_requests_are_counted_as_the_server_counts_them(real_vllm, endpoint):
    served_before = counter(real_vllm, "vllm:request_success_total")
    tokens_before = counter(real_vllm, "vllm:generation_tokens_total")
    point = bench(
        real_vllm, "--endpoint", endpoint, "--input-len", "16", "--output-len", "8",
        "--concurrency", "2", "--num-prompts", "6",
    )  # fmt: skip
    assert point["completed"] == 6 and point["failed"] == 0 and point["timed_out"] == 0
    assert counter(real_vllm, "vllm:request_success_total") - served_before == 6
    assert counter(real_vllm, "vllm:generation_tokens_total") - tokens_before == 6 * 8
    assert point["ttft_p50_ms"] > 0 and point["itl_p50_ms"] > 0
    # Output tokens come from the stream's usage chunk: exactly what the server generated.
    assert point["output_tok_per_s"] * point["duration_s"] == pytest.approx(6 * 8)


def test_an_http_400_is_a_failure(real_vllm):
    """600 output tokens exceed max_model_len 512: vLLM refuses each request with a 400."""
    point = bench(
        real_vllm, "--input-len", "8", "--output-len", "600", "--concurrency", "2",
        "--num-prompts", "4",
    )  # fmt: skip
    assert point["failed"] == 4 and point["completed"] == 0 and point["request_per_s"] == 0


@pytest.fixture(scope="module")
def small_vocab_vllm(tmp_path_factory) -> Iterator[RunningVllm]:
    """A second real server whose vocabulary (1,000 words) holds none of bench's token ids."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with run_vllm(tmp_path_factory.mktemp("vllm-small"), SMALL_VOCAB_MODEL_DIR) as server:
        yield server


def test_an_error_inside_the_200_stream_is_a_failure(small_vocab_vllm):
    # What the server really sends, so the count below is about that answer.
    body = {"model": small_vocab_vllm.model, "prompt": [5000], "max_tokens": 2, "stream": True}
    answer = httpx.post(small_vocab_vllm.url + "/v1/completions", json=body, timeout=60)
    assert answer.status_code == 200 and '"error"' in answer.text
    point = bench(
        small_vocab_vllm, "--input-len", "8", "--output-len", "4", "--concurrency", "2",
        "--num-prompts", "6",
    )  # fmt: skip
    assert point["failed"] == 6 and point["completed"] == 0 and point["output_tok_per_s"] == 0
