"""The console's widgets, one area per module."""
