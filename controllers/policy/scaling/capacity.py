"""Measured capacity: what one replica of a pool really serves within the SLO, online.

The plan predicts a usable rate per replica; production says what it is. Each interval the
pool's vLLM signals (completed requests and tokens per ready replica, requests waiting, KV-cache
usage, TTFT/ITL P99) are read as one sample of the replica's capacity, in three units at once
(requests/s, prompt tokens/s, generated tokens/s), because which one limits depends on the
workload the pool really gets:

* **saturated** (requests queue, TTFT or ITL P99 above the SLO while each replica serves at
  least half the plan's figure, or KV cache past its threshold): the replicas served all they
  could, so capacity is what they served per replica. Saturated samples are an upper bound on
  what meets the SLO and weigh fully.
* **near-saturated** (serving at least `LOADED_SHARE` of the current estimate, nothing
  over; "loaded" below): the replicas served x within the SLO at utilization u (the highest
  of TTFT/SLO, ITL/SLO, KV usage over its threshold and running requests over the plan's
  concurrency), so capacity is about x / u, with u floored at `U_FLOOR` so one sample
  extrapolates by at most 1 / U_FLOOR. Weighs by how near its limits it ran (u).
* **idle** or unknown (light load, no replica ready, fewer ready than at the last sample — a
  restart or a scale-down within the interval — or no signal that tells queueing apart):
  ignored, the state does not move. A replica that joined within the interval is kept: it
  only lowers the figure, the safe side.

Each kind is a decaying weighted mean (half-life `HALF_LIFE_S` of policy time, applied at the
next informative sample, so idle hours do not erase what was measured). The measured figure is
the loaded mean, pulled down to the saturated one as saturated evidence accumulates (the
loaded extrapolation runs high when latency grows with load). Every sample estimate is bounded
to [`MIN_FACTOR`, `MAX_FACTOR`] x the prediction, so the result is finite, positive and bounded.
Confidence grows with the evidence: 1 - exp(-weight / `CONFIDENT_WEIGHT`); before it is
confident the decision blends prediction and measurement geometrically by confidence. A
replica measured slower than planned is believed `SLOWER_TRUST` times sooner than a faster
one: trusting a low figure costs replicas, trusting a high one costs the SLO.

Pure: time is a parameter; state round-trips through `to_dict` / `load`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

HALF_LIFE_S = 6 * 3600.0  # how long a measurement keeps half its weight
U_FLOOR = 0.6  # one loaded sample claims at most 1 / U_FLOOR of what it served
# Near-saturated: serving at least this share of the estimate. Below it a sample could claim
# no more than the estimate already says (x / U_FLOOR at most), so it is idle; at it, a pool of
# three replicas the plan's spare keeps at two thirds of the estimate still learns it is faster.
LOADED_SHARE = U_FLOOR
MIN_FACTOR, MAX_FACTOR = 0.1, 10.0  # measured capacity stays within these x the prediction
CONFIDENT_WEIGHT = 3.0  # evidence weight at which confidence is 1 - 1/e
SLOWER_TRUST = 3.0  # a measurement below the plan counts as this many samples in the blend
SATURATED_PULL = 0.1  # saturated weight at which the measured figure is halfway to it
KV_SATURATED_RATIO = 0.95  # KV-cache usage at which vLLM starts to preempt
WAITING_PER_REPLICA = 1.0  # queued requests per ready replica that mean it is full
LATENCY_BUSY_SHARE = 0.5  # latency over the SLO means "full" only at this share of capacity
GPU_BUSY_RATIO = 0.7  # or, for TTFT, while the GPUs step at least this share of the time
MIX_HALF_REQUESTS = 100.0  # the request mix forgets half of itself every this many completions
UNITS = ("rps", "prompt_tok_per_s", "gen_tok_per_s")


@dataclass(frozen=True)
class PerReplica:
    """What one replica serves per second, per unit; None where not known."""

    rps: float
    prompt_tok_per_s: float | None = None
    gen_tok_per_s: float | None = None

    def get(self, unit: str) -> float | None:
        value: float | None = getattr(self, unit)
        return value


@dataclass(frozen=True)
class LoadSample:
    """One interval of a pool as vLLM reports it (sums over ready replicas); None = unknown."""

    ready: int | None = None
    served_rps: float | None = None  # completions, as the rate of vllm:request_success_total
    prompt_tok_per_s: float | None = None
    gen_tok_per_s: float | None = None
    waiting: float | None = None  # vllm:num_requests_waiting at the end of the interval
    running: float | None = None  # vllm:num_requests_running at the end of the interval
    kv_usage_ratio: float | None = None  # mean over replicas, 0..1
    ttft_p99_s: float | None = None
    itl_p99_s: float | None = None
    gpu_busy_ratio: float | None = None  # share of time a step runs, mean over GPUs (DCGM), 0..1

    def clean(self) -> LoadSample:
        """The same sample with every non-finite or negative figure made unknown."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not math.isfinite(value) or value < 0):
                value = None
            values[f.name] = value
        return replace(self, **values)

    @property
    def known(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


@dataclass(frozen=True)
class SLOLimits:
    """The thresholds a sample is judged against (from spec.slo and the guide's defaults)."""

    ttft_p99_s: float | None = None
    itl_p99_s: float | None = None
    kv_usage_ratio: float = KV_SATURATED_RATIO
    running_per_replica: float | None = None  # the plan's concurrency at its usable rate


def overloaded(
    sample: LoadSample, limits: SLOLimits, capacity_rps: float | None = None
) -> list[str]:
    """What in this sample is over its limit, in words with the numbers; empty when nothing.

    Latency over the SLO counts only while the replicas serve at least `LATENCY_BUSY_SHARE`
    of `capacity_rps` each (when given; the plan's figure, a fixed reference, so a low
    estimate cannot make ever lighter load look busy): a lightly loaded replica still too
    slow per step (a long prompt's prefill, an ITL target below one step, a P99 read from
    coarse histogram buckets) is not short of capacity, and more replicas would not make its
    steps shorter. TTFT over the SLO also counts while the GPUs step at least
    `GPU_BUSY_RATIO` of the time, whatever the plan says a replica serves: arrivals then wait
    behind the work in progress (the plan's figure is wrong exactly when the mix changed),
    and the share falls as replicas are added, so it cannot drive a spiral. A queue is always
    a shortage.
    """
    s = sample
    out = []
    busy = True
    if capacity_rps and s.ready and s.served_rps is not None:
        busy = s.served_rps / s.ready >= LATENCY_BUSY_SHARE * capacity_rps
    gpu_busy = s.gpu_busy_ratio is not None and s.gpu_busy_ratio >= GPU_BUSY_RATIO
    ttft_busy = busy or gpu_busy
    if (
        ttft_busy
        and s.ttft_p99_s is not None
        and limits.ttft_p99_s
        and s.ttft_p99_s > limits.ttft_p99_s
    ):
        out.append(f"TTFT P99 {s.ttft_p99_s:.3g} s > SLO {limits.ttft_p99_s:.3g} s")
    if busy and s.itl_p99_s is not None and limits.itl_p99_s and s.itl_p99_s > limits.itl_p99_s:
        out.append(f"ITL P99 {1000 * s.itl_p99_s:.3g} ms > SLO {1000 * limits.itl_p99_s:.3g} ms")
    if s.kv_usage_ratio is not None and s.kv_usage_ratio >= limits.kv_usage_ratio:
        out.append(
            f"KV cache {100 * s.kv_usage_ratio:.0f} % >= {100 * limits.kv_usage_ratio:.0f} %"
        )
    if s.waiting is not None and s.ready and s.waiting >= WAITING_PER_REPLICA * s.ready:
        out.append(f"{s.waiting:.0f} requests waiting on {s.ready} ready")
    return out


def utilization(sample: LoadSample, limits: SLOLimits) -> float | None:
    """How close to its limits the sample ran (0..): the highest known signal, else None."""
    s = sample
    shares = []
    if s.ttft_p99_s is not None and limits.ttft_p99_s:
        shares.append(s.ttft_p99_s / limits.ttft_p99_s)
    if s.itl_p99_s is not None and limits.itl_p99_s:
        shares.append(s.itl_p99_s / limits.itl_p99_s)
    if s.kv_usage_ratio is not None:
        shares.append(s.kv_usage_ratio / limits.kv_usage_ratio)
    if s.running is not None and s.ready and limits.running_per_replica:
        shares.append(s.running / s.ready / limits.running_per_replica)
    return max(shares) if shares else None


@dataclass(frozen=True)
class CapacityEstimate:
    """The measured capacity per replica (None until measured) and how sure it is."""

    measured: PerReplica | None
    confidence: float  # 0..1
    samples: int  # informative samples so far
    saturated_samples: int
    last_updated_s: float | None


def _bounded(value: float, predicted: float | None) -> float:
    if predicted is None or predicted <= 0:
        return value
    return min(MAX_FACTOR * predicted, max(MIN_FACTOR * predicted, value))


class _DecayingMean:
    """A weighted mean whose weights halve every `HALF_LIFE_S` of policy time."""

    def __init__(self) -> None:
        self.weight = 0.0
        self.mean: dict[str, float] = {}
        self.at_s: float | None = None

    def weight_at(self, now_s: float) -> float:
        if self.at_s is None:
            return 0.0
        return self.weight * 0.5 ** (max(0.0, now_s - self.at_s) / HALF_LIFE_S)

    def add(self, now_s: float, values: dict[str, float], weight: float) -> None:
        old = self.weight_at(now_s)
        total = old + weight
        for unit, value in values.items():
            prev = self.mean.get(unit)
            self.mean[unit] = value if prev is None else (old * prev + weight * value) / total
        self.weight, self.at_s = total, now_s

    def to_dict(self) -> dict[str, Any]:
        return {"w": self.weight, "mean": dict(self.mean), "at": self.at_s}

    def load(self, data: dict[str, Any]) -> None:
        weight = float(data["w"])
        mean = {str(k): float(v) for k, v in data["mean"].items()}
        if not (math.isfinite(weight) and weight >= 0) or any(
            k not in UNITS or not (math.isfinite(v) and v > 0) for k, v in mean.items()
        ):
            raise ValueError("capacity state holds a negative or non-finite figure")
        self.weight, self.mean = weight, mean
        self.at_s = None if data.get("at") is None else float(data["at"])


class RequestMix:
    """Prompt and output tokens per request of what was served lately, weighed by requests.

    The unit that limits divides a token capacity by tokens per request. One interval of a
    few requests gives a noisy figure (a 7,000-token prompt among three), and the minimum over
    units turns that noise into too few req/s per replica. So the mix forgets half of itself
    every `MIX_HALF_REQUESTS` completions: a busy pool follows a prompt-length shift within
    its interval, a quiet one over the next few hundred requests.
    """

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}  # unit -> [requests, tokens], decayed

    def observe(self, sample: LoadSample, interval_s: float) -> None:
        served = sample.served_rps
        if not served:
            return
        n = served * interval_s
        keep = 0.5 ** (n / MIX_HALF_REQUESTS)
        for unit, tok_per_s in (("prompt", sample.prompt_tok_per_s), ("gen", sample.gen_tok_per_s)):
            if tok_per_s is None:
                continue
            requests, tokens = self.sums.get(unit, [0.0, 0.0])
            self.sums[unit] = [keep * requests + n, keep * tokens + tok_per_s * interval_s]

    def per_request(self, unit: str) -> float | None:
        requests, tokens = self.sums.get(unit, [0.0, 0.0])
        return tokens / requests if requests > 0 and math.isfinite(tokens / requests) else None

    def smoothed(self, sample: LoadSample) -> tuple[float | None, float | None, float | None]:
        """The sample's (served req/s, prompt tok/s, generated tok/s) with the token rates
        those requests carry at the smoothed mix (the sample's own where none is known)."""
        served = sample.served_rps
        if not served:
            return served, sample.prompt_tok_per_s, sample.gen_tok_per_s
        prompt, gen = self.per_request("prompt"), self.per_request("gen")
        return (
            served,
            sample.prompt_tok_per_s if prompt is None else served * prompt,
            sample.gen_tok_per_s if gen is None else served * gen,
        )

    def to_dict(self) -> dict[str, Any]:
        return {unit: list(pair) for unit, pair in self.sums.items()}

    def load(self, data: dict[str, Any]) -> None:
        sums = {str(u): [float(r), float(t)] for u, (r, t) in data.items()}
        if any(u not in ("prompt", "gen") or not all(math.isfinite(v) and v >= 0 for v in pair)
               for u, pair in sums.items()):  # fmt: skip
            raise ValueError("request mix state holds a negative or non-finite figure")
        self.sums = sums


