"""QLoRA fine-tuning throughput: our fine-tune step against the plain transformers + peft recipe.

Same random-weight Llama-shaped base (saved to a temporary folder, as a downloaded one would be),
same 4-bit NF4 double-quant bf16-compute quantisation, same LoRA (every projection), same packed
batches of embedded conversations, interleaved rounds in this one process (median reported):

  1. peer: ``AutoModelForCausalLM.from_pretrained(quantization_config=...)``,
     ``prepare_model_for_kbit_training``, ``get_peft_model``, the model's own loss (``labels=``),
     ``torch.optim.AdamW``, clipping — what the peft/QLoRA examples write;
  2. ours: :class:`engine.finetune.trainer.FinetuneTrainer`'s step (assistant-token-normalised
     loss over the accumulated micro-batches, autocast, clipping) — goal >= 1.0x.

Also printed: trainable parameters, the adapter's size, and peak memory (CUDA max allocated on a
GPU; the process's peak RSS on a CPU, which includes Python and both models).

    .venv/bin/python bench/bench_finetune.py [--dim 256 --layers 4 --vocab 4096] [--batch 4] [--seq-len 256]
    .venv/bin/python bench/bench_finetune.py --llama2-7b-shape      # on a GPU: 4096 x 32 layers, ~13 GB disk
    .venv/bin/python bench/bench_finetune.py --no-bf16              # as on a machine without bf16
    .venv/bin/python bench/bench_finetune.py --tiny                 # smoke mode (what the tests run)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from benchlib import Sizes, add_no_bf16_flag, machine_line, simulate_no_bf16


def save_base(folder: Path, dim: int, layers: int, vocab: int, ffn: int, heads: int, kv_heads: int) -> Path:
    """A random Llama in bf16 with our tokenizer (the embedded conversations need a chat template)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.data.embedded import documents
    from engine.data.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

    tok = train_tokenizer([documents()[:400]], TokenizerConfig(vocab_size=min(vocab, 4096)))
    save_tokenizer(tok, folder)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=dim,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        torch_dtype="bfloat16",
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        # Built in bf16 directly: a 7B model never exists in fp32 (27 GB) on the way.
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(str(folder))
    del model
    return folder


def peak_memory(device: torch.device) -> str:
    from engine.train.loop import peak_memory as peak

    label = "CUDA max allocated" if device.type == "cuda" else "process peak RSS"
    return f"{peak(device) / 2**30:.2f} GiB ({label})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = Sizes(ap)
    sizes.add("--dim", 256, 64, "model width", type=int)
    sizes.add("--layers", 4, 2, "layers", type=int)
    sizes.add("--vocab", 4096, 512, "vocabulary", type=int)
    sizes.add("--heads", 8, 4, "attention heads", type=int)
    sizes.add("--kv-heads", 4, 2, "key/value heads", type=int)
    ap.add_argument(
        "--llama2-7b-shape", action="store_true", help="4096 wide, 32 layers, 11008 FFN, 32000 vocab"
    )
    sizes.add("--batch", 4, 2, "micro-batch", type=int)
    sizes.add("--seq-len", 256, 64, "sequence length", type=int)
    sizes.add("--steps", 3, 1, "steps per round", type=int)
    sizes.add("--rounds", 5, 1, "interleaved rounds", type=int)
    ap.add_argument("--only-ours", action="store_true", help="skip the peer (when two models do not fit)")
    add_no_bf16_flag(ap)
    args = sizes.resolve(ap.parse_args())
    warnings.filterwarnings("ignore")
    if args.no_bf16:
        simulate_no_bf16()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.llama2_7b_shape:
        args.dim, args.layers, args.vocab, args.heads, args.kv_heads = 4096, 32, 32000, 32, 32
    ffn = 11008 if args.llama2_7b_shape else 4 * args.dim * 2 // 3 // 64 * 64

    from engine.config.finetune import load_finetune_config
    from engine.finetune.qlora import add_lora, load_base_model, resolve_targets
    from engine.finetune.trainer import FinetuneTrainer

    with tempfile.TemporaryDirectory() as tmp:
        base = save_base(
            Path(tmp) / "base", args.dim, args.layers, args.vocab, ffn, args.heads, args.kv_heads
        )
        cfg = load_finetune_config(
            base=str(base),
            data="embedded",
            sets=[
                f"seq_len={args.seq_len}",
                f"micro_batch={args.batch}",
                "grad_accum=1",
                "packing=true",
                "max_steps=100000",
                "val_fraction=0",
                "lora_dropout=0.05",
            ],
        )
        ours = FinetuneTrainer(cfg, Path(tmp) / "run", None)
        ours.setup()
        device, precision = ours.device, ours.precision
        print(machine_line(device.type))
        print(
            f"base {args.dim} wide x {args.layers} layers, vocab {args.vocab}: {ours.n_params:,} parameters; "
            f"LoRA r={cfg.lora_r}: {ours.trainable:,} trainable; {precision.name} compute on {device}; "
            f"batch {args.batch} x {args.seq_len} packed"
        )

        peer_step = None
        if not args.only_ours:
            dtype = precision.dtype or torch.float32
            torch.manual_seed(0)
            peer = add_lora(
                load_base_model(str(base), cfg, device, dtype), cfg, resolve_targets(cfg, str(base))
            )
            peer.train()
            opt = torch.optim.AdamW(
                [p for p in peer.parameters() if p.requires_grad],
                lr=cfg.lr,
                betas=(cfg.beta1, cfg.beta2),
                weight_decay=0.0,
            )
            peer_batches = type(ours.batches)(
                ours.train_examples,
                args.batch,
                args.seq_len,
                packing=True,
                pad_id=ours.pad_id,
                seed=cfg.seed,
                device=device,
            )

            def peer_step() -> None:
                b = peer_batches.next_batch()
                with precision.autocast():
                    loss = peer(
                        input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]
                    ).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for p in peer.parameters() if p.requires_grad], cfg.grad_clip
                )
                opt.step()
                opt.zero_grad(set_to_none=True)

        def timed(step) -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return args.steps * args.batch * args.seq_len / (time.perf_counter() - start)

        ours_rates, peer_rates = [], []
        timed(ours.train_step)  # warm-up
        if peer_step:
            timed(peer_step)
        for _ in range(args.rounds):
            ours_rates.append(timed(ours.train_step))
            if peer_step:
                peer_rates.append(timed(peer_step))
        mine = statistics.median(ours_rates)
        print(
            f"ours: {mine:,.0f} tok/s (slots incl. padding), {mine / args.batch / args.seq_len:.2f} steps/s"
        )
        if peer_rates:
            theirs = statistics.median(peer_rates)
            print(
                f"transformers + peft recipe: {theirs:,.0f} tok/s -> ratio {mine / theirs:.2f}x "
                "(goal >= 1.0x)"
            )
        from engine.finetune.qlora import adapter_state

        size = sum(t.numel() * t.element_size() for t in adapter_state(ours.model).values())
        print(f"adapter: {size / 2**20:.1f} MiB; peak memory {peak_memory(device)}")


if __name__ == "__main__":
    main()
