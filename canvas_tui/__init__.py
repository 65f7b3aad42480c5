"""Neural Canvas console: the Textual app and the `canvas` command line. Never imports torch."""

__version__ = "0.1.0"
