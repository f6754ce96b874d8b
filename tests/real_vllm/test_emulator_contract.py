"""The emulator against a real vLLM: the same metric families and the same error answers.

The emulator stands in for vLLM on GPUs everywhere else in the suite, so wherever it differs
from the real server the rest of the suite tests against a fiction. It is started here as the
same tiny Llama (its config.json, the same max_model_len and served name), so both answer the
same requests with the same limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from inferfleet_testing.emulator import RunningEmulator, run_emulator
from inferfleet_testing.real_vllm import MODEL_DIR, RunningVllm
from tests.real_vllm.scrape import Family, scrape

# The emulator models the serving loop, not every counter vLLM keeps: these are the families
# it exports, the ones the operator, alerts, dashboard and calibration read.


@pytest.fixture(scope="module")
def emulator(real_vllm: RunningVllm) -> Iterator[RunningEmulator]:
    args = ["--model-config", str(MODEL_DIR / "config.json"),
            "--max-model-len", str(real_vllm.max_model_len)]  # fmt: skip
    with run_emulator(model=real_vllm.model, speedup=20.0, extra_args=args) as emu:
        yield emu


def _exercise(url: str, model: str) -> dict[str, Family]:
    """A couple of finished requests, then the scrape (so histograms have samples)."""
    for max_tokens in (1, 4):
        body = {"model": model, "prompt": [1001, 1002, 1003], "max_tokens": max_tokens}
        httpx.post(url + "/v1/completions", json=body, timeout=60).raise_for_status()
    return {name: fam for name, fam in scrape(url).items() if not name.endswith("_created")}


@pytest.fixture(scope="module")
def both(real_vllm: RunningVllm, emulator: RunningEmulator) -> tuple[dict, dict]:
    return _exercise(real_vllm.url, real_vllm.model), _exercise(emulator.url, emulator.model)


def test_every_emulated_family_is_real_with_its_type_labels_and_buckets(both):
    real, emulated = both
    assert len(emulated) >= 10
    for name, fam in emulated.items():
        assert name in real, f"the emulator exports {name}, which real vLLM does not"
        twin = real[name]
        assert fam.type == twin.type, f"{name}: emulator {fam.type}, vLLM {twin.type}"
        assert fam.labels == twin.labels, f"{name}: labels {fam.labels} vs vLLM {twin.labels}"
        assert fam.buckets == twin.buckets, f"{name}: buckets differ from vLLM's"
        assert fam.samples == twin.samples, f"{name}: series {fam.samples} vs {twin.samples}"


def test_the_success_counter_has_every_finished_reason(real_vllm, emulator, both):
    """vLLM exports each reason from the start; a query on one the emulator lacks sees nothing."""

    def reasons(url: str) -> set[str]:
        text = httpx.get(url + "/metrics", timeout=10).text
        lines = [ln for ln in text.splitlines() if ln.startswith("vllm:request_success_total{")]
        return {ln.split('finished_reason="')[1].split('"')[0] for ln in lines}

    assert reasons(emulator.url) == reasons(real_vllm.url)


def _post(url: str, body: object, endpoint: str = "/v1/completions") -> tuple[int, str]:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"content-type": "application/json"}
    answer = httpx.post(url + endpoint, content=content, headers=headers, timeout=60)
    return answer.status_code, answer.text


def _field(param: str | None) -> str | None:
    return None if param is None else param.split(".")[0]


def _stream_events(text: str) -> list[object]:
    return [
        json.loads(ln[5:]) if ln[5:].strip() != "[DONE]" else "[DONE]"
        for ln in text.splitlines()
        if ln.startswith("data:")
    ]


BAD_REQUESTS = {
    "not-json": "{not json",
    "unknown-model": {"model": "other", "prompt": [1001], "max_tokens": 2},
    "max-tokens-over-max-model-len": {"prompt": [1001], "max_tokens": 600},
    "prompt-over-max-model-len": {"prompt": list(range(1001, 1601)), "max_tokens": 2},
    "max-tokens-zero": {"prompt": [1001], "max_tokens": 0},
    "out-of-vocabulary": {"prompt": [40000], "max_tokens": 2},
    "max-tokens-over-max-model-len-chat": {
        "messages": [{"role": "user", "content": "w1001"}],
        "max_tokens": 600,
    },
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_error_answers_match(case: str, real_vllm: RunningVllm, emulator: RunningEmulator):
    """Status, the `{"error": {...}}` shape, its type, code and param are the same (for a
    request-validation error, vLLM's param ends in the failing JSON position: compared up to it)."""
    body = BAD_REQUESTS[case]
    endpoint = "/v1/chat/completions" if case.endswith("chat") else "/v1/completions"
    answers = []
    for server in (real_vllm, emulator):
        if isinstance(body, dict):
            body = {"model": server.model, **body}
        status, text = _post(server.url, body, endpoint)
        error = json.loads(text)["error"]
        answers.append((status, set(error), error["type"], error["code"], _field(error["param"])))
    real, emulated = answers
    assert emulated == real


def test_an_error_inside_a_stream_matches(real_vllm: RunningVllm, emulator: RunningEmulator):
    """vLLM checks token ids after the stream began: a 200 whose one event is the error."""
    shapes = []
    for server in (real_vllm, emulator):
        body = {"model": server.model, "prompt": [40000], "max_tokens": 2, "stream": True}
        status, text = _post(server.url, body)
        events = _stream_events(text)
        assert events[-1] == "[DONE]"
        (error,) = [e["error"] for e in events[:-1] if isinstance(e, dict)]
        shapes.append((status, len(events), set(error), error["type"], error["code"]))
    real, emulated = shapes
    assert real[0] == 200
    assert emulated == real


@pytest.mark.parametrize("endpoint", ["/v1/completions", "/v1/chat/completions"])
def test_stream_chunks_have_the_same_keys(endpoint: str, real_vllm, emulator):
    """What a streaming client parses: the same keys in each chunk, usage last, then [DONE]."""
    keys = []
    for server in (real_vllm, emulator):
        body: dict[str, object] = {
            "model": server.model, "max_tokens": 3, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True},
        }  # fmt: skip
        if "chat" in endpoint:
            body["messages"] = [{"role": "user", "content": "w1001 w1002"}]
        else:
            body["prompt"] = [1001, 1002]
        status, text = _post(server.url, body, endpoint)
        assert status == 200
        events = _stream_events(text)
        assert events[-1] == "[DONE]"
        chunks = [e for e in events[:-1] if isinstance(e, dict)]
        usage = chunks[-1]["usage"]
        keys.append(
            (
                {k for c in chunks[:-1] for k in c} >= {"id", "object", "model", "choices"},
                {k for c in chunks[:-1] for ch in c["choices"] for k in ch} & _CLIENT_KEYS,
                set(usage),
                usage["completion_tokens"],
                chunks[-2]["choices"][0]["finish_reason"],
            )
        )
    real, emulated = keys
    assert emulated == real


# The choice fields a client reads (vLLM adds more of its own, e.g. token_ids, stop_reason).
_CLIENT_KEYS = {"index", "text", "delta", "finish_reason", "logprobs"}