class CapacityEstimator:
    """Online measured capacity of one pool's replicas; feed one sample per interval."""

    def __init__(self, predicted: PerReplica, limits: SLOLimits, interval_s: float = 60.0) -> None:
        self.predicted = predicted
        self.limits = limits
        self.interval_s = interval_s
        self.mix = RequestMix()
        self.saturated = _DecayingMean()
        self.loaded = _DecayingMean()
        self.samples = 0
        self.saturated_samples = 0
        self.last_ready: int | None = None

    def observe(self, now_s: float, raw: LoadSample) -> str:
        """Learn from one interval; returns its kind: saturated, loaded or idle."""
        sample = raw.clean()
        self.mix.observe(sample, self.interval_s)
        ready, last = sample.ready, self.last_ready
        if ready is not None:
            self.last_ready = ready
        # A replica lost within the interval (a restart, a scale-down) leaves its completions
        # counted over fewer replicas; one that joined only lowers the figure, the safe side.
        if not ready or last is None or ready < last or not sample.served_rps:
            return "idle"
        # Tokens at the smoothed mix: one interval's few long prompts are not a slow replica.
        rates = self.mix.smoothed(sample)
        served = {
            unit: value / ready
            for unit, value in zip(UNITS, rates, strict=True)
            if value is not None and value > 0
        }
        planned, _ = rps_in_limiting_unit(self.predicted, *rates)
        if overloaded(sample, self.limits, planned):
            values = {u: _bounded(v, self.predicted.get(u)) for u, v in served.items()}
            self.saturated.add(now_s, values, 1.0)
            self.samples += 1
            self.saturated_samples += 1
            return "saturated"
        share = served["rps"] / self.current(now_s).rps
        u = utilization(sample, self.limits)
        if share < LOADED_SHARE or u is None:
            return "idle"
        # Within the SLO it served x, so it serves at least x: u is capped at 1.
        nearness = max(min(u, 1.0), U_FLOOR)
        values = {
            unit: _bounded(v / nearness, self.predicted.get(unit)) for unit, v in served.items()
        }
        # Weighed by how near its limits it ran, not by what it served: a weight that grew
        # with throughput would let a busier low sample outweigh the rest (not monotone).
        self.loaded.add(now_s, values, nearness)
        self.samples += 1
        return "loaded"

    def _measured(self, now_s: float) -> PerReplica | None:
        w_sat, w_load = self.saturated.weight_at(now_s), self.loaded.weight_at(now_s)
        if w_sat <= 0 and w_load <= 0:
            return None
        pull = w_sat / (w_sat + SATURATED_PULL)
        out: dict[str, float] = {}
        for unit in UNITS:
            sat, load = self.saturated.mean.get(unit), self.loaded.mean.get(unit)
            if sat is not None and w_sat > 0 and load is not None and w_load > 0:
                out[unit] = load + pull * (min(load, sat) - load)
            elif load is not None and w_load > 0:
                out[unit] = load
            elif sat is not None and w_sat > 0:
                out[unit] = sat
        if "rps" not in out:
            return None
        return PerReplica(out["rps"], out.get("prompt_tok_per_s"), out.get("gen_tok_per_s"))

    def estimate(self, now_s: float) -> CapacityEstimate:
        weight = self.saturated.weight_at(now_s) + self.loaded.weight_at(now_s)
        stamps = [t for t in (self.saturated.at_s, self.loaded.at_s) if t is not None]
        return CapacityEstimate(
            measured=self._measured(now_s),
            confidence=1.0 - math.exp(-weight / CONFIDENT_WEIGHT),
            samples=self.samples,
            saturated_samples=self.saturated_samples,
            last_updated_s=max(stamps) if stamps else None,
        )

    def current(self, now_s: float) -> PerReplica:
        """Capacity per replica the decision uses: prediction and measurement blended."""
        return blend(self.predicted, self.estimate(now_s))

    def to_dict(self) -> dict[str, Any]:
        return {
            "saturated": self.saturated.to_dict(),
            "loaded": self.loaded.to_dict(),
            "samples": self.samples,
            "saturatedSamples": self.saturated_samples,
            "lastReady": self.last_ready,
            "mix": self.mix.to_dict(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.saturated.load(data["saturated"])
        self.loaded.load(data["loaded"])
        self.samples = int(data["samples"])
        self.saturated_samples = int(data["saturatedSamples"])
        self.last_ready = None if data.get("lastReady") is None else int(data["lastReady"])
        if data.get("mix"):  # state saved before the mix was smoothed lacks it
            self.mix.load(data["mix"])


def blend(predicted: PerReplica, estimate: CapacityEstimate) -> PerReplica:
    """Geometric blend by confidence, unit by unit (sooner where the measurement is below
    the plan); a unit the plan has no figure for is used once the measurement is at least
    half confident."""
    measured, c = estimate.measured, estimate.confidence
    if measured is None or c <= 0:
        return predicted
    out: dict[str, float | None] = {}
    for unit in UNITS:
        pred, meas = predicted.get(unit), measured.get(unit)
        if pred is not None and meas is not None:
            trust = c if meas >= pred else 1.0 - (1.0 - c) ** SLOWER_TRUST
            out[unit] = pred ** (1 - trust) * meas**trust
        elif pred is None and meas is not None and c >= 0.5:
            out[unit] = meas
        else:
            out[unit] = pred
    rps = out["rps"]
    assert rps is not None
    return PerReplica(rps, out["prompt_tok_per_s"], out["gen_tok_per_s"])


def rps_in_limiting_unit(
    capacity: PerReplica,
    served_rps: float | None,
    prompt_tok_per_s: float | None,
    gen_tok_per_s: float | None,
) -> tuple[float, str]:
    """Usable req/s per replica for today's request mix: the unit that binds first.

    Prompt and output tokens per request are what the requests served now carry, so a
    prompt-length shift lowers the req/s a replica serves at once. Returns the rate and unit.
    """
    best, unit = capacity.rps, "requests"
    if not served_rps or not math.isfinite(served_rps) or served_rps <= 0:
        return best, unit
    for name, tok_per_s, cap in (
        ("prefill tokens", prompt_tok_per_s, capacity.prompt_tok_per_s),
        ("decode tokens", gen_tok_per_s, capacity.gen_tok_per_s),
    ):
        per_request = (tok_per_s or 0.0) / served_rps
        if cap and math.isfinite(per_request) and per_request > 0:  # 0 also when it underflows
            rate = cap / per_request
            if rate < best:
                best, unit = rate, name
    return best, unit
