"""The inference worker as a real subprocess, driven through WorkerClient: streaming order,
cancel, errors that leave it serving, render, the adapter switch, dying with its parent, and
chatting with a run that is still training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine.serve import protocol
from engine.serve.client import WorkerClient, WorkerError
from tests.finetune_fixtures import tiny_base, tiny_tokenizer
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A transformers Llama folder with our ChatML template: loads through the engine's fast path."""
    return tiny_base(tmp_path_factory.mktemp("llama") / "llama", tokenizer_dir, seed=1)


@pytest.fixture(scope="module")
def long_ckpt(tmp_path_factory, tokenizer_dir) -> Path:
    """One of our weights folders (a plain continuation model) with a long context, for cancel."""
    from engine.model import save_model
    from tests.helpers import random_model

    folder = tmp_path_factory.mktemp("ours") / "step-000010"
    save_model(random_model(seed=5, vocab_size=512, max_seq_len=4096), folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(tokenizer_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, llama_dir) -> Path:
    """A LoRA adapter on ``llama_dir`` with non-zero weights (so it changes the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(llama_dir)
    lora = LoraConfig(
        r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, lora)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    peft_model.save_pretrained(str(out))
    return out


@pytest.fixture
def client(tmp_path):
    worker = WorkerClient.spawn(log_path=tmp_path / "worker.log")
    yield worker
    worker.close()


def collect(stream) -> tuple[list[protocol.Delta], protocol.Done]:
    deltas = list(stream)
    done = stream.done
    assert done is not None
    return deltas, done


@pytest.mark.slow
def test_streaming_order_render_and_errors_that_keep_it_serving(client, llama_dir):
    progress: list[protocol.Progress] = []
    ready = client.load(str(llama_dir), device="cpu", on_progress=progress.append)
    assert progress and [p.done for p in progress] == sorted(p.done for p in progress)
    assert progress[-1].done == progress[-1].total  # progress... then ready
    assert ready.kind == "hf" and ready.chat and ready.device == "cpu" and ready.context == 512
    assert ready.params > 50_000 and ready.memory > 0

    deltas, done = collect(client.generate(prompt="def main", max_new_tokens=12, temperature=0))
    assert deltas and all(d.id == done.id for d in deltas)
    assert "".join(d.text for d in deltas) == done.text
    assert sum(len(d.tokens) for d in deltas) == done.new_tokens == 12 and done.finish_reason == "length"
    assert done.prompt_tokens > 0 and done.time_to_first_token_s > 0 and done.tokens_per_s > 0

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_dir)
    chat = [{"role": "user", "content": "Hi [/INST] there"}]
    expected = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    rendered = client.render(messages=chat)
    assert rendered.text == expected and "<|im_start|>assistant" in expected
    assert rendered.tokens == len(tok(expected, add_special_tokens=False)["input_ids"])
    with_system = client.render(messages=chat, system="Be terse.")
    assert with_system.text.startswith("<|im_start|>system\nBe terse.")

    # A malformed line, a bad value and a wrong field: each answered with an error naming the field.
    client.send_raw(b'{"op": "generate", "id": "x1", "prompt": "a", "temprature": 1}')
    with pytest.raises(WorkerError) as bad:
        client.generate(prompt="a", top_p=1.5).wait(60)
    assert bad.value.field == "top_p" and "(0, 1]" in bad.value.message
    with pytest.raises(WorkerError) as bad:
        client.generate(prompt="a", stop=[""]).wait(60)
    assert bad.value.field == "stop"
    client.send_raw(b"this is not json")
    wait_until(lambda: len(client.orphan_errors) >= 2, 30, "the errors about the two bad lines")
    typo, garbage = client.orphan_errors[:2]  # nobody waits for id x1, nor for a line without an id
    assert (typo.id, typo.field) == ("x1", "temprature") and "temperature" in typo.message
    assert (garbage.id, garbage.field) == (None, None) and "JSON" in garbage.message

    # ... and it still serves, with the same greedy answer as before.
    again = client.generate(prompt="def main", max_new_tokens=12, temperature=0).wait(60)
    assert again.text == done.text


@pytest.mark.slow
def test_stop_strings_cut_the_text_and_are_never_streamed(client, llama_dir):
    client.load(str(llama_dir), device="cpu")
    full = client.generate(prompt="import os", max_new_tokens=30, temperature=0).wait(60)
    assert len(full.text) > 6
    stop = full.text[3:6]  # a stop string known to come
    deltas, done = collect(client.generate(prompt="import os", max_new_tokens=30, temperature=0, stop=[stop]))
    assert done.finish_reason == "stop"
    assert done.text == full.text[: full.text.index(stop)]
    assert "".join(d.text for d in deltas) == done.text  # no piece of the stop string went out


@pytest.mark.slow
def test_cancel_keeps_the_partial_text_and_the_worker_serves_on(client, long_ckpt):
    ready = client.load(str(long_ckpt), device="cpu")
    assert ready.kind == "pretrain" and not ready.chat and ready.checkpoint == "step-000010"
    n = 3000
    full = client.generate(prompt="The", max_new_tokens=n, temperature=0).wait(240)
    assert full.finish_reason == "length" and full.new_tokens == n  # no stop token in the way

    stream = client.generate(prompt="The", max_new_tokens=n, temperature=0)
    pieces = []
    for delta in stream:
        pieces.append(delta.text)
        if len(pieces) == 5:
            stream.cancel()
    done = stream.done
    assert done.finish_reason == "cancelled"
    assert 5 <= done.new_tokens < n
    assert "".join(pieces) == done.text and full.text.startswith(done.text)

    # The pre-training model takes no chat messages, says so, and keeps serving.
    with pytest.raises(WorkerError) as err:
        client.generate(messages=[{"role": "user", "content": "hi"}]).wait(60)
    assert err.value.field == "messages" and "plain continuation" in err.value.message
    after = client.generate(prompt="The", max_new_tokens=8, temperature=0).wait(60)
    assert after.finish_reason == "length" and full.text.startswith(after.text)


def tokens_of(stream) -> list[int]:
    return [t for delta in stream for t in delta.tokens]


@pytest.mark.slow
def test_adapter_off_answers_as_the_base(client, llama_dir, adapter_dir):
    greedy = dict(prompt="class Foo", max_new_tokens=16, temperature=0)
    client.load(str(llama_dir), device="cpu")  # the base alone, through the engine's generator
    base = tokens_of(client.generate(**greedy))
    ready = client.load(str(llama_dir), adapter=str(adapter_dir), device="cpu")
    assert ready.adapter
    on = tokens_of(client.generate(**greedy))
    off = tokens_of(client.generate(**greedy, adapter=False))
    assert off == base  # the same loaded weights, adapter switched off, answer as the base
    assert on != base  # and with it on they do not
    assert tokens_of(client.generate(**greedy)) == on  # switched back on for the next request


@pytest.mark.slow
def test_another_architecture_streams_through_transformers_generate(client, tmp_path, tokenizer_dir):
    """A GPT-2 folder (not a Llama): transformers' generate, streamed token by token, greedy
    equal to its own generate, with cancel and the chat refusal of a model without a template."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(3)
    folder = tmp_path / "gpt2"
    config = GPT2Config(
        vocab_size=512, n_positions=256, n_embd=64, n_layer=2, n_head=4, eos_token_id=2, bos_token_id=1
    )
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "special_tokens_map.json"):
        shutil.copy2(tokenizer_dir / name, folder / name)
    tok_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    tok_config.pop("chat_template")
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))

    ready = client.load(str(folder), device="cpu")
    assert ready.kind == "hf" and not ready.chat and ready.context == 256
    deltas, done = collect(client.generate(prompt="import sys", max_new_tokens=20, temperature=0))
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("import sys", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False, pad_token_id=0
        )
    expected = out[0, ids.shape[1] :].tolist()
    assert [t for d in deltas for t in d.tokens] == [t for t in expected if t != 2]
    assert done.new_tokens == len(expected) and done.text == tok.decode(expected, skip_special_tokens=True)
    with pytest.raises(WorkerError) as err:
        client.render(messages=[{"role": "user", "content": "hi"}])
    assert err.value.field == "messages" and "no chat template" in err.value.message

    stream = client.generate(prompt="x", max_new_tokens=200, temperature=1.0, seed=0)
    for i, _delta in enumerate(stream):
        if i == 2:
            stream.cancel()
    assert stream.done.finish_reason in ("cancelled", "stop")  # a sampled eos may come first
    assert client.generate(prompt="import sys", max_new_tokens=20, temperature=0).wait(60).text == done.text


