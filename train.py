"""Train (or fine-tune) a Punchline model: one command, CPU, GPU or TPU, one or many hosts.

    python train.py                                   # tiny model on the built-in jokes
    python train.py --data ../shared/data --preset small --out runs/small
    python train.py --out runs/small --resume         # continue a killed run
    python train.py --init-from checkpoints/punchline --data my_jokes.txt \\
        --out runs/mine --steps 300 --learning-rate 3e-4  # fine-tune on your own jokes

The run folder (--out) holds `metrics.jsonl`, `loss.png`, Orbax training checkpoints
in `state/` and, at the end, the exported model folder `model/` that the app and
`python -m model.generate` load.

This file is only the command; the training code is the `training/` package (its
__init__.py gives a reading order), and `python train.py --help` lists every flag.
"""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
