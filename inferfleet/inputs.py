"""Command-line inputs that cannot crash or hang a command.

Numbers are finite and bounded (`nan` compares false with everything, so it slips past `<= 0`
checks and loops forever; `1e400` is infinity and overflows the first `int()`), files are read
as UTF-8 with the reason said in one line, and a plot path must name a format the plotting
backend writes, checked before any work is done.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from inferfleet.errors import UsageError

# No flag of any command means anything near this; beyond it conversions overflow.
FLAG_MAX = 1e9


def number(text: str) -> float:
    """An argparse type: a finite decimal of magnitude at most FLAG_MAX."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > FLAG_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a finite number of magnitude at most {FLAG_MAX:g}"
        )
    return value


def integer(text: str) -> int:
    """An argparse type: a whole number of magnitude at most FLAG_MAX."""
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if abs(value) > FLAG_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most {FLAG_MAX:,.0f} in magnitude")
    return value


def read_text(path: str | Path, what: str) -> str:
    """A file's text; a missing, unreadable, directory or non-UTF-8 file is a UsageError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise UsageError(
            f"cannot read {what} {path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} "
            f"at offset {err.start})"
        ) from None


def check_plot_path(path: str, flag: str = "--plot") -> None:
    """The format (from the extension) is one matplotlib writes, and the folder exists."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower().removeprefix(".")
    if suffix not in formats:
        shown = ", ".join(f".{f}" for f in sorted(formats))
        got = f"extension .{suffix}" if suffix else "no extension"
        raise UsageError(f"{flag} {path}: {got}; use one of {shown}")
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: folder {folder} does not exist")


def positive_list(kind: type[int] | type[float], flag: str, text: str) -> list:
    """`1,8,64` -> [1, 8, 64]: each value finite, above 0 and at most FLAG_MAX."""
    parse = integer if kind is int else number
    try:
        values = [parse(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"{flag} wants comma-separated numbers like 1,8,64: {err}") from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"{flag} values must all be > 0, got {text!r}")
    return values
