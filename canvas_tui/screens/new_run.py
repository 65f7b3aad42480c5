"""The New-run form (LLaMA-Factory's wizard, in a terminal): pre-training and fine-tuning tabs.

Every change re-validates through the same code as ``canvas train --set`` (:mod:`canvas_tui.forms`),
shows the live parameter count and memory estimate, and puts an error next to the field it names.
Launch runs the engine's check-and-start in a thread worker
(:func:`canvas_tui.launching.launch_pretraining`: data files, device, processes, then the run
directory) and shows a refusal under the field it names, in the CLI's words; else the app opens the
run's dashboard.

The fine-tune tab's fields are :class:`engine.config.finetune.FinetuneConfig` keys with its defaults,
validated by the same code as ``canvas finetune --set``. Once they are valid, the torch-free preflight
(:func:`engine.finetune.preflight.preflight`: is the base a model, are the LoRA targets in it, does
the data have the fields) runs in a thread worker a moment after the last keystroke, and its summary
(or the field it blames) is shown. Launch preflights again and starts the fine-tune detached with the
base pinned (:func:`canvas_tui.launching.launch_finetune`), then opens its dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static, TabbedContent, TabPane

from canvas_tui import actions, forms
from canvas_tui.fmt import clean_text, fmt_bytes, fmt_si
from canvas_tui.messages import BaseHint, ControlDone, FinetuneChecked
from canvas_tui.screens.base import CanvasScreen
from canvas_tui.widgets.field_input import FieldInput
from canvas_tui.widgets.quiet import update_pane
from engine.config.errors import ConfigError
from engine.config.finetune import FinetuneConfig
from engine.config.presets import PRESETS
from engine.config.train import TrainConfig

#: Seconds after the last change before the fine-tune preflight runs (it reads the disk).
PREFLIGHT_DELAY = 0.3
#: Seconds after the last keystroke before the changed tab is validated again (typing stays instant).
VALIDATE_DELAY = 0.15
FT_NOTE = (
    "QLoRA: the base model is loaded quantised and frozen, and small LoRA adapters learn from "
    "the conversations. Everything that can be checked without loading the model is checked "
    "as you type."
)
BASE_PLACEHOLDER = "a run id, a model folder or a Hub id (owner/name)"
#: The most runs the fine-tune base list offers (newest first).
MAX_PICKABLE = 30


def _field(key: str, label: str, value: str, *, placeholder: str = "", hint: bool = False) -> ComposeResult:
    fid = forms.field_id(key) if not key.startswith("ft-") else key
    with Horizontal(classes="form-row", id=f"row-{fid}"):
        yield Label(label, classes="form-label")
        with Vertical(classes="form-input"):
            yield FieldInput(value, id=fid, placeholder=placeholder, select_on_focus=False, compact=True)
            if hint:
                yield Static(Content(""), id=f"hint-{fid}", classes="form-hint", markup=False)
            yield Static(Content(""), id=f"err-{fid}", classes="form-error", markup=False)


def _choice(fid: str, label: str, options, value: str) -> ComposeResult:
    with Horizontal(classes="form-row", id=f"row-{fid}"):
        yield Label(label, classes="form-label")
        with Vertical(classes="form-input"):
            yield Select(list(options), value=value, allow_blank=False, id=fid, compact=True)
            yield Static(Content(""), id=f"err-{fid}", classes="form-error", markup=False)


class NewRunScreen(CanvasScreen):
    BINDINGS = actions.bindings("new_run")
    PRETRAIN_SLOTS = (
        *(
            forms.field_id(k)
            for k in (
                "preset",
                "name",
                "data",
                *(k for k, _ in forms.PRETRAIN_FIELDS),
                "length",
                "device",
                "nproc",
            )
        ),
        "general",
    )

    def __init__(self, preset: str = "tiny") -> None:
        super().__init__()
        self.values = forms.preset_values(preset)
        self._config: TrainConfig | None = None
        self.nproc = 1
        self._errors: dict[str, str] = {}
        self.launching = False
        # fine-tune tab
        self.ft_values = forms.finetune_values()
        self._ft_config: FinetuneConfig | None = None
        self._ft_errors: dict[str, str] = {}  # widget id → message, as shown
        self.ft_preflight: Any = None  # the Preflight of the current config, once it passed
        #: idle → checking → ok | error; invalid while a field is wrong; launching during a launch
        self.preflight_state = "idle"
        self.base_hint: str | None = None  # the run an empty base means, e.g. "tiny-owt (step-000200)"
        self.base_hint_loaded = False
        self._ft_key: dict | None = None
        self._ft_generation = 0
        self._ft_check_error: dict[str, str] = {}  # the preflight's (or the launch's) verdict
        self._preflight_timer: Timer | None = None
        # validation: which tab changed, the debounce timer, what each error box shows
        self._fields = self._field_map()
        self._dirty: set[str] = set()
        self._validate_timer: Timer | None = None
        self._shown: dict[str, str] = {}
        self._widgets: dict[str, Widget] = {}
        self._boxes: dict[str, Static] = {}

    def compose(self) -> ComposeResult:
        v = self.values
        yield Header()
        with TabbedContent(id="new-tabs"):
            with TabPane("Pre-train", id="tab-pretrain"), Horizontal(id="pretrain"):
                with VerticalScroll(id="pretrain-form", classes="form"):
                    with Horizontal(classes="form-row"):
                        yield Label("preset", classes="form-label")
                        with Vertical(classes="form-input"):
                            yield Select(
                                [(f"{p.name}", p.name) for p in PRESETS.values()],
                                value=v["preset"],
                                allow_blank=False,
                                id="f-preset",
                                compact=True,
                            )
                            yield Static(Content(""), id="err-f-preset", classes="form-error", markup=False)
                    yield from _field("name", "run name", "", placeholder="optional, e.g. tiny-test")
                    yield from _field(
                        "data",
                        "data source",
                        v["data"],
                        placeholder="embedded · owt+c4 · hf:NAME · ./notes/*.md",
                    )
                    for key, label in forms.PRETRAIN_FIELDS:
                        yield from _field(key, label, v[key])
                    with Horizontal(classes="form-row"):
                        yield Select(
                            [(forms.LENGTH_LABELS[k], k) for k in forms.LENGTH_KEYS],
                            value=v["length_kind"],
                            allow_blank=False,
                            id="f-length_kind",
                            compact=True,
                            classes="form-label",
                        )
                        with Vertical(classes="form-input"):
                            yield FieldInput(v["length"], id="f-length", compact=True)
                            yield Static(Content(""), id="err-f-length", classes="form-error", markup=False)
                    with Horizontal(classes="form-row"):
                        yield Label("precision", classes="form-label")
                        yield Select(
                            list(forms.PRECISION_CHOICES),
                            value=v["precision"],
                            allow_blank=False,
                            id="f-precision",
                            classes="form-input",
                            compact=True,
                        )
                    yield from _field(
                        "device", "device", v["device"], placeholder="auto · cpu · cuda · cuda:1"
                    )
                    yield from _field("nproc", "processes", v["nproc"], placeholder="1, or one per GPU (DDP)")
                    yield Static(Content(""), id="err-general", classes="form-error", markup=False)
                    yield Button("Launch (ctrl+l)", id="launch-pretrain", variant="primary")
                yield Static(Content(""), id="estimate", markup=False)
            with TabPane("Fine-tune", id="tab-finetune"), Horizontal(id="finetune"):
                with VerticalScroll(id="finetune-form", classes="form"):
                    yield from self._compose_finetune()
                yield Static(Content(""), id="ft-check", markup=False)
        yield Footer()

    def _compose_finetune(self) -> ComposeResult:
        f, ft = self.ft_values, forms.ft_id
        yield Static(Content.styled(FT_NOTE, "$text-muted"), markup=False, id="ft-note")
        yield from _field(ft("name"), "run name", f["name"], placeholder="optional, e.g. chat-v1")
        labels = dict(forms.FINETUNE_FIELDS) | dict(forms.FINETUNE_CHOICE_FIELDS)
        for key in forms.FINETUNE_ORDER:
            if key in forms.FINETUNE_CHOICES:
                yield from _choice(ft(key), labels[key], forms.FINETUNE_CHOICES[key], f[key])
            elif key == "base":
                yield from _field(ft(key), labels[key], f[key], placeholder=BASE_PLACEHOLDER, hint=True)
                with Horizontal(classes="form-row", id="row-ft-base-pick"):
                    yield Label("or pick a run", classes="form-label")
                    yield Select(
                        [],
                        prompt="the newest usable run",
                        id="ft-base-pick",
                        classes="form-input",
                        compact=True,
                    )
            elif key == "data":
                yield from _field(
                    ft(key),
                    labels[key],
                    f[key],
                    placeholder="embedded · guanaco · oasst1 · ./chats.jsonl · hf:NAME",
                )
            else:
                yield from _field(ft(key), labels[key], f[key])
        with Horizontal(classes="form-row"):
            yield Select(
                [(forms.FT_LENGTH_LABELS[k], k) for k in forms.FT_LENGTH_KEYS],
                value=f["length_kind"],
                allow_blank=False,
                id="ft-length_kind",
                compact=True,
                classes="form-label",
            )
            with Vertical(classes="form-input"):
                yield FieldInput(f["length"], id="ft-length", select_on_focus=False, compact=True)
                yield Static(Content(""), id="err-ft-length", classes="form-error", markup=False)
        yield Static(Content(""), id="err-ft-general", classes="form-error", markup=False)
        yield Button("Launch (ctrl+l)", id="launch-finetune", variant="primary")

    def on_mount(self) -> None:
        self.sub_title = "New run"
        # Widget references, taken once: a query walks the whole form (~300 nodes) every time.
        self._widgets = {wid: self.query_one(f"#{wid}") for wid in self._fields}
        self._boxes = {
            (box.id or "").removeprefix("err-"): box for box in self.query(".form-error").results(Static)
        }
        self._estimate = self.query_one("#estimate", Static)
        self._check_box = self.query_one("#ft-check", Static)
        self._base_hint_box = self.query_one("#hint-ft-base", Static)
        self.revalidate()
        self._show_base_hint()
        self._base_hint_worker()

    # ------------------------------------------------------------------------ validated state
    # Typing validates its tab once it pauses (VALIDATE_DELAY); whoever reads the outcome before
    # that gets it validated now, so these always describe what the fields hold.
    def _flush(self, tab: str) -> None:
        if tab in self._dirty and self.is_mounted:
            self._dirty.discard(tab)
            if not self._dirty and self._validate_timer is not None:
                self._validate_timer.stop()
                self._validate_timer = None
            if tab == "pretrain":
                self._validate_pretrain()
            else:
                self._revalidate_finetune()

    @property
    def config(self) -> TrainConfig | None:
        """The pre-training config the fields hold, or None while one is wrong (see ``errors``)."""
        self._flush("pretrain")
        return self._config

    @config.setter
    def config(self, value: TrainConfig | None) -> None:
        self._config = value

    @property
    def errors(self) -> dict[str, str]:
        """Pre-training tab: widget id → the message shown under it."""
        self._flush("pretrain")
        return self._errors

    @errors.setter
    def errors(self, value: dict[str, str]) -> None:
        self._errors = value

    @property
    def ft_config(self) -> FinetuneConfig | None:
        self._flush("finetune")
        return self._ft_config

    @ft_config.setter
    def ft_config(self, value: FinetuneConfig | None) -> None:
        self._ft_config = value

    @property
    def ft_errors(self) -> dict[str, str]:
        """Fine-tune tab: widget id → the message shown under it."""
        self._flush("finetune")
        return self._ft_errors

    @ft_errors.setter
    def ft_errors(self, value: dict[str, str]) -> None:
        self._ft_errors = value

    # ------------------------------------------------------------------------ values
    @staticmethod
    def _field_map() -> dict[str, tuple[str, str]]:
        """Widget id → (tab, form key) of every input and choice of the form."""
        fields = {
            forms.field_id(key): ("pretrain", key)
            for key in (
                "preset",
                "name",
                "data",
                *(k for k, _ in forms.PRETRAIN_FIELDS),
                "length_kind",
                "length",
                "precision",
                "device",
                "nproc",
            )
        }
        for key in (
            "name",
            *(k for k, _ in forms.FINETUNE_FIELDS),
            *(k for k, _ in forms.FINETUNE_CHOICE_FIELDS),
            "length_kind",
            "length",
        ):
            fields[forms.ft_id(key)] = ("finetune", key)
        return fields

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        """Record the one value that changed; validate its tab once typing pauses.

        Every input announces its value when it is mounted, and filling a preset sets many: those
        echoes equal the recorded values and cost nothing (opening the form used to revalidate
        both tabs ~30 times, seconds of main-thread time during which typed keys queued up).
        """
        widget = event.input if isinstance(event, Input.Changed) else event.select
        field = self._fields.get(widget.id or "")
        if field is None or not isinstance(event.value, str):
            return
        tab, key = field
        values = self.values if tab == "pretrain" else self.ft_values
        if values.get(key) == event.value:
            return
        values[key] = event.value
        if tab == "pretrain" and key == "preset":
            self._fill_preset(event.value)
        self._dirty.add(tab)
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(VALIDATE_DELAY, self._validate_dirty)

    def _fill_preset(self, preset: str) -> None:
        values = forms.preset_values(preset)
        keep = ("name", "data", "device", "nproc", "precision")
        self.values.update({k: v for k, v in values.items() if k not in keep})
        # The values are recorded first, so the inputs' change events below are echoes.
        for key in (*(k for k, _ in forms.PRETRAIN_FIELDS), "length"):
            cast(Input, self._widgets[forms.field_id(key)]).value = values[key]
        cast(Select, self._widgets["f-length_kind"]).value = values["length_kind"]

    def _validate_dirty(self) -> None:
        self._validate_timer = None
        dirty, self._dirty = self._dirty, set()
        if "pretrain" in dirty:
            self._validate_pretrain()
        if "finetune" in dirty:
            self._revalidate_finetune()

    # ------------------------------------------------------------------------ validation
    def revalidate(self) -> None:
        """Both tabs, now (at mount and before a launch); typing validates one tab, debounced."""
        if self._validate_timer is not None:
            self._validate_timer.stop()
            self._validate_timer = None
        self._dirty = set()
        self._read_fields()
        self._validate_pretrain()
        self._revalidate_finetune()

    def _read_fields(self) -> None:
        """Take every field's value from its widget, not from the change events seen so far.

        A value set or typed just before ``ctrl+l`` has its ``Changed`` event still bubbling up to
        this screen when the key's binding runs (seen on a loaded machine: a run launched without
        the name just typed). The preset is left to its event, which also fills the fields."""
        for wid, (tab, key) in self._fields.items():
            value = getattr(self._widgets.get(wid), "value", None)
            if key != "preset" and isinstance(value, str):
                (self.values if tab == "pretrain" else self.ft_values)[key] = value

    def _validate_pretrain(self) -> None:
        self.errors = {}
        self.config = None
        try:
            self.config = forms.pretrain_config(self.values)
        except ConfigError as exc:
            self.errors[self._error_slot(exc.field)] = str(exc)  # the engine's words, as the CLI says
        try:
            self.nproc = forms.pretrain_nproc(self.values)
        except ConfigError as exc:
            self.errors.setdefault(self._error_slot(exc.field), str(exc))
        name_problem = forms.check_name(self.values.get("name", ""))
        if name_problem:
            self.errors["f-name"] = name_problem
        self._show_errors(self.errors, self.PRETRAIN_SLOTS)
        self._show_estimate()

    def _error_slot(self, field: str) -> str:
        if field in forms.LENGTH_KEYS or field == "length":
            return "f-length"
        fid = forms.field_id(field)
        return fid if fid in self._boxes else "general"

    def _show_errors(self, errors: dict[str, str], slots: Iterable[str]) -> None:
        """Show each slot's message under its field; only the boxes whose message changed are touched."""
        for slot in slots:
            box = self._boxes.get(slot)
            message = errors.get(slot, "")
            if box is None or self._shown.get(slot, "") == message:
                continue
            self._shown[slot] = message
            box.update(Content(message))
            box.display = bool(message)
            widget = self._widgets.get(slot)
            if widget is not None:
                widget.set_class(bool(message), "-invalid")

    def _show_estimate(self) -> None:
        box = self._estimate
        if self.config is None:
            update_pane(
                box,
                Content.assemble(
                    ("Estimate", "bold"), "\n\n", ("fix the highlighted field to see the size", "$error")
                ),
            )
            return
        est = forms.estimate(self.config)
        mem = est.memory
        cfg = self.config
        update_pane(
            box,
            Content.assemble(
                ("Estimate", "bold"),
                "\n\n",
                ("parameters   ", "$text-muted"),
                (f"{est.params:,}", "bold"),
                f"  ({fmt_si(est.params)})\n",
                ("tokens/step  ", "$text-muted"),
                f"{est.tokens_per_step:,}\n",
                ("steps        ", "$text-muted"),
                "-" if est.steps is None else f"{est.steps:,}",
                "\n",
                ("tokens       ", "$text-muted"),
                "-" if est.total_tokens is None else fmt_si(est.total_tokens),
                "\n\n",
                ("Training memory (bf16 autocast, AdamW)\n", "bold"),
                ("weights      ", "$text-muted"),
                fmt_bytes(mem["weights"]),
                "\n",
                ("gradients    ", "$text-muted"),
                fmt_bytes(mem["gradients"]),
                "\n",
                ("optimizer    ", "$text-muted"),
                fmt_bytes(mem["optimizer"]),
                "\n",
                ("activations  ", "$text-muted"),
                fmt_bytes(mem["activations"]),
                "\n",
                ("total        ", "$text-muted"),
                (fmt_bytes(mem["total"]), "bold $accent"),
                "\n\n",
                ("data  ", "$text-muted"),
                clean_text(cfg.data),
                "\n",
                ("an estimate: allocator and compile workspace come on top", "$text-muted"),
            ),
        )

    # ------------------------------------------------------------------------ launch
    @on(Button.Pressed, "#launch-pretrain")
    def _launch_pretrain_button(self) -> None:
        self.launch_pretrain()

    @on(Button.Pressed, "#launch-finetune")
    def _launch_finetune_button(self) -> None:
        self.launch_finetune()

    def action_launch(self) -> None:
        tabs = self.query_one("#new-tabs", TabbedContent)
        if tabs.active == "tab-finetune":
            self.launch_finetune()
        else:
            self.launch_pretrain()

    def action_back(self) -> None:
        self.app.pop_screen()

    def _refuse(self, config: object, errors: dict[str, str], general: str) -> bool:
        """After revalidating: point at the first bad field (and say so) when the form cannot launch."""
        if config is not None and not errors:
            return False
        slot = next(iter(errors), general)
        self.notify(
            "Fix the highlighted field first: " + next(iter(errors.values()), ""),
            severity="error",
            markup=False,
        )
        widget = self.query(f"#{slot}")
        if widget and widget.first().focusable:
            widget.first().focus()
        return True

    def launch_pretrain(self) -> None:
        self.revalidate()
        if self._refuse(self.config, self.errors, "general"):
            return
        if self.launching:
            return
        self.launching = True
        name = self.values.get("name", "").strip() or None
        self.query_one("#launch-pretrain", Button).disabled = True
        self._launch_worker(self.config, name, self.nproc)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _launch_worker(self, cfg, name: str | None, nproc: int) -> None:
        """The engine's check-and-start (data files, device, processes; then the run directory)."""
        from canvas_tui.launching import launch_pretraining

        try:
            run = launch_pretraining(cfg, name, nproc=nproc)
        except Exception as exc:  # shown next to the field it names, never a crash
            field = getattr(exc, "field", "")
            self.post_message(ControlDone("launch", "", str(exc), error=True, new_run_id=field or None))
            return
        self.post_message(ControlDone("launch", run.id, f"Launched run {run.id}.", new_run_id=str(run.path)))

    @on(ControlDone)
    def _launched(self, message: ControlDone) -> None:
        if message.action not in ("launch", "launch-finetune"):
            return
        message.stop()
        self.launching = False
        finetune = message.action == "launch-finetune"
        self.query_one("#launch-finetune" if finetune else "#launch-pretrain", Button).disabled = False
        if message.error:
            if finetune and message.new_run_id:  # the launch's preflight blames a field: shown there
                self._ft_check_error = {self._ft_slot(message.new_run_id): message.text}  # until it changes
                self.preflight_state = "error"
                self._revalidate_finetune()
            elif finetune:  # not the config's fault (the run store, the engine's start): try again
                self.preflight_state = "ok" if self.ft_preflight is not None else "checking"
                if self.ft_preflight is None:
                    self._start_preflight()
                self._revalidate_finetune()
                self._show_errors({"ft-general": message.text}, ["ft-general"])
            else:  # under the field the preflight blames (data, device, nproc), else below the form
                slot = self._error_slot(message.new_run_id) if message.new_run_id else "general"
                self.errors = {slot: message.text}
                self._show_errors(self.errors, [slot])
            self.notify(message.text, title="Not launched", severity="error", markup=False)
            return
        self.notify(message.text, markup=False)
        self.app.pop_screen()
        self.canvas.open_dashboard(Path(message.new_run_id or ""))

    # ------------------------------------------------------------------------ fine-tune
    FT_SLOTS = tuple(
        forms.ft_id(k)
        for k in (
            "name",
            *(k for k, _ in forms.FINETUNE_FIELDS),
            *(k for k, _ in forms.FINETUNE_CHOICE_FIELDS),
            "length",
            "general",
        )
    )

    def _revalidate_finetune(self) -> None:
        """Field checks now (FinetuneConfig.validate); the preflight a moment later, in a worker."""
        try:
            cfg: FinetuneConfig | None = forms.finetune_config(self.ft_values)
            errors: dict[str, str] = {}
        except ConfigError:
            cfg, errors = None, forms.finetune_errors(self.ft_values)
        name_problem = forms.check_name(self.ft_values.get("name", ""))
        if name_problem:
            errors["name"] = name_problem
        key = cfg.to_dict() if cfg is not None else None
        self.ft_config = cfg
        if key != self._ft_key:  # a different config: what was checked no longer applies
            self._ft_key = key
            self._ft_generation += 1
            self._ft_check_error = {}
            self.ft_preflight = None
            if self._preflight_timer is not None:
                self._preflight_timer.stop()
                self._preflight_timer = None
            if cfg is not None:
                self.preflight_state = "checking"
                self._preflight_timer = self.set_timer(PREFLIGHT_DELAY, self._start_preflight)
            else:
                self.preflight_state = "invalid"
        shown = {self._ft_slot(field): message for field, message in errors.items()}
        if cfg is not None:
            shown.update(self._ft_check_error)
        self.ft_errors = shown
        self._show_errors(shown, list(self.FT_SLOTS))
        # the hint says what an empty base means; an error under the field says more
        hint = self._base_hint_box
        hint.display = not self.ft_values.get("base", "").strip() and "ft-base" not in shown
        self._show_check()

    def _ft_slot(self, field: str) -> str:
        slot = forms.ft_id(forms.finetune_slot(field))
        return slot if slot in self.FT_SLOTS else "ft-general"

    def _start_preflight(self) -> None:
        self._preflight_timer = None
        if self.ft_config is not None and not self.launching:
            self._preflight_worker(replace(self.ft_config), self._ft_generation)

    @work(thread=True, exclusive=True, exit_on_error=False, group="ft-preflight")
    def _preflight_worker(self, cfg: FinetuneConfig, generation: int) -> None:
        from textual.worker import get_current_worker

        from engine.finetune.preflight import preflight

        worker = get_current_worker()
        try:
            checked = preflight(cfg)  # what the launch runs, so the verdict is the launch's
        except ConfigError as exc:
            message = FinetuneChecked(generation, field=exc.field, error=str(exc))
        except Exception as exc:  # an unreadable file, a broken cache: shown, never a crash
            message = FinetuneChecked(generation, field="", error=f"{type(exc).__name__}: {exc}")
        else:
            message = FinetuneChecked(generation, checked)
        if not worker.is_cancelled:
            self.post_message(message)

    @on(FinetuneChecked)
    def _preflight_done(self, message: FinetuneChecked) -> None:
        if message.generation != self._ft_generation or self.launching:
            return  # the form changed meanwhile (a newer check is on its way), or a launch took over
        if message.preflight is not None:
            self.ft_preflight = message.preflight
            self._ft_check_error = {}
            self.preflight_state = "ok"
        else:
            self._ft_check_error = {self._ft_slot(message.field): message.error}
            self.preflight_state = "error"
        self._revalidate_finetune()

    def _show_check(self) -> None:
        box = self._check_box
        title: tuple[str, str] = ("Preflight", "bold")
        state = self.preflight_state
        muted = "$text-muted"
        if state == "invalid" or self.ft_config is None:
            body = Content.styled("fix the highlighted field to check the base and the data", "$error")
        elif state == "checking":
            body = Content.styled("checking the base, the data and the LoRA targets…", muted)
        elif state == "launching":
            body = Content.styled("checking again and launching…", "$accent")
        elif state == "error":
            field = next(iter(self._ft_check_error), "ft-general").removeprefix("ft-")
            body = Content.assemble(
                ("not ready", "bold $error"),
                ": the ",
                (field if field != "general" else "run", "bold"),
                " check failed; its message is under the field.",
            )
        elif state == "ok" and self.ft_preflight is not None:
            cfg = self.ft_config
            per_step = cfg.micro_batch * cfg.grad_accum * cfg.seq_len
            length = (
                f"{cfg.max_steps:,} steps"
                if cfg.max_steps
                else f"{cfg.epochs:g} epoch{'' if cfg.epochs == 1 else 's'}"
            )
            body = Content.assemble(
                ("ready", "bold $success"),
                ": ",
                clean_text(self.ft_preflight.summary()),
                "\n\n",
                ("length         ", muted),
                length,
                "\n",
                ("rows per step  ", muted),
                f"{cfg.micro_batch * cfg.grad_accum:,}",
                "\n",
                ("tokens/step    ", muted),
                f"up to {per_step:,}",
                "\n\n",
                (
                    "checked without loading the model; the engine checks again before it loads the base",
                    muted,
                ),
            )
        else:
            body = Content("")
        update_pane(box, Content.assemble(title, "\n\n", body))

    def _show_base_hint(self) -> None:
        hint = self._base_hint_box
        if self.base_hint:
            hint.update(
                Content.assemble(
                    ("empty: the newest pre-training run, ", "$text-muted"),
                    (clean_text(self.base_hint), "bold"),
                )
            )
        elif self.base_hint_loaded:
            hint.update(
                Content.styled(
                    "no pre-training run with a checkpoint yet: give a model folder or a Hub id (owner/name)",
                    "$text-muted",
                )
            )
        else:
            hint.update(Content.styled("empty: the newest pre-training run with a checkpoint", "$text-muted"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="ft-base-hint")
    def _base_hint_worker(self) -> None:
        import itertools

        from engine.config.finetune import BASE_PRESETS
        from engine.finetune.base import usable_runs
        from engine.runs.meta import RunKind
        from engine.runs.store import list_runs

        newest = None
        usable: list[tuple[str, str]] = []
        try:  # the runs an empty base may mean: newest first, each with an intact checkpoint
            for base in itertools.islice(usable_runs("best"), MAX_PICKABLE):
                if base.run is None:
                    continue
                checkpoint = f" ({base.path.name})" if base.path is not None else ""
                if newest is None:  # "tiny-owt (step-000200)"; the run id when it has no name
                    newest = f"{base.name}{checkpoint}"
                usable.append((f"{base.name}{checkpoint} · {base.run}", base.run))
        except Exception:  # an unreadable store: no hint, no crash
            pass
        suggestions: list[str] = []
        try:
            for run in reversed(list_runs()):
                meta = run.read_meta()
                if meta.kind == RunKind.PRETRAIN:
                    suggestions += [run.id, *([meta.name] if meta.name else [])]
        except Exception:
            pass
        self.post_message(BaseHint(newest, [*suggestions, *BASE_PRESETS], usable))

    @on(BaseHint)
    def _base_hint_found(self, message: BaseHint) -> None:
        from rich.text import Text
        from textual.suggester import SuggestFromList

        self.base_hint, self.base_hint_loaded = message.newest, True
        self.query_one("#ft-base", Input).suggester = SuggestFromList(message.suggestions)
        pick = self.query_one("#ft-base-pick", Select)
        pick.set_options([(Text(label), run_id) for label, run_id in message.usable])  # literal text
        self._show_base_hint()

    @on(Select.Changed, "#ft-base-pick")
    def _base_picked(self, event: Select.Changed) -> None:
        """A run picked from the list of usable ones becomes the base (blank: the newest)."""
        value = "" if event.value is Select.NULL else str(event.value)
        base = self.query_one("#ft-base", Input)
        if base.value != value:
            base.value = value

    def launch_finetune(self) -> None:
        self.revalidate()
        if self._refuse(self.ft_config, self.ft_errors, "ft-general"):
            return
        if self.launching:
            return
        self.launching = True
        self.preflight_state = "launching"
        self._show_check()
        name = self.ft_values.get("name", "").strip() or None
        self.query_one("#launch-finetune", Button).disabled = True
        assert self.ft_config is not None  # _refuse returned early otherwise
        self._ft_launch_worker(replace(self.ft_config), name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _ft_launch_worker(self, cfg: FinetuneConfig, name: str | None) -> None:
        from canvas_tui.launching import launch_finetune

        try:
            run = launch_finetune(cfg, name)
        except Exception as exc:  # shown next to the field it names, never a crash
            field = getattr(exc, "field", "")
            self.post_message(
                ControlDone("launch-finetune", "", str(exc), error=True, new_run_id=field or None)
            )
            return
        self.post_message(
            ControlDone("launch-finetune", run.id, f"Launched fine-tune {run.id}.", new_run_id=str(run.path))
        )
