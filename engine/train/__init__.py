"""Pre-training: the loop, checkpoints that resume exactly, and how runs are launched.

This package's ``__init__`` and :mod:`engine.train.launch` / :mod:`engine.train.layout` are
torch-free (the console imports them); the loop shared by every run kind is
:mod:`engine.train.loop` (its components: :mod:`~engine.train.update`, :mod:`~engine.train.progress`,
:mod:`~engine.train.checkpointer`, :mod:`~engine.train.recorder`), assembled for pre-training by
:mod:`engine.train.trainer` and run in the engine process started by :mod:`engine.train.worker`.
"""
