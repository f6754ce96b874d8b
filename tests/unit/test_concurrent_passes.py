"""The bound on passes in flight comes from the environment, and a bad value stops the start."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from controllers.adapters.operator_metrics import OperatorMetrics
from controllers.reconcile import handlers
from controllers.reconcile.handlers import (
    CONCURRENT_PASSES_ENV,
    DEFAULT_CONCURRENT_PASSES,
    concurrent_passes_from_environment,
)


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv(CONCURRENT_PASSES_ENV, raising=False)
    assert concurrent_passes_from_environment() == DEFAULT_CONCURRENT_PASSES
    monkeypatch.setenv(CONCURRENT_PASSES_ENV, " ")
    assert concurrent_passes_from_environment() == DEFAULT_CONCURRENT_PASSES


def test_a_positive_integer_is_taken(monkeypatch):
    monkeypatch.setenv(CONCURRENT_PASSES_ENV, "3")
    assert concurrent_passes_from_environment() == 3


@pytest.mark.parametrize("raw", ["0", "-2", "eight", "2.5"])
def test_anything_else_names_the_variable_and_what_it_expects(monkeypatch, raw):
    monkeypatch.setenv(CONCURRENT_PASSES_ENV, raw)
    with pytest.raises(ValueError, match=f"{CONCURRENT_PASSES_ENV}=.*positive integer"):
        concurrent_passes_from_environment()


def test_no_more_passes_than_the_bound_run_at_once(monkeypatch):
    """Twelve fleets asking at once, two slots: never more than two passes in flight, and
    every fleet still gets its pass."""
    running, most, done = 0, 0, []

    async def slow_pass(kube, body, **_):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(body["metadata"]["uid"])
        return handlers.Outcome(applied=(), status_written=False)

    monkeypatch.setattr(handlers, "reconcile", slow_pass)
    memo = kopf.Memo(kube=None, locks={}, pass_slots=asyncio.Semaphore(2), plans=None,
                     watcher=None, metrics=OperatorMetrics())  # fmt: skip
    bodies = [
        {"metadata": {"namespace": "llm", "name": f"f{i}", "uid": f"u{i}"}} for i in range(12)
    ]

    indexes = {name: {} for name in handlers.INDEXES}  # empty, as Kopf's before any watch

    async def burst() -> None:
        await asyncio.gather(*(handlers._reconcile_once(memo, b, indexes) for b in bodies))

    asyncio.run(burst())
    assert most == 2
    assert sorted(done) == sorted(b["metadata"]["uid"] for b in bodies)
