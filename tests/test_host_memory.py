"""A large block that one thread frees is reused by the next thread (model/host_memory.py).

That is what XLA:CPU does with the temporary buffers of every training step: a worker thread
mallocs them, another frees them, and the next step mallocs them again.
"""

from __future__ import annotations

import ctypes
import platform
import resource
import threading

import pytest

import model  # noqa: F401  (importing the package tunes malloc, as it does for every entry point)
from model.host_memory import reuse_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
BLOCK = 128 << 20  # bytes: above glibc's largest mmap threshold (32 MiB) and arena size (64 MiB)
PAGE = resource.getpagesize()

pytestmark = pytest.mark.skipif(not GLIBC, reason="the tuning is for glibc's malloc")


def use_block_in_a_new_thread(libc: ctypes.CDLL) -> int:
    """Minor page faults of malloc + writing every page + free, on a thread of its own."""
    faults = []

    def work() -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        pointer = libc.malloc(BLOCK)
        ctypes.memset(pointer, 1, BLOCK)
        libc.free(pointer)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return faults[0]


def test_malloc_accepts_the_settings():
    assert reuse_freed_memory()


def test_a_freed_block_is_reused_by_the_next_thread_without_page_faults():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    use_block_in_a_new_thread(libc)  # the heap grows to hold the block once
    # Without the tuning, each thread maps a fresh block and faults on every one of its pages.
    assert use_block_in_a_new_thread(libc) < BLOCK // PAGE // 10
