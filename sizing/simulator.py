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

Offline, only arrivals need the clock. In a closed loop a request is sent when another one
finishes, so `simulate_closed_loop` schedules in steps (ticks) without pricing them, skips
each decode-only stretch in one go up to and including the step that ends it with a finish,
and prices all steps at once at the end: the numbers `step()` gives one by one, for a fraction
of the Python work. `simulate_arrivals` steps on the clock, with `run_decodes` for the decode
stretches between arrivals.
"""

from __future__ import annotations

import heapq
import itertools
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


# One step's work, unpriced: (tick, decode tokens, sequences, tokens, KV entries read, attention
# pairs), the arguments of `StepTimeModel.step_time_s` after the first two.
StepWork = tuple[int, int, int, int, int, float]


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
        self._max_seqs = limits.max_num_seqs
        self._max_batched_tokens = limits.max_num_batched_tokens
        self._step_time_s = step_model.step_time_s
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
    def ticks(self) -> int:
        """Steps run so far."""
        return self._tick

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
        self._waiting.appendleft(rid)
        self.preemptions += 1
        return rid, phase

    # -- decode-only stretches: the offline fast paths ------------------------------------------
    def _decode_stretch(
        self, max_steps: int | None = None, through_finish: bool = False
    ) -> tuple[int, int, bool]:
        """The decode-only steps that can run from now before anything changes the batch:
        (steps, KV blocks they take, whether the queue's head waits for blocks meanwhile).

        The stretch ends before the next step in which a decode emits its last token, or with
        that step when `through_finish` (its finishes are then the caller's to retire). Zero
        steps while a prefill is in flight, somebody is admissible (queued, a free sequence
        slot, budget and KV room for the head's prompt), or the next step's decodes find no
        free block.
        """
        n = self._n_decode
        if self._prefilling or not n:
            return 0, 0, False
        free = self._total_blocks - self._blocks_used
        waiting = self._waiting
        head_blocked = False
        if waiting and len(self._running) < self._max_seqs and self._max_batched_tokens > n:
            if -(-self._prompt[waiting[0]] // self._block) <= free:
                return 0, 0, False
            head_blocked = True
        heap, state, enter = self._finish_heap, self._state, self._enter
        while True:  # a decoding request always has one current entry; drop stale ones
            last, rid, entered = heap[0]
            if state[rid] == _DECODING and enter[rid] == entered:
                break
            heapq.heappop(heap)
        steps = last - self._tick + through_finish  # the step at tick `last` emits a last token
        if max_steps is not None:
            steps = min(steps, max_steps)
        if steps <= 0:
            return 0, 0, head_blocked
        steps, blocks = self._decode_blocks(steps, free)
        return steps, blocks, head_blocked

    def _decode_blocks(self, steps: int, free_blocks: int) -> tuple[int, int]:
        """Of the next `steps` decode-only steps, how many find the blocks they need within
        `free_blocks`, and how many blocks those take. Every decode crosses a block boundary
        once per `block` steps, so whole cycles take n_decode blocks each and only the last
        partial cycle is walked step by step."""
        block, n, tick, counts = self._block, self._n_decode, self._tick, self._phase_count
        cycles, rest = divmod(steps, block)
        if (cycles + 1) * n <= free_blocks:  # room for it all: the last cycle's need is <= n
            # The rest's ticks have phases -tick, -tick - 1, ... (mod block): a wrapped slice.
            top = -tick % block + 1
            partial = sum(counts[max(top - rest, 0) : top]) + sum(counts[block + top - rest :])
            return steps, cycles * n + partial
        cycles = min(cycles, free_blocks // n)
        blocks = cycles * n
        done = cycles * block
        while done < steps:
            need = counts[-(tick + done) % block]
            if blocks + need > free_blocks:
                break
            blocks += need
            done += 1
        return done, blocks

    def _advance_decodes(self, steps: int, blocks: int, head_blocked: bool) -> None:
        self._tick += steps
        self._blocks_used += blocks
        if head_blocked:
            self.kv_blocked_steps += steps

    def run_decodes(
        self, until_s: float = float("inf"), max_steps: int = 1 << 16
    ) -> DecodeRun | None:
        """Run, in one go, the decode-only steps that `step()` would run one by one.

        Applies while nothing can change the batch (see `_decode_stretch`) and no arrival
        (`until_s`) falls inside the stretch. The steps' durations differ only by the growing
        contexts, so they come from one vectorised evaluation of the same step-time formula.
        Returns None when a normal step is needed.
        """
        steps, _, head_blocked = self._decode_stretch(max_steps)
        if steps < MIN_RUN_STEPS:
            return None
        n = self._n_decode
        first_kv = self._decode_base + n * (self._tick + 1)
        # Steps only get longer as contexts grow, so the first one bounds how many fit before
        # the next arrival. Short stretches are cheaper as normal steps than as numpy calls.
        first_s = self._step_time_s(n, n, first_kv, first_kv)
        steps = min(steps, int(min((until_s - self.now_s) / first_s, steps)) + 1)
        if steps < MIN_RUN_STEPS:
            return None
        kv_read = np.arange(first_kv, first_kv + n * steps, n).astype(np.float64)
        durations = self._model.decode_run_s(n, kv_read)
        starts = self.now_s + np.concatenate(([0.0], np.cumsum(durations[:-1])))
        steps = int(np.searchsorted(starts, until_s, side="left"))
        durations = durations[:steps]
        run = DecodeRun(self.now_s, durations, n)
        self.now_s = run.end_s
        _, blocks = self._decode_blocks(steps, self._total_blocks - self._blocks_used)
        self._advance_decodes(steps, blocks, head_blocked)
        return run

    def _skip_decodes(self) -> tuple[tuple[int, int, int, int], list[int]] | None:
        """Advance the tick over a decode-only stretch without pricing it (closed loop only),
        up to and including a step in which decodes finish: ((first tick, steps, batch,
        decode-context base), the requests that finished in its last step), or None when a
        normal step is needed. Step j reads base + batch × (first tick + j + 1) KV entries."""
        steps, blocks, head_blocked = self._decode_stretch(through_finish=True)
        if not steps:
            return None
        stretch = (self._tick, steps, self._n_decode, self._decode_base)
        self._advance_decodes(steps, blocks, head_blocked)
        return stretch, self._finish_decodes(self._tick - 1)

    # -- the step ---------------------------------------------------------------------------
    def step(self) -> StepResult:
        """Schedule and run one forward pass; the clock advances by its duration."""
        start = self.now_s
        work, first, resumed, finished, preempted, decoding = self._schedule_step()
        _, n_decode, sequences, tokens, kv_read, pairs = work
        duration = self._step_time_s(sequences, tokens, kv_read, pairs)
        end = start + duration
        self.now_s = end
        preempted_at = self._preempted_at_s
        for rid in preempted:
            preempted_at[rid] = start
        token_ids = decoding + tuple(first) + tuple(resumed) if self._track_tokens else ()
        # Positional: a NamedTuple built from keywords costs about three times as much.
        return StepResult(
            start,
            duration,
            n_decode,
            tokens - n_decode,
            sequences,
            tuple(first),
            tuple(resumed),
            tuple(end - preempted_at[rid] for rid in resumed),
            tuple(finished),
            tuple(preempted),
            self._blocks_used,
            token_ids,
        )

    def _schedule_step(
        self,
    ) -> tuple[StepWork, list[int], list[int], list[int], list[int], tuple[int, ...]]:
        """Schedule one forward pass and apply its effects, without pricing it in time:
        (its work, first tokens, resumed, finished, preempted, the decodes in it when
        tracking tokens). The hot path of every simulation, so the per-request work is
        written out with locals rather than helper calls."""
        tick = self._tick
        block = self._block
        prompt = self._prompt
        done_prefill = self._done_prefill
        state = self._state
        running = self._running
        prefilling = self._prefilling
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
        budget = self._max_batched_tokens - n_decode
        kv_read = self._decode_base + n_decode * (tick + 1)
        pairs = float(kv_read)

        # 2. Running partial prefills, then 3. new admissions, chunked into the budget.
        chunks: list[tuple[int, int]] = []  # (request id, chunk tokens)
        prefill_tokens = 0
        for rid in prefilling:
            if budget <= 0:
                break
            offset = done_prefill[rid]
            chunk = min(prompt[rid] - offset, budget)
            chunks.append((rid, chunk))
            budget -= chunk
            prefill_tokens += chunk
            kv_read += offset + chunk
            pairs += chunk * (offset + (chunk + 1) / 2)
        waiting = self._waiting
        if waiting and not preempted:
            max_seqs = self._max_seqs
            free = self._total_blocks - self._blocks_used
            while budget > 0 and len(running) < max_seqs:
                rid = waiting[0]
                blocks = -(-prompt[rid] // block)
                if blocks > free:
                    self.kv_blocked_steps += 1
                    break  # not enough free KV blocks: wait, as vLLM does
                waiting.popleft()
                free -= blocks
                chunk = min(prompt[rid], budget)  # an admitted prompt starts at offset 0
                state[rid] = _PREFILLING
                prefilling.append(rid)
                running[rid] = None
                chunks.append((rid, chunk))
                budget -= chunk
                prefill_tokens += chunk
                kv_read += chunk
                pairs += chunk * ((chunk + 1) / 2)
                if not waiting:
                    break
            self._blocks_used = self._total_blocks - free
        decoding: tuple[int, ...] = ()
        if self._track_tokens:
            decoding = tuple(r for r in running if state[r] == _DECODING)

        finished = self._finish_decodes(tick)

        # Prefills that completed: a token now, then decoding from the next tick.
        first: list[int] = []
        resumed: list[int] = []
        for rid, chunk in chunks:
            done = done_prefill[rid] + chunk
            done_prefill[rid] = done
            if done < prompt[rid]:
                continue
            prefilling.remove(rid)
            if self._started[rid]:
                resumed.append(rid)
            else:
                self._started[rid] = True
                first.append(rid)
            out_left = self._out_left[rid]
            if out_left == 1:
                self._finish(rid, prompt[rid])
                finished.append(rid)
                continue
            # Decoding from the next tick: context = prompt - enter + tick at every later tick.
            context_base = prompt[rid] - tick - 1
            state[rid] = _DECODING
            self._enter[rid] = tick + 1
            self._n_decode += 1
            self._decode_base += context_base
            self._phase_count[context_base % block] += 1
            heapq.heappush(self._finish_heap, (tick + out_left - 1, rid, tick + 1))
        self._tick = tick + 1
        work = (tick, n_decode, n_decode + len(chunks), n_decode + prefill_tokens, kv_read, pairs)
        return work, first, resumed, finished, preempted, decoding

    def _finish_decodes(self, tick: int) -> list[int]:
        """Retire the decodes whose last token came out of the step at `tick`."""
        heap = self._finish_heap
        if not heap or heap[0][0] > tick:
            return []
        finished: list[int] = []
        state, enter, prompt, out_left = self._state, self._enter, self._prompt, self._out_left
        block, counts, running = self._block, self._phase_count, self._running
        while heap and heap[0][0] <= tick:
            _, rid, entered = heapq.heappop(heap)
            if state[rid] != _DECODING or enter[rid] != entered:
                continue  # stale entry of a request preempted since
            context_base = prompt[rid] - entered
            self._n_decode -= 1
            self._decode_base -= context_base
            counts[context_base % block] -= 1
            state[rid] = _DONE
            del running[rid]
            self._blocks_used -= -(-(prompt[rid] + out_left[rid] - 1) // block)
            finished.append(rid)
        return finished

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
    # What `vllm bench serve` also prints: the mean TTFT, and TPOT per request ((e2e - TTFT) /
    # (output - 1), the mean gap a request saw) as a median and a mean over requests.
    ttft_mean_s: float = 0.0
    tpot_p50_s: float = 0.0
    tpot_mean_s: float = 0.0


@dataclass(frozen=True)
class _Timeline:
    """A finished run as columns: one entry per engine step, per request and per resumption
    after a preemption. Times are on the engine's clock (seconds)."""

    end_s: np.ndarray
    duration_s: np.ndarray
    decode_tokens: np.ndarray
    batch: np.ndarray
    in_system: np.ndarray  # requests in the engine (running + waiting) after the step
    prompt_tokens: np.ndarray  # original prompts that got their first token in the step
    output_tokens: np.ndarray
    sent_s: np.ndarray
    first_s: np.ndarray
    finish_s: np.ndarray
    resume_end_s: np.ndarray
    resume_gap_s: np.ndarray  # each resumed request's gap since its last token


class Recorder:
    """Per-request and per-step timestamps, collected while the engine runs on its clock."""

    def __init__(self, prompts: list[int]) -> None:
        n = len(prompts)
        self.prompts = prompts
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

    def timeline(self) -> _Timeline:
        """Every step as columns: the single steps, then the decode runs expanded."""
        sizes = [run.durations_s.size for run in self.runs]
        per_run_tokens = np.repeat([run.decode_tokens for run in self.runs], sizes)
        run_durations = np.concatenate([np.zeros(0)] + [run.durations_s for run in self.runs])
        run_ends = np.concatenate(
            [np.zeros(0)] + [run.start_s + np.cumsum(run.durations_s) for run in self.runs]
        )
        return _Timeline(
            end_s=np.concatenate([self.step_end_s, run_ends]),
            duration_s=np.concatenate([self.step_duration_s, run_durations]),
            decode_tokens=np.concatenate([self.step_decode_tokens, per_run_tokens]),
            batch=np.concatenate([self.step_batch, per_run_tokens]),
            in_system=np.concatenate([self.step_in_system, np.repeat(self.run_in_system, sizes)]),
            prompt_tokens=np.concatenate([self.step_prompt_tokens, np.zeros(sum(sizes))]),
            output_tokens=np.concatenate([self.step_output_tokens, per_run_tokens]),
            sent_s=np.asarray(self.sent_s),
            first_s=np.asarray(self.first_s),
            finish_s=np.asarray(self.finish_s),
            resume_end_s=np.asarray(self.resume_end_s),
            resume_gap_s=np.asarray(self.resume_gap_s),
        )


def load_point(
    run: _Timeline,
    engine: Engine,
    measured: slice,
    window_s: tuple[float, float],
    outputs: np.ndarray,
    concurrency: int | None = None,
    request_rate: float | None = None,
) -> LoadPoint:
    """Latencies over the `measured` requests, rates over the time window."""
    start_s, end_s = window_s
    sent = run.sent_s[measured]
    ttft = run.first_s[measured] - sent
    e2e = run.finish_s[measured] - sent
    gaps_after_first = outputs[measured] - 1
    several = gaps_after_first > 0
    tpot = (e2e - ttft)[several] / gaps_after_first[several]
    ends, durations = run.end_s, run.duration_s
    in_window = (ends > start_s) & (ends <= end_s)
    gaps = np.concatenate([durations, run.resume_gap_s])
    weights = np.concatenate([run.decode_tokens, np.ones(run.resume_gap_s.size)])
    resume_ends = run.resume_end_s
    gap_window = np.concatenate([in_window, (resume_ends > start_s) & (resume_ends <= end_s)])
    itl_p50, itl_p95, itl_p99 = weighted_percentiles(
        gaps[gap_window], weights[gap_window], (50, 95, 99)
    )
    span = max(end_s - start_s, 1e-12)
    output_tokens = float(run.output_tokens[in_window].sum())
    prompt_tokens = float(run.prompt_tokens[in_window].sum())
    finishes = run.finish_s
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
        mean_batch_size=_dot(run.batch[in_window], window_durations) / busy,
        mean_running=_dot(run.in_system[in_window], window_durations) / span,
        ttft_mean_s=float(ttft.mean()),
        tpot_p50_s=float(np.median(tpot)) if tpot.size else 0.0,
        tpot_mean_s=float(tpot.mean()) if tpot.size else 0.0,
    )


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a · b without BLAS: multithreaded BLAS (np.dot) makes this size of dot product up to
    ~80x slower when the machine's cores are busy."""
    return float(np.einsum("i,i", a, b))


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


def check_lengths(prompts: np.ndarray, outputs: np.ndarray) -> tuple[list[int], list[int]]:
    if prompts.shape != outputs.shape or prompts.ndim != 1 or prompts.size == 0:
        raise InvalidInput(
            f"prompt and output lengths must be non-empty 1-D arrays of one size, got shapes "
            f"{prompts.shape} and {outputs.shape}"
        )
    return [int(x) for x in prompts], [int(x) for x in outputs]


@dataclass(frozen=True)
class _TickLog:
    """A closed-loop run in ticks (step numbers), before any step is priced in seconds."""

    steps: list[StepWork]  # the steps scheduled one by one
    stretches: list[tuple[int, int, int, int]]  # skipped decode-only stretches (_skip_decodes)
    sent_tick: list[int]  # each request is sent at the end of this tick (-1: at time 0)
    first_tick: list[int]
    finish_tick: list[int]
    resumes: list[tuple[int, int]]  # (tick the request was preempted in, tick it resumed in)


def _rows(items: list[tuple], width: int, dtype: type) -> np.ndarray:
    """A list of equal-length tuples as a 2-D array (a third of np.array's time on tuples)."""
    flat = itertools.chain.from_iterable(items)
    return np.fromiter(flat, dtype, len(items) * width).reshape(-1, width)


@dataclass(frozen=True)
class _TickWork:
    """A tick log as arrays: each tick's work (rows: decode tokens, sequences, tokens, KV
    entries read, attention pairs) and the ticks at which requests are sent, start, finish."""

    work: np.ndarray
    sent: np.ndarray
    first_at: np.ndarray
    finish_at: np.ndarray
    resumes: np.ndarray
    prompt_tokens: np.ndarray
    in_system: np.ndarray
    output_tokens: np.ndarray


def _tick_work(ticks: int, log: _TickLog, prompts: list[int]) -> _TickWork:
    work = np.zeros((5, ticks))
    if log.steps:
        single = _rows(log.steps, 6, np.float64)
        work[:, single[:, 0].astype(np.int64)] = single[:, 1:].T
    if log.stretches:
        first, length, batch, base = _rows(log.stretches, 4, np.int64).T
        at = np.arange(length.sum()) + np.repeat(first - np.cumsum(length) + length, length)
        batch_at = np.repeat(batch, length)
        work[:3, at] = batch_at
        work[3:, at] = np.repeat(base, length) + batch_at * (at + 1)
    sent = np.fromiter(log.sent_tick, np.int64, len(log.sent_tick)) + 1
    first_at = np.fromiter(log.first_tick, np.int64, len(log.first_tick))
    finish_at = np.fromiter(log.finish_tick, np.int64, len(log.finish_tick))
    resumes = _rows(log.resumes, 2, np.int64)
    added = np.cumsum(np.bincount(sent, minlength=ticks + 1))[:ticks]
    in_system = (added - np.cumsum(np.bincount(finish_at, minlength=ticks))).astype(np.float64)
    resumed = np.bincount(resumes[:, 1], minlength=ticks)
    return _TickWork(
        work=work,
        sent=sent,
        first_at=first_at,
        finish_at=finish_at,
        resumes=resumes,
        prompt_tokens=np.bincount(first_at, weights=prompts, minlength=ticks),
        in_system=in_system,
        output_tokens=work[0] + np.bincount(first_at, minlength=ticks) + resumed,
    )


def _price_ticks(step_model: StepTimeModel, ticks: _TickWork) -> _Timeline:
    """Every tick's duration from one vectorised evaluation of the step-time formula, then
    the clock as their running sum (the same additions `Engine.step` makes one by one)."""
    decode, sequences, tokens, kv_read, pairs = ticks.work
    durations = step_model.step_times_s(sequences, tokens, kv_read, pairs)
    clock = np.concatenate(([0.0], np.cumsum(durations)))  # tick t runs clock[t]..clock[t+1]
    resumes = ticks.resumes
    resume_end_s = clock[resumes[:, 1] + 1]
    return _Timeline(
        end_s=clock[1:],
        duration_s=durations,
        decode_tokens=decode,
        batch=sequences,
        in_system=ticks.in_system,
        prompt_tokens=ticks.prompt_tokens,
        output_tokens=ticks.output_tokens,
        sent_s=clock[ticks.sent],
        first_s=clock[ticks.first_at + 1],
        finish_s=clock[ticks.finish_at + 1],
        resume_end_s=resume_end_s,
        resume_gap_s=resume_end_s - clock[resumes[:, 0]],
    )


@dataclass(frozen=True)
class ClosedLoopSchedule:
    """A closed-loop run in ticks: which step does what, before any step is priced.

    In a closed loop the schedule never depends on the clock, so one schedule can be priced
    by many step-time models (a fit re-prices it instead of re-simulating).
    """

    engine: Engine
    ticks: _TickWork
    concurrency: int
    steady_state: bool
    outputs: np.ndarray

    def price(self, step_model: StepTimeModel) -> LoadPoint:
        run = _price_ticks(step_model, self.ticks)
        c, n = self.concurrency, len(self.ticks.sent)
        if self.steady_state:
            window_s = (float(run.sent_s[c]), float(run.sent_s[-1]))
            return load_point(run, self.engine, slice(c, n - c), window_s, self.outputs, c)
        window_s = (0.0, float(run.end_s[-1]))
        return load_point(run, self.engine, slice(0, n), window_s, self.outputs, c)


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
    """
    schedule = schedule_closed_loop(
        step_model, limits, prompts, outputs, concurrency, steady_state, fast_path
    )
    return schedule.price(step_model)


def schedule_closed_loop(
    step_model: StepTimeModel,
    limits: EngineLimits,
    prompts: np.ndarray,
    outputs: np.ndarray,
    concurrency: int,
    steady_state: bool = False,
    fast_path: bool = True,
) -> ClosedLoopSchedule:
    """The closed loop's schedule (`simulate_closed_loop` without the pricing).

    Requests are sent when others finish, so which step does what never depends on the clock:
    the engine is scheduled tick by tick, decode-only stretches are skipped in one go, and all
    steps are priced at once afterwards. `fast_path=False` schedules every tick on its own
    (same result, slower).
    """
    prompt_list, output_list = check_lengths(prompts, outputs)
    n = len(prompt_list)
    if concurrency < 1:
        raise InvalidInput(f"concurrency must be >= 1, got {concurrency}")
    if steady_state and n < 3 * concurrency:
        raise InvalidInput(
            f"steady state at concurrency {concurrency} needs >= {3 * concurrency} prompts "
            f"(warm-up, measured, drain), got {n}"
        )
    engine = Engine(step_model, limits)
    log = _TickLog([], [], [-1] * n, [0] * n, [0] * n, [])
    sent = min(concurrency, n)
    for rid in range(sent):
        engine.add_request(prompt_list[rid], output_list[rid])
    preempted_in: dict[int, int] = {}
    steps, stretches, sent_tick = log.steps, log.stretches, log.sent_tick
    first_tick, finish_tick = log.first_tick, log.finish_tick
    while engine.has_work:
        skipped = engine._skip_decodes() if fast_path else None
        if skipped is None:
            work, first, resumed, finished, preempted, _ = engine._schedule_step()
            tick = work[0]
            steps.append(work)
            for rid in first:
                first_tick[rid] = tick
            for rid in resumed:
                log.resumes.append((preempted_in[rid], tick))
            for rid in preempted:
                preempted_in[rid] = tick
        else:
            stretch, finished = skipped
            stretches.append(stretch)
            tick = stretch[0] + stretch[1] - 1
        for rid in finished:
            finish_tick[rid] = tick
            if sent < n:
                sent_tick[sent] = tick
                engine.add_request(prompt_list[sent], output_list[sent])
                sent += 1
    ticks = _tick_work(engine.ticks, log, prompt_list)
    return ClosedLoopSchedule(engine, ticks, concurrency, steady_state, np.asarray(output_list))


def simulate_arrivals(
    step_model: StepTimeModel,
    limits: EngineLimits,
    arrival_s: np.ndarray,
    prompts: np.ndarray,
    outputs: np.ndarray,
    request_rate: float | None = None,
    fast_path: bool = True,
    sent_s: np.ndarray | None = None,
) -> LoadPoint:
    """Open loop: requests arrive at the given times (a trace, or Poisson draws) whatever the
    engine's state; rates are over the first arrival to the last finish. Latencies count from
    `sent_s` when given (a client's send, before the API server passed the request on)."""
    prompt_list, output_list = check_lengths(prompts, outputs)
    arrivals = [float(t) for t in arrival_s]
    sent = arrivals if sent_s is None else [float(t) for t in sent_s]
    if (
        len(arrivals) != len(prompt_list)
        or len(sent) != len(arrivals)
        or bool(np.any(np.diff(arrival_s) < 0))
    ):
        raise InvalidInput(
            f"arrival (and send) times must be sorted and one per request "
            f"({len(prompt_list)}), got {len(arrivals)} and {len(sent)}"
        )
    n = len(arrivals)
    engine = Engine(step_model, limits)
    engine.advance_to(arrivals[0])
    rec = Recorder(prompt_list)
    rec.sent_s = sent
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
    window_s = (sent[0], engine.now_s)
    timeline = rec.timeline()
    return load_point(
        timeline, engine, slice(0, n), window_s, np.asarray(output_list), None, request_rate
    )


def poisson_arrivals(request_rate: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of a Poisson process (`vllm bench serve --request-rate R`): the first
    request at 0, then exponential gaps of mean 1/R (the gap drawn before the first is
    dropped, so these are the draws the bench tool has always replayed)."""
    if request_rate <= 0:
        raise InvalidInput(f"request rate must be > 0 req/s, got {request_rate}")
    draws = rng.exponential(1.0 / request_rate, count)
    return np.cumsum(draws) - (draws[0] if count else 0.0)
