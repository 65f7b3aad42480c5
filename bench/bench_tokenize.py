"""Tokenization throughput: our text → token-shard pipeline against the HF batch encoder.

    .venv/bin/python bench/bench_tokenize.py [--vocab-size 4096] [--repeats 5]
    .venv/bin/python bench/bench_tokenize.py --tiny     # smoke mode (what the tests run)

Both sides encode the embedded corpus (~2.5 MB) with the same byte-level BPE:

* **bar**: ``tokenizers.Tokenizer.encode_batch`` on the list of documents, ids pulled out
  (Rust threads on every core, nothing written);
* **ours**: the packing step ``prepare`` runs after training the tokenizer: ``datasets.map``
  (batched) over the Arrow table, EOS after each document, the flat ``uint16`` file written.

MB/s is UTF-8 text bytes in (10^6) per wall second, best of ``--repeats``. Runs in a temporary
``CANVAS_HOME`` so it leaves no cache behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import Sizes

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = Sizes(parser)
    sizes.add("--vocab-size", 4096, 512, "BPE vocabulary", type=int)
    sizes.add("--repeats", 5, 1, "timed repeats (best kept)", type=int)
    args = sizes.resolve(parser.parse_args())

    with tempfile.TemporaryDirectory() as home:
        os.environ["CANVAS_HOME"] = home
        from engine.data import embedded, packing
        from engine.data.progress import StageTimer, ignore_progress
        from engine.data.sources import SourceCheck, load_source
        from engine.data.spec import parse_spec
        from engine.data.tokenizer import TokenizerConfig, load_tokenizer, tokenizer_info

        started = time.perf_counter()
        prepared = packing.prepare("embedded", TokenizerConfig(vocab_size=args.vocab_size), val_fraction=0.0)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        packing.prepare("embedded", TokenizerConfig(vocab_size=args.vocab_size), val_fraction=0.0)
        warm = time.perf_counter() - started

        docs = embedded.documents()
        mb = sum(len(d.encode()) for d in docs) / 1e6
        tok = load_tokenizer(prepared.tokenizer_dir)
        info = tokenizer_info(prepared.tokenizer_dir)
        work = Path(home) / "bench"
        work.mkdir()
        ds = load_source(SourceCheck(source=parse_spec("embedded").sources[0]), work)

        def bar() -> None:
            [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]

        def ours(num_proc: int | None) -> None:
            timer = StageTimer("tokenize", ignore_progress, bytes_total=int(mb * 1e6))
            packing.tokenize_split(
                ds, info, "uint16", work / "train.bin", work, num_proc, timer, packing.TokenCount()
            )

        bar()  # warm both paths (thread pools, imports) before timing
        ours(None)
        t_bar = best_of(args.repeats, bar)
        t_ours = best_of(args.repeats, lambda: ours(None))
        t_ours2 = best_of(max(1, args.repeats // 2), lambda: ours(2))
        tokens = (work / "train.bin").stat().st_size // 2

    print(
        f"embedded corpus: {len(docs)} documents, {mb:.2f} MB, {tokens:,} tokens at vocab {info.vocab_size}; "
        f"{os.cpu_count()} CPU(s)"
    )
    print(f"  HF tokenizers encode_batch (bar)     {mb / t_bar:7.2f} MB/s  ({t_bar * 1000:.0f} ms)")
    print(
        f"  ours, text -> uint16 shard           {mb / t_ours:7.2f} MB/s  ({t_ours * 1000:.0f} ms)  "
        f"ratio {t_bar / t_ours:.2f}x of the bar"
    )
    print(
        f"  ours, datasets.map num_proc=2        {mb / t_ours2:7.2f} MB/s  ({t_ours2 * 1000:.0f} ms)  "
        f"ratio {t_bar / t_ours2:.2f}x of the bar"
    )
    print(f"  full prepare (load + train BPE + pack): {cold:.2f} s cold, {warm * 1000:.1f} ms cached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
