"""The load generator's pure parts: request bodies, chunk parsing, load-point summaries, flags."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.adapters.benchmark import (
    LoadSpec,
    RequestRecord,
    _chunk_text,
    _http_error,
    arrival_schedule,
    request_body,
    summarize,
)
from inferfleet.cli import build_parser
from inferfleet.commands.bench import plan_from_args
from inferfleet.errors import UsageError
from sizing.simulator import poisson_arrivals


def _spec(**kw) -> LoadSpec:
    base = {"url": "http://127.0.0.1:1", "model": "m", "input_len": 50, "output_len": 9}
    return LoadSpec(**{**base, "num_prompts": 4, **kw})


def test_completion_body_has_exactly_input_len_fresh_token_ids():
    rng = np.random.default_rng(0)
    a, b = request_body(_spec(), rng), request_body(_spec(), rng)
    assert len(a["prompt"]) == 50 and all(isinstance(t, int) for t in a["prompt"])
    assert a["prompt"] != b["prompt"]  # no prefix-cache hits between requests
    assert a["max_tokens"] == 9 and a["ignore_eos"] is True and a["stream"] is True
    assert a["stream_options"] == {"include_usage": True}


def test_chat_body_has_one_word_per_token():
    body = request_body(_spec(endpoint="/v1/chat/completions"), np.random.default_rng(0))
    assert len(body["messages"][0]["content"].split()) == 50
    assert "prompt" not in body


def test_chunk_text_reads_completions_chat_and_usage_chunks():
    assert _chunk_text({"choices": [{"text": " a"}]}) == " a"
    assert _chunk_text({"choices": [{"delta": {"content": "b"}}]}) == "b"
    assert _chunk_text({"choices": [{"delta": {"role": "assistant", "content": ""}}]}) == ""
    assert _chunk_text({"choices": [], "usage": {"completion_tokens": 3}}) == ""


def test_chunk_text_ignores_malformed_choices():
    assert _chunk_text({"choices": [{"delta": "x"}]}) == ""
    assert _chunk_text({"choices": ["x"]}) == ""
    assert _chunk_text({"choices": {"text": "x"}}) == ""


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"error": {"message": "max_tokens too big", "code": 400}}',
            "HTTP 400: max_tokens too big",
        ),
        (404, b'{"error": "no such model"}', "HTTP 404: no such model"),
        (502, b"<html>bad gateway</html>", "HTTP 502: <html>bad gateway</html>"),
        (503, b"", "HTTP 503"),
        (500, b"[1, 2]", "HTTP 500: [1, 2]"),
    ],
)
def test_http_errors_carry_the_servers_message(status, body, expected):
    assert _http_error(status, body) == expected


def test_a_long_error_body_is_cut_short():
    assert len(_http_error(500, b"x" * 10_000)) < 250


def test_load_spec_needs_a_stopping_rule():
    with pytest.raises(ValueError, match="duration_s or num_prompts"):
        LoadSpec("http://x", "m", 1, 1)


def _ok(start: float, ttft: float, gaps: tuple[float, ...], prompt: int = 10) -> RequestRecord:
    end = start + ttft + sum(gaps)
    return RequestRecord(start, end, ttft, gaps, prompt, len(gaps) + 1)


def test_summary_rates_percentiles_and_failures():
    records = [
        _ok(0.0, 0.1, (0.02, 0.02, 0.02)),
        _ok(0.5, 0.3, (0.04, 0.04, 0.04)),
        RequestRecord(0.2, 0.4, error="HTTP 500"),
        RequestRecord(0.3, 9.0, timed_out=True),
    ]
    point = summarize(records, "concurrency", 2, wall_s=2.0)
    assert point["concurrency"] == 2
    assert point["completed"] == 2 and point["failed"] == 1 and point["timed_out"] == 1
    assert point["output_tok_per_s"] == pytest.approx(8 / 2.0)
    assert point["total_tok_per_s"] == pytest.approx((8 + 20) / 2.0)
    assert point["request_per_s"] == pytest.approx(1.0)
    assert point["ttft_p50_ms"] == pytest.approx(200.0)
    assert point["itl_p50_ms"] == pytest.approx(30.0)
    assert point["itl_p99_ms"] == pytest.approx(40.0)


def test_summary_of_only_failures_has_no_latencies_but_counts_them():
    point = summarize([RequestRecord(0, 1, error="x")], "request_rate", 4.0, wall_s=1.0)
    assert point["ttft_p50_ms"] is None and point["itl_p99_ms"] is None
    assert point["failed"] == 1 and point["output_tok_per_s"] == 0


@given(
    ttfts=st.lists(st.floats(1e-4, 10), min_size=1, max_size=30),
    scale=st.floats(0.1, 100),
    wall=st.floats(0.1, 1000),
)
def test_time_scale_multiplies_latencies_and_divides_rates(ttfts, scale, wall):
    records = [_ok(0.0, t, (t / 2, t / 3)) for t in ttfts]
    plain = summarize(records, "concurrency", 1, wall)
    scaled = summarize(records, "concurrency", 1, wall, time_scale=scale)
    for key in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"):
        assert scaled[key] == pytest.approx(plain[key] * scale)
    for key in ("output_tok_per_s", "total_tok_per_s", "request_per_s"):
        assert scaled[key] == pytest.approx(plain[key] / scale)
    assert plain["ttft_p50_ms"] == pytest.approx(np.percentile(ttfts, 50) * 1000)


def _args(*extra: str) -> argparse.Namespace:
    base = ["bench", "--url", "http://h:8000", "--model", "m", "--input-len", "8"]
    return build_parser().parse_args([*base, "--output-len", "4", *extra])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--concurrency", "4"], "--num-prompts N or --duration-s S"),
        (["--concurrency", "4,0", "--num-prompts", "3"], "--concurrency values must all be > 0"),
        (["--request-rate", "a", "--num-prompts", "3"], "comma-separated numbers like 1,8,64"),
        (["--request-rate", "nan", "--num-prompts", "3"], "must be a finite number"),
        (["--concurrency", "2", "--duration-s", "-1"], "--duration-s must be > 0 seconds"),
        (["--concurrency", "2", "--num-prompts", "3", "--time-scale", "0"], "--time-scale"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(extra, needle):
    with pytest.raises(UsageError) as info:
        plan_from_args(_args(*extra))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "localhost:8000", "ftp://h", "http://", "http://a b:8000", "http://h:99999",
        "http://h:0", "http://h:-1", "http://h:port", "http://[::1", "http://h:8000/?x=1",
    ],
)  # fmt: skip
def test_a_malformed_url_is_a_usage_error_naming_the_flag(url):
    args = _args("--concurrency", "2", "--num-prompts", "3")
    args.url = url
    with pytest.raises(UsageError, match="--url") as info:
        plan_from_args(args)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize("url", ["http://h:8000", "https://h", "http://[::1]:80/", "http://h/base"])
def test_well_formed_urls_pass(url):
    args = _args("--concurrency", "2", "--num-prompts", "3")
    args.url = url
    assert plan_from_args(args).spec.url == url


def test_time_scale_turns_gpu_time_flags_into_wall_time():
    plan = plan_from_args(
        _args("--request-rate", "2,4", "--duration-s", "60", "--time-scale", "10")
    )
    assert plan.x_key == "request_rate" and plan.xs == (2.0, 4.0)
    assert plan.spec.duration_s == pytest.approx(6.0)
    assert plan.time_scale == 10


def test_arrivals_are_the_simulators_poisson_draws_from_zero():
    times = arrival_schedule(2.0, 50, None, seed=3)
    expected = poisson_arrivals(2.0, 50, np.random.default_rng(3))
    assert times == pytest.approx(expected - expected[0])
    assert times[0] == 0 and np.all(np.diff(times) >= 0)


@given(rate=st.floats(0.1, 50), duration=st.floats(0.5, 100), seed=st.integers(0, 99))
def test_a_duration_keeps_every_arrival_before_it(rate, duration, seed):
    times = arrival_schedule(rate, None, duration, seed)
    assert np.all(times < duration)
    longer = arrival_schedule(rate, None, duration * 2, seed)
    assert longer[: times.size] == pytest.approx(times)  # a prefix of the same draws
    if longer.size > times.size:
        assert longer[times.size] >= duration  # cut exactly at the duration, nothing dropped


@given(rate=st.floats(0.1, 20), scale=st.floats(1, 50))
def test_a_faster_wall_rate_is_the_same_schedule_compressed(rate, scale):
    gpu_time = arrival_schedule(rate, 20, None, seed=0)
    wall_time = arrival_schedule(rate * scale, 20, None, seed=0)
    assert wall_time == pytest.approx(gpu_time / scale)
