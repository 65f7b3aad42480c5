"""One check-and-start per run kind: the CLI and the console's New-run form refuse the same bad input
with the same one-paragraph message, and neither leaves a run directory behind.

Each bad input is driven through ``canvas train`` / ``canvas finetune`` (``main()`` in process) and
through the New-run form (a Textual Pilot, pressing Launch), and the message the CLI prints is the
message the form shows under the field it names. The engine is never started: the last step of
``start`` (create the run directory and launch) is replaced by a fake that fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from canvas_tui import forms
from canvas_tui.app import CanvasApp
from canvas_tui.cli import main
from canvas_tui.screens.new_run import NewRunScreen
from engine.config.errors import ConfigError
from engine.config.train import load_train_config
from engine.preflight import check_device, check_nproc, cpu_cores, visible_gpus
from engine.runs import list_runs
from engine.sysinfo import torch_build
from tests.console_fixtures import fake_checkpoint, make_run
from tests.waiting import pilot_wait_until

BUILD = torch_build()
CPU_ONLY = bool(BUILD.get("installed") and not BUILD.get("cuda") and not BUILD.get("hip"))
#: More processes than this machine has devices for (cores on the CPU, GPUs on a GPU machine).
TOO_MANY = max(cpu_cores(), visible_gpus()[0] or 0) + 1
cpu_only = pytest.mark.skipif(not CPU_ONLY, reason="needs a CPU-only torch build (no GPU to refuse)")


@pytest.fixture(autouse=True)
def no_launch(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Creating the run directory and starting the engine is the step after every check: reaching
    it means a bad input got through. The fake records the call and fails."""
    calls: list[tuple] = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError(f"a run was started for bad input: {args!r} {kwargs!r}")

    monkeypatch.setattr("engine.train.launch.start_training_run", fake)
    monkeypatch.setattr("engine.finetune.launch.start_finetune_run", fake)
    return calls


