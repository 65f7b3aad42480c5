"""Training throughput: our default recipe against transformers' LlamaForCausalLM, same run.

Same shape (a preset), same batch and sequence length, same weights, measured in this one process
with interleaved rounds (median reported). Each row is a set of settings (side, precision,
optimizer, compile), printed in the table; rows with the same settings are measured once.

  1. transformers, plain fp32 eager loop (``torch.optim.AdamW`` over all parameters, unfused,
     clipping): the baseline a user would write;
  2. ours, the default recipe: precision chosen from the hardware, AdamW with decay groups (fused
     on CUDA), compiled on CUDA. Goal >= 1.5x (1). Not like with like on purpose: it measures
     what the recipe buys over the plain loop;
  3. like with like, eager: both sides at the recipe's precision with the recipe's optimizer
     (decay groups, fused on CUDA), neither compiled. Goal: ours >= 1.0x;
  4. like with like, compiled (``--compile``): the same, forward + loss compiled on both sides
     (cold compile time printed, not counted). Goal: ours >= 1.0x.

    .venv/bin/python bench/bench_train.py [--preset tiny] [--batch 8] [--seq-len 256] [--compile]
    .venv/bin/python bench/bench_train.py --no-bf16    # as on a machine without bf16 (fp32 / fp16 recipe)
    .venv/bin/python bench/bench_train.py --tiny       # smoke mode (what the tests run)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from benchlib import Sizes, add_no_bf16_flag, machine_line, recipe_step, simulate_no_bf16

from engine.config import get_preset
from engine.model import CausalLM, export_hf
from engine.train.optim import build_optimizer
from engine.train.precision import Precision, choose_precision, enable_fast_matmul

TINY_MODEL = {"vocab_size": 512, "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 0}
LR, WEIGHT_DECAY, BETAS = 3e-4, 0.1, (0.9, 0.95)


@dataclass(frozen=True)
class Settings:
    """One row of the table: everything that differs between rows, and so names the row."""

    side: str  # "ours" | "transformers"
    precision: str  # the Precision's name
    optimizer: str  # "plain" (torch.optim.AdamW over all parameters) | "recipe" (build_optimizer)
    compiled: bool

    def describe(self, device: torch.device) -> str:
        fused = ", fused" if device.type == "cuda" else ""
        opt = "AdamW, one group, unfused" if self.optimizer == "plain" else f"AdamW, decay groups{fused}"
        return f"{self.side:<12} {self.precision:<5} {opt:<30} {'compiled' if self.compiled else 'eager':<8}"


def make_optimizer(model: torch.nn.Module, kind: str, device: torch.device) -> torch.optim.Optimizer:
    if kind == "recipe":
        return build_optimizer(model, LR, WEIGHT_DECAY, BETAS, device.type)
    return torch.optim.AdamW(model.parameters(), lr=LR)


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


def plan_rows(recipe: Precision, device: torch.device, compile: bool) -> dict[str, Settings]:
    """The roles the ratios need, each mapped to its settings; equal settings share one row."""
    roles = {
        "baseline": Settings("transformers", "fp32", "plain", False),
        "recipe": Settings("ours", recipe.name, "recipe", device.type == "cuda"),
        "ours eager": Settings("ours", recipe.name, "recipe", False),
        "transformers eager": Settings("transformers", recipe.name, "recipe", False),
    }
    if compile:
        roles["ours compiled"] = Settings("ours", recipe.name, "recipe", True)
        roles["transformers compiled"] = Settings("transformers", recipe.name, "recipe", True)
    return roles


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = Sizes(ap)
    ap.add_argument("--preset", default="tiny")
    sizes.add("--batch", 8, 2, "batch", type=int)
    sizes.add("--seq-len", 256, 32, "sequence length", type=int)
    sizes.add("--steps", 5, 1, "steps per round", type=int)
    sizes.add("--rounds", 5, 1, "interleaved rounds", type=int)
    ap.add_argument("--compile", action="store_true", help="also compare both compiled")
    add_no_bf16_flag(ap)
    return sizes.resolve(ap.parse_args())


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    if args.no_bf16:
        simulate_no_bf16()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        enable_fast_matmul()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cfg = get_preset(args.preset).model
    if args.tiny:
        cfg = replace(cfg, **TINY_MODEL)
    cfg = replace(cfg, max_seq_len=max(args.seq_len, 16))
    torch.manual_seed(0)
    ours_base = CausalLM(cfg).to(device).train()
    recipe = choose_precision("auto", device)
    roles = plan_rows(recipe, device, args.compile)

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    rows: dict[Settings, Callable] = {}
    compile_s: dict[Settings, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours_base, f"{tmp}/hf")
        for settings in dict.fromkeys(roles.values()):  # one row per distinct settings, in order
            if settings.side == "ours":
                model = copy.deepcopy(ours_base)

                def loss_fn(x, y, model=model):
                    return model(x, y)
            else:
                model = AutoModelForCausalLM.from_pretrained(f"{tmp}/hf").to(device).train()

                def loss_fn(x, y, model=model):
                    logits = model(input_ids=x).logits
                    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))

            if settings.compiled:  # forward + loss on both sides
                loss_fn = torch.compile(loss_fn)
            precision = choose_precision(settings.precision, device)
            step = recipe_step(model, loss_fn, precision, make_optimizer(model, settings.optimizer, device))
            start = time.perf_counter()
            step(x, y)  # warm-up (and, for a compiled row, the cold compile)
            if settings.compiled:
                compile_s[settings] = time.perf_counter() - start
            rows[settings] = step
    print(machine_line(device.type))
    print(
        f"device {device}, preset {args.preset}{' (--tiny: figures mean nothing)' if args.tiny else ''} "
        f"({ours_base.num_params():,} params), batch {args.batch} x {args.seq_len}, "
        f"recipe precision {recipe.name} ({recipe.reason}); every row clips gradients at 1.0"
    )
    rates: dict[Settings, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for settings, step in rows.items():
            rates[settings].append(rate(step, x, y, args.steps, device))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"  {'side':<12} {'prec':<5} {'optimizer':<30} {'compile':<8} {'tok/s':>10}  roles")
    for settings, value in med.items():
        used_as = ", ".join(role for role, s in roles.items() if s == settings)
        note = f"  (cold compile {compile_s[settings]:.0f} s, not counted)" if settings in compile_s else ""
        print(f"  {settings.describe(device)} {value:10,.0f}  {used_as}{note}")

    def ratio(a: str, b: str) -> float:
        return med[roles[a]] / med[roles[b]]

    print(
        f"ratio ours default recipe / transformers plain fp32 eager loop: {ratio('recipe', 'baseline'):.2f}x "
        "(goal >= 1.5x; recipe vs plain loop, not like with like)"
    )
    print(
        f"ratio like with like, {recipe.name} eager, same optimizer: "
        f"{ratio('ours eager', 'transformers eager'):.2f}x (goal >= 1.0x)"
    )
    if args.compile:
        print(
            f"ratio like with like, {recipe.name} compiled, same optimizer: "
            f"{ratio('ours compiled', 'transformers compiled'):.2f}x (goal >= 1.0x)"
        )


if __name__ == "__main__":
    main()
