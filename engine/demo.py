"""The headless demo: the tiny model learns the embedded corpus for a few hundred steps on CPU.

It is what ``canvas`` runs until the console lands, and the shortest end-to-end proof that data,
tokenizer, model, mixed precision and generation fit together. It is deliberately a plain loop;
the real training engine (schedules, checkpoints, exact resume, events) is ``engine.train``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from engine.config.presets import get_preset
from engine.data import DataProgress, TokenizerConfig, prepare
from engine.data.loader import TokenLoader
from engine.model import CausalLM, SamplingParams, generate, save_model
from engine.sysinfo import cpu_info


@dataclass
class DemoResult:
    losses: list[float]
    val_loss: float
    sample: str
    tokens_per_s: float
    precision: str


def pick_precision(device: str) -> str:
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_info()["bf16"] else "fp32"


def run_demo(
    steps: int = 300,
    *,
    micro_batch: int = 8,
    seq_len: int = 256,
    lr: float = 3e-3,
    seed: int = 1337,
    log_every: int = 10,
    out: Path | None = None,
    prompt: str = "The ",
    progress: Callable[[DataProgress], None] | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    preset = get_preset("tiny")
    prepared = prepare(
        "embedded",
        TokenizerConfig(vocab_size=preset.model.vocab_size),
        seed=seed,
        progress=progress or (lambda p: None),
    )
    echo(prepared.summary())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = pick_precision(device)
    torch.manual_seed(seed)
    cfg = replace(preset.model, vocab_size=prepared.vocab_size, max_seq_len=seq_len)
    model = CausalLM(cfg).to(device)
    loader = TokenLoader(prepared.train, seq_len, micro_batch, seed=seed, device=device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    warmup = max(1, steps // 10)

    def lr_at(step: int) -> float:  # linear warm-up, cosine to 10%
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    autocast = (
        torch.autocast(device_type=device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    echo(
        f"training the tiny model ({model.num_params():,} parameters) for {steps} steps on "
        f"{device} in {precision}, batch {micro_batch} x {seq_len} tokens"
    )
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, y = loader.next_batch()
        with autocast:
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            rate = (step + 1) * x.numel() / (time.perf_counter() - start)
            echo(
                f"step {step + 1:5d}/{steps}  loss {losses[-1]:.3f}  lr {lr_at(step):.2e}  {rate:,.0f} tok/s"
            )
    tokens_per_s = steps * micro_batch * seq_len / (time.perf_counter() - start)

    model.eval()
    val_loss = float("nan")
    if prepared.val is not None:
        val = TokenLoader(prepared.val, min(seq_len, 64), 4, seed=seed, shuffle=False, device=device)
        with torch.no_grad(), autocast:
            val_loss = sum(model(*val.next_batch()).item() for _ in range(4)) / 4
        echo(f"validation loss {val_loss:.3f} (perplexity {math.exp(val_loss):.1f})")

    tokenizer = prepared.tokenizer_dir
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    ids = [tok.token_to_id("<|bos|>"), *tok.encode(prompt).ids]
    room = max(1, min(60, cfg.max_seq_len - len(ids)))
    new = generate(
        model,
        [ids],
        SamplingParams(
            max_new_tokens=room, temperature=0.8, top_k=50, seed=seed, stop_tokens=(prepared.eos_id,)
        ),
    )[0]
    sample = prompt + tok.decode(new)
    echo("sample: " + sample)
    if out is not None:
        save_model(model, out)
        from engine.data.tokenizer import export_tokenizer

        export_tokenizer(tokenizer, out)
        echo(
            f"weights and tokenizer saved to {out} (canvas export {out} --hf DIR makes it a "
            "transformers model)"
        )
    return DemoResult(losses, val_loss, sample, tokens_per_s, precision)


if __name__ == "__main__":  # pragma: no cover
    run_demo(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
