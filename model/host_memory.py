"""Host memory: let XLA:CPU reuse its large per-step buffers instead of mapping them anew.

XLA:CPU allocates the temporary buffers of each run of a compiled program (for a training
step of the `small` preset, one block of about 770 MB: activations, logits and their
gradients) with malloc, on one of its worker threads, and frees them when the run ends.
glibc serves a block that large with a fresh mmap from the thread's own arena and unmaps it
on free, so on every step the kernel maps and zeroes about 190,000 new 4 KiB pages: 188,741
minor page faults and 0.35-0.9 s of system time per step on the 2-core development CPU, a
sixth to a third of the step's CPU time.

With every thread on the main heap (one arena), no mmap for large blocks and no trimming of
the heap, a freed block stays in the process and the next step reuses it: 0 page faults
per step once the heap has grown to its peak. The price is that the process keeps its peak
memory until it exits, which a training run or the app does anyway.

Threads keep the arena they first allocated from, so this must run before JAX starts its
thread pools (at the first computation): the long-running mains (train.py, app.py,
evaluate.py, the speed benchmark, the ablation) call it first thing. Importing a package of
the project never changes the process's malloc.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NEVER_TRIM = 2**31 - 1  # the largest value mallopt accepts (a C int)


def release_free_memory() -> bool:
    """Give the heap's free pages back to the system, once (malloc_trim(0)); False on other
    C libraries.

    With trimming off (above), the memory that compiling and first running a program used
    and freed stays in the process: about 100 MB for the explainer's analyses on the shipped
    model. The app calls this once after its warm-up; what a request later frees is kept
    for the next request, as above.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return True


def reuse_freed_memory() -> bool:
    """Tune glibc's malloc as described above; False (and nothing changed) on other C libraries."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
