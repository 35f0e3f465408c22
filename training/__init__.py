"""Punchline's training: from a TrainConfig to a trained, exported model folder.

`python train.py` is `training.cli.main`. Read the package in this order:

1. config.py: TrainConfig (every flag, with its help text), the presets, parse_args.
2. optimizer.py: AdamW with warmup, cosine decay and clipping.
3. steps.py: the jit boundary, the compiled train_step and eval_step.
4. evaluation.py: validation loss, perplexity and bits per character (evaluate.py's too).
5. distributed.py: joining a multi-host run; batches split over the devices.
6. folder.py: the run folder's files, and the metrics log.
7. state.py: Orbax checkpoints of the training state, and the disk space they need.
8. run.py: the Run, which sets a run up and trains it: log, evaluate, checkpoint, Ctrl-C.
9. export.py: the model folder with its metadata (lineage, preset), and the loss curve.
10. snapshots.py: the weights kept along a run (--snapshots), shipped with the model.
11. cli.py: main, from the command line to the exported model, and its errors.
"""
