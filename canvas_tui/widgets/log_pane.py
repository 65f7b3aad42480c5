"""The log pane: ``engine.log`` lines and ``log``/``status`` events, tailed like ``tail -f``.

Lines are untrusted and go through one function, :func:`untrusted_lines`, whichever file they come
from: a newline inside a message starts a new line, ANSI colours are kept (``Text.from_ansi``) and
every other escape sequence dropped, remaining control characters and the bidirectional overrides
(U+202E and friends, which could reorder what a reader sees) become ``�``; nothing is ever parsed
as markup.

The pane keeps each logical line as a gutter (the time and level of an event, ``│`` for engine.log)
and a body, and wraps the body itself to the pane's width, so a wrapped line keeps its gutter and
the lines re-wrap when the pane is resized. The history is merged in time order
(:meth:`LogPane.set_history`): events carry their time, engine.log lines the time of its header
line (``=== canvas: attempt N at …``), of a leading timestamp, or of the event they repeat.
Following stops when the user scrolls up and a pending-line counter shows in the border (toolong's
``TailFile``); scrolling back to the end, or ``f``, resumes it.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.events import Resize
from textual.timer import Timer
from textual.widgets import RichLog

from engine.runs.events import Event, Log, Status, decode_any
from engine.runs.format import clock, event_label, event_text, skipped_note

LEVEL_STYLES = {"debug": "dim", "info": "cyan", "warning": "yellow", "error": "bold red"}
MAX_LINES = 5000
RESIZE_SETTLE_S = 0.1
#: Gutter widths: "HH:MM:SS level   " for events and notes, "│ " for engine.log lines.
EVENT_GUTTER = 17
LOG_GUTTER = Text("│ ", style="dim")

#: Bidirectional formatting characters (Trojan Source, CVE-2021-42574) and other invisible
#: direction marks: shown as "�" so text cannot be reordered or hidden on screen.
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NEWLINES = re.compile(r"\r\n|\r|\n|\x0b|\x0c|\x85|\u2028|\u2029")
#: A timestamp at the start of an engine.log line: the launch header or an ISO/``YYYY-MM-DD HH:MM:SS``.
_HEADER_TIME = re.compile(r"^=== canvas: attempt \d+ at (\S+?):? ")
_LEADING_TIME = re.compile(r"^\[?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)")


def _safe_char(ch: str) -> str:
    if ch == "\t":
        return " "
    if ch < " " or ch == "\x7f" or "\x80" <= ch < "\xa0" or ch in BIDI:
        return "\ufffd"
    return ch


def neutralise(text: Text) -> Text:
    """``text`` with control and bidi characters replaced one for one (its styles kept)."""
    plain = text.plain
    safe = "".join(_safe_char(ch) for ch in plain)
    if safe == plain:
        return text
    return Text(safe, style=text.style, spans=list(text.spans), end="", no_wrap=True)


def untrusted_lines(text: Any) -> list[Text]:
    """Untrusted text as display lines: split at newlines, ANSI colours rendered and other escape
    sequences dropped (``Text.from_ansi``), the rest of the control and bidi characters replaced.
    The same for engine.log lines and event messages."""
    s = str(text)
    out = []
    for line in _NEWLINES.split(s):
        rendered = Text.from_ansi(line, no_wrap=True, end="") if "\x1b" in line else Text(line, end="")
        out.append(neutralise(rendered))
    return out


def _event_body(event: Log | Status) -> str:
    """The raw text of a log or status event (before :func:`untrusted_lines`), in the words of
    :func:`engine.runs.format.event_text`, which puts it on one line."""
    if isinstance(event, Log):
        return str(event.message or "")
    return f"{event.state}" + (f": {event.message}" if event.message else "")


def event_line(event: Event | dict[str, Any]) -> Text | None:
    """The one-line summary of a ``log`` or ``status`` event (None for other types): its time, its
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


