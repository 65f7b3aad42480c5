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

import os
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header

from canvas_tui import actions
from canvas_tui.history import SKETCH_THRESHOLD, read_full, sketch_history
from canvas_tui.messages import (
    CheckpointsScanned,
    HistoryLoaded,
    HistorySketch,
    LogLines,
    RunEvents,
    RunStatusChanged,
)
from canvas_tui.screens.base import CanvasScreen
from canvas_tui.viewmodel import RunView, build_view
from canvas_tui.widgets.checkpoints import CheckpointList, OnDisk, checkpoints_signature, scan_checkpoints
from canvas_tui.widgets.emissions_pane import EmissionsPane
from canvas_tui.widgets.eval_run_pane import EvalRunPane
from canvas_tui.widgets.gpu_pane import GpuPane
from canvas_tui.widgets.log_pane import LogPane
from canvas_tui.widgets.loss_plot import PICKABLE, LossPlot, MetricPlot, PickedMetricPlot
from canvas_tui.widgets.run_header import RunHeader
from canvas_tui.widgets.samples_pane import SamplesPane
from canvas_tui.widgets.system_pane import SystemPane
from engine.runs.events import Log, Status
from engine.runs.meta import RunMeta
from engine.runs.reader import EventReader, LineTail, line_offset_near_end
from engine.runs.status import RunStatus, run_status
from engine.runs.store import RunDir, RunStoreError

REDRAW_HZ = 2
#: How often the age of a dead run's last telemetry ("last seen 3 min ago") is redrawn.
STALE_EVERY_S = 5.0
#: The plots cost far more to draw than the text panes (plotext renders every cell), so a live run
#: redraws them at most this often; numbers in the header still update at REDRAW_HZ.
PLOT_REDRAW_S = 2.0
POLL_S = 0.25
STATUS_EVERY_S = 1.0
LOG_BACKLOG = 64 << 10
SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)
NARROW = 110


