"""Drives the sizing simulator's continuous-batching engine on the wall clock.

The very engine `inferfleet curve` loops offline is stepped here in real time: each step's
modelled duration (divided by `speedup`) passes on the wall clock before its tokens are
delivered to the waiting HTTP streams. Steps are scheduled against an absolute timeline, so
event-loop jitter delays a token but never accumulates into a slower engine.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from e2e.emulator.dcgm import Activity
from e2e.emulator.metrics import VllmMetrics
from e2e.emulator.prefix import PrefixCache
from e2e.emulator.tokens import Token
from sizing.frontend import FrontEnd
from sizing.performance import StepTimeModel
from sizing.simulator import Engine, EngineLimits, StepResult

ACTIVITY_WINDOW_S = 5.0  # wall seconds of step history behind the DCGM utilization figures
# Wall seconds an idle engine waits for more arrivals before its first step (which still
# starts, on the engine clock, at the first arrival): larger than localhost HTTP jitter.
DEFAULT_ADMISSION_WINDOW_S = 0.005
NO_FRONT_END = FrontEnd()  # engine only: what unit tests of the driver drive


@dataclass(frozen=True)
class TokenEvent:
    sim_s: float  # engine time the token left the GPU
    finish_reason: str | None  # "length" / "stop" on the last token


class RequestStream:
    """One request's tokens as the engine emits them; `abort()` frees its slot."""

    def __init__(self, owner: RealTimeEngine, request_id: int) -> None:
        self._owner = owner
        self.request_id = request_id
        self.queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self.finished = False

    async def tokens(self) -> AsyncIterator[TokenEvent]:
        while not self.finished or not self.queue.empty():
            event = await self.queue.get()
            yield event
            if event.finish_reason is not None:
                return

    def abort(self) -> None:
        if not self.finished:
            self.finished = True
            self._owner.abort(self.request_id)


@dataclass
class _Tracked:
    stream: RequestStream
    arrival_sim_s: float
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    emitted: int = 0
    last_token_sim_s: float = 0.0


