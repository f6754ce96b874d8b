"""Reading traffic traces from disk into the replay simulator's `Trace`.

The per-minute format is `minute,requests,input_tokens_sum,output_tokens_sum`, optionally
with `gap` and `suspect_partial` flags: a flagged minute is a collection outage, not zero
load, so it becomes unknown (None) rather than 0. Minutes missing from the file are unknown
too.
"""

from __future__ import annotations

import csv
import io
import math

from controllers.policy.scaling.replay import Trace
from inferfleet.errors import UsageError
from inferfleet.inputs import read_text

PER_MINUTE_COLUMNS = ("minute", "requests", "input_tokens_sum", "output_tokens_sum")
# A count per minute beyond this is no real traffic (a trillion requests a minute), and the
# replay multiplies counts; a trace longer than this (two years of minutes) is a typo in a
# minute column that would make the replay walk millions of empty minutes.
MAX_COUNT = 10**12
MAX_MINUTES = 2 * 366 * 24 * 60


def _rows(path: str) -> list[dict[str, str]]:
    try:
        return list(csv.DictReader(io.StringIO(read_text(path, "trace"), newline="")))
    except csv.Error as err:
        raise UsageError(f"trace {path}: not CSV ({err})") from None


def _int_or_none(text: str | None, path: str, line: int, column: str) -> int | None:
    """A whole, non-negative count ('12', '12.0', '1.2e3'); empty is unknown (None)."""
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{path} line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_COUNT:
        raise UsageError(
            f"{path} line {line}: {column} {text!r} must be a count from 0 to {MAX_COUNT:.0e}"
        )
    return int(value)


def read_per_minute(path: str, start_s: float = 0.0) -> Trace:
    """A per-minute CSV as a Trace (interval 60 s); start_s is minute 0's time of day."""
    rows = _rows(path)
    header = rows[0].keys() if rows else ()
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
    if len(span) > MAX_MINUTES:
        raise UsageError(
            f"{path}: minutes run from {span.start} to {span.stop - 1} ({len(span):,} minutes); "
            f"a trace may span at most {MAX_MINUTES:,} (two years)"
        )
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
    rows = _rows(path)
    if not rows or column not in rows[0]:
        raise UsageError(f"{path}: no column {column!r}")
    minutes: list[int | None] = []
    for line, row in enumerate(rows, start=2):
        minutes.extend(spread_evenly(_int_or_none(row[column], path, line, column) or 0, 60))
    return Trace(60.0, 0.0, tuple(minutes))
