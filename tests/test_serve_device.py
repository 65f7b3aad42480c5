"""Where the inference worker loads a model when a GPU is there but busy.

No GPU here: ``torch.cuda`` is faked (availability and free memory) — the one piece of absent
hardware — and the real :func:`~engine.serve.session.pick_device` decides."""

from __future__ import annotations

import pytest
import torch

from engine.serve import session
from engine.serve.protocol import ProtocolError

GIB = 2**30


@pytest.fixture
def gpu(monkeypatch):
    """A fake GPU with 80 GiB, of which ``free`` GiB are free (set by the test)."""
    state = {"free": 80.0}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (int(state["free"] * GIB), 80 * GIB))
    monkeypatch.setattr(session, "_live_training_run", lambda: "seed-1b-owt")
    return state


def test_a_gpu_with_room_gets_the_model(gpu):
    device, note = session.pick_device("auto", 14 * GIB)
    assert device == torch.device("cuda", 0) and note == ""


def test_a_gpu_held_by_training_sends_auto_to_the_cpu_and_says_why(gpu):
    gpu["free"] = 3.0  # a 7B bf16 model needs ~14 GiB: it must not be squeezed in beside the run
    device, note = session.pick_device("auto", 14 * GIB)
    assert device == torch.device("cpu")
    assert note.startswith("loaded on CPU: the GPU has 3.0 of 80.0 GiB free")
    assert "training run seed-1b-owt holds it" in note


def test_asking_for_cuda_on_a_full_gpu_is_an_error_naming_the_device_field(gpu):
    gpu["free"] = 1.0
    with pytest.raises(ProtocolError) as err:
        session.pick_device("cuda", 14 * GIB)
    assert err.value.field == "device" and "Fix: use device auto or cpu" in str(err.value)


def test_the_margin_counts_more_than_the_bare_weights(gpu):
    # 14 GiB of weights need 14 * 1.3 + 0.5 = 18.7 GiB: 18 GiB free is not enough.
    gpu["free"] = 18.0
    assert session.pick_device("auto", 14 * GIB)[0] == torch.device("cpu")
    gpu["free"] = 19.0
    assert session.pick_device("auto", 14 * GIB)[0].type == "cuda"


def test_cpu_is_always_honoured_and_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert session.pick_device("cpu", 1) == (torch.device("cpu"), "")
    assert session.pick_device("auto", 1) == (torch.device("cpu"), "")
    with pytest.raises(ProtocolError, match="torch sees no GPU"):
        session.pick_device("cuda", 1)


def live_training_run(name: str):
    """A pre-training run in the store whose engine is alive: this test process stands in for it."""
    import os

    from engine.runs.process import identify
    from tests.console_fixtures import make_run

    run = make_run(name)
    identity = identify(os.getpid())
    assert identity is not None
    run.update_meta(status="running", **identity.as_meta())
    return run


def test_the_run_holding_the_gpu_is_found_in_the_run_store():
    from tests.console_fixtures import make_run

    make_run("finished-one")  # an ended run holds nothing
    assert session._live_training_run() is None
    live_training_run("seed-live")
    assert session._live_training_run() == "seed-live"


@pytest.mark.slow
def test_a_load_beside_a_live_training_run_lands_on_the_cpu_and_says_so(monkeypatch, tmp_path):
    """The whole load, not just the choice: a GPU with 1 GiB free while a real (live) training run
    is in the store, ``device: auto`` → the model is on the CPU, answers, and Ready's note (what
    the Chat screen and ``canvas generate`` show) names the run."""
    from canvas_tui.screens.chat import ready_facts
    from engine.serve import protocol
    from tests.finetune_fixtures import tiny_base, tiny_tokenizer

    live_training_run("seed-1b-owt")
    folder = tiny_base(tmp_path / "llama", tiny_tokenizer(tmp_path / "tok"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (1 * GIB, 80 * GIB))
    monkeypatch.setattr(session, "_folder_bytes", lambda path: 14 * GIB)  # a 7B bf16 model's weights
    s = session.InferenceSession()
    try:
        ready = s.load(protocol.Load(id="l", model=str(folder)))
        assert ready.device == "cpu" and ready.dtype == "float32"
        assert ready.note.startswith("loaded on CPU: the GPU has 1.0 of 80.0 GiB free")
        assert "training run seed-1b-owt holds it" in ready.note
        assert all(p.device.type == "cpu" for p in s.model.parameters())
        done = s.generate(
            protocol.Generate(id="g", prompt="The", max_new_tokens=4, temperature=0), lambda d: None
        )
        assert done.new_tokens > 0
        assert ready.note in ready_facts(ready)
    finally:
        s.close()
