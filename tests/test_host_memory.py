"""A large block that one thread frees is reused by the next thread (model/host_memory.py).

That is what XLA:CPU does with the temporary buffers of every training step: a worker thread
mallocs them, another frees them, and the next step mallocs them again.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

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


def faults_of_a_second_block() -> int:
    """Tune malloc as a main does, then page faults of the second thread's block."""
    assert reuse_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    use_block_in_a_new_thread(libc)  # the heap grows to hold the block once
    return use_block_in_a_new_thread(libc)


def test_a_freed_block_is_reused_by_the_next_thread_without_page_faults():
    # In a fresh process, as in train.py or app.py: the tuning must come before other
    # threads have made arenas of their own (this test process has JAX's already).
    root = Path(__file__).resolve().parents[1]
    output = subprocess.run(
        [sys.executable, __file__],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    ).stdout
    # Without the tuning, each thread maps a fresh block and faults on every one of its pages.
    assert int(output.split()[-1]) < BLOCK // PAGE // 10


RELEASE = f"""
import ctypes
from model.host_memory import release_free_memory, reuse_freed_memory
def resident():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
reuse_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = resident()
pointer = libc.malloc({BLOCK})
ctypes.memset(pointer, 1, {BLOCK})
libc.free(pointer)
kept = resident()
release_free_memory()
print(kept - before, resident() - before)
"""


def test_freed_memory_stays_until_it_is_released_once():
    root = Path(__file__).resolve().parents[1]
    output = subprocess.run(
        [sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    kept, released = (int(kib) << 10 for kib in output.split()[-2:])
    assert kept > BLOCK // 2  # freed, but still the process's: the tuning at work
    assert released < BLOCK // 10  # given back by release_free_memory


# A stand-in for ctypes.CDLL that records every mallopt call before any project import.
RECORD_MALLOPT = """
import ctypes, json
calls = []
real = ctypes.CDLL
class Recording:
    def __init__(self, name, *args, **kwargs):
        self._lib = real(name, *args, **kwargs)
    def __getattr__(self, attribute):
        if attribute == "mallopt":
            return lambda *values: calls.append(values) or 1
        return getattr(self._lib, attribute)
ctypes.CDLL = Recording
import model, model.gpt, model.generate, model.checkpoint, data, train, app  # noqa
print(json.dumps(calls))
"""


def test_importing_the_project_leaves_malloc_alone():
    output = subprocess.run(
        [sys.executable, "-c", RECORD_MALLOPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    assert output.strip().splitlines()[-1] == "[]"


if __name__ == "__main__":
    print(faults_of_a_second_block())
