"""The New-run form (LLaMA-Factory's wizard, in a terminal): pre-training and fine-tuning tabs.

Every change re-validates through the same code as ``canvas train --set`` (:mod:`canvas_tui.forms`),
shows the live parameter count and memory estimate, and puts an error next to the field it names.
Launch checks the data paths and starts the run detached in a thread worker
(:func:`canvas_tui.launching.launch_pretraining`); the app then opens its dashboard. Fine-tuning
validates its fields locally and says plainly that the engine for it arrives in a later release.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static, TabbedContent, TabPane

from canvas_tui import actions, forms
from canvas_tui.fmt import clean_text, fmt_bytes, fmt_si
from canvas_tui.messages import ControlDone
from engine.config.errors import ConfigError
from engine.config.presets import PRESETS

FINETUNE_LATER = ("Fine-tuning (QLoRA) arrives with a later release: the form checks its values, "
                  "but nothing was started.")


def _field(key: str, label: str, value: str, *, placeholder: str = "") -> ComposeResult:
    fid = forms.field_id(key) if not key.startswith("ft-") else key
    with Horizontal(classes="form-row", id=f"row-{fid}"):
        yield Label(label, classes="form-label")
        with Vertical(classes="form-input"):
            yield Input(value, id=fid, placeholder=placeholder, select_on_focus=False, compact=True)
            yield Static(Content(""), id=f"err-{fid}", classes="form-error", markup=False)


class NewRunScreen(Screen[None]):
    BINDINGS = actions.bindings("new_run")

    def __init__(self, preset: str = "tiny") -> None:
        super().__init__()
        self.values = forms.preset_values(preset)
        self.ft_values = dict(forms.FINETUNE_DEFAULTS)
        self.config = None
        self.errors: dict[str, str] = {}
        self.ft_errors: dict[str, str] = {}
        self.launching = False
        self._filling = False

    def compose(self) -> ComposeResult:
        v = self.values
        yield Header()
        with TabbedContent(id="new-tabs"):
            with TabPane("Pre-train", id="tab-pretrain"), Horizontal(id="pretrain"):
                with VerticalScroll(id="pretrain-form", classes="form"):
                    with Horizontal(classes="form-row"):
                        yield Label("preset", classes="form-label")
                        with Vertical(classes="form-input"):
                            yield Select([(f"{p.name}", p.name) for p in PRESETS.values()], value=v["preset"],
                                         allow_blank=False, id="f-preset", compact=True)
                            yield Static(Content(""), id="err-f-preset", classes="form-error", markup=False)
                    yield from _field("name", "run name", "", placeholder="optional, e.g. tiny-test")
                    yield from _field("data", "data source", v["data"],
                                      placeholder="embedded · owt+c4 · hf:NAME · ./notes/*.md")
                    for key, label in forms.PRETRAIN_FIELDS:
                        yield from _field(key, label, v[key])
                    with Horizontal(classes="form-row"):
                        yield Select([(forms.LENGTH_LABELS[k], k) for k in forms.LENGTH_KEYS],
                                     value=v["length_kind"], allow_blank=False, id="f-length_kind",
                                     compact=True,
                                     classes="form-label")
                        with Vertical(classes="form-input"):
                            yield Input(v["length"], id="f-length", compact=True)
                            yield Static(Content(""), id="err-f-length", classes="form-error", markup=False)
                    with Horizontal(classes="form-row"):
                        yield Label("precision", classes="form-label")
                        yield Select(list(forms.PRECISION_CHOICES), value=v["precision"], allow_blank=False,
                                     id="f-precision", classes="form-input", compact=True)
                    yield Static(Content(""), id="err-general", classes="form-error", markup=False)
                    yield Button("Launch (ctrl+l)", id="launch-pretrain", variant="primary")
                yield Static(Content(""), id="estimate", markup=False)
            with TabPane("Fine-tune", id="tab-finetune"), VerticalScroll(id="finetune-form", classes="form"):
                f = self.ft_values
                yield Static(Content.styled("QLoRA fine-tuning of a pre-trained model. " + FINETUNE_LATER,
                                            "$text-muted"), markup=False, id="ft-note")
                yield from _field("ft-base", "base model", f["ft-base"],
                                  placeholder="local folder or Hub id, e.g. meta-llama/Llama-3.2-1B")
                yield from _field("ft-data", "dataset", f["ft-data"], placeholder="hf:tatsu-lab/alpaca")
                yield from _field("ft-lora_r", "LoRA rank", f["ft-lora_r"])
                yield from _field("ft-lora_alpha", "LoRA alpha", f["ft-lora_alpha"])
                yield from _field("ft-lora_dropout", "LoRA dropout", f["ft-lora_dropout"])
                yield from _field("ft-target_modules", "target modules", f["ft-target_modules"])
                with Horizontal(classes="form-row"):
                    yield Label("quantisation", classes="form-label")
                    with Vertical(classes="form-input"):
                        yield Select(list(forms.QUANT_CHOICES), value=f["ft-quant"], allow_blank=False,
                                     id="ft-quant", compact=True)
                        yield Static(Content(""), id="err-ft-quant", classes="form-error", markup=False)
                yield from _field("ft-lr", "learning rate", f["ft-lr"])
                yield from _field("ft-epochs", "epochs", f["ft-epochs"])
                yield Static(Content(""), id="ft-status", markup=False)
                yield Button("Launch (ctrl+l)", id="launch-finetune", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "New run"
        self.revalidate()

    # ------------------------------------------------------------------------ values
    def _collect(self) -> None:
        for key in ("name", "data", *(k for k, _ in forms.PRETRAIN_FIELDS), "length"):
            self.values[key] = self.query_one(f"#{forms.field_id(key)}", Input).value
        selects = (("preset", "f-preset"), ("length_kind", "f-length_kind"), ("precision", "f-precision"))
        for key, wid in selects:
            value = self.query_one(f"#{wid}", Select).value
            if isinstance(value, str):
                self.values[key] = value
        for key in forms.FINETUNE_DEFAULTS:
            widget = self.query_one(f"#{key}")
            value = widget.value
            if isinstance(value, str):
                self.ft_values[key] = value

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event) -> None:
        if self._filling:
            return
        if (isinstance(event, Select.Changed) and event.select.id == "f-preset"
                and isinstance(event.value, str) and event.value != self.values.get("preset")):
            self._fill_preset(event.value)
        self.revalidate()

    def _fill_preset(self, preset: str) -> None:
        values = forms.preset_values(preset)
        self._filling = True
        try:
            for key, _ in forms.PRETRAIN_FIELDS:
                self.query_one(f"#{forms.field_id(key)}", Input).value = values[key]
            self.query_one("#f-length", Input).value = values["length"]
            self.query_one("#f-length_kind", Select).value = values["length_kind"]
        finally:
            self.call_after_refresh(self._end_fill)
        self.values.update({k: v for k, v in values.items() if k not in ("name", "data")})

    def _end_fill(self) -> None:
        self._filling = False
        self.revalidate()

    # ------------------------------------------------------------------------ validation
    def revalidate(self) -> None:
        self._collect()
        self.errors = {}
        self.config = None
        try:
            self.config = forms.pretrain_config(self.values)
        except ConfigError as exc:
            self.errors[self._error_slot(exc.field)] = str(exc).replace("--set ", "")
        name_problem = forms.check_name(self.values.get("name", ""))
        if name_problem:
            self.errors["f-name"] = name_problem
        self._show_errors(self.errors, [forms.field_id(k) for k in (
            "preset", "name", "data", *(k for k, _ in forms.PRETRAIN_FIELDS), "length")] + ["general"])
        self._show_estimate()
        self.ft_errors = forms.finetune_errors(self.ft_values)
        self._show_errors(self.ft_errors, [k for k in forms.FINETUNE_DEFAULTS])

    def _error_slot(self, field: str) -> str:
        if field in forms.LENGTH_KEYS or field == "length":
            return "f-length"
        fid = forms.field_id(field)
        if self.query(f"#err-{fid}"):
            return fid
        return "general"

    def _show_errors(self, errors: dict[str, str], slots: list[str]) -> None:
        for slot in slots:
            target = self.query(f"#err-{slot}")
            if not target:
                continue
            message = errors.get(slot, "")
            target.first(Static).update(Content(message))
            target.first(Static).display = bool(message)
            inputs = self.query(f"#{slot}")
            if inputs:
                inputs.first().set_class(bool(message), "-invalid")

    def _show_estimate(self) -> None:
        box = self.query_one("#estimate", Static)
        if self.config is None:
            box.update(Content.assemble(("Estimate", "bold"), "\n\n",
                                        ("fix the highlighted field to see the size", "$error")))
            return
        est = forms.estimate(self.config)
        mem = est.memory
        cfg = self.config
        box.update(Content.assemble(
            ("Estimate", "bold"), "\n\n",
            ("parameters   ", "$text-muted"), (f"{est.params:,}", "bold"), f"  ({fmt_si(est.params)})\n",
            ("tokens/step  ", "$text-muted"), f"{est.tokens_per_step:,}\n",
            ("steps        ", "$text-muted"), "-" if est.steps is None else f"{est.steps:,}", "\n",
            ("tokens       ", "$text-muted"),
            "-" if est.total_tokens is None else fmt_si(est.total_tokens), "\n\n",
            ("Training memory (bf16 autocast, AdamW)\n", "bold"),
            ("weights      ", "$text-muted"), fmt_bytes(mem["weights"]), "\n",
            ("gradients    ", "$text-muted"), fmt_bytes(mem["gradients"]), "\n",
            ("optimizer    ", "$text-muted"), fmt_bytes(mem["optimizer"]), "\n",
            ("activations  ", "$text-muted"), fmt_bytes(mem["activations"]), "\n",
            ("total        ", "$text-muted"), (fmt_bytes(mem["total"]), "bold $accent"), "\n\n",
            ("data  ", "$text-muted"), clean_text(cfg.data), "\n",
            ("an estimate: allocator and compile workspace come on top", "$text-muted"),
        ))

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

    def launch_pretrain(self) -> None:
        self.revalidate()
        if self.config is None or self.errors:
            slot = next(iter(self.errors), "general")
            self.notify("Fix the highlighted field first: " + next(iter(self.errors.values()), ""),
                        severity="error", markup=False)
            widget = self.query(f"#{slot}")
            if widget and widget.first().focusable:
                widget.first().focus()
            return
        if self.launching:
            return
        self.launching = True
        name = self.values.get("name", "").strip() or None
        self.query_one("#launch-pretrain", Button).disabled = True
        self._launch_worker(self.config, name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _launch_worker(self, cfg, name: str | None) -> None:
        from canvas_tui.launching import launch_pretraining
        from engine.data.spec import parse_spec, validate_spec

        try:
            validate_spec(parse_spec(cfg.data), check_paths=True)
            run = launch_pretraining(cfg, name)
        except Exception as exc:  # shown next to the form, never a crash
            field = getattr(exc, "field", "")
            self.post_message(ControlDone("launch", "", str(exc), error=True, new_run_id=field or None))
            return
        self.post_message(ControlDone("launch", run.id, f"Launched run {run.id}.", new_run_id=str(run.path)))

    @on(ControlDone)
    def _launched(self, message: ControlDone) -> None:
        if message.action != "launch":
            return
        message.stop()
        self.launching = False
        self.query_one("#launch-pretrain", Button).disabled = False
        if message.error:
            slot = "f-data" if message.new_run_id == "data" else "general"
            self._show_errors({slot: message.text}, [slot])
            self.notify(message.text, title="Not launched", severity="error", markup=False)
            return
        self.notify(message.text, markup=False)
        self.app.pop_screen()
        self.app.open_dashboard(Path(message.new_run_id or ""))

    def launch_finetune(self) -> None:
        self._collect()
        self.ft_errors = forms.finetune_errors(self.ft_values,
                                               path_exists=lambda p: Path(p).expanduser().is_dir())
        self._show_errors(self.ft_errors, list(forms.FINETUNE_DEFAULTS))
        status = self.query_one("#ft-status", Static)
        if self.ft_errors:
            status.update(Content.styled("Fix the highlighted fields. " + FINETUNE_LATER, "$error"))
        else:
            status.update(Content.styled("Values are valid. " + FINETUNE_LATER, "$warning"))
        self.notify(FINETUNE_LATER, title="Fine-tuning", severity="warning", markup=False)