def cli_message(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What ``canvas ARGS`` prints for a refused input (the exit status is 2, no traceback)."""
    capsys.readouterr()
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    prefix = "canvas: error: "
    assert err.startswith(prefix) and "\n" not in err, err
    return err.removeprefix(prefix)


async def open_form(app: CanvasApp, pilot) -> NewRunScreen:
    app.action_new_run()
    await pilot_wait_until(
        pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.is_mounted, what="the form"
    )
    return app.screen


def shown(form: NewRunScreen, slot: str) -> str:
    box = form.query_one(f"#err-{slot}")
    return str(box.content) if box.display else ""


async def pretrain_form_messages(cases: dict[str, dict[str, str]]) -> dict[str, tuple[str, str]]:
    """Type each case's values into the pre-training tab and press Launch; name → (the slot, the
    message shown). One app for all cases (each starts from the preset's values), as a user would
    correct one field after another."""
    defaults = forms.preset_values("tiny")
    found: dict[str, tuple[str, str]] = {}
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_form(app, pilot)
        for name, values in cases.items():
            for key in sorted({k for v in cases.values() for k in v}):
                widget = form.query_one(f"#{forms.field_id(key)}")
                assert isinstance(widget, (Input, Select))
                widget.value = values.get(key, defaults[key])
            await pilot.pause()
            await pilot.press("ctrl+l")
            await pilot_wait_until(
                pilot, lambda: form.errors and not form.launching, what=f"the launch to refuse {name}"
            )
            await pilot.pause()
            assert isinstance(app.screen, NewRunScreen), name  # no dashboard: nothing was launched
            slot = next(iter(form.errors))
            found[name] = (slot, shown(form, slot))
    return found


# Pre-training: (CLI arguments, form values, the field the form shows the message under).
PRETRAIN_CASES: dict[str, tuple[list[str], dict[str, str], str]] = {
    "model size": (["--set", "model.n_heads=7"], {"model.n_heads": "7"}, "model.n_heads"),
    "data path missing": (["--data", "/no/such/notes.txt"], {"data": "/no/such/notes.txt"}, "data"),
    "micro_batch 0": (["--set", "micro_batch=0"], {"micro_batch": "0"}, "micro_batch"),
    "micro_batch not a number": (["--set", "micro_batch=lots"], {"micro_batch": "lots"}, "micro_batch"),
    "device not a device": (["--set", "device=gpu"], {"device": "gpu"}, "device"),
    "nproc over the devices": (["--nproc", str(TOO_MANY)], {"nproc": str(TOO_MANY)}, "nproc"),
    "nproc 0": (["--nproc", "0"], {"nproc": "0"}, "nproc"),
}
if CPU_ONLY:  # on a GPU machine these are not bad input
    PRETRAIN_CASES["device not there"] = (["--set", "device=cuda"], {"device": "cuda"}, "device")
    PRETRAIN_CASES["fp16 without a GPU"] = (["--set", "precision=fp16"], {"precision": "fp16"}, "general")


@pytest.mark.anyio
async def test_pretrain_bad_input_gets_one_message_from_cli_and_form(capsys):
    expected = {}
    for name, (cli_args, _, field) in PRETRAIN_CASES.items():
        message = cli_message(capsys, "train", *cli_args, "--detach")
        assert "Fix:" in message, name
        expected[name] = ("general" if field == "general" else forms.field_id(field), message)
    found = await pretrain_form_messages({name: case[1] for name, case in PRETRAIN_CASES.items()})
    assert found == expected
    assert list_runs() == []


def test_unknown_preset_gets_the_engine_message_everywhere(capsys):
    message = cli_message(capsys, "train", "--preset", "huge", "--detach")
    assert message.startswith("unknown preset 'huge'") and "tiny" in message
    with pytest.raises(ConfigError) as form:
        forms.pretrain_config(dict(forms.preset_values("tiny"), preset="huge"))
    assert (form.value.field, str(form.value)) == ("preset", message)
    assert list_runs() == []


# ------------------------------------------------------------------------------------ fine-tunes
@pytest.fixture
def base_run():
    """The newest pre-training run with a checkpoint: the base an empty ``--base`` means."""
    run = make_run("base")
    fake_checkpoint(run, 5)
    return run


def chats_missing_content(tmp_path: Path) -> str:
    tmp_path.mkdir()
    path = tmp_path / "chats.jsonl"
    row = {"messages": [{"role": "user"}, {"role": "assistant", "content": "hello"}]}
    path.write_text(json.dumps(row) + "\n")
    return str(path)


def not_a_model(tmp_path: Path) -> str:
    folder = tmp_path / "notes"
    folder.mkdir(parents=True)
    (folder / "weights.txt").write_text("not a model")
    return str(folder)


# Fine-tunes: name → (form values as a function of tmp_path, the field named).
FINETUNE_CASES = {
    "base not a model": (lambda tmp: {"base": not_a_model(tmp)}, "base"),
    "chat data missing fields": (lambda tmp: {"data": chats_missing_content(tmp)}, "data"),
    "LoRA target the base lacks": (lambda tmp: {"lora_target": "c_attn"}, "lora_target"),
    "offline Hub data not cached": (lambda tmp: {"data": "hf:nobody/no-such-chats-xyz"}, "data"),
}


def finetune_cli_args(values: dict[str, str]) -> list[str]:
    args = ["finetune", "--detach"]
    for key, value in values.items():
        args += [f"--{key}", value] if key in ("base", "data") else ["--set", f"{key}={value}"]
    return args


async def finetune_form_messages(cases: dict[str, dict[str, str]]) -> dict[str, tuple[str, str]]:
    """Type each case's values into the fine-tune tab and press Launch at once (the launch's own
    preflight refuses it); name → (the slot, the message shown). One app for all cases."""
    defaults = forms.finetune_values()
    found: dict[str, tuple[str, str]] = {}
    app = CanvasApp(poll_interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#new-tabs").active = "tab-finetune"
        await pilot_wait_until(pilot, lambda: form.base_hint_loaded, what="the base hint")
        for name, values in cases.items():
            for key in sorted({k for v in cases.values() for k in v}):
                form.query_one(f"#{forms.ft_id(key)}", Input).value = values.get(key, defaults[key])
            await pilot.pause()
            await pilot.press("ctrl+l")
            await pilot_wait_until(
                pilot,
                lambda: form.preflight_state == "error" and not form.launching,
                timeout=30,
                what=f"the launch to refuse {name}",
            )
            assert isinstance(app.screen, NewRunScreen), name
            slot = next(iter(form._ft_check_error))
            found[name] = (slot, shown(form, slot))
    return found


@pytest.mark.anyio
async def test_finetune_bad_input_gets_one_message_from_cli_and_form(capsys, tmp_path, base_run):
    cases = {
        name: make_values(tmp_path / name.replace(" ", "-"))
        for name, (make_values, _) in FINETUNE_CASES.items()
    }
    expected = {}
    for name, values in cases.items():
        message = cli_message(capsys, *finetune_cli_args(values))
        assert "Fix:" in message, name
        expected[name] = (forms.ft_id(FINETUNE_CASES[name][1]), message)
    assert await finetune_form_messages(cases) == expected
    assert [r.id for r in list_runs()] == [base_run.id]  # only the base: no half-made fine-tune


@cpu_only
def test_finetune_device_that_is_not_there_is_refused_before_the_base_is_read(capsys):
    message = cli_message(capsys, "finetune", "--base", "/no/such/base", "--set", "device=cuda", "--detach")
    assert message.startswith("device = cuda, but this torch build is CPU-only")
    assert list_runs() == []


# ------------------------------------------------------------------------------------ the engine side
def test_start_preflights_then_creates_and_launches(monkeypatch):
    """What the demo calls: the run directory holds the checked config and the engine is launched."""
    from engine.train import launch, preflight

    launched: list[list[str]] = []
    monkeypatch.setattr(launch, "start_training_run", _real_start_training_run)
    monkeypatch.setattr(launch, "launch_detached", lambda run, argv, env=None: launched.append(argv) or 1)
    cfg = load_train_config("tiny", sets=["max_steps=3", "micro_batch=2", "seq_len=32"])
    run, checked = preflight.start(cfg, "checked", nproc=1)
    meta = run.read_meta()
    assert (meta.kind, meta.name, meta.config["max_steps"]) == ("pretrain", "checked", 3)
    assert launched and launched[0][-2:] == ["--run-dir", str(run.path)]
    assert checked.kind == "pretrain" and f"{cfg.model.num_params():,} parameters" in checked.summary()
    with pytest.raises(ConfigError, match="micro_batch = 0"):
        preflight.start(load_train_config("tiny", sets=["micro_batch=0"]), "refused")
    assert [r.id for r in list_runs()] == [run.id]
    # The demo trains in its own process: the same checks, a run directory, no engine launched.
    here, _ = preflight.create(cfg, "in-process")
    assert here.read_meta().config == cfg.to_dict() and len(launched) == 1
    with pytest.raises(ConfigError, match="nproc = 0"):
        preflight.create(cfg, "refused", nproc=0)
    assert sorted(r.id for r in list_runs()) == sorted([run.id, here.id])


def _real_start_training_run(cfg, name=None, *, nproc=1, env=None):
    from engine.train import launch

    run = launch.create_training_run(cfg, name, nproc)
    launch.launch_detached(run, launch.worker_argv(str(run.path), nproc=nproc), env=env)
    return run


CUDA_BUILD = {
    "installed": True,
    "version": "2.13.0",
    "cuda": "12.8",
    "hip": None,
    "summary": "torch 2.13.0+cu128",
}


def test_gpus_are_counted_through_nvml_and_cuda_visible_devices(monkeypatch):
    from engine.preflight import visible_gpus
    from engine.telemetry.gpus import GpuInfo

    monkeypatch.setattr("engine.sysinfo.torch_build", lambda: CUDA_BUILD)
    four = [GpuInfo(i, "H200", 143_771, "570") for i in range(4)]
    monkeypatch.setattr("engine.telemetry.gpus.list_gpus", lambda: (four, None))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == (4, "4 GPUs visible")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus()[0] == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus()[0] == 0
    monkeypatch.setattr("engine.telemetry.gpus.list_gpus", lambda: ([], "no NVIDIA driver"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == (0, "no NVIDIA driver")


def test_nproc_and_device_are_counted_against_the_gpus(monkeypatch):
    monkeypatch.setattr("engine.sysinfo.torch_build", lambda: CUDA_BUILD)
    monkeypatch.setattr("engine.preflight.visible_gpus", lambda: (2, "2 GPUs visible"))
    check_nproc(2, "auto")
    with pytest.raises(ConfigError, match=r"nproc = 4, but only 2 GPUs are visible.*Fix: use nproc=2"):
        check_nproc(4, "auto")
    with pytest.raises(ConfigError, match="cannot share one device"):
        check_nproc(2, "cuda:1")
    with pytest.raises(ConfigError, match="whole number of at least 1"):
        check_nproc("two", "auto")
    check_device("cuda:1", "precision", "fp16")
    with pytest.raises(
        ConfigError, match=r"device = cuda:2, but this machine shows only 2 GPU.*cuda:0 to cuda:1"
    ):
        check_device("cuda:2", "precision", "auto")
    monkeypatch.setattr("engine.preflight.visible_gpus", lambda: (0, "no NVIDIA driver"))
    with pytest.raises(
        ConfigError, match=r"device = cuda, but this machine shows no GPU \(no NVIDIA driver\)"
    ):
        check_device("cuda", "precision", "auto")


def test_resume_without_a_checkpoint_is_refused_before_data_is_prepared(monkeypatch):
    from engine.train import trainer
    from engine.train.launch import create_training_run
    from engine.train.worker import run_training

    def prepare(*args, **kwargs):
        raise AssertionError("data was prepared for a resume that cannot happen")

    monkeypatch.setattr(trainer, "prepare", prepare)
    run = create_training_run(load_train_config("tiny", sets=["max_steps=5"]))
    run_training(run, resume=True, install_signals=False)
    meta = run.read_meta()
    assert meta.status == "failed"
    assert meta.message.startswith(f"cannot resume: {run.checkpoints_dir} holds no checkpoint. Fix:")


def test_a_finetune_resume_without_a_checkpoint_is_refused_before_the_base_is_loaded(monkeypatch):
    from engine.config.finetune import load_finetune_config
    from engine.finetune import trainer
    from engine.finetune.launch import create_finetune_run
    from engine.finetune.worker import run_finetune

    class NoTrainer:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the fine-tune loaded its base for a resume that cannot happen")

    monkeypatch.setattr(trainer, "FinetuneTrainer", NoTrainer)
    run = create_finetune_run(load_finetune_config(base="/a/base/never/read", sets=["max_steps=5"]))
    run_finetune(run, resume=True, install_signals=False)
    meta = run.read_meta()
    assert meta.status == "failed"
    assert meta.message.startswith(f"cannot resume: {run.checkpoints_dir} holds no checkpoint. Fix:")


@pytest.mark.parametrize(
    ("demo_args", "train_set"),
    [
        (["--micro-batch", "0"], "micro_batch=0"),
        (["--seq-len", "100000"], "seq_len=100000"),
    ],
    ids=["micro_batch 0", "seq_len past the context"],
)
def test_the_demo_refuses_bad_input_with_the_message_canvas_train_gives(capsys, demo_args, train_set):
    """The demo trains in the foreground, but it is checked by the same preflight as `canvas train`
    (the tiny preset): the same one-paragraph message, before a run directory exists."""
    demo = cli_message(capsys, "demo", *demo_args, "--steps", "3")
    train = cli_message(capsys, "train", "--preset", "tiny", "--set", train_set, "--detach")
    assert demo == train and "Fix:" in demo
    assert list_runs() == []
