"""The text-free originality index a model folder ships (data/originality_index.py).

train.py writes it at export from the run's training jokes. For a folder exported before it
existed, or to build it again:

    python -m training.originality_index checkpoints/punchline

reads the folder's training jokes again from the data it names in metadata.json (the files must
be there), and adds originality_index.npz to the folder, signed in its manifest. The app then
judges originality on machines without the training files, such as a Hugging Face Space.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data.corpus import model_data
from data.errors import DataError
from data.originality_index import index_arrays
from model.checkpoint import ORIGINALITY_INDEX, CheckpointError, load_model, save_originality_index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.originality_index",
        description="Index the training jokes of a model folder by hashed words and word pairs, "
        "without their text, and add the index to the folder: the app's originality check "
        "where the training files are absent. Needs the training data the folder names.",
    )
    parser.add_argument("folder", help="model folder, such as checkpoints/punchline")
    parser.add_argument("--data", nargs="*", help="data files, if they moved since training")
    args = parser.parse_args(argv)
    try:
        # Loading checks the manifest first: signing the folder again must not bless damage.
        _, _, metadata = load_model(args.folder)
        train = model_data(metadata, args.data).train
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    save_originality_index(args.folder, index_arrays(train))
    seconds = time.perf_counter() - started
    size = (Path(args.folder) / ORIGINALITY_INDEX).stat().st_size
    print(
        f"{args.folder}: {ORIGINALITY_INDEX} written, {len(train):,} training jokes in "
        f"{size / 1e6:.1f} MB, in {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
