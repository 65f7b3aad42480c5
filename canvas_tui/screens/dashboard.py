"""The run dashboard: curves, progress, telemetry, log and checkpoints of one run, live.

Everything shown is rebuilt from the run directory, so opening a run again (or after the console
was closed) shows the same picture: that is re-attaching. One long-lived thread worker owns the
files (toolong's design, STYLE.md §4):

1. for a long ``events.jsonl`` it posts a sampled :class:`HistorySketch` first (bounded work, a
   bounded number of points), then reads everything in chunks into a :class:`RunView` built off
   the UI thread and posts it as :class:`HistoryLoaded`;
2. it then follows the file (one :class:`RunEvents` batch per read), ``engine.log`` (one
   :class:`LogLines` batch) and the true status (:class:`RunStatusChanged`, replaceable),
   sleeping while the UI's message queue is long (backpressure).

The main thread applies batches to its :class:`RunView` and redraws the panes at most
:data:`REDRAW_HZ` times a second, whatever the event rate.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header

from canvas_tui import actions
from canvas_tui.history import SKETCH_THRESHOLD, read_full, sketch_history
from canvas_tui.messages import HistoryLoaded, HistorySketch, LogLines, RunEvents, RunStatusChanged
from canvas_tui.screens.base import CanvasScreen
from canvas_tui.viewmodel import RunView, build_view
from canvas_tui.widgets.checkpoints import CheckpointList
from canvas_tui.widgets.emissions_pane import EmissionsPane
from canvas_tui.widgets.gpu_pane import GpuPane
from canvas_tui.widgets.log_pane import LogPane
from canvas_tui.widgets.loss_plot import LossPlot, MetricPlot
from canvas_tui.widgets.run_header import RunHeader
from canvas_tui.widgets.samples_pane import SamplesPane
from canvas_tui.widgets.system_pane import SystemPane
from engine.runs.events import Log, Status
from engine.runs.meta import RunMeta
from engine.runs.reader import EventReader, LineTail, line_offset_near_end
from engine.runs.status import RunStatus, run_status
from engine.runs.store import RunDir, RunStoreError

REDRAW_HZ = 4
#: The plots cost far more to draw than the text panes (plotext renders every cell), so a live run
#: redraws them at most this often; numbers in the header still update at REDRAW_HZ.
PLOT_REDRAW_S = 1.0
POLL_S = 0.25
STATUS_EVERY_S = 1.0
LOG_BACKLOG = 64 << 10
SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)
NARROW = 110


class DashboardScreen(CanvasScreen):
    BINDINGS = actions.bindings("dashboard")
    AUTO_FOCUS = "#dash-body"  # arrows and page keys scroll the whole dashboard on small terminals

    def __init__(self, run_path: str | Path) -> None:
        super().__init__()
        self.run = RunDir(Path(run_path))
        self.view = RunView()
        self.meta = RunMeta()
        self.status: RunStatus | None = None
        self._plots_drawn = 0.0
        self._plots_resolution = "empty"
        self.garbage = 0
        self.paints: list[tuple[str, int]] = []  # (resolution, points plotted) per loss redraw
        self._dirty: set[str] = set()
        self._kinds_all = {"plots", "header", "gpu", "system", "carbon", "checkpoints", "samples"}

    # ------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield RunHeader(id="run-header")
        with VerticalScroll(id="dash-body"):
            with Horizontal(id="plots"):
                yield LossPlot(id="loss-plot")
                with Vertical(id="side-plots"):
                    yield MetricPlot("learning rate", "plot-lr", id="lr-plot")
                    yield MetricPlot("tokens/s", "plot-throughput", id="tps-plot")
            with Horizontal(id="telemetry"):
                yield GpuPane(id="gpu")
                yield SystemPane(id="system")
                yield EmissionsPane(id="emissions")
            with Horizontal(id="bottom"):
                yield LogPane(id="log")
                yield SamplesPane(id="samples")  # shown once the run has samples (-samples)
                yield CheckpointList(id="checkpoints")
        yield Footer()

    def on_mount(self) -> None:
        settings = self.canvas.settings
        plot = self.query_one(LossPlot)
        plot.smoothing = settings.smoothing
        plot.log_y = settings.log_scale
        try:
            self.meta = self.run.read_meta()
        except RunStoreError as exc:
            self.notify(str(exc), severity="error", markup=False)
        self.sub_title = self.meta.name or self.run.id
        self.query_one(RunHeader).show(meta=self.meta, view=self.view)
        self._dirty |= self._kinds_all
        self.set_interval(1 / REDRAW_HZ, self._flush)
        self._apply_width(self.size.width)
        self._follow()

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        self.set_class(0 < width < NARROW, "-narrow")

    # ------------------------------------------------------------------------ the file worker
    @work(thread=True, exclusive=True, exit_on_error=False, group="dashboard-follow")
    def _follow(self) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        run = self.run
        run_id = run.id
        cancelled = lambda: worker.is_cancelled  # noqa: E731

        try:
            size = run.events_path.stat().st_size
        except OSError:
            size = 0
        if size >= SKETCH_THRESHOLD:
            records, _ = sketch_history(run.events_path)
            if cancelled():
                return
            self.post_message(HistorySketch(run_id, build_view(records, "sketch")))
        reader = EventReader(run.events_path)
        view = RunView()
        if not read_full(reader, view.ingest, cancelled):
            return
        view.resolution = "full"
        self.post_message(HistoryLoaded(run_id, view, reader.garbage))

        log = LineTail(run.log_path, line_offset_near_end(run.log_path, LOG_BACKLOG))
        next_status = 0.0
        while not cancelled():
            busy = False
            records = reader.read_events(max_bytes=1 << 20)
            if records:
                self.post_message(RunEvents(run_id, records, reader.skipped))
                busy = len(records) > 1000
            lines = log.read_lines(max_bytes=256 << 10)
            if lines:
                self.post_message(LogLines(run_id, [b.decode("utf-8", "replace") for b in lines]))
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY_S
                try:
                    meta = run.read_meta()
                    self.post_message(RunStatusChanged(run_id, run_status(run, meta, tail=0), meta))
                except RunStoreError:
                    pass  # deleted while open; the app closes this screen
            while self.message_queue_size > 10 and not cancelled():  # backpressure
                time.sleep(0.05)
            if not busy:
                time.sleep(POLL_S)

    # ------------------------------------------------------------------------ messages
    @on(HistorySketch)
    def _on_sketch(self, message: HistorySketch) -> None:
        if self.view.resolution != "full":
            self.view = message.view
            self._dirty |= self._kinds_all
            self._flush()

    @on(HistoryLoaded)
    def _on_history(self, message: HistoryLoaded) -> None:
        self.view = message.view
        self.garbage = message.garbage
        self.query_one(LogPane).add_events(list(self.view.logs))
        self.query_one(LogPane).note_skipped(message.garbage)
        self._dirty |= self._kinds_all
        self._flush()

    @on(RunEvents)
    def _on_events(self, message: RunEvents) -> None:
        kinds = self.view.ingest(message.records)
        log_pane = self.query_one(LogPane)
        log_pane.add_events([e for e in message.records if isinstance(e, (Log, Status))])
        log_pane.note_skipped(message.skipped)
        if kinds & {"metric", "eval"}:
            self._dirty |= {"plots", "header"}
        if kinds & {"run_info", "progress", "status"}:
            self._dirty.add("header")
        if "gpu" in kinds:
            self._dirty.add("gpu")
        if "system" in kinds:
            self._dirty.add("system")
        if "carbon" in kinds:
            self._dirty.add("carbon")
        if "checkpoint" in kinds:
            self._dirty.add("checkpoints")
        if "sample" in kinds:
            self._dirty.add("samples")

    @on(LogLines)
    def _on_log(self, message: LogLines) -> None:
        self.query_one(LogPane).add_log_lines(message.lines)

    @on(RunStatusChanged)
    def _on_status(self, message: RunStatusChanged) -> None:
        if (message.status, message.meta) == (self.status, self.meta):
            return  # polled every second: redraw only what changed
        self.status, self.meta = message.status, message.meta
        self.sub_title = self.meta.name or self.run.id
        self._dirty.add("header")

    # ------------------------------------------------------------------------ drawing
    def _flush(self) -> None:
        if not self._dirty or not self.is_attached:
            return
        dirty, self._dirty = self._dirty, set()
        now = time.monotonic()
        if "plots" in dirty and now - self._plots_drawn < PLOT_REDRAW_S and v_resolution_same(self):
            dirty.discard("plots")
            self._dirty.add("plots")  # drawn at the next flush after the interval
        v = self.view
        with self.app.batch_update():
            if "plots" in dirty:
                self._plots_drawn = now
                plot = self.query_one(LossPlot)
                plot.set_data(v.train, v.val, v.resolution)
                self.paints.append((v.resolution, plot.plotted_points))
                self._plots_resolution = v.resolution
                self.query_one("#lr-plot", MetricPlot).set_data(v.lr)
                self.query_one("#tps-plot", MetricPlot).set_data(v.tps)
            if "header" in dirty:
                self.query_one(RunHeader).show(meta=self.meta, status=self.status, view=v)
            if "gpu" in dirty:
                self.query_one(GpuPane).show(v)
            if "system" in dirty:
                self.query_one(SystemPane).show(v)
            if "carbon" in dirty:
                self.query_one(EmissionsPane).show(v)
            if "checkpoints" in dirty:
                self.query_one(CheckpointList).show(v.checkpoints)
            if "samples" in dirty:
                latest = v.latest_samples()
                self.set_class(bool(latest), "-samples")
                self.query_one(SamplesPane).show(latest, v.total_steps)

    # ------------------------------------------------------------------------ actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_stop_run(self) -> None:
        self.canvas.confirm_control("stop", str(self.run.path), self.meta.name or self.run.id)

    def action_checkpoint_run(self) -> None:
        self.canvas.run_control("checkpoint", str(self.run.path))

    def action_resume_run(self) -> None:
        self.canvas.run_control("resume", str(self.run.path))

    def action_talk(self) -> None:
        self.canvas.talk_to_run(self.run.path)

    def action_toggle_log_scale(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_y = not plot.log_y
        self.canvas.update_settings(log_scale=plot.log_y)
        plot.redraw()

    def action_cycle_smoothing(self) -> None:
        plot = self.query_one(LossPlot)
        steps = SMOOTHING_STEPS
        nxt = steps[(steps.index(plot.smoothing) + 1) % len(steps)] if plot.smoothing in steps else steps[0]
        plot.smoothing = nxt
        self.canvas.update_settings(smoothing=nxt)
        plot.redraw()
        self.notify(f"Smoothing {nxt:g}", timeout=1.5)

    def action_toggle_follow(self) -> None:
        log = self.query_one(LogPane)
        log.set_follow(not log.follow)


def v_resolution_same(screen: DashboardScreen) -> bool:
    """A change of resolution (sketch -> full history) is drawn at once, not throttled."""
    return screen.view.resolution == screen._plots_resolution
