"""Open-loop replay of a per-minute trace, time-compressed, across the fleet's ready replicas.

Two clocks, so that a day fits in minutes:

* **time compression**: one trace minute lasts `wall_s_per_minute` wall seconds, so the day's
  shape (night trough, evening peak) passes by quickly;
* **speedup**: the emulators run `speedup` GPU seconds per wall second, so a wall second
  carries `speedup` seconds of that minute's traffic. Arrivals are Poisson at
  `demand_rps x speedup` per wall second and every latency is read back times `speedup`:
  utilization and TTFT are those of the traced rate. At 1 (the demo's default) request rates
  scraped by Prometheus are real rates too, which is what the operator reads.

Requests go to the ready replica with the fewest outstanding requests (a Service behind a
least-request load balancer). With no ready replica a request fails at once, as a Service
without endpoints would answer. A request misses the SLO when it fails or its TTFT in GPU
time exceeds the SLO's TTFT P99 target. The request itself is `controllers.adapters.benchmark`'s.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np

from controllers.adapters.benchmark import LoadSpec, RequestRecord, request_body, send_request
from controllers.policy.scaling.replay import Trace
from e2e.local.pods import Endpoint
from sizing.lengths import sample_lengths
from sizing.workload import Percentiles

MAX_CONNECTIONS = 256
REQUEST_TIMEOUT_S = 30.0  # wall; far beyond any SLO once multiplied by the speedup
NO_ENDPOINT = "no ready replica"


@dataclass(frozen=True)
class Demand:
    """Requests per second (real time) per trace minute, from trace minute `first_minute`."""

    rps: tuple[float, ...]
    first_minute: int = 0

    @classmethod
    def from_trace(
        cls, trace: Trace, peak_rps: float, first_minute: int = 0, minutes: int = 1440
    ) -> Demand:
        """A window of the trace, rescaled so its busiest minute is `peak_rps`.

        A minute without data (a collection gap) keeps the previous minute's rate: the
        demo needs a load, and an outage in the record is not an outage of the users.
        """
        if trace.interval_s != 60.0:
            raise ValueError(f"trace interval is {trace.interval_s} s; a per-minute trace is 60 s")
        window = trace.requests[first_minute : first_minute + minutes]
        if not window or all(c is None for c in window):
            raise ValueError(
                f"trace has no data in minutes {first_minute}..{first_minute + minutes - 1} "
                f"(it has {len(trace.requests)} minutes)"
            )
        counts: list[float] = []
        for count in window:
            counts.append(float(count) if count is not None else (counts[-1] if counts else 0.0))
        busiest = max(counts)
        if busiest <= 0 or peak_rps <= 0:
            raise ValueError(f"cannot rescale: busiest minute {busiest}, peak {peak_rps} req/s")
        return cls(tuple(c * peak_rps / busiest for c in counts), first_minute)

    def __len__(self) -> int:
        return len(self.rps)


@dataclass(frozen=True)
class ReplayConfig:
    model: str  # served model name
    prompt: Percentiles
    output: Percentiles
    max_model_len: int
    ttft_slo_s: float
    speedup: float  # emulated GPU seconds per wall second (the emulators' --speedup)
    wall_s_per_minute: float  # wall seconds one trace minute lasts
    shift_from_minute: int | None = None  # prompts change from this trace minute (from 00:00)
    prompt_shift_factor: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.speedup <= 0 or self.wall_s_per_minute <= 0:
            raise ValueError(
                f"speedup ({self.speedup}) and wall_s_per_minute ({self.wall_s_per_minute}) "
                "must be > 0"
            )
        if self.prompt_shift_factor <= 0:
            raise ValueError(f"prompt_shift_factor must be > 0, got {self.prompt_shift_factor}")


@dataclass
class MinuteStats:
    """What happened to the requests that arrived in one trace minute."""

    minute: int
    demand_rps: float
    sent: int = 0
    ok: int = 0
    failed: int = 0
    slo_missed: int = 0
    prompt_tokens: int = 0
    ttft_s: list[float] = field(default_factory=list)  # GPU time, successful requests

    @property
    def ttft_p99_s(self) -> float | None:
        values = list(self.ttft_s)
        return float(np.percentile(values, 99)) if values else None

    @property
    def done(self) -> int:
        return self.ok + self.failed


def pick_endpoint(
    endpoints: Sequence[Endpoint], outstanding: dict[str, int], rng: random.Random
) -> Endpoint | None:
    """The ready replica with the fewest requests in flight; ties broken at random."""
    if not endpoints:
        return None
    fewest = min(outstanding.get(e.url, 0) for e in endpoints)
    return rng.choice([e for e in endpoints if outstanding.get(e.url, 0) == fewest])


class LoadDriver:
    """Replays `demand` on its own event loop thread; `stats` fill in as requests finish."""

    def __init__(
        self,
        demand: Demand,
        config: ReplayConfig,
        endpoints: Callable[[], Sequence[Endpoint]],
    ) -> None:
        self.demand = demand
        self.config = config
        self._endpoints = endpoints
        self.stats = [MinuteStats(demand.first_minute + i, rps) for i, rps in enumerate(demand.rps)]
        self.outstanding: dict[str, int] = {}
        self._rng = random.Random(config.seed)
        self._np_rng = np.random.default_rng(config.seed)  # lengths and prompt token ids
        self._stop = threading.Event()
        self._started_s: float | None = None
        self._thread = threading.Thread(target=self._main, name="load-driver", daemon=True)
        self.error: BaseException | None = None

    @property
    def duration_s(self) -> float:
        return len(self.demand) * self.config.wall_s_per_minute

    def elapsed_minutes(self) -> float:
        """Trace minutes replayed so far (fractional); 0 before the start."""
        if self._started_s is None:
            return 0.0
        elapsed_s = time.monotonic() - self._started_s
        return min(len(self.demand), elapsed_s / self.config.wall_s_per_minute)

    def minute_now(self) -> float:
        """The trace minute being replayed (fractional), counted from the trace's 00:00."""
        return self.demand.first_minute + self.elapsed_minutes()

    def start(self) -> LoadDriver:
        self._started_s = time.monotonic()
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> bool:
        """Wait for the replay and its in-flight requests; True when it finished."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(REQUEST_TIMEOUT_S + 5)

    def _main(self) -> None:
        try:
            asyncio.run(self._replay())
        except BaseException as err:  # reported by the caller, not lost in the thread
            self.error = err

    async def _replay(self) -> None:
        assert self._started_s is not None
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=64)
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=5.0)
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            for arrival_s in self._arrivals():
                delay_s = arrival_s - (time.monotonic() - self._started_s)
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                if self._stop.is_set():
                    break
                index = int(arrival_s / self.config.wall_s_per_minute)
                task = asyncio.create_task(self._one(client, index))
                tasks.add(task)
                task.add_done_callback(self._finished)
                task.add_done_callback(tasks.discard)
            while tasks and not self._stop.is_set():
                await asyncio.wait(set(tasks), timeout=0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """A request task that raised is a bug in the driver: keep it and stop the replay."""
        if not task.cancelled() and task.exception() is not None and self.error is None:
            self.error = task.exception()
            self._stop.set()

    def _arrivals(self) -> Iterator[float]:
        """Poisson arrival times (wall s), piecewise constant rate per trace minute.

        Exponential gaps are memoryless, so at a minute boundary the draw simply restarts at
        the new minute's rate.
        """
        per_minute_s = self.config.wall_s_per_minute
        for index, rps in enumerate(self.demand.rps):
            rate_per_wall_s = rps * self.config.speedup
            start_s, end_s = index * per_minute_s, (index + 1) * per_minute_s
            t = start_s
            while rate_per_wall_s > 0:
                t += self._rng.expovariate(rate_per_wall_s)
                if t >= end_s:
                    break
                yield t

    def _lengths_for(self, minute: int) -> tuple[int, int]:
        """Prompt and output lengths for a request arriving in trace minute `minute`."""
        cfg = self.config
        output = int(sample_lengths(cfg.output, 1, self._np_rng, cfg.max_model_len - 1)[0])
        prompt = int(sample_lengths(cfg.prompt, 1, self._np_rng)[0])
        if cfg.shift_from_minute is not None and minute >= cfg.shift_from_minute:
            prompt = math.ceil(prompt * cfg.prompt_shift_factor)
        return min(prompt, cfg.max_model_len - output), output

    async def _one(self, client: httpx.AsyncClient, index: int) -> None:
        stats = self.stats[index]
        stats.sent += 1
        prompt, output = self._lengths_for(stats.minute)
        endpoint = pick_endpoint(self._endpoints(), self.outstanding, self._rng)
        if endpoint is None:
            self._count(stats, RequestRecord(0.0, 0.0, error=NO_ENDPOINT))
            return
        spec = LoadSpec(
            url=endpoint.url,
            model=self.config.model,
            input_len=prompt,
            output_len=output,
            num_prompts=1,
            request_timeout_s=REQUEST_TIMEOUT_S,
        )
        self.outstanding[endpoint.url] = self.outstanding.get(endpoint.url, 0) + 1
        try:
            record = await send_request(client, spec, request_body(spec, self._np_rng), 0.0)
        finally:
            self.outstanding[endpoint.url] -= 1
        stats.prompt_tokens += prompt
        self._count(stats, record)

    def _count(self, stats: MinuteStats, record: RequestRecord) -> None:
        if not record.ok or record.ttft_s is None:
            stats.failed += 1
            stats.slo_missed += 1
            return
        ttft_s = record.ttft_s * self.config.speedup
        stats.ok += 1
        stats.ttft_s.append(ttft_s)
        stats.slo_missed += ttft_s > self.config.ttft_slo_s

    # --- totals ----------------------------------------------------------------------------------

    def totals(self) -> MinuteStats:
        """All minutes together (minute -1, demand = mean)."""
        total = MinuteStats(-1, float(np.mean(self.demand.rps)))
        for s in self.stats:
            total.sent += s.sent
            total.ok += s.ok
            total.failed += s.failed
            total.slo_missed += s.slo_missed
            total.prompt_tokens += s.prompt_tokens
            total.ttft_s.extend(s.ttft_s)
        return total
