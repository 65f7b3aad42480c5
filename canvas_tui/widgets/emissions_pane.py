"""Running energy and emissions totals (CodeCarbon), updating as ``carbon`` events arrive."""

from __future__ import annotations

from textual.content import Content

from canvas_tui.fmt import finite
from canvas_tui.viewmodel import RunView
from canvas_tui.widgets.panes import Pane, label
from canvas_tui.widgets.quiet import update_pane


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.3f} {unit}"
    return f"{value:.2e} {unit}"


class EmissionsPane(Pane):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Emissions", id=id)

    def show(self, view: RunView) -> None:
        c = view.carbon
        if c is None:
            update_pane(self, Content.styled("no emissions data yet", "$text-muted"))
            return
        trees = finite(c.trees)
        update_pane(
            self,
            Content.assemble(
                label("energy"),
                _fmt(finite(c.energy_kwh), "kWh"),
                "\n",
                label("CO2eq"),
                _fmt(finite(c.emissions_kg), "kg"),
                "\n",
                label("trees"),
                "-" if trees is None else f"{trees:.2f} tree-months",
            ),
        )
