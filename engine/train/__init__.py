"""Pre-training: the loop, checkpoints that resume exactly, and how runs are launched.

This package's ``__init__`` and :mod:`engine.train.launch` / :mod:`engine.train.layout` are
torch-free (the console imports them); the loop itself lives in :mod:`engine.train.trainer` and
runs in the engine process started by :mod:`engine.train.worker`.
"""
