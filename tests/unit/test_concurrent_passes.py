"""The bound on passes in flight comes from the environment, and a bad value stops the start."""

from __future__ import annotations

import pytest

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
