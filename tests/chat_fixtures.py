"""For the Chat screen tests: a scripted client (deterministic snapshots, hostile answers) and a
tiny real model saved as a pre-training run that a real inference worker loads.

The scripted client implements the part of :class:`engine.serve.client.WorkerClient` the screen
uses (:class:`canvas_tui.chat_models.ChatClient`) with the real protocol replies; it records every
request so tests can check what the screen sent (history, system prompt, sampling, adapter).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from canvas_tui.chat_models import ModelChoice
from engine.runs import RunKind, create_run
from engine.runs.store import RunDir
from engine.serve import protocol


class ScriptedStream:
    def __init__(
        self,
        pieces: list[str],
        delay: float,
        fail: str | None = None,
        gate: threading.Semaphore | None = None,
    ) -> None:
        self.pieces = pieces
        self.delay = delay
        self.fail = fail
        self.gate = gate
        self._cancel = threading.Event()
        self._done: protocol.Done | None = None

    def __iter__(self) -> Iterator[protocol.Delta]:
        text, n = "", 0
        for piece in self.pieces:
            while self.gate is not None and not self.gate.acquire(timeout=0.05):
                if self._cancel.is_set():
                    break
            if self._cancel.is_set():
                break
            if self.delay:
                time.sleep(self.delay)
            text += piece
            n += 1
            yield protocol.Delta(id="g", text=piece, tokens=[n])
        if self.fail:
            return
        reason = "cancelled" if self._cancel.is_set() else "stop"
        self._done = protocol.Done(
            id="g",
            text=text,
            finish_reason=reason,
            prompt_tokens=7,
            new_tokens=n,
            time_to_first_token_s=0.05,
            tokens_per_s=123.4,
        )

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def done(self) -> protocol.Done | None:
        if self.fail:
            from engine.serve.client import WorkerError

            raise WorkerError(self.fail, "temperature")
        return self._done


class ScriptedClient:
    """Answers every generate with ``answer`` split into pieces of ``piece`` characters, ``delay`` s
    apart; with a ``gate``, each piece also waits for one ``gate.release()`` (the test paces it)."""

    def __init__(
        self,
        choice: ModelChoice,
        answer: str | Callable[[dict[str, Any]], str] = "Hello there.",
        *,
        delay: float = 0.0,
        chat: bool = True,
        load_error: str | None = None,
        generate_error: str | None = None,
        piece: int = 3,
        gate: threading.Semaphore | None = None,
    ) -> None:
        self.choice = choice
        self.answer = answer
        self.delay = delay
        self.chat = chat
        self.load_error = load_error
        self.generate_error = generate_error
        self.piece = piece
        self.gate = gate
        self.requests: list[dict[str, Any]] = []
        self.closed = False

    def load(
        self, model: str, *, checkpoint=None, adapter=None, device="auto", on_progress=None, timeout=None
    ):
        if on_progress is not None:
            on_progress(protocol.Progress(id="l", phase="weights", done=1, total=2, unit="steps"))
        if self.load_error:
            from engine.serve.client import WorkerError

            raise WorkerError(self.load_error, "model")
        return protocol.Ready(
            id="l",
            model=model,
            kind="finetune" if self.chat else "pretrain",
            checkpoint=checkpoint or "step-000010",
            params=5_012_480,
            dtype="float32",
            device="cpu",
            memory=20 << 20,
            chat=self.chat,
            adapter=self.chat,
        )

    def generate(self, **fields: Any) -> ScriptedStream:
        self.requests.append(fields)
        text = self.answer(fields) if callable(self.answer) else self.answer
        pieces = [text[i : i + self.piece] for i in range(0, len(text), self.piece)]
        return ScriptedStream(pieces, self.delay, self.generate_error, self.gate)

    def render(self, **fields: Any) -> protocol.Rendered:
        self.requests.append({"render": True, **fields})
        parts = [f"<|system|>{fields['system']}"] if fields.get("system") else []
        if fields.get("messages"):
            parts += [f"<|{m.role}|>{m.content}" for m in fields["messages"]]
        else:
            parts.append(fields.get("prompt") or "")
        text = "\n".join(parts)
        return protocol.Rendered(id="r", text=text, tokens=len(text.split()))

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


class ScriptedFactory:
    """A client factory for ChatScreen that remembers the clients it made."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.clients: list[ScriptedClient] = []

    def __call__(self, choice: ModelChoice) -> ScriptedClient:
        per_model = self.kwargs.get("per_model", {}).get(choice.label, {})
        kwargs = {k: v for k, v in self.kwargs.items() if k != "per_model"} | per_model
        client = ScriptedClient(choice, **kwargs)
        self.clients.append(client)
        return client


# ------------------------------------------------------------------------------ a real model
TEXT = (
    "The quick brown fox jumps over the lazy dog. A chat model answers questions about Python. "
    "def add(a, b): return a + b. Lists, dicts and sets hold values; loops walk over them. "
) * 20


def tiny_pretrain_run(name: str = "tiny-chat", seed: int = 0, steps: tuple[int, ...] = (10,)) -> RunDir:
    """A finished pre-training run with a real tokenizer and checkpoints of a tiny random Llama,
    what a real inference worker loads (imports torch: only tests that start a worker use it)."""
    import torch

    from engine.data.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
    from engine.model.weights import save_model
    from engine.train.layout import checkpoint_name
    from tests.helpers import random_model

    run = create_run(RunKind.PRETRAIN, name, {"preset": "tiny"})
    tok = train_tokenizer([[TEXT]], TokenizerConfig(vocab_size=300, min_frequency=1))
    save_tokenizer(tok, run.path / "tokenizer")
    specials = [tok.token_to_id(t) for t in ("<|pad|>", "<|bos|>", "<|eos|>")]
    for i, step in enumerate(steps):
        model = random_model(seed=seed + i, vocab_size=tok.get_vocab_size(), max_seq_len=4096)
        with torch.no_grad():  # never end at a random end-of-text token: answers run to max tokens
            model.lm_head.weight[[t for t in specials if t is not None]] = 0.0
        save_model(model, run.checkpoints_dir / checkpoint_name(step))
    run.update_meta(status="finished", total_steps=max(steps))
    return run


def chat_files(run_path: str | Path) -> list[Path]:
    return sorted((Path(run_path) / "chats").glob("*.jsonl"))
