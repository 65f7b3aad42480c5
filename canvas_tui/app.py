"""The Neural Canvas console (``canvas`` with no arguments): the App only.

Screens live in :mod:`canvas_tui.screens`, widgets in :mod:`canvas_tui.widgets`, the event →
series logic in :mod:`canvas_tui.viewmodel`. The app registers the themes, restores the settings
(theme remembered between sessions), runs control actions (stop, checkpoint, resume, delete) in
thread workers and reports worker failures as notifications instead of crashing.

The console never imports torch and never owns a run: engine processes are detached, so quitting
(``q``) leaves every run going, and opening the console again rebuilds the same picture from the
run directories.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from canvas_tui import actions
from canvas_tui.control import perform
from canvas_tui.crash import CrashConsole
from canvas_tui.messages import ControlDone
from canvas_tui.screens.runs import RunsScreen
from canvas_tui.settings import DEFAULT_THEME, Settings, load_settings, save_settings
from themes import THEMES

if TYPE_CHECKING:  # imported for the hints only: first paint does not pay for them
    from canvas_tui.chat_models import ModelChoice as ChatChoice
    from engine.demo_chain import DemoSettings

#: Set (to anything but 0) to open an empty run store on the Runs screen, not the welcome screen.
NO_WELCOME_ENV = "CANVAS_NO_WELCOME"


class CanvasApp(App[None]):
    """The console. ``run_ref`` opens that run's dashboard at start (``canvas console --run``);
    ``clock`` and ``poll_interval`` exist for deterministic tests."""

    CSS_PATH = "app.tcss"
    TITLE = "Neural Canvas"
    BINDINGS = actions.bindings("app")

    def __init__(
        self,
        run_ref: str | None = None,
        *,
        chat_choices: list[ChatChoice] | None = None,
        arena_choices: list[ChatChoice] | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
        demo_settings: DemoSettings | None = None,
    ) -> None:
        super().__init__()
        # What is imported by now (Textual, the Runs screen, the run store) lives as long as the
        # process: set it aside from the cyclic garbage collector, whose first full pass over it
        # landed inside the first paint (30-50 ms measured), and from every later full pass.
        # Given back when the app ends (``on_unmount``): an app started in a test process leaves
        # nothing pinned for the next.
        gc.freeze()
        #: The demo chain's sizes when the Welcome screen starts it (tests pass the smallest).
        self.demo_settings = demo_settings
        self.run_ref = run_ref
        self.chat_choices = chat_choices
        self.arena_choices = arena_choices
        self.clock = clock
        self.poll_interval = poll_interval
        #: Where a crash's traceback goes as the app exits (Textual prints it on ``error_console``):
        #: saved to a file that ``canvas console`` names, see :mod:`canvas_tui.crash`.
        self.crash_console = CrashConsole(lambda: bool(self.return_code))
        self.error_console = self.crash_console
        #: When the current screen became the current one (on :func:`event_clock`, the clock of every
        #: event's ``time``), and how many keys typed before that were dropped: see :meth:`on_event`.
        self.screen_since = 0.0
        self.stale_keys = 0
        self.settings: Settings = load_settings()
        self.keymap = dict(self.settings.keymap)
        for theme in THEMES.values():
            self.register_theme(theme)
        self.theme = self.settings.theme if self.settings.theme in self.available_themes else DEFAULT_THEME

    def get_default_screen(self) -> Screen:
        return RunsScreen()

    def on_mount(self) -> None:
        # Immediate: the moment of the change, not when the app gets round to a posted callback (a
        # key pressed in between, on the new screen, was dropped as older than it: seen in CI).
        self.screen_change_signal.subscribe(self, self._screen_changed, immediate=True)
        if self.keymap:
            self.set_keymap(self.keymap)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        opening = (self.run_ref, self.chat_choices, self.arena_choices)
        if opening == (None, None, None) and self.welcome():
            self.open_demo()
        if self.run_ref:
            self._open_ref(self.run_ref)
        if self.chat_choices is not None:
            self.open_chat(self.chat_choices)
        if self.arena_choices is not None:
            self.open_arena(self.arena_choices)

    def on_unmount(self) -> None:
        gc.unfreeze()

    @property
    def crash_report(self) -> Path | None:
        """The saved traceback of the crash that ended the app (None: no crash, or not saved)."""
        return self.crash_console.report

    # ------------------------------------------------------------------------ keys
    def _screen_changed(self, screen: Screen) -> None:
        self.screen_since = event_clock()

    async def on_event(self, event: events.Event) -> None:
        """Keys act only on the screen where they were pressed.

        A key's event is stamped when the terminal sends it; when the main thread is busy, keys
        queue up, and a key that the focused widget does not take bubbles back to the app, which
        looks it up in the bindings of the screen that is current *then*. A key pressed before the
        current screen was shown (on a form that was then closed with esc, or while a dashboard was
        opening) is dropped, on its way in or on its way back up, instead of running this screen's
        binding: a ``c`` pressed on the New-run form once checkpointed the run selected on the Runs
        screen after esc.
        """
        if isinstance(event, events.Key) and event.time < self.screen_since:
            self.stale_keys += 1
            event.stop()
            return
        await super().on_event(event)

    def _open_ref(self, ref: str) -> None:
        from engine.runs.store import RunStoreError, resolve_run

        try:
            self.open_dashboard(resolve_run(ref).path)
        except RunStoreError as exc:
            self.notify(str(exc), title="No such run", severity="error", markup=False)

    # ------------------------------------------------------------------------ settings
    def _theme_changed(self, theme) -> None:
        if theme.name != self.settings.theme:
            self.update_settings(theme=theme.name)

    def update_settings(self, **changes) -> None:
        self.settings = replace(self.settings, **changes)
        self._save_settings(self.settings)

    @work(thread=True, exit_on_error=False, group="settings")
    def _save_settings(self, settings: Settings) -> None:
        save_settings(settings)

    # ------------------------------------------------------------------------ navigation
    def welcome(self) -> bool:
        """Open on the Welcome screen? When a demo chain is under way (re-opened mid-demo: show where
        it is), or when the run store is empty and the welcome was never dismissed (esc), unless
        ``CANVAS_NO_WELCOME`` is set."""
        import os

        from engine.locations import demo_chain_file
        from engine.runs.store import RunStoreError, list_runs

        chain = None
        if demo_chain_file().exists():  # the chain's code only when there is a chain (start-up cost)
            from engine.demo_chain import load_chain

            chain = load_chain()
        if chain is not None and not chain.finished:
            return True
        if os.environ.get(NO_WELCOME_ENV, "").strip() not in ("", "0") or self.settings.welcome_seen:
            return False
        try:
            return chain is None and not list_runs()
        except RunStoreError:
            return False

    def open_demo(self) -> None:
        """The Welcome screen: the demo offered, or the demo chain's progress."""
        from canvas_tui.screens.welcome import WelcomeScreen

        if not isinstance(self.screen, WelcomeScreen):
            self.push_screen(WelcomeScreen(self.demo_settings, poll_interval=self.poll_interval))

    def open_dashboard(self, run_path: str | Path) -> None:
        from canvas_tui.screens.dashboard import DashboardScreen

        self.push_screen(DashboardScreen(run_path))

    def action_new_run(self) -> None:
        from canvas_tui.screens.new_run import NewRunScreen

        self.push_screen(NewRunScreen())

    def action_help(self) -> None:
        from canvas_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_go_runs(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def _placeholder(self, title: str) -> None:
        from canvas_tui.screens.placeholder import PlaceholderScreen

        self.push_screen(
            PlaceholderScreen(title, f"The {title} screen arrives with its own issue. Press esc to go back.")
        )

    def action_evaluation(self) -> None:
        from canvas_tui.screens.evaluation import EvaluationScreen

        if not isinstance(self.screen, EvaluationScreen):
            self.push_screen(EvaluationScreen())

    def action_chat(self) -> None:
        from canvas_tui.screens.chat import ChatScreen

        if not isinstance(self.screen, ChatScreen):
            self.open_chat([])

    def open_chat(self, choices: list[ChatChoice]) -> None:
        """The Chat screen with these models (none: the model picker opens)."""
        from canvas_tui.screens.chat import ChatScreen

        self.push_screen(ChatScreen(choices))

    def open_arena(self, choices: list[ChatChoice]) -> None:
        """The Arena screen: blind votes between two of these models at a time."""
        from canvas_tui.screens.arena import ArenaScreen

        self.push_screen(ArenaScreen(choices))

    def talk_to_run(self, run_path: str | Path) -> None:
        """Chat with a run's model (a fine-tune with its adapter on)."""
        from canvas_tui.chat_models import choice_for

        self.open_chat([choice_for(str(run_path))])

    # ------------------------------------------------------------------------ run control
    def confirm_control(self, action: str, run_path: str, name: str, live: bool = False) -> None:
        """Ask first, then :meth:`run_control` (stop and delete)."""
        from canvas_tui.screens.confirm import ConfirmScreen

        if action == "delete":
            question = Content.assemble(
                "Delete run ",
                (name, "bold"),
                " with its checkpoints and logs? ",
                "It is running: it will be stopped first. " if live else "",
                "This cannot be undone.",
            )
            title, yes = "Delete run", "Delete"
        else:
            question = Content.assemble(
                "Stop run ",
                (name, "bold"),
                "? It finishes its step, writes a checkpoint and exits; resume it later with r.",
            )
            title, yes = "Stop run", "Stop"

        def answered(ok: bool | None) -> None:
            if ok:
                self.run_control(action, run_path)

        self.push_screen(ConfirmScreen(title, question, yes), answered)

    def run_control(self, action: str, run_path: str) -> None:
        self._control_worker(action, str(run_path))

    @work(thread=True, exit_on_error=False, group="control")
    def _control_worker(self, action: str, run_path: str) -> None:
        from engine.runs.store import RunStoreError

        run_id = Path(run_path).name
        try:
            text = perform(action, run_path)
        except RunStoreError as exc:
            self.post_message(ControlDone(action, run_id, str(exc), error=True))
            return
        self.post_message(ControlDone(action, run_id, text))

    @on(ControlDone)
    def _control_done(self, message: ControlDone) -> None:
        self.notify(
            message.text,
            title=message.action.capitalize(),
            severity="error" if message.error else "information",
            markup=False,
            timeout=6,
        )
        if message.action == "delete" and not message.error:
            from canvas_tui.screens.dashboard import DashboardScreen

            if isinstance(self.screen, DashboardScreen) and self.screen.run.id == message.run_id:
                self.pop_screen()
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.scan()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place for worker failures: a notification, never a crash."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{type(error).__name__}: {error}",
                title=f"{event.worker.name} failed",
                severity="error",
                markup=False,
                timeout=10,
            )

    # ------------------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        scope = getattr(screen, "SCOPE", None) or _scope_of(screen)
        for action in actions.for_scope("app", scope):
            if action.action == "quit":
                continue
            target = self if action.scope == "app" else screen
            if target.check_action(action.action.split("(")[0], ()) is False:
                continue  # not offered in this state (Stop on a finished run): as in the footer
            key = actions.display_key(action, self.keymap)
            yield SystemCommand(
                f"{SCOPE_PREFIX.get(action.scope, '')}{action.title}",
                palette_help(action.help, key),
                _runner(target, action.action),
            )
        yield SystemCommand("go: demo", "The demo: start it, or see where it is", self.open_demo)
        for name in THEMES:
            yield SystemCommand(
                f"theme: {name}", "Switch to this theme (remembered)", _theme_setter(self, name)
            )


