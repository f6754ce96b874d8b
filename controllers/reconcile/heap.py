"""Keep the operator's heap small: hand freed memory back to the OS now and then.

A burst (1,000 fleets created, or an operator restart) allocates a plan, a status and a policy
memory per fleet at once and frees most of what each pass built; glibc keeps the freed pages
in its heap, so the process stays at the burst's high-water mark. `malloc_trim` returns the
free pages, a few milliseconds of work. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_INTERVAL_S = 60.0


def _trimmer() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


_MALLOC_TRIM = _trimmer()


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; False where that is not possible."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


async def trim_periodically(interval_s: float = TRIM_INTERVAL_S) -> None:
    """`release_free_memory` every `interval_s` until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        release_free_memory()
