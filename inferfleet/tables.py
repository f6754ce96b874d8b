"""Plain-text tables for terminals: left-aligned text, right-aligned numbers."""

from __future__ import annotations

from collections.abc import Sequence


def _is_number(cell: str) -> bool:
    stripped = cell.replace(",", "").replace("$", "").replace("%", "").replace("x", "")
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        bool(rows) and all(_is_number(row[i]) or not row[i] for row in rows)
        for i in range(len(header))
    ]

    def fmt(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in rows]
    return "\n".join(lines)
