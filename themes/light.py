"""canvas-light: for bright rooms and light terminal profiles."""

from textual.theme import Theme

CANVAS_LIGHT = Theme(
    name="canvas-light",
    primary="#1F6FA8",
    secondary="#6A4FB0",
    accent="#B85C00",
    warning="#9A6B00",
    error="#B3261E",
    success="#1E7D3F",
    foreground="#1B2229",
    background="#F6F7F9",
    surface="#FFFFFF",
    panel="#E7EBF0",
    dark=False,
    variables={
        "plot-train": "#1F6FA8",
        "plot-val": "#B85C00",
        "plot-lr": "#6A4FB0",
        "plot-throughput": "#1E7D3F",
    },
)
