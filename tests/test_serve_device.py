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
