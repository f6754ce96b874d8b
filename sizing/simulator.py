"""A continuous-batching engine for ONE vLLM replica (V1 scheduler semantics), step by step.

Each `step()` schedules like vLLM's V1 scheduler: every running decode gets one token first,
then prefills fill what is left of the `max_num_batched_tokens` budget in chunks (running
partial prefills before new ones), and waiting requests are admitted while there is budget, a
free sequence slot (`max_num_seqs`) and free KV blocks. KV is paged in blocks of 16 tokens;
when a decode needs a new block and none is free, the newest running request is preempted (its
blocks freed, recomputed later as a prompt of prompt + generated tokens), and no request is
admitted in that step. One simplification: an admitted prompt reserves blocks for its whole
length at once (vLLM allocates chunk by chunk), which keeps half-done prefills from starving
each other; the two differ only when the cache is nearly full.

The per-step cost does not grow with the number of running requests: all decodes advance
together, so the engine keeps aggregates instead of visiting each one — a heap of finish
steps, the sum of decode contexts, and per-block-phase counts that say how many decodes cross
a block boundary this step. Only events (admission, a prefill chunk, finish, preemption) touch
a single request. The same engine backs the offline simulations in `sizing.curve` and can be
driven in real time (one `step()` per `duration_s`) by an emulator of a vLLM server.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sizing.errors import InvalidInput
from sizing.performance import StepTimeModel

BLOCK_SIZE_TOKENS = 16
# Decode stretches shorter than this run step by step: numpy's per-call cost exceeds the gain.
MIN_RUN_STEPS = 4

_WAITING, _PREFILLING, _DECODING, _DONE = 0, 1, 2, 3


@dataclass(frozen=True)
class EngineLimits:
    """The vLLM engine arguments that shape scheduling, and the KV cache the memory model gave."""

    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_tokens: int
    block_size: int = BLOCK_SIZE_TOKENS

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kv_cache_tokens < self.block_size:
            raise InvalidInput(
                f"kv_cache_tokens {self.kv_cache_tokens} holds not even one block of "
                f"{self.block_size} tokens: the model leaves no room for a KV cache"
            )

    @property
    def kv_blocks(self) -> int:
        return self.kv_cache_tokens // self.block_size


class StepResult(NamedTuple):
    """What one engine step did. Times are on the engine's own clock (seconds).

    A NamedTuple, not a frozen dataclass: one is built per step on the hot path, and a frozen
    dataclass's __init__ costs several times more.
    """

    start_s: float
    duration_s: float
    decode_tokens: int  # running decodes that each got one token this step
    prefill_tokens: int
    batch_size: int  # sequences in the forward pass
    first_token_ids: tuple[int, ...]  # requests whose prompt finished: their first token
    resumed_ids: tuple[int, ...]  # preempted requests whose recompute finished: a token again
    resume_gaps_s: tuple[float, ...]  # for each resumed request, the gap since its last token
    finished_ids: tuple[int, ...]
    preempted_ids: tuple[int, ...]
    kv_blocks_used: int
    token_ids: tuple[int, ...] = ()  # every request that got a token (only when tracking)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class DecodeRun:
    """Consecutive decode-only steps over one unchanged batch, run at once (offline only)."""

    start_s: float
    durations_s: np.ndarray
    decode_tokens: int  # per step: every running request got one token in each step

    @property
    def end_s(self) -> float:
        return self.start_s + float(self.durations_s.sum())


class Engine:
    """One replica's scheduler and clock. Requests get ids 0, 1, 2, ... in the order added."""

    def __init__(
        self, step_model: StepTimeModel, limits: EngineLimits, track_tokens: bool = False
    ) -> None:
        self._model = step_model
        self._limits = limits
        self._block = limits.block_size
        self._total_blocks = limits.kv_blocks
        self._track_tokens = track_tokens
        self.now_s = 0.0
        self._tick = 0
        # Per-request state, indexed by request id.
        self._prompt: list[int] = []  # tokens to prefill (grows by the generated ones on preempt)
        self._out_left: list[int] = []  # tokens still to emit, counting the prefill's own token
        self._done_prefill: list[int] = []
        self._enter: list[int] = []  # tick of the request's first decode step
        self._state: list[int] = []
        self._started: list[bool] = []  # first token already emitted
        self._preempted_at_s: list[float] = []
        # Queues and aggregates.
        self._waiting: deque[int] = deque()
        self._prefilling: list[int] = []
        self._running: dict[int, None] = {}  # insertion order = admission order
        self._finish_heap: list[tuple[int, int, int]] = []  # (last tick, id, enter tick)
        self._n_decode = 0
        self._decode_base = 0  # sum over decodes of (prompt - enter); context = base + n * tick
        self._phase_count = [0] * self._block
        self._blocks_used = 0
        self.preemptions = 0
        self.kv_blocked_steps = 0  # steps in which a waiting request found no free KV blocks

    # -- inputs ---------------------------------------------------------------------------
    def add_request(self, prompt_tokens: int, output_tokens: int) -> int:
        """Queue a request now; returns its id. Output counts every generated token (>= 1)."""
        if prompt_tokens < 1 or output_tokens < 1:
            raise InvalidInput(
                f"a request needs >= 1 prompt and >= 1 output token, got "
                f"{prompt_tokens} and {output_tokens}"
            )
        needed = -(-(prompt_tokens + output_tokens - 1) // self._block)
        if needed > self._total_blocks:
            raise InvalidInput(
                f"a request of {prompt_tokens} + {output_tokens} tokens needs {needed} KV blocks; "
                f"the cache has {self._total_blocks}: lower max_model_len or add memory"
            )
        rid = len(self._prompt)
        self._prompt.append(prompt_tokens)
        self._out_left.append(output_tokens)
        self._done_prefill.append(0)
        self._enter.append(0)
        self._state.append(_WAITING)
        self._started.append(False)
        self._preempted_at_s.append(0.0)
        self._waiting.append(rid)
        return rid

    def advance_to(self, time_s: float) -> None:
        """Let the idle engine's clock jump forward (to the next arrival)."""
        self.now_s = max(self.now_s, time_s)

    @property
    def has_work(self) -> bool:
        return bool(self._running) or bool(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_blocks_used(self) -> int:
        return self._blocks_used

    # -- bookkeeping helpers ----------------------------------------------------------------
    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self._block)

    def _start_decoding(self, rid: int, enter: int) -> None:
        prompt = self._prompt[rid]
        self._state[rid] = _DECODING
        self._enter[rid] = enter
        self._n_decode += 1
        self._decode_base += prompt - enter
        self._phase_count[(prompt - enter) % self._block] += 1
        heapq.heappush(self._finish_heap, (enter + self._out_left[rid] - 2, rid, enter))

    def _stop_decoding(self, rid: int) -> None:
        prompt, enter = self._prompt[rid], self._enter[rid]
        self._n_decode -= 1
        self._decode_base -= prompt - enter
        self._phase_count[(prompt - enter) % self._block] -= 1

    def _preempt_newest(self, tick: int) -> tuple[int, int | None]:
        """Evict the newest running request; returns it and its block phase if it was decoding."""
        rid, _ = self._running.popitem()
        phase = None
        if self._state[rid] == _DECODING:
            phase = (self._prompt[rid] - self._enter[rid]) % self._block
            held = self._prompt[rid] + tick - self._enter[rid]
            generated = 1 + tick - self._enter[rid]
            self._stop_decoding(rid)
            self._prompt[rid] += generated
            self._out_left[rid] -= generated
        else:
            held = self._prompt[rid]  # a prefilling request holds blocks for its whole prompt
            self._prefilling.remove(rid)
        self._blocks_used -= self._blocks_for(held)
        self._done_prefill[rid] = 0
        self._state[rid] = _WAITING
        self._preempted_at_s[rid] = self.now_s
        self._waiting.appendleft(rid)
        self.preemptions += 1
        return rid, phase

    # -- the offline fast path ----------------------------------------------------------------
    def run_decodes(
        self, until_s: float = float("inf"), max_steps: int = 1 << 16
    ) -> DecodeRun | None:
        """Run, in one go, the decode-only steps that `step()` would run one by one.

        Applies while nothing can change the batch: no prefill in flight, nobody admissible
        (queue empty, no free sequence slot, or no KV room for the next prompt), no finish and
        no block shortage before the stretch ends, and no arrival (`until_s`) during it. The
        steps' durations differ only by the growing contexts, so they come from one vectorised
        evaluation of the same step-time formula. Returns None when a normal step is needed.
        """
        if self._prefilling or not self._n_decode:
            return None
        waiting = self._waiting
        free = self._total_blocks - self._blocks_used
        admissible_seats = len(self._running) < self._limits.max_num_seqs
        budget_left = self._limits.max_num_batched_tokens > self._n_decode
        head_blocked = False
        if waiting and admissible_seats and budget_left:
            if self._blocks_for(self._prompt[waiting[0]]) <= free:
                return None
            head_blocked = True
        heap = self._finish_heap
        while heap and not self._is_current(heap[0]):
            heapq.heappop(heap)
        n = self._n_decode
        first_kv = self._decode_base + n * (self._tick + 1)
        # Steps only get longer as contexts grow, so the first one bounds how many fit before
        # the next arrival. Short stretches are cheaper as normal steps than as numpy calls.
        first_s = self._model.step_time_s(n, n, first_kv, first_kv)
        fit_s = (until_s - self.now_s) / first_s
        steps = min(max_steps, heap[0][0] - self._tick, int(min(fit_s, max_steps)) + 1)
        if steps < MIN_RUN_STEPS:
            return None
        ticks = self._tick + np.arange(steps)
        needs = np.cumsum(np.asarray(self._phase_count)[-ticks % self._block])
        steps = int(np.searchsorted(needs, free, side="right"))
        if steps == 0:
            return None
        kv_read = (self._decode_base + n * (ticks[:steps] + 1)).astype(np.float64)
        durations = self._model.decode_run_s(n, kv_read)
        starts = self.now_s + np.concatenate(([0.0], np.cumsum(durations[:-1])))
        steps = int(np.searchsorted(starts, until_s, side="left"))
        if steps == 0:
            return None
        durations = durations[:steps]
        run = DecodeRun(self.now_s, durations, n)
        self.now_s = run.end_s
        self._tick += steps
        self._blocks_used += int(needs[steps - 1])
        if head_blocked:
            self.kv_blocked_steps += steps
        return run

    # -- the step ---------------------------------------------------------------------------
    def step(self) -> StepResult:
        """Schedule and run one forward pass; the clock advances by its duration."""
        tick = self._tick
        block = self._block
        limits = self._limits
        preempted: list[int] = []

        # 1. Decodes first: each needs a new block when its next position starts one.
        phase = -tick % block
        need = self._phase_count[phase] if self._n_decode else 0
        while need > self._total_blocks - self._blocks_used:
            rid, victim_phase = self._preempt_newest(tick)
            preempted.append(rid)
            if victim_phase == phase:
                need -= 1
        self._blocks_used += need
        n_decode = self._n_decode
        budget = limits.max_num_batched_tokens - n_decode
        kv_read = self._decode_base + n_decode * (tick + 1)
        pairs = float(kv_read)

        # 2. Running partial prefills, then 3. new admissions, chunked into the budget.
        chunks: list[tuple[int, int]] = []  # (request id, chunk tokens)
        prefill_tokens = 0
        for rid in self._prefilling:
            if budget <= 0:
                break
            chunk = min(self._prompt[rid] - self._done_prefill[rid], budget)
            chunks.append((rid, chunk))
            budget -= chunk
        if not preempted:
            waiting = self._waiting
            while waiting and budget > 0 and len(self._running) < limits.max_num_seqs:
                rid = waiting[0]
                blocks = self._blocks_for(self._prompt[rid])
                if blocks > self._total_blocks - self._blocks_used:
                    self.kv_blocked_steps += 1
                    break  # not enough free KV blocks: wait, as vLLM does
                waiting.popleft()
                self._blocks_used += blocks
                chunk = min(self._prompt[rid], budget)
                self._state[rid] = _PREFILLING
                self._prefilling.append(rid)
                self._running[rid] = None
                chunks.append((rid, chunk))
                budget -= chunk
        for rid, chunk in chunks:
            offset = self._done_prefill[rid]
            prefill_tokens += chunk
            kv_read += offset + chunk
            pairs += chunk * (offset + (chunk + 1) / 2)

        sequences = n_decode + len(chunks)
        duration = self._model.step_time_s(sequences, n_decode + prefill_tokens, kv_read, pairs)
        start = self.now_s
        end = start + duration
        self.now_s = end
        token_ids: tuple[int, ...] = ()
        if self._track_tokens:
            token_ids = tuple(r for r in self._running if self._state[r] == _DECODING)

        # Finished decodes: their last token came out of this step.
        finished: list[int] = []
        heap = self._finish_heap
        while heap and heap[0][0] <= tick:
            entry = heapq.heappop(heap)
            if not self._is_current(entry):
                continue  # stale entry of a request preempted since
            rid = entry[1]
            self._stop_decoding(rid)
            self._finish(rid, self._prompt[rid] + self._out_left[rid] - 1)
            finished.append(rid)

        # Prefills that completed: a token now, then decoding from the next tick.
        first: list[int] = []
        resumed: list[int] = []
        gaps: list[float] = []
        for rid, chunk in chunks:
            self._done_prefill[rid] += chunk
            if self._done_prefill[rid] < self._prompt[rid]:
                continue
            self._prefilling.remove(rid)
            if self._started[rid]:
                resumed.append(rid)
                gaps.append(end - self._preempted_at_s[rid])
            else:
                self._started[rid] = True
                first.append(rid)
            if self._out_left[rid] == 1:
                self._finish(rid, self._prompt[rid])
                finished.append(rid)
            else:
                self._start_decoding(rid, tick + 1)
        if self._track_tokens:
            token_ids += tuple(first) + tuple(resumed)
        self._tick = tick + 1
        return StepResult(
            start_s=start,
            duration_s=duration,
            decode_tokens=n_decode,
            prefill_tokens=prefill_tokens,
            batch_size=sequences,
            first_token_ids=tuple(first),
            resumed_ids=tuple(resumed),
            resume_gaps_s=tuple(gaps),
            finished_ids=tuple(finished),
            preempted_ids=tuple(preempted),
            kv_blocks_used=self._blocks_used,
            token_ids=token_ids,
        )

    def _is_current(self, entry: tuple[int, int, int]) -> bool:
        """A finish-heap entry is stale once its request was preempted (or re-entered)."""
        _, rid, enter = entry
        return self._state[rid] == _DECODING and self._enter[rid] == enter

    def _finish(self, rid: int, written_tokens: int) -> None:
        self._state[rid] = _DONE
        del self._running[rid]
        self._blocks_used -= self._blocks_for(written_tokens)


# -- offline drivers: loop the engine over a whole load point -----------------------------------


@dataclass(frozen=True)
class LoadPoint:
    """What `vllm bench serve` reports for one load level, as the simulator predicts it."""

    concurrency: int | None
    request_rate: float | None
    requests: int  # requests the latency figures are over
    duration_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    itl_p50_s: float
    itl_p95_s: float
    itl_p99_s: float
    e2e_p50_s: float
    e2e_p95_s: float
    e2e_p99_s: float
    e2e_mean_s: float
    output_tok_per_s: float
    total_tok_per_s: float
    request_per_s: float
    preemptions: int
    kv_blocked_steps: int
    mean_batch_size: float
    mean_running: float  # requests in the engine (running + waiting), averaged over the window


class _Recorder:
    """Per-request and per-step timestamps, collected while the engine runs."""

    def __init__(self, prompts: list[int], outputs: list[int]) -> None:
        n = len(prompts)
        self.prompts = prompts
        self.outputs = outputs
        self.sent_s = [0.0] * n
        self.first_s = [0.0] * n
        self.finish_s = [0.0] * n
        self.step_end_s: list[float] = []
        self.step_duration_s: list[float] = []
        self.step_decode_tokens: list[int] = []
        self.step_batch: list[int] = []
        self.step_in_system: list[int] = []
        self.step_prompt_tokens: list[int] = []  # original prompts that got their first token
        self.step_output_tokens: list[int] = []
        self.resume_end_s: list[float] = []
        self.resume_gap_s: list[float] = []
        self.runs: list[DecodeRun] = []
        self.run_in_system: list[int] = []

    def record(self, result: StepResult, in_system: int) -> None:
        end = result.end_s
        self.step_end_s.append(end)
        self.step_duration_s.append(result.duration_s)
        self.step_decode_tokens.append(result.decode_tokens)
        self.step_batch.append(result.batch_size)
        self.step_in_system.append(in_system)
        prompt_tokens = 0
        for rid in result.first_token_ids:
            self.first_s[rid] = end
            prompt_tokens += self.prompts[rid]
        self.step_prompt_tokens.append(prompt_tokens)
        self.step_output_tokens.append(
            result.decode_tokens + len(result.first_token_ids) + len(result.resumed_ids)
        )
        for rid in result.finished_ids:
            self.finish_s[rid] = end
        if result.resume_gaps_s:
            self.resume_end_s.extend([end] * len(result.resume_gaps_s))
            self.resume_gap_s.extend(result.resume_gaps_s)

    def record_run(self, run: DecodeRun, in_system: int) -> None:
        self.runs.append(run)
        self.run_in_system.append(in_system)

    def _steps(self) -> dict[str, np.ndarray]:
        """Every step as columns: the single steps, then the decode runs expanded."""
        sizes = [run.durations_s.size for run in self.runs]
        per_run_tokens = np.repeat([run.decode_tokens for run in self.runs], sizes)
        run_durations = np.concatenate([np.zeros(0)] + [run.durations_s for run in self.runs])
        run_ends = np.concatenate(
            [np.zeros(0)] + [run.start_s + np.cumsum(run.durations_s) for run in self.runs]
        )
        return {
            "end_s": np.concatenate([self.step_end_s, run_ends]),
            "duration_s": np.concatenate([self.step_duration_s, run_durations]),
            "decode_tokens": np.concatenate([self.step_decode_tokens, per_run_tokens]),
            "batch": np.concatenate([self.step_batch, per_run_tokens]),
            "in_system": np.concatenate(
                [self.step_in_system, np.repeat(self.run_in_system, sizes)]
            ),
            "prompt_tokens": np.concatenate([self.step_prompt_tokens, np.zeros(sum(sizes))]),
            "output_tokens": np.concatenate([self.step_output_tokens, per_run_tokens]),
        }

    def load_point(
        self,
        engine: Engine,
        measured: slice,
        window_s: tuple[float, float],
        concurrency: int | None = None,
        request_rate: float | None = None,
    ) -> LoadPoint:
        """Latencies over the `measured` requests, rates over the time window."""
        start_s, end_s = window_s
        sent = np.asarray(self.sent_s)[measured]
        ttft = np.asarray(self.first_s)[measured] - sent
        e2e = np.asarray(self.finish_s)[measured] - sent
        steps = self._steps()
        ends, durations = steps["end_s"], steps["duration_s"]
        in_window = (ends > start_s) & (ends <= end_s)
        gaps = np.concatenate([durations, np.asarray(self.resume_gap_s)])
        weights = np.concatenate([steps["decode_tokens"], np.ones(len(self.resume_gap_s))])
        resume_ends = np.asarray(self.resume_end_s)
        gap_window = np.concatenate([in_window, (resume_ends > start_s) & (resume_ends <= end_s)])
        itl_p50, itl_p95, itl_p99 = weighted_percentiles(
            gaps[gap_window], weights[gap_window], (50, 95, 99)
        )
        span = max(end_s - start_s, 1e-12)
        output_tokens = float(steps["output_tokens"][in_window].sum())
        prompt_tokens = float(steps["prompt_tokens"][in_window].sum())
        finishes = np.asarray(self.finish_s)
        completed = int(np.count_nonzero((finishes > start_s) & (finishes <= end_s)))
        window_durations = durations[in_window]
        busy = max(float(window_durations.sum()), 1e-12)
        ttft_p = np.percentile(ttft, (50, 95, 99))
        e2e_p = np.percentile(e2e, (50, 95, 99))
        return LoadPoint(
            concurrency=concurrency,
            request_rate=request_rate,
            requests=int(ttft.size),
            duration_s=span,
            ttft_p50_s=float(ttft_p[0]),
            ttft_p95_s=float(ttft_p[1]),
            ttft_p99_s=float(ttft_p[2]),
            itl_p50_s=itl_p50,
            itl_p95_s=itl_p95,
            itl_p99_s=itl_p99,
            e2e_p50_s=float(e2e_p[0]),
            e2e_p95_s=float(e2e_p[1]),
            e2e_p99_s=float(e2e_p[2]),
            e2e_mean_s=float(e2e.mean()),
            output_tok_per_s=output_tokens / span,
            total_tok_per_s=(output_tokens + prompt_tokens) / span,
            request_per_s=completed / span,
            preemptions=engine.preemptions,
            kv_blocked_steps=engine.kv_blocked_steps,
            mean_batch_size=float(np.dot(steps["batch"][in_window], window_durations) / busy),
            mean_running=float(np.dot(steps["in_system"][in_window], window_durations) / span),
        )


def weighted_percentiles(
    values: np.ndarray, weights: np.ndarray, percents: tuple[float, ...]
) -> tuple[float, ...]:
    """Percentiles of `values` each repeated `weights` times (lower value at ties); 0 if empty."""
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if values.size == 0:
        return tuple(0.0 for _ in percents)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    ranks = np.asarray(percents) / 100 * cumulative[-1]
    index = np.minimum(np.searchsorted(cumulative, ranks, side="left"), values.size - 1)
    return tuple(float(v) for v in values[order][index])


def _check_lengths(prompts: np.ndarray, outputs: np.ndarray) -> tuple[list[int], list[int]]:
    if prompts.shape != outputs.shape or prompts.ndim != 1 or prompts.size == 0:
        raise InvalidInput(
            f"prompt and output lengths must be non-empty 1-D arrays of one size, got shapes "
            f"{prompts.shape} and {outputs.shape}"
        )
    return [int(x) for x in prompts], [int(x) for x in outputs]


def simulate_closed_loop(
    step_model: StepTimeModel,
    limits: EngineLimits,
    prompts: np.ndarray,
    outputs: np.ndarray,
    concurrency: int,
    steady_state: bool = False,
    fast_path: bool = True,
) -> LoadPoint:
    """`vllm bench serve --max-concurrency C`: C clients, each sends its next prompt on finish.

    Bench mode (default) reports over every request and the whole run, as vLLM's client does.
    `steady_state` leaves out the first C requests (they all arrive at once) and the last C
    (concurrency drains), and takes rates between the first and the last send after warm-up.
    `fast_path=False` runs every step through `Engine.step` (same result, slower).
    """
    prompt_list, output_list = _check_lengths(prompts, outputs)
    n = len(prompt_list)
    if concurrency < 1:
        raise InvalidInput(f"concurrency must be >= 1, got {concurrency}")
    if steady_state and n < 3 * concurrency:
        raise InvalidInput(
            f"steady state at concurrency {concurrency} needs >= {3 * concurrency} prompts "
            f"(warm-up, measured, drain), got {n}"
        )
    engine = Engine(step_model, limits)
    rec = _Recorder(prompt_list, output_list)
    sent = 0
    for _ in range(min(concurrency, n)):
        engine.add_request(prompt_list[sent], output_list[sent])
        sent += 1
    warm_s = last_send_s = 0.0
    while engine.has_work:
        run = engine.run_decodes() if fast_path else None
        if run is not None:
            rec.record_run(run, engine.running + engine.waiting)
            continue
        result = engine.step()
        rec.record(result, engine.running + engine.waiting)
        for _ in result.finished_ids:
            if sent < n:
                rec.sent_s[sent] = result.end_s
                engine.add_request(prompt_list[sent], output_list[sent])
                if sent == concurrency:
                    warm_s = result.end_s
                last_send_s = result.end_s
                sent += 1
    if steady_state:
        return rec.load_point(
            engine, slice(concurrency, n - concurrency), (warm_s, last_send_s), concurrency
        )
    return rec.load_point(engine, slice(0, n), (0.0, engine.now_s), concurrency)


def simulate_arrivals(
    step_model: StepTimeModel,
    limits: EngineLimits,
    arrival_s: np.ndarray,
    prompts: np.ndarray,
    outputs: np.ndarray,
    request_rate: float | None = None,
    fast_path: bool = True,
) -> LoadPoint:
    """Open loop: requests arrive at the given times (a trace, or Poisson draws) whatever the
    engine's state; rates are over the first arrival to the last finish."""
    prompt_list, output_list = _check_lengths(prompts, outputs)
    arrivals = [float(t) for t in arrival_s]
    if len(arrivals) != len(prompt_list) or bool(np.any(np.diff(arrival_s) < 0)):
        raise InvalidInput(
            f"arrival times must be sorted and one per request ({len(prompt_list)}), "
            f"got {len(arrivals)}"
        )
    n = len(arrivals)
    engine = Engine(step_model, limits)
    engine.advance_to(arrivals[0])
    rec = _Recorder(prompt_list, output_list)
    rec.sent_s = arrivals
    i = 0
    add, step, record = engine.add_request, engine.step, rec.record
    while i < n or engine.has_work:
        if not engine.has_work:
            engine.advance_to(arrivals[i])
        now = engine.now_s
        while i < n and arrivals[i] <= now:
            add(prompt_list[i], output_list[i])
            i += 1
        run = engine.run_decodes(arrivals[i] if i < n else float("inf")) if fast_path else None
        if run is not None:
            rec.record_run(run, engine.running + engine.waiting)
            continue
        record(step(), engine.running + engine.waiting)
    return rec.load_point(engine, slice(0, n), (arrivals[0], engine.now_s), None, request_rate)


def poisson_arrivals(request_rate: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of a Poisson process (`vllm bench serve --request-rate R`): the first
    request at 0, then exponential gaps of mean 1/R (the gap drawn before the first is
    dropped, so these are the draws the bench tool has always replayed)."""
    if request_rate <= 0:
        raise InvalidInput(f"request rate must be > 0 req/s, got {request_rate}")
    draws = rng.exponential(1.0 / request_rate, count)
    return np.cumsum(draws) - (draws[0] if count else 0.0)
