"""``canvas info``: what this machine offers, where runs live, and the presets' true sizes."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

from canvas_tui import __version__
from engine import locations, sysinfo
from engine.config.presets import PRESETS
from engine.telemetry import availability
from engine.telemetry.gpus import list_gpus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show versions, accelerators, telemetry and where runs are stored",
        description="Show what this machine offers for training, without importing "
        "torch unless --probe is given.",
    )
    p.add_argument(
        "--presets",
        action="store_true",
        help="list the model presets with exact parameter counts and training memory",
    )
    p.add_argument(
        "--probe", action="store_true", help="also import torch and ask it directly (slower, ~2 s)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def preset_rows() -> list[dict[str, Any]]:
    rows = []
    for p in PRESETS.values():
        m = p.model
        mem = m.training_memory_bytes(p.micro_batch, p.seq_len)
        rows.append(
            {
                "name": p.name,
                "params": m.num_params(),
                "non_embedding_params": m.num_params(False),
                "layers": m.n_layers,
                "dim": m.dim,
                "heads": m.n_heads,
                "kv_heads": m.n_kv_heads,
                "ffn_dim": m.ffn_dim,
                "vocab": m.vocab_size,
                "context": m.max_seq_len,
                "micro_batch": p.micro_batch,
                "train_memory_bytes": mem["total"],
                "train_memory": mem,
                "summary": p.summary,
            }
        )
    return rows


def machine_report(probe: bool) -> dict[str, Any]:
    gpus, gpu_reason = list_gpus()
    report: dict[str, Any] = {
        "canvas": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "torch": sysinfo.torch_build(),
        "mps": "possible (macOS arm64)" if sysinfo.mps_possible() else "not available (not macOS arm64)",
        "gpus": [g.__dict__ for g in gpus],
        "gpu_reason": gpu_reason,
        "cpu": sysinfo.cpu_info(),
        "bitsandbytes": sysinfo.bitsandbytes_status(),
        "codecarbon": sysinfo.codecarbon_status(),
        "telemetry": availability((gpus, gpu_reason)),
        "libraries": {name: sysinfo.package_version(name) for name in sysinfo.LIBRARIES},
        "home_override": os.environ.get(locations.HOME_ENV) or None,
        "runs_dir": str(locations.runs_dir()),
        "cache_dir": str(locations.cache_dir()),
        "config_dir": str(locations.config_dir()),
    }
    if probe:
        report["probe"] = sysinfo.probe_torch()
    return report


def _print_machine(r: dict[str, Any]) -> None:
    print(f"Neural Canvas {r['canvas']}  (Python {r['python']}, {r['platform']})")
    print(f"  torch         {r['torch']['summary']}")
    if r["gpus"]:
        for g in r["gpus"]:
            print(
                f"  GPU {g['index']}         {g['name']}, {g['memory_total_mib'] / 1024:.0f} GiB, "
                f"driver {g['driver']}"
            )
        if r["gpu_reason"]:
            print(f"  note          {r['gpu_reason']}")
    else:
        print(f"  GPUs          none: {r['gpu_reason']}")
    print(f"  MPS           {r['mps']}")
    cpu = r["cpu"]
    print(f"  CPU           {cpu['model']}, {cpu['cores']} cores; CPU training precision: {cpu['precision']}")
    print(f"  bitsandbytes  {r['bitsandbytes']}")
    print(f"  CodeCarbon    {r['codecarbon']}")
    tel = r["telemetry"]
    print(f"  telemetry     GPU: {tel['gpu']['summary']}")
    print(f"                system: {tel['system']['summary']}")
    print(f"                emissions: {tel['emissions']['summary']}")
    libs = ", ".join(f"{k} {v}" for k, v in r["libraries"].items() if k != "torch" and v)
    print(f"  libraries     {libs}")
    src = f" (from {locations.HOME_ENV}={r['home_override']})" if r["home_override"] else ""
    print(f"  runs          {r['runs_dir']}{src}")
    print(f"  cache         {r['cache_dir']}")
    print(f"  settings      {r['config_dir']}")
    if "probe" in r:
        p = r["probe"]
        print(
            f"  probe         torch.cuda.is_available() = {p['cuda_available']}, "
            f"mps = {p['mps_available']}, threads = {p['threads']}"
        )
        for d in p["cuda_devices"]:
            print(
                f"                {d['name']} ({d['memory_gib']} GiB, sm {d['capability']}, bf16 {d['bf16']})"
            )


def _print_presets(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'preset':<10} {'parameters':>15} {'non-embed':>13} {'layers':>6} {'dim':>5} {'heads':>5} "
        f"{'kv':>3} {'ffn':>5} {'vocab':>6} {'ctx':>5} {'train mem (bf16)':>22}"
    )
    for r in rows:
        mem = f"{_gib(r['train_memory_bytes'])} @ batch {r['micro_batch']}"
        print(
            f"{r['name']:<10} {r['params']:>15,} {r['non_embedding_params']:>13,} {r['layers']:>6} "
            f"{r['dim']:>5} {r['heads']:>5} {r['kv_heads']:>3} {r['ffn_dim']:>5} {r['vocab']:>6} "
            f"{r['context']:>5} {mem:>22}"
        )
    print()
    for r in rows:
        print(f"{r['name']}: {r['summary']}")
    print(
        "\nMemory: AdamW with fp32 weights, gradients and moments (16 bytes a parameter) plus "
        "activations under bf16 autocast with flash attention; an estimate, not a promise."
    )


def run(args: argparse.Namespace) -> int:
    if args.presets:
        rows = preset_rows()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            _print_presets(rows)
        return 0
    report = machine_report(args.probe)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_machine(report)
    return 0
