"""Does telemetry slow training? The tiny model's step time with and without a running sampler.

The tiny preset (batch 8 x 256, AdamW, bf16 autocast where the hardware has it, else fp32; the
same settings in both conditions) trains in this one process. Rounds alternate the two conditions
(off/on, then on/off, …) so machine noise hits both alike; each "on" phase runs a
:class:`engine.telemetry.TelemetrySampler` with GPU, system and CodeCarbon all on at ``--interval``
seconds, writing into a real run directory. The
sampler starts before the phase and the phase is timed from its first ``carbon`` event, so the
one-off CodeCarbon start-up (~1.5 s on one thread, once a run) is reported apart. The median step
time of each condition and their ratio are printed. Run:

    .venv/bin/python bench/bench_telemetry.py                    # CPU
    .venv/bin/python bench/bench_telemetry.py --device cuda      # GPU
    .venv/bin/python bench/bench_telemetry.py --no-bf16          # as on a machine without bf16
    .venv/bin/python bench/bench_telemetry.py --tiny             # smoke mode (what the tests run)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from benchlib import Sizes, add_no_bf16_flag, has_bf16, machine_line, simulate_no_bf16

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import get_preset
from engine.model import CausalLM
from engine.runs import EventReader, RunKind, create_run, run_context
from engine.telemetry import TelemetrySampler


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_step(device: str, precision: str, batch: int, seq_len: int):
    torch.manual_seed(0)
    preset = get_preset("tiny")
    model = CausalLM(preset.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), fused=device == "cuda")
    x = torch.randint(0, preset.model.vocab_size, (batch, seq_len), device=device)
    y = torch.roll(x, -1, dims=1)
    autocast = (
        torch.autocast(device_type=device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )

    def step() -> float:
        sync(device)
        start = time.perf_counter()
        with autocast:
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        return time.perf_counter() - start

    return step, model.num_params()


def timed(step, steps: int) -> list[float]:
    return [step() for _ in range(steps)]


def sampler_cpu_cost(session, interval: float, seconds: float, settle: float = 2.5) -> float:
    """CPU seconds per wall second that the sampler (and CodeCarbon's threads) use while the main
    thread sleeps: the most it can take from training, measured without the noise of step times."""
    with TelemetrySampler(session, interval=interval, country="GBR", output_dir=session.run.path):
        time.sleep(settle)  # past CodeCarbon's start-up
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        return (time.process_time() - cpu) / (time.perf_counter() - wall)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sizes = Sizes(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    sizes.add("--rounds", 8, 1, "paired rounds", type=int)
    sizes.add("--steps", 10, 2, "timed steps per phase", type=int)
    sizes.add("--interval", 1.0, 0.2, "telemetry interval in seconds", type=float)
    sizes.add("--batch", 8, 2, "batch", type=int)
    sizes.add("--seq-len", 256, 32, "sequence length", type=int)
    sizes.add("--cost-seconds", 10.0, 1.0, "window for the sampler's own CPU use", type=float)
    add_no_bf16_flag(p)
    args = sizes.resolve(p.parse_args())
    if args.no_bf16:
        simulate_no_bf16()
    device = args.device
    precision = "bf16" if has_bf16(device) else "fp32"
    step, params = make_step(device, precision, args.batch, args.seq_len)
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
    home = tempfile.mkdtemp(prefix="bench-telemetry-")
    run = create_run(RunKind.PRETRAIN, "bench-telemetry", {}, root=Path(home) / "runs")
    print(machine_line(device))
    print(
        f"tiny model ({params:,} parameters), batch {args.batch} x {args.seq_len}, {precision} on {device}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs; sampler interval "
        f"{args.interval} s, GPU + system + CodeCarbon on; load average {os.getloadavg()[0]:.2f}"
    )
    timed(step, min(5, args.steps))  # warm-up
    off: list[float] = []
    on: list[float] = []
    startups: list[float] = []
    ratios: list[float] = []
    with run_context(run.path, install_signals=False, exit_on_error=False) as session:
        cost = sampler_cpu_cost(
            session, args.interval, args.cost_seconds, settle=2.5 if not args.tiny else 0.5
        )
        for r in range(args.rounds):
            medians = {}
            for condition in ("off", "on") if r % 2 == 0 else ("on", "off"):
                if condition == "off":
                    times = timed(step, args.steps)
                    off += times
                    medians["off"] = statistics.median(times)
                    continue
                reader = EventReader(run.events_path, run.events_path.stat().st_size)
                began = time.perf_counter()
                with TelemetrySampler(
                    session, interval=args.interval, country="GBR", output_dir=session.run.path
                ):
                    while not any(e.type == "carbon" for e in reader.read_events()):
                        step()  # keep training while CodeCarbon starts, as a real run does
                    startups.append(time.perf_counter() - began)
                    times = timed(step, args.steps)
                on += times
                medians["on"] = statistics.median(times)
            ratios.append(medians["on"] / medians["off"])
            print(
                f"round {r + 1}: off {medians['off'] * 1e3:.1f} ms, on {medians['on'] * 1e3:.1f} ms, "
                f"ratio {ratios[-1]:.3f}",
                flush=True,
            )
    counts: dict[str, int] = {}
    for e in EventReader(run.events_path).read_events():
        counts[e.type] = counts.get(e.type, 0) + 1
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(f"step time without sampler: median {m_off * 1e3:.1f} ms ({len(off)} steps)")
    print(f"step time with sampler:    median {m_on * 1e3:.1f} ms ({len(on)} steps)")
    print(
        f"ratio with/without: {m_on / m_off:.3f} (medians of all steps), "
        f"{statistics.median(ratios):.3f} (median of the paired rounds)"
    )
    print(
        f"sampler's own CPU use, main thread idle: {cost * 1e3:.2f} ms per second "
        f"({cost * 100:.3f}% of one core)"
    )
    print(
        f"sampler start to first carbon event: median {statistics.median(startups):.2f} s "
        f"(training continued meanwhile)"
    )
    print("events written: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes' load makes step times noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
