"""One module per ``canvas`` sub-command; see :mod:`canvas_tui.cli`."""
