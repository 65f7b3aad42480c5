"""``canvas export``: turn a run's checkpoint into a folder ``transformers`` (or peft) loads.

A pre-training run exports with ``--hf``; a fine-tune exports its adapter (``--adapter``) or the
adapter merged into its base (``--merged``).
"""

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
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--hf",
        metavar="OUT_DIR",
        type=Path,
        help="a pre-training run or weights folder -> a Hugging Face LlamaForCausalLM "
        "folder (OUT_DIR must not exist or be empty)",
    )
    target.add_argument(
        "--merged",
        metavar="OUT_DIR",
        type=Path,
        help="a fine-tune -> its adapter merged into the base, a plain transformers model",
    )
    target.add_argument(
        "--adapter",
        metavar="OUT_DIR",
        type=Path,
        help="a fine-tune -> its LoRA adapter (PeftModel.from_pretrained loads it)",
    )
    p.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|last|STEP",
        help="which checkpoint of the run (default: best)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="precision of the exported weights or adapter (default: float32; bfloat16 halves an adapter)",
    )
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
        raise CliError(
            f"no run or weights folder called {source!r}: {path} holds no "
            f"{MODEL_CONFIG_FILE} and no run in {runs} starts with that id. Fix: pass a "
            "run id from `canvas runs`, or the path of a checkpoint folder."
        )
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
        raise CliError(
            f"run {run_dir.name} has no checkpoint {checkpoint!r}; it has "
            f"{have or 'none yet'}. Fix: pick one with --checkpoint (best, last or a step)."
        )
    tok = run_dir / "tokenizer"
    return weights, (tok if (tok / "tokenizer.json").is_file() else None)


def _finetune_run(source: str):
    """The fine-tune run ``source`` names, or ``None`` when it names something else."""
    from engine.runs.meta import RunKind
    from engine.runs.store import RunStoreError, resolve_run

    if (Path(source).expanduser() / MODEL_CONFIG_FILE).is_file():
        return None
    try:
        run = resolve_run(source)
    except RunStoreError:
        return None
    return run if run.read_meta().kind == RunKind.FINETUNE else None


def run(args: argparse.Namespace) -> int:
    finetune = _finetune_run(args.source)
    if finetune is not None:
        return export_finetune(finetune, args)
    if args.hf is None:
        raise CliError(
            f"{args.source!r} is not a fine-tune run: --merged and --adapter export a fine-tune's "
            "adapter. Fix: use --hf OUT_DIR for a pre-training run or weights folder."
        )
    weights, tokenizer = resolve_weights(args.source, args.checkpoint)
    import torch

    from engine.model.hf import export_hf
    from engine.model.weights import load_model

    model = load_model(weights)
    token_ids = None
    if tokenizer is not None:
        from engine.model.hf import token_ids_from_tokenizer

        token_ids = token_ids_from_tokenizer(tokenizer)
    out = export_hf(
        model,
        args.hf,
        tokenizer_dir=tokenizer,
        dtype=getattr(torch, args.dtype),
        token_ids=token_ids,
        overwrite=args.force,
    )
    size = sum(p.stat().st_size for p in out.iterdir())
    print(
        f"exported {weights} -> {out} ({model.num_params():,} parameters, {size / 2**20:.1f} MiB"
        f"{', with tokenizer' if tokenizer else ''})"
    )
    print(f"load it with: AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def export_finetune(run_dir, args: argparse.Namespace) -> int:
    ckpts = run_dir.checkpoints_dir
    if not (args.checkpoint in POINTERS or args.checkpoint.removeprefix("step-").isdigit()):
        raise CliError(f"--checkpoint {args.checkpoint!r}: use best, last or a step number.")
    found = resolve_checkpoint(ckpts, args.checkpoint)
    if found is None and args.checkpoint == "best":
        found = resolve_checkpoint(ckpts, "last")  # a run without validation has no best
    if found is None or not (found / "adapter_model.safetensors").is_file():
        have = [p.name for _, p in list_checkpoints(ckpts)]
        raise CliError(
            f"fine-tune {run_dir.id} has no checkpoint {args.checkpoint!r}; it has "
            f"{have or 'none yet'}. Fix: pick one with --checkpoint (best, last or a step)."
        )
    if args.hf is not None:
        raise CliError(
            f"run {run_dir.id} is a fine-tune: its checkpoints hold LoRA adapters, not a whole "
            "model. Fix: use --merged OUT_DIR (adapter merged into the base) or --adapter "
            "OUT_DIR."
        )
    if args.adapter is not None:
        import torch

        from engine.finetune.export import export_adapter

        size = export_adapter(
            run_dir, found, args.adapter, dtype=getattr(torch, args.dtype), overwrite=args.force
        )
        print(
            f"exported the adapter of {found.name} -> {args.adapter} ({size / 2**20:.2f} MiB, {args.dtype})"
        )
        print(f"load it with: PeftModel.from_pretrained(base_model, {str(args.adapter)!r})")
        return 0
    import torch

    from engine.finetune.export import export_merged

    out = export_merged(run_dir, found, args.merged, dtype=getattr(torch, args.dtype), overwrite=args.force)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"merged the adapter of {found.name} into its base -> {out} ({size / 2**20:.1f} MiB)")
    print(f"load it with: AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0