@pytest.mark.slow
def test_a_dead_worker_fails_every_waiting_call_with_its_log(tmp_path, llama_dir):
    worker = WorkerClient.spawn(log_path=tmp_path / "w.log")
    try:
        worker.load(str(llama_dir), device="cpu")
        stream = worker.generate(prompt="x", max_new_tokens=400, temperature=1.0, seed=0)
        os.kill(worker.pid, signal.SIGKILL)
        list(stream)
        with pytest.raises(WorkerError) as err:
            _ = stream.done
        assert "exited" in err.value.message and "loaded" in err.value.message  # the log's end
        with pytest.raises(WorkerError):
            worker.render(prompt="x")
        assert not worker.alive
    finally:
        worker.close(timeout=2)


PARENT = """
import sys, time
from engine.serve.client import WorkerClient
client = WorkerClient.spawn(log_path=sys.argv[1])
print(client.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_the_worker_dies_with_its_parent_even_after_kill_9(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "w.log")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        worker_pid = int(parent.stdout.readline())
        worker = psutil.Process(worker_pid)
        assert worker.ppid() == parent.pid and worker.is_running()
        parent.kill()  # SIGKILL: no chance to clean up
        parent.wait()
        wait_until(
            lambda: not psutil.pid_exists(worker_pid) or worker.status() == psutil.STATUS_ZOMBIE,
            30,
            "the orphaned worker to exit",
        )
    finally:
        parent.kill()


# ------------------------------------------------------------------------ a run still training
TRAIN = [
    "--set", "micro_batch=4", "--set", "seq_len=64", "--set", "log_every=1", "--set", "eval_batches=2",
    "--set", "max_steps=60", "--set", "checkpoint_every=10", "--set", "eval_every=30",
    "--set", "model.n_layers=2", "--set", "model.dim=64", "--set", "model.n_heads=4",
    "--set", "model.n_kv_heads=2",
]  # fmt: skip


@pytest.mark.slow
def test_chat_with_the_newest_checkpoint_of_a_run_while_it_trains(shared_cache, client):
    """Load a live run's newest checkpoint, generate, and the run finishes exactly as an
    undisturbed twin does: same status, same loss at every step."""
    from engine.runs.store import resolve_run
    from tests.lifecycle_helpers import canvas, events, finish

    out = canvas("train", *TRAIN, "--name", "live", "--detach")
    assert out.returncode == 0, out.stderr
    live = resolve_run(out.stdout.split()[0])
    wait_until(lambda: events(live, "checkpoint"), 240, "the run's first checkpoint")
    # Held (SIGSTOP) while the worker loads, so the run is still training when the load looks: with
    # one thread a process the 60 steps can end before a worker has started. It trains on while the
    # model generates; a pause changes none of its numbers (the twin below checks every loss).
    from engine.runs.status import run_status

    engine_pid = run_status(live).pid
    assert engine_pid is not None
    os.kill(engine_pid, signal.SIGSTOP)
    try:
        ready = client.load("live", device="auto")
    finally:
        os.kill(engine_pid, signal.SIGCONT)
    assert ready.training, "the run finished before the chat: the test proves nothing"
    assert ready.kind == "pretrain" and ready.checkpoint.startswith("step-")
    done = client.generate(prompt="The", max_new_tokens=20, temperature=0.8, seed=1).wait(120)
    assert done.new_tokens > 0 and done.finish_reason in ("length", "stop")
    assert finish(live).state == "finished", live.log_path.read_text()[-2000:]

    twin_out = canvas("train", *TRAIN, "--name", "twin")
    assert twin_out.returncode == 0, twin_out.stderr
    twin = resolve_run("twin")

    def losses(run) -> dict[int, float]:
        return {m["step"]: m["loss"] for m in events(run, "metric")}

    assert sorted(losses(live)) == list(range(1, 61))
    assert losses(live) == losses(twin)
    assert json.loads((live.checkpoints_dir / "last.json").read_text())["step"] == 60


def test_deltas_carry_whole_characters_and_never_a_piece_of_a_stop_string(tokenizer_dir):
    from transformers import AutoTokenizer

    from engine.serve.session import _Text

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = "héllo wörld ✓ 日本語 and then STOP here"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text.encode()) // 3  # small vocabulary: characters span several tokens
    stream = _Text(tok, [])
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)

    stream = _Text(tok, ["STOP"])
    pieces = []
    for i in ids:
        pieces.append(stream.push(i))
        if stream.stopped:
            break
    pieces.append(stream.flush())
    assert stream.stopped and stream.text == "héllo wörld ✓ 日本語 and then "
    assert "".join(pieces) == stream.text and not any("S" in p for p in pieces)


def test_our_checkpoint_loads_every_weight_and_leaves_torch_as_it_was(tmp_path):
    """The quick load builds the model without initialising it: every weight must still be the
    checkpoint's, the RNG untouched, and torch's own init back in place afterwards."""
    import torch
    from torch import nn

    from engine.model import save_model
    from engine.model.llama import CausalLM
    from engine.serve.session import _load_ours
    from tests.helpers import random_model

    original = random_model(seed=3, vocab_size=512)
    save_model(original, tmp_path / "ckpt")
    methods = (nn.Linear.reset_parameters, nn.Embedding.reset_parameters, CausalLM.reset_parameters)
    rng = torch.random.get_rng_state()
    loaded = _load_ours(tmp_path / "ckpt", torch.device("cpu"), torch.float32)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert (nn.Linear.reset_parameters, nn.Embedding.reset_parameters, CausalLM.reset_parameters) == methods
    want, got = original.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    tokens = torch.tensor([[1, 5, 9, 200]])
    assert torch.equal(original.eval()(tokens), loaded(tokens))
    assert nn.Linear(8, 8).weight.abs().sum() > 0  # a fresh module is initialised again


def test_a_cancel_stops_the_generation_within_one_token(long_ckpt):
    """The cancel flag is read after every token: set while token k is handed out, no token k+1
    is made (exact, in process: the pipes' timing is not in the way)."""
    import threading

    from engine.serve.session import InferenceSession

    s = InferenceSession()
    s.load(protocol.Load(id="l", model=str(long_ckpt), device="cpu"))
    try:
        for k in (1, 4, 9):
            cancelled = threading.Event()
            seen: list[protocol.Delta] = []

            def on_delta(delta: protocol.Delta, k: int = k, seen: list = seen, flag=cancelled) -> None:
                seen.append(delta)
                if sum(len(d.tokens) for d in seen) == k:
                    flag.set()

            done = s.generate(
                protocol.Generate(id="g", prompt="The", max_new_tokens=500, temperature=0),
                on_delta,
                cancelled,
            )
            assert done.finish_reason == "cancelled" and done.new_tokens == k
            assert done.text == "".join(d.text for d in seen)
    finally:
        s.close()