def event_clock() -> float:
    """Now, on the clock that stamps every Textual event's ``time`` (monotonic, or the performance
    counter on Windows): a message reads it when it is made."""
    return Message().time


SCOPE_PREFIX = {
    "app": "go: ",
    "runs": "runs: ",
    "dashboard": "run: ",
    "new_run": "new run: ",
    "chat": "chat: ",
    "arena": "arena: ",
    "evaluation": "eval: ",
    "eval_samples": "samples: ",
    "compare": "compare: ",
}


def palette_help(text: str, key: str) -> str:
    """The palette's help line of an action: its help and its key, literally.

    Textual runs a command's help through ``Content.from_markup``, which returns a ``Content``
    unchanged; a plain string would be parsed as markup (the Filter key ``[/]`` raised
    ``MarkupError``, and ``[ctrl+l]`` silently vanished as an unknown style).
    """
    return cast(str, Content.assemble(text, "  ", ("[", "$text-muted"), (key, "bold"), ("]", "$text-muted")))


def _scope_of(screen: Screen) -> str:
    return {"RunsScreen": "runs", "DashboardScreen": "dashboard", "NewRunScreen": "new_run"}.get(
        type(screen).__name__, ""
    )


def _runner(target, action: str) -> Callable[[], object]:
    return lambda: target.run_action(action)


def _theme_setter(app: App, name: str) -> Callable[[], None]:
    def set_theme() -> None:
        app.theme = name

    return set_theme
