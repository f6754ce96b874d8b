"""What a client's request goes through before the engine sees it: vLLM's API server.

A client-side benchmark (`vllm bench serve --max-concurrency C`) times TTFT from its own send,
so it also counts what happens outside the engine's steps:

* a latency per request that overlaps everything else: the HTTP connection (benchmark clients
  open one per request), parsing the request, streaming the first chunk back;
* tokenising the prompt, which one API-server process does for one request after another, so
  long prompts queue there, and the engine is fed no faster than the tokenizer runs.

The engine never waits for either; a closed loop does, since a client's slot stays taken
meanwhile, so fewer requests reach the engine than the client's concurrency. With both at
zero this is `simulate_closed_loop` exactly; otherwise the clock decides when requests reach
the engine, so the run is stepped on the clock instead of being scheduled in ticks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sizing.errors import InvalidInput
from sizing.performance import Efficiency, StepTimeModel
from sizing.simulator import (
    Engine,
    EngineLimits,
    LoadPoint,
    Recorder,
    check_lengths,
    load_point,
    schedule_closed_loop,
)


@dataclass(frozen=True)
class FrontEnd:
    """The API server's cost per request, in seconds (both >= 0)."""

    request_latency_s: float = 0.0  # per request, overlapping everything else
    tokenize_s_per_token: float = 0.0  # per prompt token, one prompt at a time

    def __post_init__(self) -> None:
        if self.request_latency_s < 0 or self.tokenize_s_per_token < 0:
            raise InvalidInput(
                "front end: request_latency_s and tokenize_s_per_token must be >= 0, got "
                f"{self.request_latency_s} and {self.tokenize_s_per_token}"
            )

    def shared_by(self, ranks: int) -> FrontEnd:
        """What one of `ranks` data-parallel engines sees of the one API server in front of
        them all: the same request latency, and a 1/ranks share of its tokenizer (the server's
        prompt-token rate is capped once, not once per rank)."""
        if ranks < 1:
            raise InvalidInput(f"data-parallel ranks must be >= 1, got {ranks}")
        return FrontEnd(self.request_latency_s, self.tokenize_s_per_token * ranks)

    @property
    def free(self) -> bool:
        return self.request_latency_s == 0 and self.tokenize_s_per_token == 0


def front_end_of(efficiency: Efficiency) -> FrontEnd:
    """The API server an efficiency set describes (its fitted front-end fields)."""
    return FrontEnd(efficiency.request_latency_s, efficiency.tokenize_s_per_token)


@dataclass(frozen=True)
class ClientClosedLoop:
    """A client-side closed loop, priced by stepping the engine on the clock (the front end
    makes the schedule depend on step times, so it cannot be scheduled once in ticks)."""

    limits: EngineLimits
    prompts: np.ndarray
    outputs: np.ndarray
    concurrency: int
    steady_state: bool
    front_end: FrontEnd

    def price(self, step_model: StepTimeModel) -> LoadPoint:
        if self.front_end.free:
            return schedule_closed_loop(
                step_model,
                self.limits,
                self.prompts,
                self.outputs,
                self.concurrency,
                self.steady_state,
            ).price(step_model)
        return _through_front_end(self, step_model)


def engine_arrivals(front_end: FrontEnd, sent_s: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """When requests sent at `sent_s` (sorted) reach the engine: after the request latency,
    through one tokenizer that takes them first come, first served."""
    arrive_s = np.empty(len(sent_s))
    free_s = 0.0
    for i, (sent, prompt) in enumerate(zip(sent_s, prompts, strict=True)):
        free_s = max(float(sent) + front_end.request_latency_s, free_s)
        free_s += float(prompt) * front_end.tokenize_s_per_token
        arrive_s[i] = free_s
    return arrive_s


def _through_front_end(loop: ClientClosedLoop, step_model: StepTimeModel) -> LoadPoint:
    prompts, outputs = check_lengths(loop.prompts, loop.outputs)
    n, c, front = len(prompts), loop.concurrency, loop.front_end
    if c < 1:
        raise InvalidInput(f"concurrency must be >= 1, got {c}")
    engine = Engine(step_model, loop.limits)
    rec = Recorder(prompts)
    arrive_s = [0.0] * n  # when each request reaches the engine
    tokenizer_free_s = 0.0
    sent = 0

    def send(now_s: float) -> None:
        nonlocal sent, tokenizer_free_s
        rec.sent_s[sent] = now_s
        start_s = max(now_s + front.request_latency_s, tokenizer_free_s)
        tokenizer_free_s = start_s + prompts[sent] * front.tokenize_s_per_token
        arrive_s[sent] = tokenizer_free_s
        sent += 1

    for _ in range(min(c, n)):
        send(0.0)
    added = 0  # requests reach the engine in the order sent (one FIFO tokenizer), ids match
    while added < n or engine.has_work:
        if not engine.has_work:
            engine.advance_to(arrive_s[added])
        while added < sent and arrive_s[added] <= engine.now_s:
            engine.add_request(prompts[added], outputs[added])
            added += 1
        if not engine.has_work:
            continue
        run = engine.run_decodes(arrive_s[added] if added < sent else float("inf"))
        if run is not None:
            rec.record_run(run, engine.running + engine.waiting)
            continue
        result = engine.step()
        rec.record(result, engine.running + engine.waiting)
        for _ in result.finished_ids:
            if sent < n:
                send(result.end_s)
    timeline = rec.timeline()
    out = np.asarray(outputs)
    if loop.steady_state:
        window_s = (float(timeline.sent_s[c]), float(timeline.sent_s[-1]))
        return load_point(timeline, engine, slice(c, n - c), window_s, out, c)
    window_s = (0.0, float(timeline.end_s.max()))
    return load_point(timeline, engine, slice(0, n), window_s, out, c)
