"""Reading traffic traces from disk into the replay simulator's `Trace`.

The per-minute format is `minute,requests,input_tokens_sum,output_tokens_sum`, optionally
with `gap` and `suspect_partial` flags: a flagged minute is a collection outage, not zero
load, so it becomes unknown (None) rather than 0. Minutes missing from the file are unknown
too.
"""

from __future__ import annotations

import csv
from pathlib import Path

from controllers.policy.scaling.replay import Trace
from inferfleet.errors import UsageError

PER_MINUTE_COLUMNS = ("minute", "requests", "input_tokens_sum", "output_tokens_sum")


def _int_or_none(text: str | None, path: str, line: int, column: str) -> int | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = int(float(text))
    except ValueError:
        raise UsageError(f"{path} line {line}: {column} {text!r} is not a number") from None
    if value < 0:
        raise UsageError(f"{path} line {line}: {column} {value} is negative")
    return value


def read_per_minute(path: str, start_s: float = 0.0) -> Trace:
    """A per-minute CSV as a Trace (interval 60 s); start_s is minute 0's time of day."""
    try:
        with Path(path).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
            header = rows[0].keys() if rows else ()
    except OSError as err:
        raise UsageError(f"cannot read trace {path}: {err.strerror}") from None
    missing = [c for c in PER_MINUTE_COLUMNS if c not in header]
    if missing:
        raise UsageError(
            f"{path}: missing column(s) {', '.join(missing)}; a per-minute trace needs "
            f"{','.join(PER_MINUTE_COLUMNS)}"
        )
    by_minute: dict[int, tuple[int | None, int | None]] = {}
    for line, row in enumerate(rows, start=2):
        minute = _int_or_none(row["minute"], path, line, "minute")
        if minute is None:
            raise UsageError(f"{path} line {line}: minute is empty")
        flagged = any(
            row.get(flag, "0") not in ("0", "", None) for flag in ("gap", "suspect_partial")
        )
        count = None if flagged else _int_or_none(row["requests"], path, line, "requests")
        tin = _int_or_none(row["input_tokens_sum"], path, line, "input_tokens_sum")
        tout = _int_or_none(row["output_tokens_sum"], path, line, "output_tokens_sum")
        token_sum = None if count is None or tin is None or tout is None else tin + tout
        by_minute[minute] = (count, token_sum)
    if not by_minute:
        raise UsageError(f"{path}: no data rows")
    span = range(min(by_minute), max(by_minute) + 1)
    requests = tuple(by_minute.get(m, (None, None))[0] for m in span)
    tokens = tuple(by_minute.get(m, (None, None))[1] for m in span)
    has_tokens = any(t is not None for t in tokens)
    return Trace(60.0, start_s, requests, tokens if has_tokens else None)


def spread_evenly(count: int, parts: int) -> list[int]:
    """Split an integer count over parts, the remainder to the first ones (as `_uniform` files)."""
    base, extra = divmod(count, parts)
    return [base + 1 if i < extra else base for i in range(parts)]


def read_hourly_column(path: str, column: str) -> Trace:
    """One column of an hourly `day,hour,...` CSV spread evenly over minutes."""
    try:
        with Path(path).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise UsageError(f"cannot read trace {path}: {err.strerror}") from None
    if not rows or column not in rows[0]:
        raise UsageError(f"{path}: no column {column!r}")
    minutes: list[int | None] = []
    for line, row in enumerate(rows, start=2):
        minutes.extend(spread_evenly(_int_or_none(row[column], path, line, column) or 0, 60))
    return Trace(60.0, 0.0, tuple(minutes))
