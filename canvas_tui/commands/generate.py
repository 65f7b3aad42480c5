"""``canvas generate MODEL``: one prompt in, the model's text streamed to stdout.

The model runs in an inference worker (:mod:`engine.serve.worker`), the same process the Chat
screen uses; this command is its client (:mod:`engine.serve.client`), so it imports no torch.
Every flag and the model itself are checked before the worker starts (a typo costs no model
load). For a fine-tune the prompt goes as one user message through its chat template (``--raw``
sends it as is); a pre-training run continues the prompt as plain text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from canvas_tui.cli import CliError
from engine import locations
from engine.serve import models
from engine.serve.protocol import ProtocolError

_FLAGS = {
    "max_new_tokens": "--max-new-tokens",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "repetition_penalty": "--repetition-penalty",
    "checkpoint": "--checkpoint",
    "adapter": "--adapter",
    "device": "--device",
    "model": "MODEL",
    "messages": "--raw",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate text from a run, a model folder or a Hub id (streamed to stdout)",
        description="Load MODEL in an inference worker and stream its answer to the prompt to stdout. "
        "MODEL is a run (id, id prefix or name), a model folder or a cached Hub id. A fine-tune gets "
        "the prompt as one user message through its chat template (--raw: as is); a pre-training run "
        "continues it as plain text. --temperature 0 is greedy. Ctrl-C stops the generation and "
        "keeps what came.",
    )
    p.add_argument("model", metavar="MODEL", help="run id / prefix / name, model folder, or Hub id")
    p.add_argument(
        "--checkpoint",
        metavar="best|last|STEP",
        help="which checkpoint of a run (default: best, else the newest)",
    )
    p.add_argument(
        "--adapter", metavar="DIR", help="a LoRA adapter folder to put on a model folder or Hub model"
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--prompt", metavar="TEXT", help="the prompt (default: read from stdin)")
    source.add_argument("--prompt-file", metavar="FILE", type=Path, help="read the prompt from FILE")
    p.add_argument("--system", metavar="TEXT", help="a system prompt (chat models)")
    p.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    p.add_argument(
        "--max-new-tokens", type=int, default=256, metavar="N", help="at most N new tokens (default 256)"
    )
    p.add_argument("--temperature", type=float, default=0.7, metavar="T", help="0 is greedy (default 0.7)")
    p.add_argument(
        "--top-k", type=int, default=0, metavar="K", help="keep the K likeliest tokens (default 0: off)"
    )
    p.add_argument(
        "--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling (default 1.0: off)"
    )
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="default 1.0: none")
    p.add_argument("--seed", type=int, metavar="S", help="makes sampling reproducible")
    p.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="end the text at TEXT (repeatable)"
    )
    p.add_argument("--device", choices=models.DEVICES, default="auto", help="auto: the GPU when free enough")
    p.add_argument("--json", action="store_true", help="print one JSON object with the text and its figures")
    p.set_defaults(func=run)


def _refuse(exc: ProtocolError) -> CliError:
    flag = _FLAGS.get(exc.field or "", exc.field or "")
    message = exc.message
    if exc.field in _FLAGS and flag not in message and exc.field not in ("model", "messages"):
        message = f"{flag}: {message}"
    return CliError(message)


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return args.prompt
    if args.prompt_file is not None:
        try:
            return args.prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(
                f"--prompt-file {args.prompt_file}: cannot read it ({exc}). Fix: pass a UTF-8 text file."
            ) from None
    if sys.stdin is not None and not sys.stdin.isatty():
        return sys.stdin.read()
    raise CliError(
        "no prompt given. Fix: pass --prompt TEXT or --prompt-file FILE, or pipe the prompt to stdin."
    )


def check(args: argparse.Namespace) -> tuple[models.ResolvedModel, str]:
    """Every check that needs no model: the flags, the prompt and what MODEL names."""
    try:
        models.check_sampling(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
        )
        models.check_checkpoint(args.checkpoint)
        if any(not s for s in args.stop):
            raise ProtocolError("stop", "--stop cannot be empty. Fix: give the text to stop at.")
        resolved = models.resolve(args.model, args.checkpoint, args.adapter)
    except ProtocolError as exc:
        raise _refuse(exc) from None
    prompt = _prompt(args)
    if resolved.kind == "pretrain" and args.system:
        raise CliError(
            f"--system: {resolved.label} is a pre-training run, a plain continuation model with no chat "
            "template, so it takes no system prompt. Fix: drop --system (or put the text in the prompt)."
        )
    return resolved, prompt


def run(args: argparse.Namespace) -> int:
    _, prompt = check(args)
    from engine.serve.client import WorkerClient, WorkerError

    log_dir = locations.cache_dir() / "workers"
    log_path = log_dir / f"generate-{os.getpid()}.log"
    client = WorkerClient.spawn(log_path=log_path)
    try:
        try:
            ready = client.load(
                args.model, checkpoint=args.checkpoint, adapter=args.adapter, device=args.device
            )
        except WorkerError as exc:
            raise CliError(_worker_message(exc)) from None
        # A pre-training run's usual note ("a plain continuation model") is what the user asked for;
        # a device note ("loaded on CPU: the GPU is busy") is news for every kind.
        if (
            ready.note
            and not args.json
            and (ready.kind != "pretrain" or (ready.device == "cpu" and "GPU" in ready.note))
        ):
            print(f"canvas: {ready.note}", file=sys.stderr)
        chat = ready.kind != "pretrain" and ready.chat and not args.raw
        fields: dict[str, Any] = dict(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            seed=args.seed,
            stop=list(args.stop),
        )
        if chat:
            fields.update(messages=[{"role": "user", "content": prompt}], system=args.system)
        else:
            fields.update(prompt=prompt)
        stream = client.generate(**fields)
        interrupted = False
        while True:
            try:
                for delta in stream:
                    if not args.json and delta.text:
                        sys.stdout.write(delta.text)
                        sys.stdout.flush()
                break
            except KeyboardInterrupt:  # stop the generation, keep what came
                interrupted = True
                stream.cancel()
        try:
            done = stream.done
        except WorkerError as exc:
            raise CliError(_worker_message(exc)) from None
        assert done is not None
        if args.json:
            print(
                json.dumps(
                    {
                        "text": done.text,
                        "prompt_tokens": done.prompt_tokens,
                        "new_tokens": done.new_tokens,
                        "time_to_first_token_s": done.time_to_first_token_s,
                        "tokens_per_s": done.tokens_per_s,
                        "model": ready.model,
                        "checkpoint": ready.checkpoint,
                        "finish_reason": done.finish_reason,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            sys.stdout.write("\n")
            sys.stdout.flush()
        return 130 if interrupted else 0
    finally:
        client.close()
        if client.process.returncode == 0:  # a clean exit: the log holds nothing worth keeping
            log_path.unlink(missing_ok=True)


def _worker_message(exc: Exception) -> str:
    from engine.serve.client import WorkerError

    if isinstance(exc, WorkerError) and exc.field in _FLAGS and exc.field not in ("model", "messages"):
        flag = _FLAGS[exc.field]
        return exc.message if flag in exc.message else f"{flag}: {exc.message}"
    return str(exc)
