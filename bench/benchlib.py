"""What the benchmarks share: sizes with a ``--tiny`` smoke mode, a "no bf16" switch, a line naming
the machine, and one way to fail.

Benchmarks are reports, not tests, but they rot like code: ``tests/test_bench.py`` runs each one
with ``--tiny`` (a model and batch small enough for a step or two on a shared CPU) so a renamed
API or a crash on a machine kind shows up in the suite. ``--tiny`` changes sizes only, never what
is compared, and the real defaults stay as they were.

``--no-bf16`` (or ``CANVAS_BENCH_NO_BF16=1``) makes the engine's own precision detection see a
machine without bf16, so the fp32 (CPU) and fp16 (GPU) recipes can be exercised on a machine that
has bf16: it patches what :func:`engine.train.precision.choose_precision` reads, not the choice.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any, NoReturn

NO_BF16_ENV = "CANVAS_BENCH_NO_BF16"


class Sizes:
    """Size flags whose default depends on ``--tiny``; a value given on the command line wins."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.table: dict[str, tuple[Any, Any]] = {}
        parser.add_argument(
            "--tiny",
            action="store_true",
            help="smoke mode: tiny sizes, a step or two (tests/test_bench.py runs it); figures mean nothing",
        )

    def add(self, flag: str, full: Any, tiny: Any, help: str, **kwargs: Any) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        self.table[dest] = (full, tiny)
        self.parser.add_argument(
            flag, default=None, help=f"{help} (default {full}; {tiny} with --tiny)", **kwargs
        )

    def resolve(self, args: argparse.Namespace) -> argparse.Namespace:
        for dest, (full, tiny) in self.table.items():
            if getattr(args, dest) is None:
                setattr(args, dest, tiny if args.tiny else full)
        return args


def add_no_bf16_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-bf16",
        action="store_true",
        default=os.environ.get(NO_BF16_ENV, "") not in ("", "0"),
        help=f"behave as on a machine without bf16 (also {NO_BF16_ENV}=1): the CPU recipe becomes fp32, "
        "the GPU recipe fp16",
    )


def simulate_no_bf16() -> None:
    """Make the hardware probes report no bf16, before any precision is chosen.

    Patches ``engine.sysinfo.cpu_info`` (and the name ``engine.train.precision`` imported) and
    ``torch.cuda.is_bf16_supported``: the engine's real detection then takes its no-bf16 branch."""
    import torch

    from engine import sysinfo
    from engine.train import precision

    real = sysinfo.cpu_info

    def cpu_info_without_bf16() -> dict[str, Any]:
        info = dict(real())
        info.update(bf16=False, amx=False, precision="fp32 (bf16 disabled by --no-bf16)")
        return info

    sysinfo.cpu_info = cpu_info_without_bf16
    precision.cpu_info = cpu_info_without_bf16
    torch.cuda.is_bf16_supported = lambda *a, **k: False


def has_bf16(device_type: str) -> bool:
    """What the engine's detection says (after :func:`simulate_no_bf16`, if it ran)."""
    import torch

    from engine.train import precision

    if device_type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(precision.cpu_info()["bf16"])


def machine_line(device_type: str) -> str:
    """The machine a figure was measured on: figures are meaningless without it."""
    import torch

    from engine.train import precision

    if device_type == "cuda":
        name = torch.cuda.get_device_name(0)
    else:
        name = precision.cpu_info()["model"] or platform.processor()
    bf16 = "bf16" if has_bf16(device_type) else "no bf16"
    return (
        f"machine: {name} ({bf16}), {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}"
    )


def fail(message: str) -> NoReturn:
    """Stop the benchmark with a non-zero exit: a figure measured on wrong output is no figure."""
    print(f"BENCHMARK FAILED: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def random_checkpoint(
    folder: Any,
    *,
    vocab: int,
    dim: int,
    layers: int,
    kv_heads: int | None = None,
    context: int = 1024,
    init_std: float = 0.3,
) -> tuple[Any, Any]:
    """(our checkpoint folder with its tokenizer beside the weights, the model) for a benchmark:
    random weights (seed 0), a byte-level BPE of ``vocab`` trained on the embedded corpus. The
    weights' values do not matter for speed; ``init_std`` only keeps generated text varied."""
    import shutil
    from pathlib import Path

    import torch

    from engine.config import ModelConfig
    from engine.data.embedded import documents
    from engine.data.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
    from engine.model import CausalLM, save_model

    folder = Path(folder)
    tok_dir = save_tokenizer(
        train_tokenizer([documents()[:400]], TokenizerConfig(vocab_size=vocab)), folder / "tok"
    )
    torch.manual_seed(0)
    heads = max(1, dim // 64)
    cfg = ModelConfig(
        vocab_size=vocab,
        dim=dim,
        n_layers=layers,
        n_heads=heads,
        n_kv_heads=kv_heads or heads,
        max_seq_len=context,
        init_std=init_std,
    )
    model = CausalLM(cfg).eval()
    ckpt = save_model(model, folder / "step-000001")
    for f in tok_dir.iterdir():
        shutil.copy2(f, ckpt / f.name)
    return ckpt, model


def recipe_step(model: Any, loss_fn: Any, precision: Any, opt: Any) -> Any:
    """One optimizer step of the training recipe, what every training bench times on both sides:
    autocast, the grad scaler (enabled for fp16 only), clipping at 1.0, then the optimizer.
    (torch is imported here, not at the top: the console bench shares this module and must not
    load it.)"""
    import torch

    scaler = precision.grad_scaler()

    def step(x, y):
        with precision.autocast():
            loss = loss_fn(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    step.scaler = scaler  # type: ignore[attr-defined]
    return step
