"""The log pane: ``engine.log`` lines and ``log``/``status`` events, tailed like ``tail -f``.

Lines are untrusted: engine.log goes through ``Text.from_ansi`` (colours kept, other escape
sequences dropped, never parsed as markup) and event messages through plain ``Text``. Following
stops when the user scrolls up and a pending-line counter shows in the border (toolong's
``TailFile``); scrolling back to the end, or ``f``, resumes it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

from engine.runs.events import Event, Log, Status, decode_any
from engine.runs.format import clock, event_label, event_text, skipped_note

LEVEL_STYLES = {"debug": "dim", "info": "cyan", "warning": "yellow", "error": "bold red"}
MAX_LINES = 5000


def event_line(event: Event | dict[str, Any]) -> Text | None:
    """The pane's line for a ``log`` or ``status`` event (None for other types): its time, its
    label in a column, and its text, in the words of :mod:`engine.runs.format`, as plain Text."""
    if isinstance(event, dict):
        event = decode_any(event)
    if isinstance(event, Log):
        lvl = event_label(event)
        return Text.assemble(
            (clock(event.t) + " ", "dim"),
            (f"{lvl:<7} ", LEVEL_STYLES.get(lvl, "")),
            event_text(event),
        )
    if isinstance(event, Status):
        return Text.assemble(
            (clock(event.t) + " ", "dim"),
            (f"{event_label(event):<7} ", "magenta"),
            event_text(event),
        )
    return None


def notice_line(text: str) -> Text:
    """A line the console itself adds (not from the run), e.g. that unreadable lines were skipped."""
    return Text.assemble(("-------- ", "dim"), (f"{'note':<7} ", "yellow"), text)


class LogPane(RichLog):
    DEFAULT_CSS = """
    LogPane {
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        height: 1fr;
        min-height: 6;
        background: $surface;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            max_lines=MAX_LINES,
            wrap=True,
            markup=False,
            highlight=False,
            auto_scroll=False,
            id=id,
            min_width=20,
        )
        self.border_title = "Log"
        self.follow = True
        self.pending = 0
        self.lines_written = 0
        self.plain: list[str] = []  # the last lines as plain text, for tests
        # ``session.log()`` writes a log event *and* "[level] message" to engine.log: show it once.
        self._recent: deque[str] = deque(maxlen=512)
        self._recent_set: set[str] = set()
        self.skip_noted = False

    def _seen(self, key: str) -> bool:
        """True if ``key`` was shown from the other source recently (then it is skipped)."""
        if key in self._recent_set:
            return True
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(key)
        self._recent_set.add(key)
        return False

    def add_log_lines(self, lines: list[str]) -> None:
        self._write(
            [
                Text.assemble(("│ ", "dim"), Text.from_ansi(line.rstrip("\r"), no_wrap=False))
                for line in lines
                if not self._seen(line.strip())
            ]
        )

    def add_events(self, events: Iterable[Event | dict[str, Any]]) -> None:
        texts = []
        for event in events:
            if isinstance(event, dict):
                event = decode_any(event)
            if isinstance(event, Log) and self._seen(f"[{event.level or 'info'}] {event.message}".strip()):
                continue
            text = event_line(event)
            if text is not None:
                texts.append(text)
        self._write(texts)

    def add_notice(self, text: str) -> None:
        """One line from the console itself (plain text), shown once per call."""
        self._write([notice_line(text)])

    def note_skipped(self, count: int) -> None:
        """Say once, the first time ``count`` is above 0, that unreadable lines of events.jsonl
        were skipped: one line, not one per bad line."""
        note = skipped_note(count)
        if note is not None and not self.skip_noted:
            self.skip_noted = True
            self.add_notice(note)

    def _write(self, texts: list[Text]) -> None:
        if not texts:
            return
        for text in texts:
            self.write(text, scroll_end=False)
        self.plain.extend(t.plain for t in texts)
        del self.plain[:-MAX_LINES]
        self.lines_written += len(texts)
        if self.follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        else:
            self.pending += len(texts)
            self._update_title()

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        if follow:
            self.pending = 0
            self.scroll_end(animate=False, x_axis=False)
        self._update_title()

    def _update_title(self) -> None:
        self.border_subtitle = "" if self.follow else f"paused · {self.pending} new · f to follow"

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new < old and not self.is_vertical_scroll_end and self.follow:
            self.follow = False
            self._update_title()
        elif self.is_vertical_scroll_end and not self.follow and new > old:
            self.set_follow(True)
