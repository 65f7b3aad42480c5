"""How long from "open chat" to the first token? The inference worker, end to end, on a CPU.

A model of the ``tiny`` preset (random weights, a byte-level BPE trained on the embedded corpus) is
saved as one of our checkpoints. Each round spawns a fresh worker (``WorkerClient.spawn``, the
console's and ``canvas generate``'s way), loads the checkpoint and asks for a greedy answer; it
reports, as medians over ``--repeats`` rounds:

- spawn → ready: process start, ``import torch``, tokenizer and weights;
- generate → first delta: the prompt's prefill and the first decode step, through the pipes;
- spawn → first token: the sum, what a user waits (goal: "within a couple of seconds" on a CPU);
- tokens/s through the worker against the engine's own ``stream`` in this process on the same
  model, prompt and length, one in-process run after each round (the protocol, incremental
  decoding and the pipes must cost little).

Run:

    .venv/bin/python bench/bench_chat.py
    .venv/bin/python bench/bench_chat.py --tiny     # smoke mode (what the tests run)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import Sizes, fail, machine_line, random_checkpoint

PROMPT = "The standard library module"


def build(folder: Path, vocab: int, dim: int, layers: int) -> Path:
    """Our checkpoint folder with a tokenizer beside the weights."""
    return random_checkpoint(folder, vocab=vocab, dim=dim, layers=layers)[0]


class Direct:
    """The engine's own generator in this process on the same checkpoint and prompt: the bar."""

    def __init__(self, ckpt: Path) -> None:
        from engine.model import load_model
        from engine.serve.session import _OurTokenizer

        self.model = load_model(ckpt)
        tok = _OurTokenizer.load(ckpt)
        assert tok is not None
        self.ids = tok(PROMPT)["input_ids"]

    def rate(self, tokens: int) -> float:
        """Tokens/s after the first token (as the worker counts), for ``tokens`` new tokens."""
        from engine.model import SamplingParams, stream

        params = SamplingParams(max_new_tokens=max(tokens, 2), temperature=0)
        first = None
        n = 0
        for _step in stream(self.model, [self.ids], params):
            n += 1
            if first is None:
                first = time.perf_counter()
        assert first is not None
        return (n - 1) / (time.perf_counter() - first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = Sizes(parser)
    sizes.add("--repeats", 5, 1, "rounds (a fresh worker each)", type=int)
    sizes.add("--tokens", 200, 16, "new tokens per answer", type=int)
    sizes.add("--dim", 256, 64, "model width (the tiny preset is 256)", type=int)
    sizes.add("--layers", 6, 2, "layers", type=int)
    sizes.add("--vocab", 4096, 512, "vocabulary", type=int)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, in the worker and in this process alike (default 1: on a shared 2-core "
        "machine a second OpenMP thread mostly spins)",
    )
    args = sizes.resolve(parser.parse_args())
    import torch

    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(machine_line("cpu"), flush=True)

    from engine.serve.client import WorkerClient

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build(Path(tmp), args.vocab, args.dim, args.layers)
        direct = Direct(ckpt)
        direct_rates: list[float] = []
        spawn_ready, to_first, totals, rates, new_tokens = [], [], [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            client = WorkerClient.spawn(env=env, log_path=Path(tmp) / "worker.log")
            try:
                ready = client.load(str(ckpt), device="cpu", timeout=120)
                loaded = time.perf_counter()
                stream = client.generate(prompt=PROMPT, max_new_tokens=args.tokens, temperature=0)
                first = None
                for _delta in stream:
                    if first is None:
                        first = time.perf_counter()
                done = stream.done
            finally:
                client.close()
            if first is None or done is None or done.new_tokens < 1:
                fail(f"no token came from the worker: {done}")
            spawn_ready.append(loaded - started)
            to_first.append(first - loaded)
            totals.append(first - started)
            if done.tokens_per_s:
                rates.append(done.tokens_per_s)
            new_tokens.append(done.new_tokens)
            direct_rates.append(direct.rate(done.new_tokens))  # interleaved: the same machine load
        if len(set(new_tokens)) != 1:
            fail(f"greedy answers of different lengths across rounds: {new_tokens}")

    print(
        f"model: {ready.params:,} parameters ({args.layers} layers, dim {args.dim}, vocab {args.vocab}), "
        f"{new_tokens[0]} new tokens (of at most {args.tokens}), greedy, CPU, {args.repeats} rounds (medians)"
    )
    print(f"  spawn -> ready                {statistics.median(spawn_ready):8.3f} s")
    print(f"  generate -> first delta       {statistics.median(to_first):8.3f} s")
    print(f"  spawn -> first token          {statistics.median(totals):8.3f} s   (goal: < 2 s)")
    through = statistics.median(rates) if rates else float("nan")
    print(f"  tokens/s through the worker   {through:8.1f}")
    bar = statistics.median(direct_rates)
    print(f"  tokens/s, engine in process   {bar:8.1f}")
    print(f"  worker / in process           {through / bar:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
