"""The emulator's pure parts: token counting, prefix-cache accounting, faults, DCGM values.

(Pure and fast, but they live beside the emulator's process tests.)
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e.emulator.dcgm import Activity, DcgmExporter
from e2e.emulator.faults import FaultError, FaultInjector, Faults
from e2e.emulator.metrics import token_count_buckets
from e2e.emulator.prefix import PrefixCache
from e2e.emulator.tokens import PromptError, message_tokens, prompt_tokens
from sizing.hardware import get_gpu


def test_prompts_count_ids_exactly_and_text_by_words():
    assert len(prompt_tokens([5, 6, 7])) == 3
    assert len(prompt_tokens([[5, 6]])) == 2
    assert len(prompt_tokens("the quick  brown\nfox")) == 4
    assert len(prompt_tokens(["a b"])) == 2
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert len(message_tokens(messages)) == 3
    parts = [{"role": "user", "content": [{"type": "text", "text": "x y z"}]}]
    assert len(message_tokens(parts)) == 3


@pytest.mark.parametrize("prompt", [[1.5], [[1], [2]], {"a": 1}, [True]])
def test_unreadable_prompts_say_what_is_accepted(prompt):
    with pytest.raises(PromptError, match="list of token ids"):
        prompt_tokens(prompt)


def test_prefix_hits_are_whole_blocks_of_a_shared_prefix():
    cache = PrefixCache(capacity_blocks=100, block_size=4)
    system = list(range(8))
    assert cache.query([*system, 50, 51, 52, 53, 54]) == 0
    assert cache.query([*system, 60, 61, 62, 63]) == 8  # two shared blocks
    assert cache.query([99, *system]) == 0  # same tokens, other prefix: no hit
    assert cache.query([1, 2, 3]) == 0  # not even one full block


def test_prefix_cache_forgets_least_recently_used_blocks():
    cache = PrefixCache(capacity_blocks=2, block_size=2)
    cache.query([1, 2, 3, 4])
    cache.query([5, 6])  # evicts the oldest block ([1, 2])
    assert cache.query([1, 2, 3, 4]) == 0


@given(st.lists(st.integers(0, 3), max_size=40), st.integers(1, 8))
def test_hits_never_exceed_the_prompt(prompt, block):
    cache = PrefixCache(capacity_blocks=10, block_size=block)
    for _ in range(2):
        hits = cache.query(prompt)
        assert 0 <= hits <= len(prompt) and hits % block == 0


def test_fault_verdicts_follow_the_rates_and_the_seed():
    injector = FaultInjector(Faults(error_500_rate=0.2, error_503_rate=0.3), seed=7)
    verdicts = [injector.verdict().status for _ in range(2000)]
    assert verdicts.count(500) / 2000 == pytest.approx(0.2, abs=0.03)
    assert verdicts.count(503) / 2000 == pytest.approx(0.3, abs=0.03)
    again = FaultInjector(Faults(error_500_rate=0.2, error_503_rate=0.3), seed=7)
    assert [again.verdict().status for _ in range(2000)] == verdicts


def test_fault_rates_that_add_past_one_are_refused():
    with pytest.raises(FaultError, match=r"error_500_rate \+ error_503_rate must be <= 1"):
        Faults(error_500_rate=0.7, error_503_rate=0.5)


def test_token_buckets_are_vllms_1_2_5_series():
    assert token_count_buckets(100) == (1, 2, 5, 10, 20, 50, 100)
    assert token_count_buckets(8192)[-1] == 5000


@given(
    busy=st.floats(0, 1),
    compute=st.floats(0, 1),
    memory=st.floats(0, 1),
    ready=st.booleans(),
)
def test_dcgm_values_stay_in_their_ranges(busy, compute, memory, ready):
    exporter = DcgmExporter(get_gpu("H100"), tp=2, fb_used_gib_per_gpu=70, hostname="h", seed=1)
    v = exporter.values(Activity(busy, compute, memory), ready)
    assert 0 <= v["DCGM_FI_DEV_GPU_UTIL"] <= 100
    assert v["DCGM_FI_DEV_FB_USED"] + v["DCGM_FI_DEV_FB_FREE"] == pytest.approx(
        exporter.fb_total_mib, abs=1
    )
    assert 70 <= v["DCGM_FI_DEV_POWER_USAGE"] <= 700


@given(st.floats(0.2, 5.0), st.integers(1, 256), st.integers(1, 8192))
def test_a_speed_factor_divides_every_step_time(speed, sequences, context):
    """`--speed-factor 0.6` is a replica 40 % slower than planned in every step, prefill and
    decode alike, so a test fleet's real capacity is that share of the predicted one."""
    from e2e.emulator.replica import at_speed, build_replica
    from sizing.memory import EngineConfig

    model = build_replica(None, "H100-SXM-80GB", EngineConfig()).step_model
    faster = at_speed(model, speed)
    assert faster.decode_step_s(sequences, context) == pytest.approx(
        model.decode_step_s(sequences, context) / speed
    )
    assert faster.prefill_s(context) == pytest.approx(model.prefill_s(context) / speed)


def test_a_speed_factor_must_be_positive():
    from e2e.emulator.__main__ import main

    with pytest.raises(SystemExit, match="--speed-factor must be > 0"):
        main(["--speed-factor", "0"])