class DashboardScreen(CanvasScreen):
    BINDINGS = actions.bindings("dashboard")
    DEFAULT_CSS = """
    DashboardScreen #telemetry.-stale > * { text-opacity: 55%; border-subtitle-color: $warning; }
    """
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
        #: A stop was requested and the run has not ended: the header says "stopping…".
        self.stopping = False
        #: The checkpoints on disk, newest first (the worker rescans when the folder changes).
        self.on_disk: list[OnDisk] = []
        #: What the telemetry panes say when the process is gone ("last seen 3 min ago"), else "".
        self.stale_note = ""
        self._kinds_all = {"plots", "header", "gpu", "system", "carbon", "checkpoints", "samples"}

    # ------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield RunHeader(id="run-header")
        with VerticalScroll(id="dash-body"):
            yield EvalRunPane(id="eval-run")  # an eval run's progress and results, in place of the plots
            with Horizontal(id="plots"):
                yield LossPlot(id="loss-plot")
                with Vertical(id="side-plots"):
                    yield PickedMetricPlot("lr", id="lr-plot")  # `p` picks its metric
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
        self.set_class(self.meta.kind == "eval", "-eval")  # results and progress instead of loss curves
        self.query_one(RunHeader).show(meta=self.meta, view=self.view)
        self._dirty |= self._kinds_all
        self.set_interval(1 / REDRAW_HZ, self._flush)
        self.set_interval(STALE_EVERY_S, self._show_staleness)
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
        log = LineTail(run.log_path, line_offset_near_end(run.log_path, LOG_BACKLOG))
        backlog = [b.decode("utf-8", "replace") for b in log.read_lines(max_bytes=LOG_BACKLOG + (64 << 10))]
        self.post_message(HistoryLoaded(run_id, view, reader.garbage, backlog))

        next_status = 0.0
        ckpt_signature: int | str | None = "unread"
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
                    status = run_status(run, meta, tail=0)
                    stopping = not status.is_final and os.path.lexists(run.control_dir / "stop")
                    self.post_message(RunStatusChanged(run_id, status, meta, stopping))
                except RunStoreError:
                    pass  # deleted while open; the app closes this screen
                signature = checkpoints_signature(run.checkpoints_dir)
                if signature != ckpt_signature:
                    ckpt_signature = signature
                    self.post_message(CheckpointsScanned(run_id, scan_checkpoints(run.checkpoints_dir)))
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
        self.query_one(LogPane).set_history(list(self.view.logs), message.log_lines)
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
        if kinds & {"run_info", "progress", "status", "checkpoint", "sample"}:
            self._dirty.add("header")  # any event with a step moves the step counter
        if kinds & {"gpu", "system", "carbon"}:
            self._dirty.add("stale")
        if "gpu" in kinds:
            self._dirty.add("gpu")
        if "system" in kinds:
            self._dirty.add("system")
        if "carbon" in kinds:
            self._dirty.add("carbon")
        if kinds & {"checkpoint", "eval"}:
            self._dirty.add("checkpoints")  # their validation losses
        if "sample" in kinds:
            self._dirty.add("samples")

    @on(LogLines)
    def _on_log(self, message: LogLines) -> None:
        self.query_one(LogPane).add_log_lines(message.lines)

    @on(RunStatusChanged)
    def _on_status(self, message: RunStatusChanged) -> None:
        if (message.status, message.meta, message.stopping) == (self.status, self.meta, self.stopping):
            return  # polled every second: redraw only what changed
        before = self.status.state if self.status else None
        self.status, self.meta, self.stopping = message.status, message.meta, message.stopping
        self.sub_title = self.meta.name or self.run.id
        self._dirty |= {"header", "stale"}
        if message.status.state != before:
            self.refresh_bindings()  # Stop, Checkpoint and Resume follow the status

    @on(CheckpointsScanned)
    def _on_checkpoints(self, message: CheckpointsScanned) -> None:
        self.on_disk = message.found
        self._dirty.add("checkpoints")

    def _show_staleness(self) -> None:
        if self.status is not None and not self.status.is_live:
            self._dirty.add("stale")  # the age in "last seen … ago" grows

    def _staleness(self) -> str:
        """ "last seen 3 min ago" when the engine process is gone (its telemetry is no longer
        live), else "". Ages come from the app's clock (frozen in snapshot tests)."""
        if self.status is None or self.status.is_live or self.view.telemetry_t is None:
            return ""
        return f"last seen {fmt_ago(self.canvas.clock() - self.view.telemetry_t)}"

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
                self.query_one("#lr-plot", PickedMetricPlot).set_view(v)
                self.query_one("#tps-plot", MetricPlot).set_data(v.tps)
            if "header" in dirty:
                self.query_one(RunHeader).show(
                    meta=self.meta, status=self.status, view=v, stopping=self.stopping
                )
            if "stale" in dirty or "header" in dirty:
                note = self._staleness()
                if note != self.stale_note:
                    self.stale_note = note
                    for telemetry in self.query("#telemetry"):
                        telemetry.set_class(bool(note), "-stale")
                        for pane in telemetry.children:
                            pane.border_subtitle = note
            if "header" in dirty and self.has_class("-eval"):
                state = self.status.state if self.status is not None else None
                self.query_one(EvalRunPane).show(self.run.path, v, state)
            if "gpu" in dirty:
                self.query_one(GpuPane).show(v)
            if "system" in dirty:
                self.query_one(SystemPane).show(v)
            if "carbon" in dirty:
                self.query_one(EmissionsPane).show(v)
            if "checkpoints" in dirty:
                self.query_one(CheckpointList).show(self.on_disk, v)
            if "samples" in dirty:
                latest = v.latest_samples()
                self.set_class(bool(latest), "-samples")
                self.query_one(SamplesPane).show(latest, v.total_steps)

    # ------------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer (footer, palette, keys) only what the run's state allows: stop and checkpoint a
        live run, resume a stopped, crashed or failed one; neither before its status is known."""
        state = self.status.state if self.status is not None else None
        if action in ("next_metric", "toggle_log_scale", "cycle_smoothing") and self.has_class("-eval"):
            return False  # an evaluation run has no curves
        if action in ("stop_run", "checkpoint_run"):
            return state in LIVE
        if action == "resume_run":
            return state in RESUMABLE
        return True

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_stop_run(self) -> None:
        if not self.check_action("stop_run", ()):
            return
        self.canvas.confirm_control("stop", str(self.run.path), self.meta.name or self.run.id)

    def action_checkpoint_run(self) -> None:
        if not self.check_action("checkpoint_run", ()):
            return
        self.canvas.run_control("checkpoint", str(self.run.path))

    def action_resume_run(self) -> None:
        if not self.check_action("resume_run", ()):
            return
        self.canvas.run_control("resume", str(self.run.path))

    def action_talk(self) -> None:
        self.canvas.talk_to_run(self.run.path)

    def action_toggle_log_scale(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_y = not plot.log_y
        self.canvas.update_settings(log_scale=plot.log_y)
        plot.redraw()

    def action_next_metric(self) -> None:
        """The side plot shows the next metric (learning rate, grad norm, MFU, step time, ...)."""
        plot = self.query_one("#lr-plot", PickedMetricPlot)
        keys = [m.key for m in PICKABLE]
        plot.pick(keys[(keys.index(plot.metric) + 1) % len(keys)], self.view)

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


#: States in which Stop / Checkpoint are offered, and those in which Resume is.
LIVE = ("running", "starting")
RESUMABLE = ("stopped", "crashed", "failed")


def fmt_ago(seconds: float) -> str:
    """``12 s ago``, ``3 min ago``, ``2 h ago``, ``4 d ago``."""
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return f"{int(s)} s ago"


def v_resolution_same(screen: DashboardScreen) -> bool:
    """A change of resolution (sketch -> full history) is drawn at once, not throttled."""
    return screen.view.resolution == screen._plots_resolution
