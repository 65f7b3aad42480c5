"""One GPU check that measures everything, for the day a GPU is lent: one command, one table, one JSON.

    .venv/bin/python bench/gpu_check.py                    # on one H100/H200: under 8 minutes
    .venv/bin/python bench/gpu_check.py --qlora-layers 8   # a shorter 7B-shaped QLoRA model
    .venv/bin/python bench/gpu_check.py --tiny             # tiny shapes (automatic without CUDA)

Rows (each a number, or ``skipped: <reason>``; a check that fails is an error row and exit 1):

1. ``train``: ``seed-base`` (ours) in bf16 + ``torch.compile`` at sequence 2048: tokens/s and MFU
   (training FLOPs per token, PaLM's 6N + 12·L·d·T, over the GPU's dense bf16 peak; goal > 45%);
2. ``train vs transformers``: ``LlamaForCausalLM`` with the same weights, precision, optimizer
   (AdamW, decay groups, fused) and compile (forward + loss) at the same size; interleaved rounds;
3. ``generate``: our KV-cache ``generate`` against ``transformers``' ``generate`` with its static
   cache (both eager, greedy, batch 1), new tokens per second;
4. ``qlora 7B``: a Llama-2-7B-shaped model (random bf16 weights built in place, no download; the
   layer count reducible with ``--qlora-layers``) fine-tuned with our QLoRA recipe (4-bit NF4,
   double quantisation, LoRA on every projection): peak GPU memory and tokens/s (the QLoRA paper
   puts a 7B model in the ~6 GB class of weights);
5. ``nvml``: the telemetry sampler's first ``gpu`` events, read while (1) trains;
6. ``energy``: CodeCarbon's (offline) energy for the whole check, GPU part separately;
7. ``fp16 + scaler``: the recipe of a GPU without bf16: fp16 autocast with a gradient scaler.

The JSON (``--json``, default ``gpu_check.json``) holds the same rows and the machine line.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from benchlib import machine_line, recipe_step

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.config import get_preset  # noqa: E402
from engine.model import CausalLM, export_hf  # noqa: E402
from engine.train.flops import mfu, peak_flops  # noqa: E402
from engine.train.optim import build_optimizer  # noqa: E402
from engine.train.precision import Precision, choose_precision, enable_fast_matmul  # noqa: E402

NO_CUDA = "skipped: no CUDA"
UTIL = "GPU utilisation (first event)"
TINY_MODEL = {"vocab_size": 512, "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 0}
LR, WEIGHT_DECAY, BETAS = 3e-4, 0.1, (0.9, 0.95)


@dataclass
class Row:
    """One line of the table: a number with its unit, or the reason there is none."""

    check: str
    metric: str
    value: float | None = None
    unit: str = ""
    detail: str = ""
    skipped: str | None = None
    error: str | None = None

    def shown(self) -> str:
        if self.error:
            return f"ERROR: {self.error}"
        if self.skipped:
            return self.skipped
        if self.value is None:
            return "?"
        v = self.value
        text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
        return f"{text} {self.unit}".strip()


class Sink:
    """What the telemetry sampler needs from a run session: ``emit``, ``log`` and ``run.path``."""

    def __init__(self, path: Path) -> None:
        self.events: list[dict[str, Any]] = []
        self.run = type("Run", (), {"path": path})()

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.append({"type": kind, **fields})

    def log(self, message: str, level: str = "info") -> None:
        self.events.append({"type": "log", "message": message, "level": level})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_step(model: torch.nn.Module, loss_fn: Callable, precision: Precision, device: torch.device):
    """One optimizer step of the recipe: autocast, scaler (fp16 only), clipping, fused AdamW on CUDA."""
    return recipe_step(
        model, loss_fn, precision, build_optimizer(model, LR, WEIGHT_DECAY, BETAS, device.type)
    )


def tokens_per_s(step, x, y, steps: int, device: torch.device) -> tuple[float, float]:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    last = float(loss.item())
    sync(device)
    return steps * x.numel() / (time.perf_counter() - start), last


class Check:
    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args = args
        self.device = device
        self.cuda = device.type == "cuda"
        self.rows: list[Row] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        cfg = get_preset("seed-base").model
        if args.tiny:
            cfg = replace(cfg, **TINY_MODEL)
        self.model_cfg = replace(cfg, max_seq_len=max(cfg.max_seq_len, args.seq_len))
        self.precision = choose_precision("bf16" if self.cuda else "auto", device)
        self.compile = self.cuda and not args.no_compile
        self.nvml_events: list[dict[str, Any]] = []

    # -- 1 + 2 + 5: training, ours and transformers, with the sampler running -------------------
    def training(self) -> None:
        a, dev = self.args, self.device
        torch.manual_seed(0)
        ours = CausalLM(self.model_cfg).to(dev).train()
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, self.model_cfg.vocab_size, (a.batch, a.seq_len), generator=g).to(dev)
        y = torch.randint(0, self.model_cfg.vocab_size, (a.batch, a.seq_len), generator=g).to(dev)
        from transformers import AutoModelForCausalLM

        export_hf(ours, str(self.tmp / "hf"))
        theirs = AutoModelForCausalLM.from_pretrained(str(self.tmp / "hf")).to(dev).train()

        def ours_loss(x, y, model=ours):
            return model(x, y)

        def hf_loss(x, y, model=theirs):
            logits = model(input_ids=x).logits
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))

        fns = {"ours": ours_loss, "transformers": hf_loss}
        if self.compile:
            fns = {k: torch.compile(v) for k, v in fns.items()}
        steps = {
            k: train_step(m, fns[k], self.precision, dev)
            for k, m in (("ours", ours), ("transformers", theirs))
        }
        compile_s = {}
        for k, step in steps.items():
            start = time.perf_counter()
            step(x, y)  # warm-up, and the cold compile
            sync(dev)
            compile_s[k] = time.perf_counter() - start
        rates: dict[str, list[float]] = {k: [] for k in steps}
        losses: dict[str, float] = {}
        from engine.telemetry.sampler import TelemetrySampler

        sink = Sink(self.tmp)
        with TelemetrySampler(sink, interval=a.nvml_interval, system=False, carbon=False):
            for _ in range(a.rounds):
                for k, step in steps.items():
                    r, losses[k] = tokens_per_s(step, x, y, a.steps, dev)
                    rates[k].append(r)
        self.nvml_events = [e for e in sink.events if e["type"] == "gpu"]
        mine, theirs_rate = statistics.median(rates["ours"]), statistics.median(rates["transformers"])
        flops = self.model_cfg.flops_per_token(a.seq_len)
        peak = peak_flops(torch.cuda.get_device_name(0)) if self.cuda else None
        use = mfu(flops, mine, peak)
        what = (
            f"{ours.num_params():,} params, batch {a.batch} x {a.seq_len}, {self.precision.name}, "
            f"{'compiled' if self.compile else 'eager'}"
        )
        self.rows.append(Row("train", "ours tokens/s", mine, "tok/s", f"{what}; loss {losses['ours']:.3f}"))
        if use is None:
            reason = (
                NO_CUDA
                if not self.cuda
                else f"skipped: no bf16 peak known for {torch.cuda.get_device_name(0)}"
            )
            self.rows.append(Row("train", "MFU", skipped=reason))
        else:
            self.rows.append(
                Row(
                    "train",
                    "MFU",
                    100 * use,
                    "%",
                    f"{flops / 1e9:.2f} GFLOP/token over {peak / 1e12:.0f} TFLOP/s; goal > 45%",
                )
            )
        compiled = (
            f", cold compile {compile_s['ours']:.0f} s / {compile_s['transformers']:.0f} s"
            if self.compile
            else ""
        )
        self.rows.append(
            Row(
                "train vs transformers",
                "transformers tokens/s",
                theirs_rate,
                "tok/s",
                f"same weights, precision, optimizer{compiled}",
            )
        )
        self.rows.append(
            Row("train vs transformers", "ratio ours / transformers", mine / theirs_rate, "x", "goal >= 1.0x")
        )
        del steps, fns, ours, theirs
        free(dev)

    def nvml(self) -> None:
        real = [e for e in self.nvml_events if e.get("index", -1) >= 0]
        if not real:
            reason = next((e.get("reason") for e in self.nvml_events if e.get("reason")), "")
            self.rows.append(Row("nvml", UTIL, skipped=NO_CUDA if not self.cuda else f"skipped: {reason}"))
            return
        first = real[0]
        shown = "; ".join(
            ", ".join(f"{k}={e.get(k)}" for k in ("index", "util", "mem_used", "power", "temp") if k in e)
            for e in real[:3]
        )
        print(f"nvml: the sampler's first gpu events: {real[:3]}", flush=True)
        util = first.get("util")
        self.rows.append(Row("nvml", UTIL, float(util) if util is not None else None, "%", shown))

    # -- 3: generation -------------------------------------------------------------------------
    def generation(self) -> None:
        a, dev = self.args, self.device
        from transformers import AutoModelForCausalLM

        from engine.model import SamplingParams, generate

        cfg = replace(
            self.model_cfg, max_seq_len=max(self.model_cfg.max_seq_len, a.prompt_len + a.new_tokens)
        )
        torch.manual_seed(0)
        ours = CausalLM(cfg).to(dev).eval()
        export_hf(ours, str(self.tmp / "hf-gen"))
        theirs = AutoModelForCausalLM.from_pretrained(str(self.tmp / "hf-gen")).to(dev).eval()
        if self.cuda:
            ours.to(torch.bfloat16), theirs.to(torch.bfloat16)
        g = torch.Generator().manual_seed(1)
        prompt = torch.randint(0, cfg.vocab_size, (a.prompt_len,), generator=g).tolist()
        params = SamplingParams(max_new_tokens=a.new_tokens, temperature=0)
        ids = torch.tensor([prompt], device=dev)

        def ours_run(model=ours):
            return generate(model, [prompt], params)[0]

        def theirs_run(model=theirs):
            with torch.inference_mode():
                return model.generate(
                    ids,
                    max_new_tokens=a.new_tokens,
                    min_new_tokens=a.new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                    cache_implementation="static",
                    disable_compile=True,
                )

        def rate(fn) -> float:
            sync(dev)
            start = time.perf_counter()
            fn()
            sync(dev)
            return a.new_tokens / (time.perf_counter() - start)

        ours_run(), theirs_run()  # warm-up
        ra, rb = [], []
        for _ in range(a.rounds):
            ra.append(rate(ours_run))
            rb.append(rate(theirs_run))
        ma, mb = statistics.median(ra), statistics.median(rb)
        what = f"batch 1, prompt {a.prompt_len}, {a.new_tokens} new tokens, greedy, eager"
        self.rows.append(Row("generate", "ours new tokens/s", ma, "tok/s", what))
        self.rows.append(Row("generate", "transformers static cache tokens/s", mb, "tok/s", what))
        self.rows.append(
            Row("generate", "ratio ours / transformers", ma / mb, "x", "goal >= 1.5x at batch 1")
        )
        del ours, theirs
        free(dev)

    # -- 4: QLoRA on a 7B-shaped Llama --------------------------------------------------------
    def qlora(self) -> None:
        a, dev = self.args, self.device
        from bench_finetune import save_base

        from engine.config.finetune import load_finetune_config
        from engine.finetune.trainer import FinetuneTrainer

        if a.tiny:
            dim, layers, vocab, ffn, heads, kv = 64, a.qlora_layers, 512, 128, 4, 2
        else:
            dim, layers, vocab, ffn, heads, kv = 4096, a.qlora_layers, 32000, 11008, 32, 32
        base = save_base(self.tmp / "base", dim, layers, vocab, ffn, heads, kv)
        free(dev)
        cfg = load_finetune_config(
            base=str(base),
            data="embedded",
            sets=[
                f"seq_len={a.qlora_seq_len}",
                f"micro_batch={a.qlora_batch}",
                "grad_accum=1",
                "packing=true",
                "max_steps=100000",
                "val_fraction=0",
            ],
        )
        trainer = FinetuneTrainer(cfg, self.tmp / "ft-run", None)
        trainer.setup()
        trainer.train_step()  # warm-up
        sync(dev)
        start = time.perf_counter()
        for _ in range(a.qlora_steps):
            trainer.train_step()
        sync(dev)
        rate = a.qlora_steps * a.qlora_batch * a.qlora_seq_len / (time.perf_counter() - start)
        shape = (
            f"{dim} wide x {layers} layers, vocab {vocab}: {trainer.n_params:,} params, "
            f"{trainer.trainable:,} trainable"
        )
        if self.cuda:
            peak = torch.cuda.max_memory_allocated() / 2**30
            scale = f"; 32 layers would take ~{peak * 32 / layers:.1f} GiB" if layers < 32 else ""
            self.rows.append(
                Row(
                    "qlora 7B",
                    "peak GPU memory",
                    peak,
                    "GiB",
                    f"{shape}{scale}; QLoRA paper: ~6 GB class for 7B",
                )
            )
        else:
            self.rows.append(Row("qlora 7B", "peak GPU memory", skipped=NO_CUDA))
        self.rows.append(
            Row(
                "qlora 7B",
                "tokens/s",
                rate,
                "tok/s",
                f"batch {a.qlora_batch} x {a.qlora_seq_len} packed, {shape}",
            )
        )
        del trainer
        free(dev)

    # -- 7: fp16 + gradient scaler ------------------------------------------------------------
    def fp16(self) -> None:
        a, dev = self.args, self.device
        if not self.cuda:
            self.rows.append(Row("fp16 + scaler", "tokens/s", skipped=NO_CUDA))
            return
        precision = choose_precision("fp16", dev)
        torch.manual_seed(0)
        model = CausalLM(self.model_cfg).to(dev).train()
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, self.model_cfg.vocab_size, (a.batch, a.seq_len), generator=g).to(dev)
        y = torch.randint(0, self.model_cfg.vocab_size, (a.batch, a.seq_len), generator=g).to(dev)
        step = train_step(model, lambda x, y, m=model: m(x, y), precision, dev)
        step(x, y)
        r, loss = tokens_per_s(step, x, y, a.steps, dev)
        scale = step.scaler.get_scale()
        if not (math.isfinite(loss) and scale > 0):
            raise RuntimeError(f"fp16 step gave loss {loss}, scale {scale}")
        self.rows.append(
            Row(
                "fp16 + scaler",
                "tokens/s",
                r,
                "tok/s",
                f"eager, loss {loss:.3f}, loss scale {scale:g} after {a.steps + 1} steps",
            )
        )
        del model, step
        free(dev)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tiny", action="store_true", help="tiny shapes (automatic without CUDA); figures mean nothing"
    )
    ap.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where the JSON goes")
    ap.add_argument("--no-compile", action="store_true", help="train eager (compile is on with CUDA)")
    ap.add_argument("--qlora-layers", type=int, default=None, help="layers of the 7B-shaped model (32)")
    ap.add_argument("--only", default="", help="comma-separated checks to run: train,generate,qlora,fp16")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        args.tiny = True
    tiny = args.tiny
    defaults = {
        "batch": (8, 2),
        "seq_len": (2048, 32),
        "steps": (10, 1),
        "rounds": (3, 1),
        "prompt_len": (128, 8),
        "new_tokens": (256, 8),
        "qlora_layers": (32, 2),
        "qlora_batch": (4, 2),
        "qlora_seq_len": (512, 32),
        "qlora_steps": (5, 1),
        "nvml_interval": (0.5, 0.2),
    }
    for key, (full, small) in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, small if tiny else full)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        enable_fast_matmul()
    began = time.perf_counter()
    from codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(country_iso_code="GBR", save_to_file=False, log_level="error")
    tracker.start()
    check = Check(args, device)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    plan = [
        ("train", check.training),
        ("train", check.nvml),
        ("generate", check.generation),
        ("qlora", check.qlora),
        ("fp16", check.fp16),
    ]
    try:
        for name, fn in plan:
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            try:
                fn()
            except Exception as exc:  # one failed check is reported; the others still run
                traceback.print_exc()
                check.rows.append(Row(name, fn.__name__, error=f"{type(exc).__name__}: {exc}"[:300]))
                free(device)
            print(f"[{name}/{fn.__name__}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(check.tmp, ignore_errors=True)  # the 7B base alone is ~13 GB on disk
    tracker.stop()
    data = tracker.final_emissions_data
    check.rows.append(
        Row(
            "energy",
            "total (CodeCarbon)",
            data.energy_consumed * 1000,
            "Wh",
            f"{data.emissions * 1000:.3f} g CO2eq (GBR)",
        )
    )
    if device.type == "cuda":
        check.rows.append(
            Row("energy", "GPU (CodeCarbon)", data.gpu_energy * 1000, "Wh", "NVML power over the check")
        )
    else:
        check.rows.append(Row("energy", "GPU (CodeCarbon)", skipped=NO_CUDA))
    wall = time.perf_counter() - began
    machine = machine_line(device.type)
    print(machine)
    print(f"gpu_check{' --tiny (figures mean nothing)' if args.tiny else ''}: {wall:.0f} s")
    width = max(len(f"{r.check}: {r.metric}") for r in check.rows)
    for r in check.rows:
        print(f"  {f'{r.check}: {r.metric}':<{width}}  {r.shown():>24}  {r.detail}")
    payload = {"machine": machine, "tiny": args.tiny, "wall_s": wall, "rows": [asdict(r) for r in check.rows]}
    tmp = args.json.with_name(f".{args.json.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, args.json)
    print(f"wrote {args.json}")
    return 1 if any(r.error for r in check.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
