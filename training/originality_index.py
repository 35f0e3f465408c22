"""The text-free originality index a model folder ships (data/originality_index.py).

train.py writes it at export from the run's training jokes. For a folder exported before it
existed, or to build it again:

    python -m training.originality_index checkpoints/punchline

reads the folder's training jokes again from the data it names in metadata.json (the files must
be there), and adds originality_index.npz to the folder, signed in its manifest. The app then
judges originality on machines without the training files, such as a Hugging Face Space.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from data.originality_index import index_arrays
from model.checkpoint import ORIGINALITY_INDEX, save_originality_index
from training.folder_data import read_folder_and_data


def main(argv: list[str] | None = None) -> int:
    read = read_folder_and_data(
        "python -m training.originality_index",
        "Index the training jokes of a model folder by hashed words and word pairs, without "
        "their text, and add the index to the folder: the app's originality check where the "
        "training files are absent. Needs the training data the folder names.",
        argv,
    )
    if read is None:
        return 1
    train = read.jokes.train
    started = time.perf_counter()
    save_originality_index(read.folder, index_arrays(train))
    seconds = time.perf_counter() - started
    size = (Path(read.folder) / ORIGINALITY_INDEX).stat().st_size
    print(
        f"{read.folder}: {ORIGINALITY_INDEX} written, {len(train):,} training jokes in "
        f"{size / 1e6:.1f} MB, in {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
