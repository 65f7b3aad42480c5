"""What each run-config key means, in one sentence or two: the text of the README's generated run
config reference (:mod:`engine.config_doc`). Torch-free.

The keys, their types and defaults come from the dataclasses themselves
(:class:`~engine.config.train.TrainConfig`, :class:`~engine.config.finetune.FinetuneConfig`,
:class:`~engine.config.model.ModelConfig`); only the meaning is written here. Adding a key to a
config means adding its line below: ``tests/test_readme_reference.py`` fails, naming the key,
until it has one.
"""

from __future__ import annotations

#: The meaning of every flat key (pre-training and fine-tuning share most of them).
MEANINGS: dict[str, str] = {
    # data
    "data": "what to train on: a data spec (`embedded`, `owt+c4`, `hf:NAME`, files…; see [Data](#data)); "
    "a fine-tune reads conversations (`embedded`, `guanaco`, `oasst1`, JSONL…)",
    "val_fraction": "share of the documents (fine-tune: conversations) held out for the validation loss",
    "tokenizer": "reuse this tokenizer (a folder, `tokenizer.json` or Hub name); empty: train a byte-level "
    "BPE on the training split",
    "vocab_size": "vocabulary of the BPE to train; 0: the model's `model.vocab_size`",
    # batch
    "seq_len": "tokens a sequence; pre-training 0: the preset's (at most `model.max_seq_len`)",
    "micro_batch": "sequences a forward/backward pass on each process; pre-training 0: the preset's",
    "grad_accum": "micro-batches accumulated into one optimiser step",
    "tokens_per_step": "if set, `grad_accum` is derived so that a step sees this many tokens (all processes)",
    "packing": "`true`: conversations concatenated into full rows (attention crosses them, as TRL's "
    "classic packing); `false`: one conversation a row, padded to the batch's longest",
    # length
    "max_steps": "optimiser steps to run; the first length key that is set wins (naming one clears "
    "the preset's)",
    "max_tokens": "run length in training tokens, when `max_steps` is 0",
    "epochs": "run length in passes over the training data, when the keys before it are 0",
    # optimiser and schedule
    "lr": "peak learning rate (pre-training 0: the preset's, 2e-3 for `tiny`, 3e-4 otherwise)",
    "min_lr_ratio": "the cosine decay ends at `lr × min_lr_ratio`",
    "warmup_steps": "linear warm-up steps; -1: automatic (pre-training 5% of the steps, at most 1000; "
    "fine-tune 3%)",
    "weight_decay": "AdamW weight decay (never on norms and embeddings)",
    "beta1": "AdamW β1",
    "beta2": "AdamW β2",
    "grad_clip": "clip the gradient's global norm to this; 0: no clipping",
    "optimizer": "`adamw`, or bitsandbytes' `adamw_8bit`, `paged_adamw_8bit`, `paged_adamw` (paged state "
    "moves to CPU memory on GPU memory spikes)",
    # execution
    "preset": "named model shape and recipe: `tiny`, `seed-base`, `seed-1b` (`canvas info --presets`)",
    "model": "the model's shape: the `model.*` keys below",
    "device": "`auto` (this rank's GPU if there is one, else the CPU), `cpu`, `cuda`, `cuda:1`, `mps`",
    "seed": "seeds the weights, the data order and sampling; a resumed run continues the same streams",
    "precision": "`auto`: bf16 on GPUs that have it, else fp16 with a gradient scaler; on CPUs bf16 "
    "autocast with AVX512-BF16/AMX, else fp32. Or `bf16`, `fp16`, `fp32`",
    "compile": "`torch.compile` the model: `auto` (on for CUDA, off on CPU), `true`, `false`",
    "activation_checkpointing": "recompute each block's activations in the backward pass: less memory, "
    "about a third more compute",
    "distributed": "with `--nproc N`: `ddp` (a replica a GPU) or `fsdp` (FSDP2 `fully_shard` per block: "
    "parameters, gradients and optimiser state sharded, for models that do not fit one GPU)",
    "deterministic": "`torch.use_deterministic_algorithms(True)`: bit-reproducible on GPUs, slower",
    # bookkeeping
    "log_every": "steps between metric events (loss, lr, grad norm, tokens/s, memory, MFU on CUDA)",
    "eval_every": "steps between validation passes; 0: ten over the run",
    "eval_batches": "batches of the held-out split each validation pass reads (at most); a fine-tune's 0: "
    "automatic, validation kept to about a tenth of the training time",
    "checkpoint_every": "steps between kept checkpoints; 0: only `best`, `last` and on stop",
    "keep_checkpoints": "every-N checkpoints kept (the oldest are removed; best and last always stay)",
    "max_nonfinite": "consecutive non-finite losses (each step skipped) before the run stops as `failed`",
    "telemetry_interval": "seconds between GPU / system / CodeCarbon samples",
    "carbon_country": "ISO 3166 alpha-3 code of the electricity grid CodeCarbon uses offline (`GBR`, "
    "`USA`, `FRA`…)",
    "sample_every": "every N steps the model continues each sample prompt (greedy, 32 new tokens) and "
    "the run writes `sample` events; 0: off. Losses are identical with and without",
    "sample_prompts": "a text file, one prompt a line; empty: the opening of 3 validation documents (a "
    "fine-tune: the first user message of 3 held-out conversations)",
    # fine-tuning
    "base": "what to fine-tune: a model folder, a Hub id, a short name (`llama-2-7b`, `mistral-7b`…) "
    "or one of our runs; empty: the newest pre-training run with a checkpoint",
    "base_checkpoint": "for a run as base: `best`, `last` or a step number",
    "trust_remote_code": "let `transformers` run the base's own modelling code from the Hub",
    "chat_template": "`auto` (the base tokenizer's own, else `chatml` with `<|im_start|>` tokens, else "
    "`guanaco`), `base`, `chatml`, `guanaco`",
    "quantization": "`4bit` (QLoRA: bitsandbytes NF4), `8bit`, or `none` (plain LoRA in `compute_dtype`)",
    "quant_type": "4-bit data type: `nf4` (QLoRA's) or `fp4`",
    "double_quant": "quantise the quantisation constants too (saves about 0.37 bits a parameter, the "
    "QLoRA paper)",
    "compute_dtype": "dtype of the 4-bit layers' matmuls: `auto` (bf16 where the hardware has it, else "
    "fp16 on GPUs, fp32 on CPUs), `bf16`, `fp16`, `fp32`",
    "gradient_checkpointing": "recompute activations in the backward pass (with "
    "`prepare_model_for_kbit_training`)",
    "lora_r": "LoRA rank of each adapter",
    "lora_alpha": "LoRA scale numerator: updates are scaled by `lora_alpha / lora_r`",
    "lora_dropout": "dropout on the adapters' input",
    "lora_target": "`all` (every attention and MLP projection of the blocks, read from the weight "
    "headers) or a comma list such as `q_proj,v_proj`",
}

#: The model shape: the ``model.*`` keys (``--set model.dim=512``, ``[model]`` in TOML).
MODEL_MEANINGS: dict[str, str] = {
    "vocab_size": "tokens in the vocabulary (embedding and output rows)",
    "dim": "width of the residual stream",
    "n_layers": "transformer blocks",
    "n_heads": "query heads; `dim / n_heads` (the head size) must be even",
    "n_kv_heads": "key/value heads (grouped-query attention); 0: as many as `n_heads`",
    "ffn_dim": "SwiGLU hidden width; 0: Llama's rule, 8/3 × `dim` rounded up to `ffn_multiple_of`",
    "ffn_multiple_of": "rounding of the derived `ffn_dim`",
    "max_seq_len": "longest context the model is built for (the rotary table's length)",
    "rope_theta": "rotary embedding base (10000 in Llama 2, 500000 in Llama 3)",
    "norm_eps": "RMSNorm epsilon",
    "tie_embeddings": "share one matrix between the token embedding and the output head",
    "init_std": "standard deviation of the normal initialisation (residual projections scaled by "
    "1/sqrt(2 × n_layers))",
}
