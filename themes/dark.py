"""canvas-dark: the default, a calm dark theme for long sessions over SSH."""

from textual.theme import Theme

CANVAS_DARK = Theme(
    name="canvas-dark",
    primary="#5FA8D3",
    secondary="#8E7CC3",
    accent="#F2A65A",
    warning="#E9C46A",
    error="#E76F51",
    success="#6CC08B",
    foreground="#E0E6EC",
    background="#101418",
    surface="#171D23",
    panel="#1F2730",
    dark=True,
    variables={
        "plot-train": "#5FA8D3",
        "plot-val": "#F2A65A",
        "plot-lr": "#8E7CC3",
        "plot-throughput": "#6CC08B",
        "footer-key-foreground": "#F2A65A",
    },
)
