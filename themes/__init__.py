"""Console themes: Textual ``Theme`` objects of our own, registered by the app on mount.

Each theme defines the usual Textual colours plus app tokens in ``variables`` that the plots and
panes read: ``plot-train``, ``plot-val``, ``plot-lr``, ``plot-throughput``. Themes that do not
define them (Textual's built-ins, picked from the palette) get :data:`PLOT_DEFAULTS`, which are
derived from the theme's own accent colours.
"""

from __future__ import annotations

from textual.theme import Theme

from themes.dark import CANVAS_DARK
from themes.high_contrast import CANVAS_HIGH_CONTRAST
from themes.light import CANVAS_LIGHT

THEMES: dict[str, Theme] = {t.name: t for t in (CANVAS_DARK, CANVAS_LIGHT, CANVAS_HIGH_CONTRAST)}

#: Theme variable -> fallback variable for themes without our plot tokens.
PLOT_DEFAULTS = {
    "plot-train": "primary",
    "plot-val": "warning",
    "plot-lr": "accent",
    "plot-throughput": "success",
}

__all__ = ["CANVAS_DARK", "CANVAS_HIGH_CONTRAST", "CANVAS_LIGHT", "PLOT_DEFAULTS", "THEMES"]
