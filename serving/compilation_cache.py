"""JAX's persistent compilation cache for the server: a restart skips most of the warm-up.

benchmarks/README.md has the seconds it saves. JAX_COMPILATION_CACHE_DIR, if set, wins; set
it to "" to switch the cache off.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

COMPILATION_CACHE = Path.home() / ".cache" / "punchline" / "jax"


def use_compilation_cache(folder: Path = COMPILATION_CACHE) -> None:
    """Keep every compiled program in `folder`, unless JAX_COMPILATION_CACHE_DIR says otherwise."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX keeps only programs that took a second to compile; the app's take less each.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