@dataclass
class Entry:
    """One logical line: ``gutter`` on its first screen line, ``cont`` (same width) on the lines
    its ``body`` wraps onto."""

    gutter: Text
    body: Text
    cont: Text

    @property
    def plain(self) -> str:
        return self.gutter.plain + self.body.plain


def event_entries(event: Event | dict[str, Any]) -> list[Entry]:
    """The pane's lines of a ``log`` or ``status`` event (none for other types): time and label in
    the gutter of the first, the gutter blank on the lines its message continues on."""
    if isinstance(event, dict):
        event = decode_any(event)
    if not isinstance(event, (Log, Status)):
        return []
    lvl = event_label(event)
    style = LEVEL_STYLES.get(lvl, "") if isinstance(event, Log) else "magenta"
    first = Text.assemble((clock(event.t) + " ", "dim"), (f"{lvl[:7]:<7} ", style))
    blank = Text(" " * EVENT_GUTTER)
    lines = untrusted_lines(_event_body(event))
    return [Entry(first if i == 0 else blank, body, blank) for i, body in enumerate(lines)]


def log_entries(line: str) -> list[Entry]:
    """The pane's lines of one engine.log line (a stray carriage return splits it too)."""
    return [Entry(LOG_GUTTER, body, LOG_GUTTER) for body in untrusted_lines(line.rstrip("\r\n"))]


def line_time(line: str) -> float | None:
    """The time written at the start of an engine.log line, or None."""
    match = _HEADER_TIME.match(line) or _LEADING_TIME.match(line)
    if match is None:
        return None
    stamp = match.group(1).replace(",", ".")
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _dedupe_keys(event: Log) -> list[str]:
    """What ``session.log()`` also prints to engine.log for this event, one key a line."""
    lines = _NEWLINES.split(str(event.message or ""))
    keys = [f"[{event.level or 'info'}] {lines[0]}".strip()]
    keys += [ln.strip() for ln in lines[1:] if ln.strip()]
    return keys


