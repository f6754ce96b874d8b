"""Freed memory goes back to the OS where the C library can do it."""

from __future__ import annotations

import platform

from controllers.reconcile.heap import release_free_memory


def test_free_pages_are_released_on_glibc_and_skipped_elsewhere():
    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")
