"""The README's dashboard picture: committed, made by the console's own screenshot, and
regenerable by ``docs/make_screenshot.py`` (run here on a run written by the real event writer)."""

from __future__ import annotations

import re
from pathlib import Path

from docs import make_screenshot
from tests.console_fixtures import make_run, training

REPO = Path(__file__).resolve().parents[1]


def _text(svg: str) -> str:
    """The characters of a Textual SVG screenshot (one ``<text>`` a span), non-breaking spaces as spaces."""
    spans = re.findall(r"<text[^>]*>(.*?)</text>", svg)
    return "".join(re.sub(r"<[^>]+>", "", s) for s in spans).replace("&#160;", " ").replace("\xa0", " ")


def test_committed_screenshot_is_a_dashboard_the_readme_shows():
    svg = (REPO / "docs" / "dashboard.svg").read_text(encoding="utf-8")
    assert svg.startswith('<svg class="rich-terminal"')  # App.export_screenshot's (Rich's) SVG
    text = _text(svg)
    assert text.startswith("Neural Canvas")  # the window title the script gives
    steps = next(s.split("=")[1] for s in make_screenshot.TRAIN_SETTINGS if s.startswith("max_steps="))
    for pane in (
        f"step {steps}/{steps}",
        "learning rate",
        "tokens/s",
        "GPU",
        "System",
        "Emissions",
        "Checkpoints",
    ):
        assert pane in text, pane
    assert "(docs/dashboard.svg)" in (REPO / "README.md").read_text(encoding="utf-8")


def test_script_takes_the_dashboard_of_a_run(canvas_home, tmp_path):
    make_run("readme-shot", total_steps=100, write=training(100))
    out = make_screenshot.screenshot("readme-shot", tmp_path / "shot.svg", size=(120, 40), timeout=60)
    text = _text(out.read_text(encoding="utf-8"))
    assert "readme-shot" in text
    assert "step 100/100" in text
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed
