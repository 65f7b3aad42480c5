"""``canvas export``: turn a run's checkpoint into a folder ``transformers`` loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from canvas_tui.cli import CliError
from engine import locations
from engine.train.layout import POINTERS, list_checkpoints, resolve_checkpoint

MODEL_CONFIG_FILE = "model_config.json"  # mirrors engine.model.weights, which imports torch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint as a Hugging Face LlamaForCausalLM folder",
        description="Export a run's checkpoint (or a weights folder) to a directory that "
        "transformers.AutoModelForCausalLM.from_pretrained loads as LlamaForCausalLM, with the "
        "run's tokenizer when it has one.",
    )
    p.add_argument("source", help="a run id, unique id prefix or name, or a weights folder")
    p.add_argument("--hf", metavar="OUT_DIR", type=Path, required=True,
                   help="where to write the Hugging Face folder (must not exist or be empty)")
    p.add_argument("--checkpoint", default="best", metavar="best|last|STEP",
                   help="which checkpoint of the run (default: best)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="precision of the exported weights (default: float32)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    p.set_defaults(func=run)


def resolve_weights(source: str, checkpoint: str) -> tuple[Path, Path | None]:
    """The weights folder to export and the tokenizer folder that goes with it, if any.

    A run keeps checkpoints as ``<run>/checkpoints/step-N/`` with ``best.json`` / ``last.json``
    pointing at them (:mod:`engine.train.layout`), and its tokenizer in ``<run>/tokenizer/``.
    """
    path = Path(source).expanduser()
    if (path / MODEL_CONFIG_FILE).is_file():
        tok = path if (path / "tokenizer.json").is_file() else None
        return path, tok
    runs = locations.runs_dir()
    candidates = sorted(runs.glob(f"{source}*")) if runs.is_dir() and source else []
    if not candidates:
        raise CliError(f"no run or weights folder called {source!r}: {path} holds no "
                       f"{MODEL_CONFIG_FILE} and no run in {runs} starts with that id. Fix: pass a "
                       "run id from `canvas runs`, or the path of a checkpoint folder.")
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates[:5])
        raise CliError(f"{source!r} matches several runs ({names}). Fix: give more of the id.")
    run_dir = candidates[0]
    ckpts = run_dir / "checkpoints"
    if not (checkpoint in POINTERS or checkpoint.removeprefix("step-").isdigit()):
        raise CliError(f"--checkpoint {checkpoint!r}: use best, last or a step number.")
    weights = resolve_checkpoint(ckpts, checkpoint)
    if weights is None or not (weights / MODEL_CONFIG_FILE).is_file():
        have = [p.name for _, p in list_checkpoints(ckpts)]
        raise CliError(f"run {run_dir.name} has no checkpoint {checkpoint!r}; it has "
                       f"{have or 'none yet'}. Fix: pick one with --checkpoint (best, last or a step).")
    tok = run_dir / "tokenizer"
    return weights, (tok if (tok / "tokenizer.json").is_file() else None)


def run(args: argparse.Namespace) -> int:
    weights, tokenizer = resolve_weights(args.source, args.checkpoint)
    import torch

    from engine.model.hf import export_hf
    from engine.model.weights import load_model

    model = load_model(weights)
    token_ids = None
    if tokenizer is not None:
        from engine.model.hf import token_ids_from_tokenizer

        token_ids = token_ids_from_tokenizer(tokenizer)
    out = export_hf(model, args.hf, tokenizer_dir=tokenizer, dtype=getattr(torch, args.dtype),
                    token_ids=token_ids, overwrite=args.force)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"exported {weights} -> {out} ({model.num_params():,} parameters, {size / 2**20:.1f} MiB"
          f"{', with tokenizer' if tokenizer else ''})")
    print(f"load it with: AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0
