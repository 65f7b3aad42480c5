"""What `canvas serve`'s HTTP layer costs: tokens/s through a real serve run against direct generation.

One model folder (a Llama saved by ``save_pretrained`` with a trained tokenizer; or ``--model``
for any model `canvas serve` takes) is served by a real ``serve`` run, started exactly as
``canvas serve`` starts one (:func:`engine.serve.launch.start`: a detached engine process, uvicorn,
port chosen by the engine). The same model is loaded in this process through the same
:class:`~engine.serve.session.InferenceSession` with the same settings. Then, interleaved round by
round so machine noise hits all alike, the same greedy completion (same prompt, same number of new
tokens) is timed three ways, each wall clock from the request to the last token:

* direct: ``session.generate`` in this process;
* HTTP: ``POST /v1/completions`` to the serve run, the whole answer at once;
* HTTP stream: the same with ``stream: true``, every server-sent event read and parsed.

The answers must be the same text (greedy) or the benchmark fails: a speed on different output is
no figure. Only one side generates at a time (the idle server polls a flag every 0.1 s), so the two
processes do not compete for the cores. Printed: tokens/s for each (median and best round), and
the HTTP / direct ratio of each round (back to back, so load that drifts between rounds cancels),
their median, and the fixed latency a one-token request adds. The issue's goal is that HTTP costs
< 5% (ratio >= 0.95). The serve run's own ``request`` events also give its generation rate inside
the server.

    .venv/bin/python bench/bench_serve.py            # a small Llama, 128 new tokens, 9 rounds
    .venv/bin/python bench/bench_serve.py --model RUN_OR_FOLDER --device cuda
    .venv/bin/python bench/bench_serve.py --tiny     # smoke mode (what the tests run)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import Sizes, fail, machine_line

PROMPT = "The standard library of Python has a module for"


def build_model(folder: Path, dim: int, layers: int, vocab: int) -> Path:
    """A random-weight Llama with a tokenizer trained on the embedded corpus; the special tokens'
    output rows are zeroed, so greedy decoding never ends early on an end-of-text token."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.data.embedded import documents
    from engine.data.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

    tok_dir = save_tokenizer(
        train_tokenizer([documents()[:400]], TokenizerConfig(vocab_size=vocab)), folder / "tok"
    )
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=dim,
        intermediate_size=dim * 8 // 3 // 32 * 32 or 64,
        num_hidden_layers=layers,
        num_attention_heads=max(1, dim // 64),
        num_key_value_heads=max(1, dim // 128),
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight[:8] = 0.0  # pad, bos, eos, chat markers: never the greedy choice
    out = folder / "model"
    model.save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(tok_dir / name, out / name)
    return out


_CONNECTIONS: dict[int, http.client.HTTPConnection] = {}


def http_completion(port: int, tokens: int, stream: bool, model: str) -> tuple[float, str, int]:
    """(seconds, text, completion tokens) of one completion, over a kept-alive connection as the
    openai client keeps one (its connection pool)."""
    body = json.dumps(
        {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": stream}
        | ({"stream_options": {"include_usage": True}} if stream else {})
    )
    conn = _CONNECTIONS.get(port) or _CONNECTIONS.setdefault(
        port, http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    )
    started = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        fail(f"HTTP {response.status}: {response.read()[:500]!r}")
    if not stream:
        answer = json.loads(response.read())
        elapsed = time.perf_counter() - started
        return elapsed, answer["choices"][0]["text"], answer["usage"]["completion_tokens"]
    parts: list[str] = []
    used = 0
    while True:
        line = response.readline()
        if not line:
            fail("the stream ended without [DONE]")
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            response.read()  # the end of the chunked body, so the connection can be reused
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            used = chunk["usage"]["completion_tokens"]
        for choice in chunk["choices"]:
            parts.append(choice["text"])
    elapsed = time.perf_counter() - started
    return elapsed, "".join(parts), used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sizes = Sizes(ap)
    sizes.add("--tokens", 128, 16, "new tokens per completion", type=int)
    sizes.add("--rounds", 9, 2, "interleaved rounds", type=int)
    sizes.add("--dim", 256, 64, "model width (built model)", type=int)
    sizes.add("--layers", 4, 2, "model layers (built model)", type=int)
    sizes.add("--vocab", 4096, 512, "tokenizer vocabulary (built model)", type=int)
    ap.add_argument("--model", help="serve this run/folder/Hub id instead of a built model")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    args = sizes.resolve(ap.parse_args())

    from engine.runs.control import stop_run, wait_for_end
    from engine.runs.events import Request
    from engine.runs.reader import EventReader
    from engine.runs.status import run_status
    from engine.serve import protocol
    from engine.serve.launch import ServeConfig, start
    from engine.serve.session import InferenceSession

    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    if not args.model:  # a private run store: the serve run and the built model go with workdir
        os.environ["CANVAS_HOME"] = str(workdir / "home")
    model = args.model or str(build_model(workdir, args.dim, args.layers, args.vocab))
    cfg = ServeConfig(model=model, device=args.device, host="127.0.0.1", port=0, model_name="bench")
    run = start(cfg, "bench-serve").run
    session = InferenceSession()
    try:
        ready = session.load(protocol.Load(id="load", model=model, device=args.device))
        deadline = time.monotonic() + 600
        while not run.read_meta().url:
            if not run_status(run).is_live or time.monotonic() > deadline:
                fail(f"the serve run did not start; see {run.log_path}:\n{run.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        url = run.read_meta().url or ""
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        print(machine_line("cuda" if ready.device.startswith("cuda") else "cpu"))
        print(
            f"model: {ready.model} ({ready.params:,} params, {ready.dtype} on {ready.device}); "
            f"{args.tokens} new tokens, greedy, {args.rounds} rounds; server: serve run {run.id} at {url}"
        )

        def direct() -> tuple[float, str, int]:
            started = time.perf_counter()
            done = session.generate(
                protocol.Generate(id="d", prompt=PROMPT, max_new_tokens=args.tokens, temperature=0.0),
                lambda d: None,
            )
            return time.perf_counter() - started, done.text, done.new_tokens

        def direct1() -> float:
            started = time.perf_counter()
            session.generate(
                protocol.Generate(id="d", prompt=PROMPT, max_new_tokens=1, temperature=0.0), lambda d: None
            )
            return time.perf_counter() - started

        ways = {
            "direct (session.generate, in process)": direct,
            "HTTP /v1/completions": lambda: http_completion(port, args.tokens, False, "bench"),
            "HTTP /v1/completions, stream": lambda: http_completion(port, args.tokens, True, "bench"),
        }
        for way in ways.values():  # warm-up: first-call costs (allocations, connection set-up)
            way()
        names = list(ways)
        rates: dict[str, list[float]] = {name: [] for name in names}
        paired: dict[str, list[float]] = {name: [] for name in names[1:]}
        texts: dict[str, str] = {}
        counts: dict[str, int] = {}
        for _ in range(args.rounds):
            for name in names:
                seconds, text, new = ways[name]()
                rates[name].append(new / seconds)
                texts.setdefault(name, text)
                counts.setdefault(name, new)
            for name in names[1:]:  # this round's HTTP rate over this round's direct rate
                paired[name].append(rates[name][-1] / rates[names[0]][-1])
        reference = texts[names[0]]
        for name, text in texts.items():
            if text != reference or counts[name] != counts[names[0]]:
                fail(f"{name} gave other text than direct generation:\n{text!r}\nvs\n{reference!r}")
        print(f"same text all three ways (greedy, {counts[names[0]]} new tokens): yes")
        for name in names:
            values = rates[name]
            line = f"{name:<38} {statistics.median(values):>9,.1f} tok/s median  {max(values):>9,.1f} best"
            if name in paired:
                line += f"  ratio {statistics.median(paired[name]):.3f}x median of rounds"
            print(line)
        worst = min(statistics.median(v) for v in paired.values())
        verdict = "within" if worst >= 0.95 else "over"
        print(
            f"HTTP cost: {100 * (1 - worst):.1f}% at worst (median of per-round ratios) -> {verdict} "
            f"the 5% goal"
        )
        latency = {
            "direct": statistics.median(direct1() for _ in range(args.rounds * 3)),
            "HTTP": statistics.median(
                http_completion(port, 1, False, "bench")[0] for _ in range(args.rounds * 3)
            ),
        }
        print(
            f"one-token request: direct {1000 * latency['direct']:.1f} ms, HTTP "
            f"{1000 * latency['HTTP']:.1f} ms (a fixed {1000 * (latency['HTTP'] - latency['direct']):.1f} "
            "ms per request: two processes woken, parsing, the thread hand-off)"
        )
    finally:
        session.close()
        if run_status(run).is_live:
            stop_run(run)
            wait_for_end(run, 60)
    served = [e for e in EventReader(run.events_path).read_events() if isinstance(e, Request)]
    inside = [
        e.tokens_per_s
        for e in served
        if e.status == 200 and e.tokens_per_s and (e.completion_tokens or 0) > 1
    ]
    if inside:
        print(
            f"server side: {len(served)} requests logged; generation inside the server "
            f"{statistics.median(inside):,.1f} tok/s median (its own timing, from the first token)"
        )
    print(f"serve run {run.id}: {run_status(run).state}")
    if not args.model:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
