"""Every benchmark in bench/ runs, at tiny sizes for a step or two, so none can rot.

Each runs as its users run it (``python bench/x.py --tiny``, in a subprocess) and the test reads
what it printed: the figures and ratios are positive finite numbers, the like-for-like rows are
there with the settings they claim, and the generation benchmark's same-tokens check passed.
``--no-bf16`` runs take the path of a machine without bf16 (fp32 recipe), which crashed
``bench_train.py`` once (two rows got the same name). The compiled rows compile (tens of seconds
cold on a CPU), so they run with a torch.compile cache shared between test sessions.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RATIO = r"(\d+\.\d+)x"


def run_bench(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    """Run ``bench/<script>`` with ``args``; return its stdout, failing the test on a non-zero exit."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    full_env.pop("CANVAS_BENCH_NO_BF16", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{script} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def number(pattern: str, text: str) -> float:
    """The number captured by ``pattern`` in ``text``, which must be positive and finite."""
    m = re.search(pattern, text, re.MULTILINE)
    assert m, f"no line matching {pattern!r} in:\n{text}"
    value = float(m.group(1).replace(",", ""))
    assert math.isfinite(value) and value > 0, f"{pattern!r} gave {value}"
    return value


def load_bench_module(name: str):
    """Import ``bench/<name>.py`` as the scripts see their siblings (bench/ on sys.path)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ benchlib, in process
def test_sizes_take_tiny_defaults_full_defaults_and_explicit_values():
    import argparse

    benchlib = load_bench_module("benchlib")

    def parse(*argv: str) -> argparse.Namespace:
        ap = argparse.ArgumentParser()
        sizes = benchlib.Sizes(ap)
        sizes.add("--batch", 8, 2, "batch", type=int)
        sizes.add("--compile", True, False, "compile", action=argparse.BooleanOptionalAction)
        return sizes.resolve(ap.parse_args(list(argv)))

    full, tiny, mixed = parse(), parse("--tiny"), parse("--tiny", "--batch", "5", "--compile")
    assert (full.batch, full.compile) == (8, True)
    assert (tiny.batch, tiny.compile) == (2, False)
    assert (mixed.batch, mixed.compile) == (5, True)


def test_simulate_no_bf16_sends_the_engines_own_detection_down_the_fp32_path(monkeypatch):
    import torch

    from engine import sysinfo
    from engine.train import precision

    # Registered first, so that monkeypatch puts the real probes back after the test.
    monkeypatch.setattr(sysinfo, "cpu_info", sysinfo.cpu_info)
    monkeypatch.setattr(precision, "cpu_info", precision.cpu_info)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", torch.cuda.is_bf16_supported)
    benchlib = load_bench_module("benchlib")
    benchlib.simulate_no_bf16()
    chosen = precision.choose_precision("auto", torch.device("cpu"))
    assert chosen.name == "fp32"
    assert "no bf16" in chosen.reason
    assert not benchlib.has_bf16("cpu") and not benchlib.has_bf16("cuda")


def test_a_token_mismatch_fails_the_generation_benchmark(capsys):
    bench_model = load_bench_module("bench_model")
    bench_model.check_same_tokens("ours eager", [5, 6, 7], [5, 6, 7])  # equal: passes silently
    with pytest.raises(SystemExit) as exc:
        bench_model.check_same_tokens("ours eager", [5, 6, 9, 1], [5, 6, 7, 1])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert (
        "BENCHMARK FAILED" in err and "first difference at new token 2 of 4 (ours 9, transformers 7)" in err
    )
    with pytest.raises(SystemExit):  # a shorter output is a difference too
        bench_model.check_same_tokens("ours eager", [5, 6], [5, 6, 7])


# ------------------------------------------------------------------------------ each benchmark, tiny
@pytest.mark.slow
@pytest.mark.parametrize("no_bf16", [False, True], ids=["detected", "no-bf16"])
def test_bench_model_tiny(no_bf16):
    out = run_bench("bench_model.py", "--tiny", env={"CANVAS_BENCH_NO_BF16": "1"} if no_bf16 else None)
    assert "same tokens as transformers' eager generate (fp32, greedy, 8 new tokens): yes (ours eager)" in out
    number(rf"^train fp32 \(both: AdamW, eager\): .* ratio {RATIO} median", out)
    has_bf16_row = re.search(r"^train bf16 ", out, re.MULTILINE) is not None
    cpu_bf16 = load_bench_module("benchlib").has_bf16("cpu")
    assert has_bf16_row == (cpu_bf16 and not no_bf16)
    number(rf"^  ratio eager ours / eager transformers: {RATIO} median", out)
    assert "compiled" not in out.split("generate batch 1")[1]  # --tiny keeps torch.compile out


@pytest.mark.slow
@pytest.mark.parametrize("no_bf16", [False, True], ids=["detected", "no-bf16"])
def test_bench_train_tiny_rows_are_like_with_like(no_bf16):
    args = ["--tiny", "--no-bf16"] if no_bf16 else ["--tiny"]
    out = run_bench("bench_train.py", *args)
    recipe = re.search(r"recipe precision (\w+)", out).group(1)
    if no_bf16:
        assert recipe == "fp32"
    row_re = r"^  (ours|transformers) +(\w+) +(AdamW.*?) +(eager|compiled) +([\d,]+)  (.+)$"
    rows = re.findall(row_re, out, re.MULTILINE)
    by_role = {role.strip(): row for row in rows for role in row[5].split("  (")[0].split(",")}
    assert set(by_role) == {"baseline", "recipe", "ours eager", "transformers eager"}, out
    assert by_role["baseline"][:4] == ("transformers", "fp32", "AdamW, one group, unfused", "eager")
    # The like-for-like pair differs in the side only: same precision, optimizer and compile.
    ours, theirs = by_role["ours eager"], by_role["transformers eager"]
    assert ours[1:4] == theirs[1:4] == (recipe, "AdamW, decay groups", "eager")
    assert by_role["baseline"] != theirs  # the fp32 recipe no longer collapses two rows into one
    for row in rows:
        assert int(row[4].replace(",", "")) > 0
    number(rf"^ratio ours default recipe / transformers plain fp32 eager loop: {RATIO}", out)
    number(rf"^ratio like with like, {recipe} eager, same optimizer: {RATIO}", out)


@pytest.mark.slow
def test_bench_finetune_tiny_without_bf16():
    out = run_bench("bench_finetune.py", "--tiny", "--no-bf16")
    assert "fp32 compute on cpu" in out
    number(r"^ours: ([\d,]+) tok/s", out)
    number(rf"^transformers \+ peft recipe: [\d,]+ tok/s -> ratio {RATIO}", out)


@pytest.mark.slow
def test_bench_telemetry_tiny():
    out = run_bench("bench_telemetry.py", "--tiny", "--no-bf16")
    assert ", fp32 on cpu," in out
    number(r"^round 1: .* ratio (\d+\.\d+)$", out)
    number(r"^ratio with/without: (\d+\.\d+) \(medians", out)
    events = dict(
        re.findall(r"(\w+) (\d+)", re.search(r"^events written: (.*)$", out, re.MULTILINE).group(1))
    )
    assert int(events.get("carbon", 0)) >= 1 and int(events.get("system", 0)) >= 1


@pytest.mark.slow
def test_bench_console_tiny():
    out = run_bench("bench_console.py", "--tiny")
    number(r"^\(a\) following a run .*\((\d+) new metric points\)", out)
    cpu = re.search(r"console CPU (\d+\.\d+)% of one core", out)
    assert cpu and math.isfinite(float(cpu.group(1))), out
    number(r"^\(b\) first paint with data: median (\d+\.\d+) s over 1", out)
    assert "(b) history: 2,000 metric events" in out
    number(r"^\(c\) first paint, empty store: (\d+\.\d+) CPU-s from process start", out)
    number(r"^\(d\) first console: 4 rows after (\d+\.\d+) CPU-s", out)
    idle = re.findall(r"idle (?:empty runs list )?(\d+\.\d+)% of one core", out)
    assert len(idle) == 2 and all(math.isfinite(float(v)) for v in idle), out
    number(r"^\(f\) a keystroke in the New run form \(5 keys\): main-thread CPU median (\d+\.\d+) ms", out)


@pytest.mark.slow
def test_bench_tokenize_tiny():
    out = run_bench("bench_tokenize.py", "--tiny")
    assert "at vocab 512" in out
    number(rf"^  ours, text -> uint16 shard .* ratio {RATIO} of the bar", out)
    number(r"^  HF tokenizers encode_batch \(bar\) +(\d+\.\d+) MB/s", out)


@pytest.mark.slow
def test_bench_eval_tiny():
    out = run_bench("bench_eval.py", "--tiny")
    assert "same log-likelihoods: yes" in out and "window 32, batch 2" in out
    number(r"^ours \(InferenceSession, engine.model\) +([\d,]+) tok/s", out)
    number(r"^transformers LlamaForCausalLM \(export\) +([\d,]+) tok/s", out)
    number(rf"^ratio ours / transformers: {RATIO} median", out)
    number(
        rf"^per CPU-second: ours [\d,]+ tok/CPU-s, transformers [\d,]+ tok/CPU-s; ratio {RATIO} median", out
    )


# ------------------------------------------------------------------------------ the compiled rows
@pytest.fixture(scope="session")
def inductor_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A torch.compile cache kept beside pytest's numbered temporary folders, so only the first
    session on a machine pays the cold compiles (~1 minute on 2 CPU cores; seconds afterwards)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return {}  # the caller chose one
    cache = tmp_path_factory.getbasetemp().parent / "canvas-bench-inductor-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return {"TORCHINDUCTOR_CACHE_DIR": str(cache)}


@pytest.mark.slow
def test_bench_model_compiled_generation_rows(inductor_cache):
    out = run_bench(
        "bench_model.py", "--tiny", "--compile", "--precision", "fp32", env=inductor_cache, timeout=280
    )
    assert "yes (ours eager, ours compiled, transformers compiled)" in out
    assert "transformers compiled (static cache + CompileConfig" in out
    number(rf"^  ratio compiled ours / compiled transformers: {RATIO} median", out)
    number(rf"^  ratio eager ours / eager transformers: {RATIO} median", out)


@pytest.mark.slow
def test_bench_train_compiled_rows_compile_both_sides(inductor_cache):
    out = run_bench("bench_train.py", "--tiny", "--compile", env=inductor_cache, timeout=280)
    recipe = re.search(r"recipe precision (\w+)", out).group(1)
    compiled = re.findall(
        rf"^  (ours|transformers) +{recipe} +AdamW, decay groups +compiled ", out, re.MULTILINE
    )
    assert sorted(compiled) == ["ours", "transformers"], out
    number(rf"^ratio like with like, {recipe} compiled, same optimizer: {RATIO}", out)


@pytest.mark.slow
def test_bench_chat_tiny():
    out = run_bench("bench_chat.py", "--tiny")
    assert "1 rounds" in out
    number(r"^  spawn -> first token +(\d+\.\d+) s", out)
    number(r"^  tokens/s through the worker +(\d+\.\d+)", out)
    number(rf"^  worker / in process +{RATIO}", out)


@pytest.mark.slow
def test_bench_serve_tiny():
    out = run_bench("bench_serve.py", "--tiny")
    assert "same text all three ways (greedy, 16 new tokens): yes" in out
    number(r"^direct \(session.generate, in process\) +([\d,]+\.\d) tok/s median", out)
    number(rf"^HTTP /v1/completions +[\d,]+\.\d tok/s median .* ratio {RATIO} median of rounds", out)
    number(rf"^HTTP /v1/completions, stream +[\d,]+\.\d tok/s median .* ratio {RATIO} median of rounds", out)
    assert re.search(r"^HTTP cost: -?\d+\.\d% at worst .* (within|over) the 5% goal$", out, re.MULTILINE), out
    assert re.search(r"^serve run \S+: stopped$", out, re.MULTILINE), out  # the server was stopped, not left
