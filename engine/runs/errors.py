"""The one exception of the run store, in a module of its own so every part of it can raise it
without importing the others. Torch-free."""

from __future__ import annotations


class RunStoreError(Exception):
    """A user-facing problem with the run store (no such run, ambiguous name, refused action,
    unreadable run.json).

    The message is one paragraph that says what to do; front ends print it as it is.
    """
