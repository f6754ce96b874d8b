"""The API server in front of the engine: request latency, a first-come tokenizer, and a
client's closed loop through both."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizing.errors import InvalidInput
from sizing.frontend import ClientClosedLoop, FrontEnd, engine_arrivals
from sizing.simulator import simulate_closed_loop
from tests.unit.test_simulator import MODEL, ROOMY


def _loop(prompts, outputs, concurrency, front_end, steady_state=False) -> ClientClosedLoop:
    return ClientClosedLoop(
        ROOMY, np.asarray(prompts), np.asarray(outputs), concurrency, steady_state, front_end
    )


def test_a_free_front_end_is_the_engines_closed_loop():
    prompts, outputs = np.full(60, 900), np.full(60, 120)
    through = _loop(prompts, outputs, 8, FrontEnd()).price(MODEL)
    direct = simulate_closed_loop(MODEL, ROOMY, prompts, outputs, 8)
    assert through == direct


def test_request_latency_adds_to_every_ttft_but_costs_the_engine_nothing():
    prompts, outputs = np.full(10, 1000), np.full(10, 50)
    base = _loop(prompts, outputs, 1, FrontEnd()).price(MODEL)
    slow = _loop(prompts, outputs, 1, FrontEnd(request_latency_s=0.3)).price(MODEL)
    assert slow.ttft_p50_s == pytest.approx(base.ttft_p50_s + 0.3)
    assert slow.itl_p50_s == pytest.approx(base.itl_p50_s)
    # One client waits out the latency before each request: the engine idles meanwhile.
    assert slow.request_per_s < base.request_per_s


def test_a_serial_tokenizer_caps_the_request_rate_at_high_concurrency():
    prompt_tokens = 4000
    prompts, outputs = np.full(400, prompt_tokens), np.full(400, 20)
    engine_only = _loop(prompts, outputs, 64, FrontEnd(), steady_state=True).price(MODEL)
    # A tokenizer three times slower than the engine's prefill: the cap is the front end's.
    cap_rps = engine_only.request_per_s / 3
    per_token_s = 1 / (cap_rps * prompt_tokens)
    front_end = FrontEnd(tokenize_s_per_token=per_token_s)
    point = _loop(prompts, outputs, 64, front_end, steady_state=True).price(MODEL)
    assert point.request_per_s <= cap_rps * 1.01
    assert point.request_per_s >= cap_rps * 0.9
    # Requests queue at the tokenizer, not in the engine: a request waits for the 63 others'
    # tokenising, and then decodes in a batch no prefill holds up.
    assert point.ttft_p50_s == pytest.approx(64 * prompt_tokens * per_token_s, rel=0.1)
    assert point.tpot_p50_s < engine_only.tpot_p50_s / 5


def test_data_parallel_ranks_share_one_tokenizer_cap():
    prompt_tokens, per_token_s = 4000, 1e-4  # a third of what the engine prefills
    cap_rps = 1 / (prompt_tokens * per_token_s)  # the API server's, for the whole server
    prompts, outputs = np.full(400, prompt_tokens), np.full(400, 20)
    front_end = FrontEnd(tokenize_s_per_token=per_token_s)
    one = _loop(prompts, outputs, 64, front_end, steady_state=True).price(MODEL)
    # Each of two ranks runs half the clients through its half of the same tokenizer.
    rank = _loop(prompts, outputs, 32, front_end.shared_by(2), steady_state=True).price(MODEL)
    assert one.request_per_s == pytest.approx(cap_rps, rel=0.05)
    assert 2 * rank.request_per_s == pytest.approx(cap_rps, rel=0.05)
    assert front_end.shared_by(1) == front_end
    with pytest.raises(InvalidInput, match="ranks must be >= 1"):
        front_end.shared_by(0)


@given(
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=40),
    prompts=st.integers(1, 30_000),
    latency_s=st.floats(0, 1),
    per_token_s=st.floats(0, 1e-4),
)
def test_engine_arrivals_keep_order_and_leave_a_tokenizers_time_between_requests(
    gaps, prompts, latency_s, per_token_s
):
    sent = np.cumsum(gaps)
    lengths = np.full(sent.size, prompts)
    arrive = engine_arrivals(FrontEnd(latency_s, per_token_s), sent, lengths)
    tokenize_s = prompts * per_token_s
    assert np.all(arrive >= sent + latency_s + tokenize_s - 1e-9)
    assert np.all(np.diff(arrive) >= tokenize_s - 1e-9)


@pytest.mark.parametrize("fields", [(-0.1, 0.0), (0.0, -1e-6)])
def test_negative_front_end_costs_are_refused_by_name(fields):
    with pytest.raises(InvalidInput, match="request_latency_s and tokenize_s_per_token"):
        FrontEnd(*fields)
