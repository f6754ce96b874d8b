"""The local harness's pieces that need no process: demand, arrivals, routing, lengths, view,
report and the demo's flag checks. Milliseconds each; they live beside the harness tests."""

from __future__ import annotations

import io
import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.adapters.benchmark import RequestRecord
from controllers.policy.scaling.replay import Trace
from e2e.local import demo
from e2e.local.load import Demand, LoadDriver, MinuteStats, ReplayConfig, pick_endpoint
from e2e.local.pods import Endpoint, template_hash
from e2e.local.report import ttft_p99_by_bucket, write_report
from e2e.local.timeline import PoolSample, Sample, clock
from e2e.local.view import Frame, LiveView, render_block, render_line
from inferfleet.traces import read_per_minute
from sizing.workload import Percentiles
from tests.conftest import REPO

TRACE = REPO / "examples" / "traces" / "servegen_m_small.day0.per_minute.csv"
CONFIG = ReplayConfig(
    model="m",
    prompt=Percentiles(1500, 7000, 7400),
    output=Percentiles(20, 100, 250),
    max_model_len=8192,
    ttft_slo_s=1.5,
    speedup=4.0,
    wall_s_per_minute=0.125,
)


def endpoint(i: int) -> Endpoint:
    return Endpoint(f"p{i}", "ns", "f", "pool", f"http://127.0.0.1:{9000 + i}")


# --- demand -------------------------------------------------------------------------------------


def test_dev_trace_is_one_day_with_an_evening_peak():
    trace = read_per_minute(str(TRACE))
    assert len(trace.requests) == 1440
    demand = Demand.from_trace(trace, peak_rps=3.0)
    assert max(demand.rps) == pytest.approx(3.0)
    busiest_hour = max(range(24), key=lambda h: sum(demand.rps[h * 60 : (h + 1) * 60]))
    quietest_hour = min(range(24), key=lambda h: sum(demand.rps[h * 60 : (h + 1) * 60]))
    assert busiest_hour in (20, 21)
    assert 2 <= quietest_hour <= 5


def test_demand_rescales_and_bridges_gaps():
    trace = Trace(60.0, 0.0, (10, None, 30, 20))
    demand = Demand.from_trace(trace, peak_rps=6.0, first_minute=0, minutes=4)
    assert demand.rps == pytest.approx((2.0, 2.0, 6.0, 4.0))
    window = Demand.from_trace(trace, peak_rps=1.0, first_minute=2, minutes=2)
    assert window.first_minute == 2
    assert window.rps == pytest.approx((1.0, 20 / 30))


@pytest.mark.parametrize(
    ("trace", "first", "message"),
    [
        (Trace(60.0, 0.0, (1, 2)), 5, "no data in minutes 5"),
        (Trace(60.0, 0.0, (None, None)), 0, "no data"),
        (Trace(60.0, 0.0, (0, 0)), 0, "cannot rescale"),
        (Trace(600.0, 0.0, (1, 2)), 0, "per-minute"),
    ],
)
def test_demand_refuses_what_it_cannot_replay(trace, first, message):
    with pytest.raises(ValueError, match=message):
        Demand.from_trace(trace, peak_rps=1.0, first_minute=first)


# --- arrivals, routing, lengths ------------------------------------------------------------------


@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=20), st.integers(0, 2**16))
def test_arrivals_stay_in_order_and_inside_the_replay(rps, seed):
    driver = LoadDriver(Demand(tuple(rps)), replace(CONFIG, seed=seed), lambda: ())
    times = list(driver._arrivals())
    assert times == sorted(times)
    assert all(0 <= t < driver.duration_s for t in times)
    for t in times:  # no arrival in a minute whose rate is zero
        assert rps[int(t / CONFIG.wall_s_per_minute)] > 0


def test_arrival_count_follows_rate_times_speedup():
    rps = (2.0, 0.0, 5.0) * 200
    driver = LoadDriver(Demand(rps), CONFIG, lambda: ())
    times = list(driver._arrivals())
    expected = sum(rps) * CONFIG.speedup * CONFIG.wall_s_per_minute
    assert abs(len(times) - expected) < 5 * expected**0.5  # Poisson: within 5 sigma


def test_routing_picks_the_least_outstanding_replica():
    rng = random.Random(0)
    replicas = [endpoint(i) for i in range(3)]
    outstanding = {replicas[0].url: 2, replicas[1].url: 0, replicas[2].url: 1}
    assert pick_endpoint(replicas, outstanding, rng) == replicas[1]
    assert pick_endpoint([], outstanding, rng) is None
    picks = {pick_endpoint(replicas, {}, rng) for _ in range(50)}
    assert picks == set(replicas)  # ties spread over all replicas


