"""Engine model vs transformers' LlamaForCausalLM: training throughput and KV-cache generation.

Both models are built at the same shape with the same weights and measured in this one process,
interleaved (ours, theirs, ours, theirs…) so that machine noise hits both alike. Each line gives
the median of the rounds and the best round (the least disturbed, as ``timeit`` advises on a
shared machine); ratios are given for both. Run:

    .venv/bin/python bench/bench_model.py                 # CPU: fp32 and bf16 autocast
    .venv/bin/python bench/bench_model.py --device cuda   # GPU: bf16 autocast

Targets (issue 2): training >= 1.0x transformers at the same precision; generation at batch 1
>= 1.5x transformers' generate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn.functional as F

from engine.config import get_preset
from engine.model import CausalLM, SamplingParams, export_hf, generate


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_rate(model, loss_fn, batches, steps: int, precision: str, device: str) -> float:
    """Tokens per second of forward + backward + AdamW over ``steps`` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    autocast = (
        torch.autocast(device_type=device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    x, y = batches
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        with autocast:
            loss = loss_fn(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return steps * x.numel() / (time.perf_counter() - start)


def ours_loss(model, x, y):
    return model(x, y)


def hf_loss(model, x, y):
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


def gen_rate(fn, new_tokens: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return new_tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--precision", nargs="+", default=None, help="fp32 and/or bf16")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    device = args.device
    precisions = args.precision or (["bf16"] if device == "cuda" else ["fp32", "bf16"])
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    from transformers import AutoModelForCausalLM

    cfg = replace(
        get_preset(args.preset).model, max_seq_len=max(args.seq_len, args.prompt_len + args.new_tokens)
    )
    torch.manual_seed(0)
    ours = CausalLM(cfg).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours, f"{tmp}/hf")
        theirs = AutoModelForCausalLM.from_pretrained(f"{tmp}/hf").to(device)
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, preset "
        f"{args.preset} ({ours.num_params():,} params), batch {args.batch} x {args.seq_len}, "
        f"transformers attention: {theirs.config._attn_implementation}"
    )

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    for precision in precisions:
        ours.train(), theirs.train()
        train_rate(ours, ours_loss, (x, y), 1, precision, device)  # warm-up
        train_rate(theirs, hf_loss, (x, y), 1, precision, device)
        a, b = [], []
        for _ in range(args.rounds):
            a.append(train_rate(ours, ours_loss, (x, y), args.steps, precision, device))
            b.append(train_rate(theirs, hf_loss, (x, y), args.steps, precision, device))
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"train {precision:>4}: ours {ma:10,.0f} tok/s | transformers {mb:10,.0f} tok/s | "
            f"ratio {ma / mb:.2f}x median, {max(a) / max(b):.2f}x best  (target >= 1.0x)"
        )

    ours.eval(), theirs.eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt_len), generator=g).tolist()[0]
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    ours.to(dtype), theirs.to(dtype)
    ids = torch.tensor([prompt], device=device)

    def run_ours(compile: bool = False):
        return lambda: generate(ours, [prompt], params, compile=compile)

    def run_theirs():
        with torch.inference_mode():
            return theirs.generate(
                ids,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
            )

    same = run_ours()()[0] == run_theirs()[0, args.prompt_len :].tolist()
    precision = str(dtype).split(".")[-1]
    label = f"generate batch 1 ({precision}, {args.prompt_len}+{args.new_tokens} tokens, greedy)"
    print(f"{label}: same tokens as transformers: {same}")
    start = time.perf_counter()
    run_ours(compile=True)()  # compiles the decode step once; excluded from the rate below
    compile_s = time.perf_counter() - start
    variants = {"eager": run_ours(), "compiled": run_ours(compile=True)}
    rates: dict[str, list[float]] = {"eager": [], "compiled": [], "transformers": []}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            rates[name].append(gen_rate(fn, args.new_tokens, device))
        rates["transformers"].append(gen_rate(run_theirs, args.new_tokens, device))
    theirs_rates = rates["transformers"]
    mb, bb = statistics.median(theirs_rates), max(theirs_rates)
    print(f"  transformers generate (eager, dynamic cache): {mb:8,.0f} tok/s median, {bb:8,.0f} best")
    for name in variants:
        ma, ba = statistics.median(rates[name]), max(rates[name])
        note = f", compile {compile_s:.0f} s once, not counted" if name == "compiled" else ""
        print(
            f"  ours {name:<8} (preallocated cache{note}): {ma:8,.0f} tok/s median, {ba:8,.0f} best | "
            f"ratio {ma / mb:.2f}x median, {ba / bb:.2f}x best (target >= 1.5x)"
        )


if __name__ == "__main__":
    main()
