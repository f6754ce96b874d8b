"""The emulator as a real process: OpenAI API shapes, cold start, faults, and error answers."""

from __future__ import annotations

import json

import httpx
import pytest

from inferfleet_testing.emulator import RunningEmulator, run_emulator
from inferfleet_testing.emulator import emulator as emulator  # noqa: PLC0414 (re-exported fixture)
from inferfleet_testing.kube.harness import wait_for


@pytest.fixture
def faulty(emulator):
    """The shared emulator, with its faults cleared again after the test."""
    yield emulator
    emulator.set_faults()


def _stream(emu: RunningEmulator, path: str, body: dict[str, object]) -> list[str]:
    """The `data:` payloads of one SSE response, in order."""
    with httpx.stream("POST", emu.url + path, json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]


def test_streamed_completion_is_openai_shaped_with_one_chunk_per_token(emulator):
    body = {
        "model": emulator.model,
        "prompt": list(range(1000, 1100)),
        "max_tokens": 7,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    payloads = _stream(emulator, "/v1/completions", body)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    tokens, usage = chunks[:-1], chunks[-1]
    assert len(tokens) == 7
    assert {c["object"] for c in tokens} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 6 + ["length"]
    assert all(c["choices"][0]["text"] for c in tokens)
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}


def test_chat_stream_opens_with_the_assistant_role_and_counts_words(emulator):
    body = {
        "model": emulator.model,
        "messages": [{"role": "user", "content": "one two three four"}],
        "max_tokens": 3,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = [json.loads(p) for p in _stream(emulator, "/v1/chat/completions", body)[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert [bool(c["choices"][0]["delta"]["content"]) for c in chunks[1:4]] == [True] * 3
    assert chunks[-1]["usage"]["prompt_tokens"] == 4


def test_non_streaming_answer_holds_all_tokens_and_usage(emulator):
    body = {"model": emulator.model, "prompt": "a b c", "max_tokens": 5, "ignore_eos": True}
    answer = httpx.post(emulator.url + "/v1/completions", json=body, timeout=30).json()
    assert answer["object"] == "text_completion"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert len(answer["choices"][0]["text"].split()) == 5
    assert answer["usage"]["completion_tokens"] == 5


def test_without_ignore_eos_requests_stop_at_a_seeded_length_near_the_mean():
    with run_emulator(speedup=20.0, extra_args=["--mean-output-tokens", "8"]) as emu:
        body = {"model": emu.model, "prompt": "a", "max_tokens": 100}
        answers = [
            httpx.post(emu.url + "/v1/completions", json=body, timeout=30).json() for _ in range(20)
        ]
    lengths = [a["usage"]["completion_tokens"] for a in answers]
    assert {a["choices"][0]["finish_reason"] for a in answers} == {"stop"}
    assert 3 <= sum(lengths) / len(lengths) <= 20  # geometric, mean 8
    assert len(set(lengths)) > 1


def test_models_lists_the_served_model(emulator):
    models = httpx.get(emulator.url + "/v1/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == [emulator.model]
    assert models["data"][0]["max_model_len"] == 8192


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": "x", "max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"prompt": list(range(9000))}, "max_model_len is 8192"),
        ({"prompt": "x", "max_tokens": 9000}, "exceeds max_model_len"),
        ({"prompt": [1.5, 2]}, "list of token ids"),
        ({"max_tokens": 3}, "prompt is required"),
    ],
)
def test_bad_requests_get_a_400_that_says_what_is_wrong(emulator, body, needle):
    r = httpx.post(emulator.url + "/v1/completions", json=body, timeout=5)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "BadRequestError" and error["code"] == 400
    assert needle in error["message"]


COLD_START_S = 4.0


def test_health_is_503_during_cold_start_then_200():
    # The cold start runs from the process's start: long enough that a starved test process
    # still asks inside it, once the emulator listens.
    with run_emulator(startup_delay_s=COLD_START_S, wait_ready=False) as emu:
        assert httpx.get(emu.url + "/health", timeout=5).status_code == 503
        body = {"model": emu.model, "prompt": "x", "max_tokens": 1}
        assert httpx.post(emu.url + "/v1/completions", json=body, timeout=5).status_code == 503
        wait_for(
            lambda: httpx.get(emu.url + "/health", timeout=5).status_code == 200,
            "/health to answer 200 after the cold start",
            poll_s=0.1,
        )


def test_runtime_faults_answer_500_then_recover(faulty):
    body = {"model": faulty.model, "prompt": "x", "max_tokens": 2}
    faulty.set_faults(error_500_rate=1.0)
    assert httpx.post(faulty.url + "/v1/completions", json=body, timeout=5).status_code == 500
    faulty.set_faults(error_503_rate=1.0)
    assert httpx.post(faulty.url + "/v1/completions", json=body, timeout=5).status_code == 503
    assert httpx.get(faulty.url + "/admin/faults", timeout=5).json()["error_503_rate"] == 1.0
    faulty.set_faults()
    assert httpx.post(faulty.url + "/v1/completions", json=body, timeout=5).status_code == 200


def test_dropped_stream_ends_without_done(faulty):
    faulty.set_faults(drop_stream_rate=1.0)
    body = {"model": faulty.model, "prompt": "x", "max_tokens": 20, "stream": True}
    lines: list[str] = []
    url = faulty.url + "/v1/completions"
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", url, json=body, timeout=10) as r,
    ):
        lines.extend(line for line in r.iter_lines() if line.startswith("data: "))
    assert 1 <= len(lines) < 20
    assert "data: [DONE]" not in lines


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        ({"error_500_rate": 2}, "error_500_rate must be a fraction in [0, 1], got 2"),
        ({"crash": 1}, "unknown fault field(s) ['crash']"),
        ({"slow_s": "x"}, "slow_s must be a number"),
    ],
)
def test_bad_faults_are_refused_with_the_field_named(faulty, faults, needle):
    r = httpx.post(faulty.url + "/admin/faults", json=faults, timeout=5)
    assert r.status_code == 400
    assert needle in r.json()["error"]["message"]


def test_slow_fault_delays_the_first_token(faulty):
    faulty.set_faults(slow_s=0.5)
    body = {"model": faulty.model, "prompt": "x", "max_tokens": 1}
    r = httpx.post(faulty.url + "/v1/completions", json=body, timeout=10)
    assert r.status_code == 200
    assert r.elapsed.total_seconds() >= 0.5