def test_prompts_lengthen_from_the_shift_minute():
    shifted = replace(CONFIG, shift_from_minute=100, prompt_shift_factor=3.0)
    before = LoadDriver(Demand((1.0,)), shifted, lambda: ())
    after = LoadDriver(Demand((1.0,)), shifted, lambda: ())
    plain = [before._lengths_for(99) for _ in range(400)]
    longer = [after._lengths_for(100) for _ in range(400)]
    assert sorted(p for p, _ in longer)[200] > 2.5 * sorted(p for p, _ in plain)[200]
    for prompt, output in plain + longer:
        assert prompt >= 1 and output >= 1 and prompt + output <= CONFIG.max_model_len


def test_failures_and_slow_first_tokens_count_as_slo_misses():
    driver = LoadDriver(Demand((1.0,)), CONFIG, lambda: ())
    stats = MinuteStats(0, 1.0)
    driver._count(stats, RequestRecord(0.0, 1.0, ttft_s=0.2))  # 0.8 s in GPU time: met
    driver._count(stats, RequestRecord(0.0, 1.0, ttft_s=0.5))  # 2.0 s: missed
    driver._count(stats, RequestRecord(0.0, 0.0, error="no ready replica"))
    assert (stats.ok, stats.failed, stats.slo_missed) == (2, 1, 2)
    assert stats.ttft_s == pytest.approx([0.8, 2.0])


# --- pods ------------------------------------------------------------------------------------


def test_template_hash_changes_with_the_pod_template_only():
    deployment = {"spec": {"replicas": 1, "template": {"spec": {"containers": [{"args": ["a"]}]}}}}
    scaled = {**deployment, "spec": {**deployment["spec"], "replicas": 3}}
    edited = {"spec": {"replicas": 1, "template": {"spec": {"containers": [{"args": ["b"]}]}}}}
    assert template_hash(deployment) == template_hash(scaled)
    assert template_hash(deployment) != template_hash(edited)


# --- view and report ------------------------------------------------------------------------------


def sample(minute: float, ready: int, desired: int) -> Sample:
    pool = PoolSample("l40s", desired, ready, usable_rps_per_replica=1.5,
                      cost_per_replica_hour_usd=1.0)  # fmt: skip
    conditions = (("Sized", "True"), ("Ready", "False"))
    return Sample(minute, (pool,), conditions, forecast_rps=None, plan_cost_per_hour_usd=2.0)


def frame(minute: float = 75.0) -> Frame:
    return Frame(
        fleet="code-8b", minute=minute, done_share=0.5, sample=sample(minute, 1, 2),
        demand_rps=2.5, sent_rps=2.4, ttft_p99_s=0.8, ttft_slo_s=1.5, slo_missed_share=0.02,
        wall_s=90.0,
    )  # fmt: skip


def test_view_shows_progress_replicas_rate_and_ttft():
    block = "\n".join(render_block(frame()))
    assert "01:15 (50%)" in block
    assert "desired   2  ready   1" in block
    assert "capacity   1.50 req/s" in block
    assert "TTFT P99 0.80 s (SLO 1.50 s)" in block
    assert "Sized=True Ready=False" in block
    line = render_line(frame())
    assert line.startswith("01:15  l40s 1/2 ready/desired")
    assert "$2.00/h" in line


def test_view_redraws_on_a_tty_and_prints_lines_otherwise():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    view = LiveView(tty)
    view.show(frame(10))
    view.show(frame(11))
    assert f"\x1b[{len(render_block(frame()))}F" in tty.getvalue()
    plain = io.StringIO()
    view = LiveView(plain, line_every_s=3600)
    view.show(frame(10))
    view.show(frame(11))  # within the period: no second line
    assert plain.getvalue().count("\n") == 1
    assert "\x1b" not in plain.getvalue()


def test_clock_reads_trace_minutes_as_time_of_day():
    assert clock(0) == "00:00"
    assert clock(1439.9) == "23:59"
    assert clock(1440 + 61) == "01:01"


