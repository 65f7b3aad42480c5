"""Training throughput: our default recipe against transformers' LlamaForCausalLM, same run.

Same shape (a preset), same batch and sequence length, same weights, measured in this one process
with interleaved rounds (median reported):

  1. transformers, plain fp32 eager loop (AdamW, clipping) — the baseline a user would write;
  2. ours, the default recipe (precision chosen from the hardware, AdamW with decay groups, fused
     on CUDA, compile on CUDA) — goal >= 1.5x (1);
  3. transformers given the same precision — goal: ours >= 1.0x;
  4. with --compile: both compiled (cold compile time printed, not counted) — goal: ours >= 1.0x.

    .venv/bin/python bench/bench_train.py [--preset tiny] [--batch 8] [--seq-len 256] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from dataclasses import replace

import torch
import torch.nn.functional as F

from engine.config import get_preset
from engine.model import CausalLM, export_hf
from engine.train.optim import build_optimizer
from engine.train.precision import choose_precision, enable_fast_matmul


def make_step(model, loss_fn, precision, device, fused: bool):
    if fused:
        opt = build_optimizer(model, 3e-4, 0.1, (0.9, 0.95), device.type)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4)

    def step(x, y):
        with precision.autocast():
            loss = loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def rate(step, x, y, steps: int, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * x.numel() / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also compare both compiled")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        enable_fast_matmul()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = replace(get_preset(args.preset).model, max_seq_len=max(args.seq_len, 16))
    torch.manual_seed(0)
    ours = CausalLM(cfg).to(device).train()
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours, f"{tmp}/hf")
        theirs_fp32 = AutoModelForCausalLM.from_pretrained(f"{tmp}/hf").to(device).train()
        theirs_same = AutoModelForCausalLM.from_pretrained(f"{tmp}/hf").to(device).train()
    recipe = choose_precision("auto", device)
    fp32 = choose_precision("fp32", device)

    def hf_loss(model):
        def fn(x, y):
            logits = model(input_ids=x).logits
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))

        return fn

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    compile_default = device.type == "cuda"
    ours_fn = torch.compile(ours) if compile_default else ours
    variants = {
        "transformers fp32 eager": make_step(theirs_fp32, hf_loss(theirs_fp32), fp32, device, False),
        f"ours default ({recipe.name}{', compiled' if compile_default else ''})": make_step(
            ours, ours_fn, recipe, device, True
        ),
        f"transformers {recipe.name} eager": make_step(
            theirs_same, hf_loss(theirs_same), recipe, device, False
        ),
    }
    compile_s = {}
    if args.compile:
        for name, model, fn in (
            ("ours", ours, torch.compile(ours)),
            ("transformers", theirs_same, hf_loss(torch.compile(theirs_same))),
        ):
            step = make_step(model, fn, recipe, device, name == "ours")
            start = time.perf_counter()
            step(x, y)
            compile_s[name] = time.perf_counter() - start
            variants[f"{name} {recipe.name} compiled"] = step
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, preset "
        f"{args.preset} ({ours.num_params():,} params), batch {args.batch} x {args.seq_len}, "
        f"recipe precision {recipe.name} ({recipe.reason})"
    )
    for step in variants.values():
        step(x, y)  # warm-up
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            rates[name].append(rate(step, x, y, args.steps, device))
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name, value in med.items():
        print(f"  {name:<36} {value:10,.0f} tok/s")
    names = list(med)
    print(
        f"ratio ours default / transformers fp32 eager:  {med[names[1]] / med[names[0]]:.2f}x (goal >= 1.5x)"
    )
    print(
        f"ratio ours default / transformers {recipe.name} eager: {med[names[1]] / med[names[2]]:.2f}x "
        "(goal >= 1.0x)"
    )
    if args.compile:
        a, b = med[f"ours {recipe.name} compiled"], med[f"transformers {recipe.name} compiled"]
        print(
            f"ratio compiled ours / compiled transformers:  {a / b:.2f}x (goal >= 1.0x; cold compile "
            f"ours {compile_s['ours']:.0f} s, transformers {compile_s['transformers']:.0f} s)"
        )


if __name__ == "__main__":
    main()
