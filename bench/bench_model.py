"""Engine model vs transformers' LlamaForCausalLM: training throughput and KV-cache generation.

Both models are built at the same shape with the same weights and measured in this one process,
interleaved (ours, theirs, ours, theirs…) so that machine noise hits both alike. Each line gives
the median of the rounds and the best round (the least disturbed, as ``timeit`` advises on a
shared machine); ratios are given for both. Every row compares like with like:

* training: the same precision, the same optimizer (``torch.optim.AdamW``, fused on CUDA on both
  sides), both eager;
* generation, eager: our ``generate`` (preallocated cache, flat single-token decode step)
  against ``transformers``' ``generate``, neither compiled: with its default dynamic cache, and
  with its static cache (``cache_implementation="static"``, ``disable_compile=True``);
* generation, compiled: ``generate(..., compile=True)`` against ``transformers``' ``generate`` with
  ``cache_implementation="static"`` and a ``CompileConfig`` (its documented compiled path; the
  default config on CUDA, the same config told to compile on a CPU too). Each side's compile is
  timed once and not counted.

Before any timing, greedy tokens are compared in fp32 (TF32 off): ours eager against
transformers eager, and each compiled path against the same. Any difference fails the benchmark
(exit 1): a speed measured on different output is no result. Run:

    .venv/bin/python bench/bench_model.py                 # CPU: fp32 (and bf16 autocast if the CPU has it)
    .venv/bin/python bench/bench_model.py --device cuda   # GPU: the recipe precision (bf16)
    .venv/bin/python bench/bench_model.py --no-compile    # skip the compiled generation rows
    .venv/bin/python bench/bench_model.py --no-train      # generation rows only
    .venv/bin/python bench/bench_model.py --tiny          # smoke mode (what the tests run)

Targets (issue 2): training >= 1.0x transformers at the same precision; generation at batch 1
>= 1.5x transformers' generate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
import torch.nn.functional as F
from benchlib import Sizes, add_no_bf16_flag, fail, machine_line, simulate_no_bf16

from engine.config import get_preset
from engine.model import CausalLM, SamplingParams, export_hf, generate
from engine.train.precision import Precision, choose_precision

TINY_MODEL = {"vocab_size": 512, "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 0}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_rate(model, loss_fn, batches, steps: int, precision: Precision, device: str) -> float:
    """Tokens per second of forward + backward + AdamW over ``steps`` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    scaler = precision.grad_scaler()  # enabled for fp16 only, on both sides alike
    x, y = batches
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        with precision.autocast():
            loss = loss_fn(model, x, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return steps * x.numel() / (time.perf_counter() - start)


def ours_loss(model, x, y):
    return model(x, y)


def hf_loss(model, x, y):
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


def gen_rate(fn: Callable[[], object], new_tokens: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return new_tokens / (time.perf_counter() - start)


def check_same_tokens(name: str, got: list[int], want: list[int]) -> None:
    """Fail the benchmark unless ``got`` (``name``'s greedy tokens) equals ``want`` (transformers')."""
    if got == want:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
    )
    a = got[at] if at < len(got) else "nothing"
    b = want[at] if at < len(want) else "nothing"
    fail(
        f"{name} generated different tokens from transformers' eager generate: first difference at new "
        f"token {at} of {len(want)} (ours {a}, transformers {b}). Greedy decoding of the same weights in "
        "fp32 must agree; speeds measured on different output compare nothing."
    )


@contextmanager
def exact_fp32(device: str) -> Iterator[None]:
    """fp32 matmuls without TF32, for the token comparison only (TF32 may flip a near-tie)."""
    if device != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def default_precisions(device: torch.device) -> list[Precision]:
    """CPU: fp32 and the recipe's precision (bf16 autocast where the CPU has it); GPU: the recipe's."""
    recipe = choose_precision("auto", device)
    if device.type == "cuda":
        return [recipe]
    fp32 = choose_precision("fp32", device)
    return [fp32] if recipe.name == "fp32" else [fp32, recipe]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = Sizes(ap)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    sizes.add("--batch", 8, 2, "training batch", type=int)
    sizes.add("--seq-len", 256, 32, "training sequence length", type=int)
    sizes.add("--steps", 5, 1, "training steps per round", type=int)
    sizes.add("--rounds", 9, 1, "interleaved rounds", type=int)
    sizes.add("--prompt-len", 32, 8, "generation prompt length", type=int)
    sizes.add("--new-tokens", 128, 8, "tokens generated per call", type=int)
    sizes.add(
        "--compile",
        True,
        False,
        "also time both compiled generation paths",
        action=argparse.BooleanOptionalAction,
    )
    ap.add_argument("--precision", nargs="+", default=None, help="fp32 and/or bf16 (training rows)")
    ap.add_argument("--no-train", action="store_true", help="skip the training rows (generation only)")
    add_no_bf16_flag(ap)
    return sizes.resolve(ap.parse_args())


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    if args.no_bf16:
        simulate_no_bf16()
    device = args.device
    dev = torch.device(device)
    if args.precision:
        precisions = [choose_precision(p, dev) for p in args.precision]
    else:
        precisions = default_precisions(dev)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    from transformers import AutoModelForCausalLM, CompileConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cfg = get_preset(args.preset).model
    if args.tiny:
        cfg = replace(cfg, **TINY_MODEL)
    cfg = replace(cfg, max_seq_len=max(args.seq_len, args.prompt_len + args.new_tokens))
    torch.manual_seed(0)
    ours = CausalLM(cfg).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours, f"{tmp}/hf")
        theirs = AutoModelForCausalLM.from_pretrained(f"{tmp}/hf").to(device)
    print(machine_line(device))
    print(
        f"device {device}, preset {args.preset}{' (--tiny: figures mean nothing)' if args.tiny else ''} "
        f"({ours.num_params():,} params), batch {args.batch} x {args.seq_len}, "
        f"transformers attention: {theirs.config._attn_implementation}"
    )

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=g).to(device)
    optimizer = f"AdamW{', fused' if device == 'cuda' else ''}"
    for precision in [] if args.no_train else precisions:
        ours.train(), theirs.train()
        train_rate(ours, ours_loss, (x, y), 1, precision, device)  # warm-up
        train_rate(theirs, hf_loss, (x, y), 1, precision, device)
        a, b = [], []
        for _ in range(args.rounds):
            a.append(train_rate(ours, ours_loss, (x, y), args.steps, precision, device))
            b.append(train_rate(theirs, hf_loss, (x, y), args.steps, precision, device))
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"train {precision.name:>4} (both: {optimizer}, eager): ours {ma:10,.0f} tok/s | transformers "
            f"{mb:10,.0f} tok/s | ratio {ma / mb:.2f}x median, {max(a) / max(b):.2f}x best  (target >= 1.0x)"
        )

    ours.eval(), theirs.eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt_len), generator=g).tolist()[0]
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0)
    ids = torch.tensor([prompt], device=device)
    compile_config = CompileConfig()  # transformers' default: inductor, "reduce-overhead"
    if device != "cuda":
        # transformers compiles automatically on CUDA only; this flag (documented on the class as
        # "to flag our generate call to compile on e.g. CPU") asks for the same path here.
        compile_config._compile_all_devices = True

    def ours_tokens(compile: bool) -> list[int]:
        return generate(ours, [prompt], params, compile=compile)[0]

    def theirs_tokens(compile: bool, static: bool = False) -> list[int]:
        extra: dict[str, object] = {}
        if compile:
            extra = {"cache_implementation": "static", "compile_config": compile_config}
        elif static:  # the static cache, eager (on CUDA transformers would compile it unasked)
            extra = {"cache_implementation": "static", "disable_compile": True}
        with torch.inference_mode():
            out = theirs.generate(
                ids,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
                **extra,
            )
        return out[0, args.prompt_len :].tolist()

    # 1. The same tokens, in fp32: a failed check ends the benchmark before any timing.
    modes = ["eager", "compiled"] if args.compile else ["eager"]
    compile_s = {"ours": 0.0, "transformers": 0.0}
    ours.float(), theirs.float()
    with exact_fp32(device):
        want = theirs_tokens(False)
        check_same_tokens("ours eager", ours_tokens(False), want)
        check_same_tokens("transformers eager (static cache)", theirs_tokens(False, static=True), want)
        if args.compile:
            start = time.perf_counter()
            got = ours_tokens(True)
            compile_s["ours"] += time.perf_counter() - start
            if "_compiled_decode" not in ours.__dict__:
                fail("ours compiled did not compile its decode step")
            check_same_tokens("ours compiled", got, want)
            start = time.perf_counter()
            got = theirs_tokens(True)
            compile_s["transformers"] += time.perf_counter() - start
            if "_compiled_call" not in theirs.__dict__:
                fail(
                    "transformers' generate did not compile its decode step: the compiled row would be eager"
                )
            check_same_tokens("transformers compiled (static cache)", got, want)
    checked = ["ours eager", "ours compiled", "transformers compiled"] if args.compile else ["ours eager"]
    print(
        f"same tokens as transformers' eager generate (fp32, greedy, {args.new_tokens} new tokens): yes "
        f"({', '.join(checked)})"
    )
    print("same tokens from transformers' eager generate with its static cache: yes")

    # 2. Timing, at the benchmark's dtype.
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    ours.to(dtype), theirs.to(dtype)
    if args.compile and dtype != torch.float32:  # the dtype changed: each side compiles again, once
        for name, fn in (("ours", ours_tokens), ("transformers", theirs_tokens)):
            start = time.perf_counter()
            fn(True)
            compile_s[name] += time.perf_counter() - start
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for mode in modes:
            rates.setdefault(("ours", mode), []).append(
                gen_rate(lambda m=mode: ours_tokens(m == "compiled"), args.new_tokens, device)
            )
            rates.setdefault(("transformers", mode), []).append(
                gen_rate(lambda m=mode: theirs_tokens(m == "compiled"), args.new_tokens, device)
            )
            if mode == "eager":
                rates.setdefault(("transformers", "static"), []).append(
                    gen_rate(lambda: theirs_tokens(False, static=True), args.new_tokens, device)
                )
    precision = str(dtype).split(".")[-1]
    print(f"generate batch 1 ({precision}, {args.prompt_len}+{args.new_tokens} tokens, greedy):")
    caches = {
        ("ours", "eager"): "preallocated cache, flat decode step",
        ("transformers", "eager"): "dynamic cache",
        ("transformers", "static"): "static cache, eager",
        ("ours", "compiled"): f"preallocated cache, compile {compile_s['ours']:.0f} s once, not counted",
        ("transformers", "compiled"): (
            f"static cache + CompileConfig, compile {compile_s['transformers']:.0f} s once, not counted"
        ),
    }
    for mode in modes:
        a, b = rates[("ours", mode)], rates[("transformers", mode)]
        for side, r in (("ours", a), ("transformers", b)):
            print(
                f"  {side:<12} {mode:<8} ({caches[(side, mode)]}): "
                f"{statistics.median(r):8,.0f} tok/s median, {max(r):8,.0f} best"
            )
        if mode == "eager":
            c = rates[("transformers", "static")]
            print(
                f"  {'transformers':<12} {mode:<8} ({caches[('transformers', 'static')]}): "
                f"{statistics.median(c):8,.0f} tok/s median, {max(c):8,.0f} best"
            )
        ma, mb = statistics.median(a), statistics.median(b)
        spread = ""
        if len(a) > 1:  # the same round's two runs, side by side: how much the machine moved
            per_round = sorted(x / y for x, y in zip(a, b, strict=True))
            spread = f", rounds {per_round[0]:.2f}-{per_round[-1]:.2f}x"
        print(
            f"  ratio {mode} ours / {mode} transformers: {ma / mb:.2f}x median, {max(a) / max(b):.2f}x best"
            f"{spread} (target >= 1.5x)"
        )
        if mode == "eager":
            mc = statistics.median(c)
            print(
                f"  ratio eager ours / eager transformers static cache: {ma / mc:.2f}x median, "
                f"{max(a) / max(c):.2f}x best"
            )


if __name__ == "__main__":
    main()