class RealTimeEngine:
    """Owns the engine, the request table and the metrics; `run()` is its only loop."""

    def __init__(
        self,
        engine: Engine,
        step_model: StepTimeModel,
        limits: EngineLimits,
        metrics: VllmMetrics,
        speedup: float,
        seed: int,
        mean_output_tokens: float,
        admission_window_s: float = DEFAULT_ADMISSION_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        front_end: FrontEnd = NO_FRONT_END,
    ) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup must be > 0, got {speedup}")
        self.engine = engine
        self.step_model = step_model
        self.block_size = limits.block_size
        self.kv_blocks = limits.kv_blocks
        self._prefix_cache = PrefixCache(limits.kv_blocks, limits.block_size)
        self.metrics = metrics
        self.speedup = speedup
        self.mean_output_tokens = mean_output_tokens
        self.admission_window_s = admission_window_s
        self._rng = random.Random(seed)
        self._clock = clock
        self._wall0 = clock()
        self.front_end = front_end
        self._tokenizer_free_sim_s = 0.0
        self._tracked: dict[int, _Tracked] = {}
        self._wake = asyncio.Event()
        # (wall end, wall duration, compute share, memory share) of recent steps, for DCGM.
        self._steps: deque[tuple[float, float, float, float]] = deque()

    def _sim_now(self) -> float:
        return (self._clock() - self._wall0) * self.speedup

    def _output_tokens(self, max_tokens: int, ignore_eos: bool) -> tuple[int, str]:
        """Without ignore_eos the model "stops" after a geometric number of tokens (seeded)."""
        if ignore_eos:
            return max_tokens, "length"
        p = 1.0 / max(self.mean_output_tokens, 1.0)
        drawn = 1 + int(math.log(1.0 - self._rng.random()) / math.log(1.0 - p)) if p < 1 else 1
        if drawn >= max_tokens:
            return max_tokens, "length"
        return drawn, "stop"

    async def through_front_end(self, prompt_tokens: int) -> None:
        """Wait as vLLM's API server makes a request wait before the engine sees it: its
        per-request latency, then one tokenizer taking prompts first come, first served
        (`sizing.frontend`, the stage `inferfleet curve` prices a client's loop with)."""
        if self.front_end.free:
            return
        now = self._sim_now()
        start = max(now + self.front_end.request_latency_s, self._tokenizer_free_sim_s)
        self._tokenizer_free_sim_s = start + prompt_tokens * self.front_end.tokenize_s_per_token
        await asyncio.sleep((self._tokenizer_free_sim_s - now) / self.speedup)

    def submit(self, prompt: Sequence[Token], max_tokens: int, ignore_eos: bool) -> RequestStream:
        """Queue a request; its tokens arrive on the returned stream."""
        prompt_tokens = len(prompt)
        output_tokens, reason = self._output_tokens(max_tokens, ignore_eos)
        arrival = self._sim_now()
        if not self.engine.has_work:
            # Idle time passes instantly for the engine: it resumes at the current wall time.
            self.engine.advance_to(arrival)
        request_id = self.engine.add_request(prompt_tokens, output_tokens)
        stream = RequestStream(self, request_id)
        self._tracked[request_id] = _Tracked(stream, arrival, prompt_tokens, output_tokens, reason)
        self.metrics.prefix_queries.inc(prompt_tokens)
        self.metrics.prefix_hits.inc(self._prefix_cache.query(prompt))
        self._wake.set()
        return stream

    def abort(self, request_id: int) -> None:
        """Stop delivering a request's tokens (the client left or the stream was dropped).

        The sizing engine has no abort, so the request keeps its batch slot until its
        planned output is done: a replica that runs aborted work a little longer than vLLM.
        """
        if self._tracked.pop(request_id, None) is not None:
            self.metrics.success["abort"].inc()

    def activity(self) -> Activity:
        """Busy, compute and memory shares of the last few wall seconds."""
        now = self._clock()
        while self._steps and self._steps[0][0] < now - ACTIVITY_WINDOW_S:
            self._steps.popleft()
        window = min(ACTIVITY_WINDOW_S, max(now - self._wall0, 1e-9))
        busy = sum(s[1] for s in self._steps)
        compute = sum(s[1] * s[2] for s in self._steps)
        memory = sum(s[1] * s[3] for s in self._steps)
        return Activity(
            busy=min(busy / window, 1.0),
            compute=min(compute / window, 1.0),
            memory=min(memory / window, 1.0),
        )

    def _shares(self, result: StepResult) -> tuple[float, float]:
        """Which share of a step the tensor cores and HBM were busy, from the roofline terms.

        Attention FLOPs and the exact KV read are left out (the step result does not carry
        them): GEMM FLOPs and weights + resident KV are what dominate each side.
        """
        m = self.step_model
        if result.duration_s <= 0:
            return 0.0, 0.0
        tokens = result.decode_tokens + result.prefill_tokens
        compute_s = m.compute_s_per_token * tokens
        kv_tokens = result.kv_blocks_used * self.block_size
        memory_s = m.dense_weights_s + m.all_experts_s + m.memory_s_per_kv_token * kv_tokens
        return min(compute_s / result.duration_s, 1.0), min(memory_s / result.duration_s, 1.0)

    async def run(self) -> None:
        """Step while there is work, each step taking its modelled time on the wall clock."""
        while True:
            if not self.engine.has_work:
                self._publish_gauges()
                self._wake.clear()
                await self._wake.wait()
                # Requests sent together reach an idle server a few wall ms apart (HTTP and
                # event-loop jitter, multiplied by the speedup). Gather them into the step
                # that starts at the first one's arrival, as a batch sent at once would be.
                await asyncio.sleep(self.admission_window_s)
                continue
            result = self.engine.step()
            wall_end = self._wall0 + result.end_s / self.speedup
            # Always yield, even when late, so the HTTP handlers stream each step's tokens
            # before the next step runs instead of in bursts.
            await asyncio.sleep(max(wall_end - self._clock(), 0.0))
            self._steps.append((wall_end, result.duration_s / self.speedup, *self._shares(result)))
            self._deliver(result)
            self._publish_gauges()

    def _deliver(self, result: StepResult) -> None:
        m = self.metrics
        now = result.end_s
        m.prompt_tokens.inc(result.prefill_tokens)
        m.generation_tokens.inc(len(result.token_ids))
        m.preemptions.inc(len(result.preempted_ids))
        finished = set(result.finished_ids)
        for request_id in result.token_ids:
            tracked = self._tracked.get(request_id)
            if tracked is None:
                continue  # aborted
            tracked.emitted += 1
            if tracked.emitted == 1:
                m.ttft.observe(now - tracked.arrival_sim_s)
            else:
                m.itl.observe(now - tracked.last_token_sim_s)
            tracked.last_token_sim_s = now
            done = request_id in finished
            reason = tracked.finish_reason if done else None
            tracked.stream.queue.put_nowait(TokenEvent(now, reason))
            if done:
                del self._tracked[request_id]
                tracked.stream.finished = True
                m.success[tracked.finish_reason].inc()
                m.e2e.observe(now - tracked.arrival_sim_s)
                m.request_prompt_tokens.observe(tracked.prompt_tokens)
                m.request_generation_tokens.observe(tracked.emitted)

    def _publish_gauges(self) -> None:
        self.metrics.running.set(self.engine.running)
        self.metrics.waiting.set(self.engine.waiting)
        self.metrics.kv_cache_usage.set(self.engine.kv_blocks_used / self.kv_blocks)
