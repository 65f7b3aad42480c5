"""The launch form of the Evaluation screen: pick models, data and samples; start ``canvas eval``.

The models are our runs that hold a checkpoint (:func:`canvas_tui.chat_models.pickable_runs`),
plus any folders or Hub ids typed in. Launching goes through :mod:`engine.eval.launch` (preflight,
create, start: the path ``canvas eval --detach`` takes) in a thread worker; a refusal is shown
inline, naming the field and the fix, and nothing is created. The form answers the new run's id.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from canvas_tui.chat_models import PickableRun, error_text, pickable_runs
from canvas_tui.eval_model import LaunchRequest, start_eval
from canvas_tui.fmt import clean_text
from canvas_tui.widgets.field_input import FieldInput

CHECKPOINTS = (("best", "best"), ("last", "last"))


class RunsListed(Message):
    def __init__(self, runs: list[PickableRun]) -> None:
        super().__init__()
        self.runs = runs


class LaunchDone(Message):
    def __init__(self, run_id: str = "", field: str = "", error: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.field = field
        self.error = error


class EvalLaunchScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+l", "launch", "Launch", id="eval_launch.launch", tooltip="Check and start the evaluation"
        ),
        Binding("escape", "cancel", "Cancel", id="eval_launch.cancel", tooltip="Back without launching"),
    ]
    DEFAULT_CSS = """
    EvalLaunchScreen { align: center middle; }
    EvalLaunchScreen > Vertical { width: 90; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary 60%; background: $surface; padding: 0 1; }
    EvalLaunchScreen SelectionList { height: auto; max-height: 8; margin: 1 0; }
    EvalLaunchScreen #launch-none { height: auto; margin: 1 0; }
    EvalLaunchScreen .launch-row { height: auto; margin-bottom: 1; }
    EvalLaunchScreen .launch-row Label { width: 12; }
    EvalLaunchScreen .launch-row Input { width: 1fr; }
    EvalLaunchScreen .launch-row Select { width: 1fr; }
    EvalLaunchScreen #launch-error { height: auto; color: $error; margin-top: 1; }
    EvalLaunchScreen #launch-buttons { height: auto; align-horizontal: right; margin-top: 1; }
    EvalLaunchScreen Button { margin-left: 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[PickableRun] = []
        self.loaded = False
        self.launching = False
        self.error = ""
        self.error_field = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content.assemble(
                    ("New evaluation", "bold"),
                    ("  space: pick a model · ctrl+l: launch · esc: cancel", "$text-muted"),
                ),
                markup=False,
            )
            yield SelectionList[str](id="launch-models", compact=True)
            yield Static(
                Content.styled(
                    "No run with a checkpoint yet: type model folders or Hub ids below.", "$text-muted"
                ),
                id="launch-none",
                markup=False,
            )
            with Horizontal(classes="launch-row"):
                yield Label("also")
                yield FieldInput(
                    placeholder="model folders / Hub ids, comma-separated", id="launch-extra", compact=True
                )
            with Horizontal(classes="launch-row"):
                yield Label("checkpoint")
                yield Select(list(CHECKPOINTS), prompt="engine default", id="launch-checkpoint", compact=True)
            with Horizontal(classes="launch-row"):
                yield Label("data")
                yield FieldInput(
                    placeholder="data spec (empty: each run's own held-out split)",
                    id="launch-data",
                    compact=True,
                )
            with Horizontal(classes="launch-row"):
                yield Label("samples")
                yield FieldInput(placeholder="N (empty: the default)", id="launch-samples", compact=True)
            with Horizontal(classes="launch-row"):
                yield Label("name")
                yield FieldInput(placeholder="optional run name", id="launch-name", compact=True)
            yield Checkbox(
                "with base: each fine-tune also with its adapter off", id="launch-base", compact=True
            )
            yield Static(Content(""), id="launch-error", markup=False)
            with Horizontal(id="launch-buttons"):
                yield Button("Cancel (esc)", id="launch-cancel", compact=True)
                yield Button("Launch (ctrl+l)", id="launch-go", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#launch-none").display = False
        self.query_one(SelectionList).focus()
        self._list_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-launch-runs")
    def _list_runs(self) -> None:
        self.post_message(RunsListed(pickable_runs()))

    @on(RunsListed)
    def _listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        models = self.query_one(SelectionList)
        models.clear_options()
        models.add_options(
            [
                Selection(
                    Content.assemble(
                        (clean_text(run.name or run.id), "bold"),
                        (
                            f"  {run.kind} · {'training' if run.live else run.status} · {run.id}",
                            "$text-muted",
                        ),
                    ),
                    run.path,
                )
                for run in self.runs
            ]
        )
        models.display = bool(self.runs)
        self.query_one("#launch-none").display = not self.runs
        if not self.runs:
            self.query_one("#launch-extra", Input).focus()
        self.loaded = True

    # ------------------------------------------------------------------------ the request
    def request(self) -> LaunchRequest:
        """The form as a request; ValueError(field, message) for what cannot even be parsed."""
        models = list(self.query_one(SelectionList).selected)
        extra = self.query_one("#launch-extra", Input).value
        models += [m.strip() for m in extra.split(",") if m.strip()]
        if not models:
            raise _FormError(
                "models", "models: pick at least one model (space on a run) or type a folder / Hub id."
            )
        text = self.query_one("#launch-samples", Input).value.strip()
        samples = None
        if text:
            try:
                samples = int(text)
            except ValueError:
                raise _FormError(
                    "samples", f"samples = {text!r} is not a whole number. Fix: e.g. 50, or leave it empty."
                ) from None
        checkpoint = self.query_one("#launch-checkpoint", Select).value
        return LaunchRequest(
            models=tuple(models),
            checkpoint=checkpoint if isinstance(checkpoint, str) else None,
            data=self.query_one("#launch-data", Input).value.strip() or None,
            samples=samples,
            name=self.query_one("#launch-name", Input).value.strip() or None,
            with_base=self.query_one("#launch-base", Checkbox).value,
        )

    def _show_error(self, field: str, text: str) -> None:
        self.error, self.error_field = text, field
        self.query_one("#launch-error", Static).update(Content(text))

    def action_launch(self) -> None:
        if self.launching:
            return
        try:
            request = self.request()
        except _FormError as exc:
            self._show_error(exc.field, exc.message)
            return
        self._show_error("", "")
        self.launching = True
        self.query_one("#launch-go", Button).disabled = True
        self._launch(request)

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-launch")
    def _launch(self, request: LaunchRequest) -> None:
        from engine.config.errors import ConfigError
        from engine.runs.store import RunStoreError

        try:
            run = start_eval(request)
        except ConfigError as exc:
            self.post_message(LaunchDone(field=exc.field, error=exc.message))
        except (RunStoreError, ValueError, OSError) as exc:
            self.post_message(LaunchDone(field="", error=error_text(exc)))
        else:
            self.post_message(LaunchDone(run_id=run.id))

    @on(LaunchDone)
    def _done(self, message: LaunchDone) -> None:
        self.launching = False
        self.query_one("#launch-go", Button).disabled = False
        if message.error:
            self._show_error(message.field, message.error)
            return
        self.dismiss(message.run_id)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch-go":
            self.action_launch()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class _FormError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
