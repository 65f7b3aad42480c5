"""The one error type for bad configuration, so every front end can show it the same way."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is wrong; raised before anything expensive is allocated.

    The message is one paragraph a user can act on: it names the field, the value given, why it
    cannot work, and a fix. ``field`` carries the dotted name (``model.n_heads``) so the console's
    forms can put the error next to the right input.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message
