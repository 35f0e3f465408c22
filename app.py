"""Punchline's web app: ask for a joke, watch it being written, then see where the model looked.

    python app.py                                   # http://127.0.0.1:7860
    PUNCHLINE_CHECKPOINT=path/to/model GRADIO_SERVER_PORT=7861 python app.py

The model folder is loaded and the writer compiled once, before the server starts (serving/);
the explainer's analyses compile after it, in the background, while the page is up. The page
is built by ui/. Programs can call the `/generate` endpoint (see README) with gradio_client.
In clean mode (the default) every finished joke is checked for offensive language before it
is shown. PUNCHLINE_LOG_COMPILES=1 logs every JAX compilation (benchmarks/load.py counts them).
"""

from __future__ import annotations

import os
import sys
import time

import jax

from model.checkpoint import CheckpointError
from model.host_memory import release_free_memory, reuse_freed_memory
from serving.compilation_cache import use_compilation_cache
from serving.explainer import Explainer
from serving.originality import OriginalityCheck
from serving.training_replay import TrainingReplay
from serving.writer import JokeWriter
from ui.gradio_internals import launch
from ui.layout import STYLESHEETS, THEME, create_demo

CHECKPOINT = os.environ.get("PUNCHLINE_CHECKPOINT", "checkpoints/punchline")
SERVER_NAME = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
SERVER_PORT = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
LOG_COMPILES = os.environ.get("PUNCHLINE_LOG_COMPILES") == "1"


def explainer_compiled(seconds: float) -> None:
    release_free_memory()
    print(f"Punchline: explainer compiled in {seconds:.1f} s", flush=True)


def main() -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    started = time.perf_counter()
    use_compilation_cache()
    if LOG_COMPILES:
        jax.config.update("jax_log_compiles", True)  # one log line per compilation, on stderr
    try:
        writer = JokeWriter(CHECKPOINT)
    except CheckpointError as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 1
    # Builds in the background from here on; from the folder's index where the data is absent.
    originality = OriginalityCheck(writer.metadata, writer.folder)
    explainer = Explainer(writer)
    writer.warm_up()
    # The explainer compiles after the writer, while the page is up: a click on a token
    # before it is done waits for it. (Compiling both at once was slower on 2 cores.)
    explainer.start_warm_up(done=explainer_compiled)
    release_free_memory()  # what compiling left freed in the heap
    seconds = time.perf_counter() - started
    print(f"Punchline: model loaded and compiled in {seconds:.1f} s", flush=True)
    address = f"http://{SERVER_NAME}:{SERVER_PORT}/"
    replay = TrainingReplay(explainer)  # the folder's training snapshots, if any
    demo = create_demo(writer, originality, explainer, address=address, replay=replay)
    launch(demo, SERVER_NAME, SERVER_PORT, theme=THEME, css_paths=STYLESHEETS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
