"""The run config of a QLoRA fine-tune: what ``canvas finetune``, its ``--config`` TOML and ``--set`` set.

Torch-free, like :mod:`engine.config.train`, so the CLI and the console validate instantly. The
defaults are the QLoRA paper's recipe (4-bit NF4, double quantisation, bf16 compute, LoRA on every
attention and MLP projection, lr 2e-4, grad clip 0.3, no weight decay), sized for one GPU; the
few knobs that only make sense for pre-training (model shape, distributed) are absent. A config
saved into ``run.json`` is complete: :meth:`FinetuneConfig.from_dict` of it reproduces the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from engine.config.errors import ConfigError
from engine.config.loop import LoopConfig, check_micro_batch
from engine.config.settings import check_keys, check_value, coerce, load_toml, parse_sets

QUANTIZATIONS = ("4bit", "8bit", "none")
QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("auto", "bf16", "fp16", "fp32")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw")
CHAT_TEMPLATES = ("auto", "base", "chatml", "guanaco")

#: Short names for common bases; the value is a Hugging Face Hub id (downloaded once, then cached).
BASE_PRESETS: dict[str, str] = {
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M",
}


@dataclass
class FinetuneConfig(LoopConfig):
    """Every knob of a fine-tune. ``0`` / ``"auto"`` / ``""`` mean "derive a sensible value". The
    bookkeeping keys are :class:`LoopConfig`'s; those re-declared here take the QLoRA recipe's
    defaults instead of pre-training's."""

    # what to fine-tune
    base: str = ""  # a folder, a Hub id, a BASE_PRESETS name, or one of our runs; "": the newest run
    base_checkpoint: str = "best"  # for a run base: best | last | a step number
    trust_remote_code: bool = False
    # data
    chat_template: str = "auto"  # auto: the base tokenizer's own, else chatml / guanaco
    val_fraction: float = 0.05
    seq_len: int = 512
    packing: bool = False  # false: one conversation per row, padded to the batch's longest
    # quantisation (bitsandbytes)
    quantization: str = "4bit"
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "auto"  # auto: bf16 where the hardware has it, else fp16 on GPUs, fp32 on CPUs
    gradient_checkpointing: bool = True
    # LoRA (peft)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target: str = "all"  # all attention and MLP projections, or a comma list: q_proj,v_proj
    # batch and length (the first of max_steps, epochs that is set wins)
    micro_batch: int = 4
    grad_accum: int = 4
    epochs: float = 1.0
    # validation (0: automatic, at most ~10% of the training time: engine.finetune.eval_budget)
    eval_batches: int = 0
    AUTO_EVAL_BATCHES: ClassVar[bool] = True
    # optimiser and schedule (warmup_steps -1: 3% of the steps, the QLoRA paper's warm-up ratio)
    optimizer: str = "adamw"
    lr: float = 2e-4
    weight_decay: float = 0.0
    beta2: float = 0.999
    grad_clip: float = 0.3

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> FinetuneConfig:
        def bad(name: str, why: str, fix: str) -> ConfigError:
            return ConfigError(name, f"{name} = {getattr(self, name)!r} {why}. Fix: {fix}.")

        def one_of(name: str, allowed: tuple[str, ...], fix: str) -> None:
            if getattr(self, name) not in allowed:
                raise bad(name, f"is not one of {', '.join(allowed)}", fix)

        self.validate_loop()
        for name in ("micro_batch", "seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be a whole number of at least 1", f"set {name} to 1 or more")
        check_micro_batch(self.micro_batch, self.seq_len, FinetuneConfig.micro_batch)
        if not isinstance(self.lora_r, int) or self.lora_r < 1:
            raise bad(
                "lora_r",
                "must be a whole number of at least 1 (rank 0 would train nothing)",
                "use 16 (the QLoRA paper used 64 for 7B; 8-16 is the common choice)",
            )
        if not isinstance(self.lora_alpha, int | float) or self.lora_alpha <= 0:
            raise bad("lora_alpha", "must be positive", "use twice lora_r, e.g. lora_alpha=32")
        if not 0 <= self.lora_dropout < 1:
            raise bad(
                "lora_dropout",
                "must be in [0, 1)",
                "use 0.05 (0.1 for models of 13B or less in the QLoRA paper)",
            )
        if not self.target_modules():
            raise bad("lora_target", "names no module", "use all, or a comma list such as q_proj,v_proj")
        if not self.max_steps and not self.epochs:
            raise ConfigError(
                "max_steps",
                "no run length: max_steps = 0 and epochs = 0. Fix: set one "
                "of them, e.g. --set epochs=1 or --set max_steps=500.",
            )
        if not 0 < self.lr <= 1:
            raise bad("lr", "is not a usable learning rate", "use 2e-4 (the QLoRA paper's for 7B)")
        if not 0 <= self.val_fraction < 0.5:
            raise bad("val_fraction", "must be in [0, 0.5)", "use 0.05 (hold out 5% of conversations)")
        one_of("quantization", QUANTIZATIONS, "use 4bit (QLoRA), 8bit, or none (plain LoRA in compute_dtype)")
        one_of("quant_type", QUANT_TYPES, "use nf4 (the QLoRA data type) or fp4")
        one_of("compute_dtype", COMPUTE_DTYPES, "use auto (bf16 where the hardware has it)")
        one_of(
            "optimizer",
            OPTIMIZERS,
            "use adamw, or paged_adamw_8bit to page optimizer state "
            "to CPU memory on GPU memory spikes (bitsandbytes)",
        )
        one_of("chat_template", CHAT_TEMPLATES, "use auto (the base tokenizer's own template, else ours)")
        base_checkpoint = self.base_checkpoint.removeprefix("step-")
        if base_checkpoint not in ("best", "last") and not base_checkpoint.isdigit():
            raise bad("base_checkpoint", "is not best, last or a step number", "use best")
        return self

    # ----------------------------------------------------------------------------- derived values
    def target_modules(self) -> list[str]:
        """``lora_target`` as a list; ``["all"]`` means every attention and MLP projection."""
        names = [n.strip() for n in self.lora_target.split(",") if n.strip()]
        return ["all"] if names == ["all"] else names

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        check_keys(data, cls.keys(), "")
        return cls(**data).validate()


def load_finetune_config(
    base: str | None = None,
    config_file: Path | None = None,
    sets: list[str] | None = None,
    data: str | None = None,
) -> FinetuneConfig:
    """Defaults, then the TOML file, then ``--base`` / ``--data``, then ``--set`` (last wins)."""
    known = FinetuneConfig.keys()
    cfg = FinetuneConfig()
    settings: dict[str, Any] = load_toml(config_file) if config_file else {}
    check_keys(settings, known, "")
    length_keys = {"max_steps", "epochs"}
    if length_keys & set(settings):  # naming one length criterion replaces the default length
        settings = {"max_steps": 0, "epochs": 0.0, **settings}
    for key, value in settings.items():
        setattr(cfg, key, check_value(key, value, getattr(cfg, key), str(config_file)))
    if base is not None:
        cfg.base = base
    if data is not None:
        cfg.data = data
    raw = parse_sets(sets or [])
    check_keys(raw, known, "")
    if length_keys & set(raw):
        cfg.max_steps, cfg.epochs = 0, 0.0
    for key, value in raw.items():
        setattr(cfg, key, coerce(key, value, getattr(cfg, key)))
    return cfg.validate()