class LogPane(RichLog):
    DEFAULT_CSS = """
    LogPane {
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        height: 1fr;
        min-height: 6;
        background: $surface;
        scrollbar-gutter: stable;
        overflow-x: hidden;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            max_lines=2 * MAX_LINES,  # screen lines; the logical lines are capped at MAX_LINES
            wrap=False,
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
        self.entries: deque[Entry] = deque(maxlen=MAX_LINES)
        self.wrap_width = 0  # the width the shown lines were wrapped to (0: not drawn yet)
        # ``session.log()`` writes a log event *and* "[level] message" to engine.log: show it once.
        self._recent: deque[str] = deque(maxlen=512)
        self._recent_set: set[str] = set()
        self.skip_noted = False
        self._resize_timer: Timer | None = None

    @property
    def plain(self) -> list[str]:
        """The logical lines as plain text (gutter and body), oldest first: for tests."""
        return [e.plain for e in self.entries]

    def _seen(self, key: str) -> bool:
        """True if ``key`` was shown from the other source recently (then it is skipped)."""
        if not key:
            return False
        if key in self._recent_set:
            return True
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(key)
        self._recent_set.add(key)
        return False

    # ------------------------------------------------------------------------------- input
    def add_log_lines(self, lines: list[str]) -> None:
        entries: list[Entry] = []
        for line in lines:
            if not self._seen(line.strip()):
                entries += log_entries(line)
        self._write(entries)

    def add_events(self, events: Iterable[Event | dict[str, Any]]) -> None:
        entries: list[Entry] = []
        for event in events:
            if isinstance(event, dict):
                event = decode_any(event)
            if isinstance(event, Log):
                keys = _dedupe_keys(event)
                if any([self._seen(k) for k in keys]):  # a list: every key is remembered
                    continue
            entries += event_entries(event)
        self._write(entries)

    def set_history(self, events: Iterable[Event | dict[str, Any]], lines: list[str]) -> None:
        """The history at opening: events and the end of engine.log, merged in time order.

        An engine.log line takes the time written at its start, else the time of the event it
        repeats (``session.log()`` writes both; the event is shown), else that of the line before
        it; lines before the first known time take that time, and without any, they follow the
        events (as they did before the merge existed).
        """
        decoded = [decode_any(e) if isinstance(e, dict) else e for e in events]
        decoded = [e for e in decoded if isinstance(e, (Log, Status))]
        key_time: dict[str, float] = {}
        for e in decoded:
            if isinstance(e, Log) and _finite(e.t) is not None:
                for k in _dedupe_keys(e):
                    key_time.setdefault(k, float(e.t))  # type: ignore[arg-type]
        timed: list[tuple[float | None, str, bool]] = []  # (time, line, repeats an event)
        last: float | None = None
        for line in lines:
            key = line.strip()
            t = line_time(line)
            repeat = key in key_time
            if t is None and repeat:
                t = key_time[key]
            last = t if t is not None else last
            timed.append((last, line, repeat))
        first = next((t for t, _, _ in timed if t is not None), math.inf)
        merged: list[tuple[float, int, int, list[Entry]]] = []
        for i, e in enumerate(decoded):
            t = _finite(e.t)
            if isinstance(e, Log):
                for k in _dedupe_keys(e):
                    self._seen(k)
            merged.append((t if t is not None else -math.inf, 0, i, event_entries(e)))
        for i, (t, line, repeat) in enumerate(timed):
            if repeat:
                continue  # the event says it, with its time and level
            self._seen(line.strip())
            merged.append((t if t is not None else first, 1, i, log_entries(line)))
        merged.sort(key=lambda m: (m[0], m[1], m[2]))
        self._write([entry for *_, entries in merged for entry in entries])

    def add_notice(self, text: str) -> None:
        """One line from the console itself (plain text), shown once per call."""
        self._write([Entry(notice_line(""), Text(text), Text(" " * EVENT_GUTTER))])

    def note_skipped(self, count: int) -> None:
        """Say once, the first time ``count`` is above 0, that unreadable lines of events.jsonl
        were skipped: one line, not one per bad line."""
        note = skipped_note(count)
        if note is not None and not self.skip_noted:
            self.skip_noted = True
            self.add_notice(note)

    # ------------------------------------------------------------------------------- drawing
    def _width(self) -> int:
        return self.scrollable_content_region.width

    def _wrapped(self, entry: Entry, width: int) -> list[Text]:
        room = max(8, width - entry.gutter.cell_len)
        body = entry.body
        if body.cell_len <= room:
            return [Text.assemble(entry.gutter, body, no_wrap=True, end="")]
        pieces = body.wrap(self.app.console, room, overflow="fold", no_wrap=False)
        return [
            Text.assemble(entry.gutter if i == 0 else entry.cont, piece, no_wrap=True, end="")
            for i, piece in enumerate(pieces)
        ]

    def _draw(self, entries: Iterable[Entry], width: int) -> None:
        for entry in entries:
            for text in self._wrapped(entry, width):
                self.write(text, width=width, scroll_end=False)

    def _write(self, entries: list[Entry]) -> None:
        if not entries:
            return
        self.entries.extend(entries)
        self.lines_written += len(entries)
        width = self._width()
        if width > 0 and width == self.wrap_width:
            self._draw(entries, width)
        else:
            self._redraw()
        if self.follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        else:
            self.pending += len(entries)
            self._update_title()

    def _redraw(self) -> None:
        """Wrap every kept line again at the pane's current width (nothing when it has none yet)."""
        width = self._width()
        if width <= 0:
            return
        self.wrap_width = width
        self.clear()
        self._draw(self.entries, width)
        if self.follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def on_resize(self, event: Resize) -> None:
        if self._width() != self.wrap_width and self._resize_timer is None:
            # A drag resizes many times a second: wrap again once it settles.
            self._resize_timer = self.set_timer(RESIZE_SETTLE_S, self._resized)

    def _resized(self) -> None:
        self._resize_timer = None
        if self._width() != self.wrap_width:
            self._redraw()

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


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
