"""The Welcome screen: the demo offered to a new user, then the demo chain's progress.

The console opens on it when the run store is empty (until it is dismissed with esc, which the
settings remember), and whenever a demo chain (:mod:`engine.demo_chain`) is under way, so closing
the console mid-demo and opening it again shows the step the chain is at. Enter starts the demo:
the chain's first step is started here (a real detached ``pretrain`` run, through the same
check-and-start as ``canvas train``), its dashboard opens, and a detached **chain driver**
(``python -m engine.demo_chain drive``) advances the chain as each run ends, with the console open
or closed. This screen polls ``demo.json`` (re-armed after each read) to show where it is; at the
end it offers the side-by-side chat on Model 1 and Model 2 and blind arena votes.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Footer, Header, Static

from canvas_tui.screens.base import CanvasScreen
from engine import demo_chain
from engine.demo_chain import Chain, DemoSettings

#: The three lines that say what the demo does (each fits an 80-column terminal).
INTRO = (
    "1. Model 1: the tiny model learns Python's docs from scratch.",
    "2. Model 2: Model 1 fine-tuned on chats; `canvas eval` scores both.",
    "3. Chat with both side by side, vote blind. Runs go on if you quit.",
)
MARK = {
    demo_chain.PENDING: " ",
    demo_chain.RUNNING: ">",
    demo_chain.SKIPPING: ">",
    demo_chain.DONE: "✓",
    demo_chain.SKIPPED: "-",
    demo_chain.STOPPED: "‖",
    demo_chain.FAILED: "!",
}


class ChainRead(Message):
    """The chain as the poller read it (None: no demo started), and where its current run is."""

    def __init__(self, chain: Chain | None, progress: str = "") -> None:
        super().__init__()
        self.chain = chain
        self.progress = progress


def read_chain() -> ChainRead:
    """demo.json, and a line on the current run (status, step, loss) from its run.json and the end
    of its events: what the poller posts."""
    from canvas_tui.fmt import fmt_loss, fmt_step
    from engine.runs.status import summarize

    chain = demo_chain.load_chain()
    run = chain.run_of(chain.step) if chain is not None and not chain.finished else None
    if run is None:
        return ChainRead(chain)
    row = summarize(run)
    progress = f"{row.name}: {row.status}, step {fmt_step(row.step, row.total_steps)}"
    if row.loss is not None:
        progress += f", loss {fmt_loss(row.loss)}"
    return ChainRead(chain, progress)


class DemoStarted(Message):
    def __init__(self, run_id: str | None, error: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.error = error


class WelcomeScreen(CanvasScreen):
    """See the module docstring. ``settings``: the demo's sizes (tests pass the smallest)."""

    SCOPE = "welcome"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "enter",
            "start",
            "Start / watch",
            id="welcome.start",
            tooltip="Start the demo, or open its current run",
        ),
        Binding("k", "skip", "Skip step", id="welcome.skip", tooltip="Skip the demo's current step"),
        Binding("s", "stop", "Stop", id="welcome.stop", tooltip="Stop the demo (its run keeps a checkpoint)"),
        Binding("r", "resume", "Resume", id="welcome.resume", tooltip="Resume a stopped demo"),
        Binding(
            "c", "chat", "Chat both", id="welcome.chat", tooltip="Chat with Model 1 and Model 2 side by side"
        ),
        Binding("a", "arena", "Arena", id="welcome.arena", tooltip="Blind votes between Model 1 and Model 2"),
        Binding("escape", "dismiss_welcome", "Runs", id="welcome.runs", tooltip="Go to the Runs screen"),
    ]
    DEFAULT_CSS = """
    WelcomeScreen #welcome-body { padding: 1 2; }
    WelcomeScreen #welcome-title { text-style: bold; color: $primary; margin-bottom: 1; }
    WelcomeScreen #welcome-intro { margin-bottom: 1; }
    WelcomeScreen #welcome-device { color: $text-muted; margin-bottom: 1; }
    WelcomeScreen #welcome-chain { border: round $primary; padding: 0 1; height: auto; }
    WelcomeScreen #welcome-hint { margin-top: 1; color: $text-muted; }
    """

    def __init__(self, settings: DemoSettings | None = None, poll_interval: float = 1.0) -> None:
        super().__init__()
        self.demo_settings = settings or DemoSettings()
        self.poll_interval = poll_interval
        self.chain: Chain | None = demo_chain.load_chain()
        self._starting = False
        self.device = ""
        self.progress = ""  # the current run's status, step and loss
        self._last_step: str | None = self.chain.step if self.chain else None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="welcome-body"):
            yield Static(Content("Welcome to Neural Canvas"), id="welcome-title", markup=False)
            yield Static(Content("\n".join(INTRO)), id="welcome-intro", markup=False)
            yield Static(Content(""), id="welcome-device", markup=False)
            yield Static(Content(""), id="welcome-chain", markup=False)
            yield Static(Content(""), id="welcome-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Demo"
        self.query_one("#welcome-chain").border_title = "The demo"
        self._show()
        self._keep_driver()
        if self.chain is None:
            self._detect_device()
        self.set_timer(self.poll_interval, self._poll)

    @work(thread=True, exit_on_error=False, group="welcome-device")
    def _detect_device(self) -> None:
        """Where the demo would train (NVML and the torch build's files: no torch import)."""
        line = demo_chain.device_line()
        self.app.call_from_thread(self._set_device, line)

    def _set_device(self, line: str) -> None:
        if self.chain is None:
            self.device = line
            self._show()

    # ------------------------------------------------------------------------ reading
    def _poll(self) -> None:
        self._read_chain()

    @work(thread=True, exclusive=True, exit_on_error=False, group="welcome-poll")
    def _read_chain(self) -> None:
        self.post_message(read_chain())

    @work(thread=True, exit_on_error=False, group="welcome-driver")
    def _keep_driver(self) -> None:
        """A chain under way whose driver died (machine restarted, driver killed) gets a new one."""
        demo_chain.ensure_driver()

    @on(ChainRead)
    def _chain_read(self, message: ChainRead) -> None:
        self.chain = message.chain
        self.progress = message.progress
        if self.chain is not None and self.chain.step != self._last_step:
            self._last_step = self.chain.step
            if self.chain.finished:
                self.notify(
                    "The demo is done: press c on the Demo screen to chat with both models, a for the arena.",
                    title="Demo",
                    timeout=8,
                )
            else:
                self.notify(
                    f"Demo step: {demo_chain.TITLES[self.chain.step]}", title="Demo", markup=False, timeout=5
                )
        self._show()
        self.set_timer(self.poll_interval, self._poll)

    def _show(self) -> None:
        chain = self.chain
        device = chain.device if chain is not None and chain.device else self.device
        self.query_one("#welcome-device", Static).update(Content(device))
        lines: list[Content] = []
        for step in demo_chain.STEPS:
            state = chain.steps[step] if chain is not None else None
            mark = MARK.get(state.state, "?") if state else " "
            current = chain is not None and chain.step == step
            text = f"[{mark}] {demo_chain.TITLES[step]}"
            lines.append(Content.styled(text, "bold $accent") if current else Content(text))
            if current and self.progress and chain is not None and not chain.finished:
                lines.append(Content("    " + self.progress))
            elif state is not None and state.state != demo_chain.PENDING:
                lines.append(Content(f"    {state.state}" + (f": run {state.run}" if state.run else "")))
        if chain is not None and chain.finished:
            for key, label in (("model1", "Model 1"), ("model2", "Model 2")):
                if key in chain.answers:
                    lines.append(
                        Content(f"{label} answers {chain.settings.question!r}: {chain.answers[key]!r}")
                    )
        self.query_one("#welcome-chain", Static).update(Content("\n").join(lines))
        if chain is None:
            hint = "enter: start the demo    esc: go to the Runs screen (this screen then stays closed)"
        elif chain.finished:
            hint = "c: chat with Model 1 and Model 2 side by side    a: blind arena votes    esc: Runs"
        elif chain.paused:
            hint = f"{chain.message}\nr: resume    k: skip this step    esc: Runs"
        else:
            hint = "enter: watch the current run    k: skip this step    s: stop the demo    esc: Runs"
        self.query_one("#welcome-hint", Static).update(Content(hint))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer offers what applies now: skip and stop while the demo runs, resume once it is
        stopped, chat and arena at the end."""
        chain = self.chain
        if action in ("skip", "stop", "resume"):
            if chain is None or chain.finished:
                return False
            return chain.paused if action == "resume" else not chain.paused
        if action in ("chat", "arena"):
            return chain is not None and chain.finished
        return True

    # ------------------------------------------------------------------------ actions
    def action_start(self) -> None:
        chain = self.chain
        if chain is None:
            if not self._starting:
                self._starting = True
                self._start_demo(self.demo_settings)
            return
        run = chain.run_of(chain.step) if not chain.finished else None
        if run is not None:
            self.canvas.open_dashboard(run.path)
        elif chain.finished:
            self.action_chat()
        else:
            self.notify("The step's run is starting: a moment.", title="Demo", timeout=3)

    @work(thread=True, exclusive=True, exit_on_error=False, group="welcome-start")
    def _start_demo(self, settings: DemoSettings) -> None:
        """The chain's file, then its first step's run (here, so its dashboard can open at once), then
        the detached driver that takes it from there."""
        from engine.config.errors import ConfigError
        from engine.runs.store import RunStoreError

        try:
            demo_chain.new_chain(settings)
            with demo_chain.edit() as chain:
                demo_chain.advance(chain)
                step = chain.steps[demo_chain.STEPS[0]]
                run_id, error = step.run, (chain.message if chain.paused else "")
            demo_chain.ensure_driver()
        except (ConfigError, RunStoreError, OSError) as exc:
            run_id, error = None, str(exc)
        self.post_message(DemoStarted(run_id, error))

    @on(DemoStarted)
    def _demo_started(self, message: DemoStarted) -> None:
        self._starting = False
        self.chain = demo_chain.load_chain()
        self._last_step = self.chain.step if self.chain else None
        self._show()
        if message.error or message.run_id is None:
            self.notify(
                message.error or "the demo did not start", title="Demo", severity="error", markup=False
            )
            return
        from engine.runs.store import RunStoreError, resolve_run

        try:
            self.canvas.open_dashboard(resolve_run(message.run_id).path)
        except RunStoreError as exc:
            self.notify(str(exc), title="Demo", severity="error", markup=False)

    def _control(self, what: str) -> None:
        if self.chain is None:
            self.notify("No demo yet: press enter to start it.", title="Demo", timeout=3)
            return
        self._control_worker(what)

    @work(thread=True, exclusive=True, exit_on_error=False, group="welcome-control")
    def _control_worker(self, what: str) -> None:
        from engine.runs.store import RunStoreError

        try:
            text = {"skip": demo_chain.skip, "stop": demo_chain.stop, "resume": demo_chain.resume}[what]()
        except RunStoreError as exc:
            text = str(exc)
        self.app.call_from_thread(self.notify, text, title="Demo", markup=False, timeout=4)
        self.post_message(read_chain())

    def action_skip(self) -> None:
        self._control("skip")

    def action_stop(self) -> None:
        self._control("stop")

    def action_resume(self) -> None:
        self._control("resume")

    def _models(self) -> list:
        from canvas_tui.chat_models import choice_for_run

        chain = self.chain
        runs = [chain.run_of(s) for s in ("pretrain", "finetune")] if chain is not None else []
        return [choice_for_run(r) for r in runs if r is not None]

    def action_chat(self) -> None:
        choices = self._models()
        if len(choices) < 2 or self.chain is None or not self.chain.finished:
            self.notify("Chat opens once both models are trained.", title="Demo", timeout=4)
            return
        self.canvas.open_chat(choices)

    def action_arena(self) -> None:
        choices = self._models()
        if len(choices) < 2 or self.chain is None or not self.chain.finished:
            self.notify("The arena opens once both models are trained.", title="Demo", timeout=4)
            return
        self.canvas.open_arena(choices)

    def action_dismiss_welcome(self) -> None:
        self.canvas.update_settings(welcome_seen=True)
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
