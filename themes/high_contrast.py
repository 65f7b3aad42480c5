"""canvas-high-contrast: pure black and white with saturated, distinguishable accents."""

from textual.theme import Theme

CANVAS_HIGH_CONTRAST = Theme(
    name="canvas-high-contrast",
    primary="#00D7FF",
    secondary="#FFFFFF",
    accent="#FFFF00",
    warning="#FFD700",
    error="#FF5F5F",
    success="#00FF5F",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1C1C1C",
    boost="#FFFFFF",
    dark=True,
    luminosity_spread=0.3,
    text_alpha=1.0,
    variables={
        "plot-train": "#00D7FF",
        "plot-val": "#FFFF00",
        "plot-lr": "#FF87FF",
        "plot-throughput": "#00FF5F",
        "border": "#FFFFFF",
        "footer-key-foreground": "#FFFF00",
    },
)