def test_ttft_buckets_and_report_file(tmp_path):
    stats = [MinuteStats(600 + m, 1.0, ok=1, ttft_s=[0.1 * (m % 15 + 1)]) for m in range(30)]
    hours, p99s = ttft_p99_by_bucket(stats, 15)
    assert hours == pytest.approx([(600 + 7.5) / 60, (615 + 7.5) / 60])
    assert p99s[0] == pytest.approx(1.5, rel=0.02)
    samples = [sample(600 + m, min(m, 2), 2) for m in range(30)]
    out = write_report(
        tmp_path / "r.png", title="t", samples=samples, stats=stats, ttft_slo_s=1.5,
        shift_minute=610, bucket_minutes=15,
    )  # fmt: skip
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- demo flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--minutes", "0"], "--minutes must be > 0"),
        (["--speedup", "-1"], "--speedup must be > 0"),
        (["--peak-rps", "0"], "--peak-rps must be > 0"),
        (["--interval", "soon"], "--interval"),
        (["--fleet", "missing.yaml"], "--fleet missing.yaml"),
        (["--trace", "missing.csv"], "cannot read trace missing.csv"),
        (["--first-minute", "5000"], "no data in minutes 5000"),
    ],
)
def test_demo_refuses_bad_flags_in_one_line(argv, message, capsys):
    assert demo.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_demo_scenario_compresses_the_day_and_sets_the_fleet():
    args = demo.build_parser().parse_args(["--minutes", "3", "--peak-rps", "2.5"])
    scenario = demo.build_scenario(args, demo.SCENARIOS["prompts-x3"])
    assert len(scenario.demand) == 1440
    assert scenario.time_compression == pytest.approx(480.0)
    assert scenario.replay.wall_s_per_minute == pytest.approx(0.125)
    assert scenario.fleet["spec"]["workload"]["peakRequestsPerSecond"] == "2.5"
    assert scenario.fleet["spec"]["scaling"]["interval"] == "1s"
    assert scenario.replay.shift_from_minute == 18 * 60
    assert scenario.replay.ttft_slo_s == pytest.approx(1.5)
    assert scenario.peak_rps == pytest.approx(2.5)
    assert scenario.replay.speedup == 1.0  # Prometheus reads real rates by default
    default = demo.build_scenario(demo.build_parser().parse_args([]), demo.SCENARIOS["slower"])
    assert default.change_minute == 0 and default.replay.shift_from_minute is None
    assert default.peak_rps == pytest.approx(10.0)  # examples/fleet-code-8b.yaml's own peak
    assert max(default.demand.rps) == pytest.approx(10.0)
    assert default.fleet["spec"]["workload"]["peakRequestsPerSecond"] == "10"
    # The emulator's speed is relative to the median: so is the plan "slower" is slower than.
    assert default.fleet["spec"]["sizingQuantile"] == "0.5"
    assert "sizingQuantile" not in scenario.fleet["spec"]  # the others keep the manifest's


def test_demo_runs_every_scenario_unless_one_is_named_and_flags_override_it():
    everything = demo.build_scenarios(demo.build_parser().parse_args([]))
    assert [s.change.name for s in everything] == list(demo.SCENARIOS)
    assert {s.change.speed_factor for s in everything} == {1.0, 0.6}
    doubled = next(s for s in everything if s.change.name == "prompts-x2")
    assert doubled.replay.prompt_shift_factor == 2.0 and doubled.change_minute == 18 * 60
    (one,) = demo.build_scenarios(
        demo.build_parser().parse_args(["--scenario", "slower", "--speed-factor", "0.5"])
    )
    assert one.change.speed_factor == 0.5


def test_demo_outcome_counts_gpu_hours_and_the_first_scale_up_after_the_change():
    def at(minute: float, desired: int) -> Sample:
        pool = PoolSample("l40s", desired, desired, 7.0, 1.0, gpus_per_replica=2)
        return Sample(minute, (pool,), (), None, None)

    samples = [at(0, 3), at(60, 2), at(120, 2), at(180, 4), at(240, 4)]
    assert demo.gpu_hours(samples) == pytest.approx(2 * (3 + 2 + 2 + 4))
    assert demo.first_scale_up(samples, 30) == 180  # the scale-down after it does not count
    assert demo.first_scale_up(samples, 200) is None
    table = demo.closing_table(
        [demo.Outcome("slower", "t", 1000, 4, 12.0, 0, 30.0),
         demo.Outcome("prompts-x2", "t", 1000, 9, 12.0, 1080, None)]
    )  # fmt: skip
    assert "met" in table[1] and "30 min" in table[1]
    assert "MISSED" in table[2] and "no scale-up" in table[2]


def test_demo_prints_the_operators_findings_and_recommendation():
    status = {
        "findings": [{"severity": "warning", "metric": "ttftP99", "observed": "2.1s",
                      "threshold": "1.95s", "advice": "re-size for longer prompts"}],
        "recommendation": {"reason": "prompt P99 grew 3x"},
    }  # fmt: skip
    lines = demo._verdict(status)
    assert lines[0] == (
        "finding: warning ttftP99 2.1s (threshold 1.95s): re-size for longer prompts"
    )
    assert "prompt P99 grew 3x" in lines[1]
    assert demo._verdict({}) == []
