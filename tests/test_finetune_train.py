"""QLoRA fine-tuning in-process on a tiny Llama saved by the test: real bitsandbytes 4-bit NF4 on CPU,
real peft adapters, real embedded conversations."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from engine.config.finetune import load_finetune_config
from engine.finetune.export import export_merged
from engine.finetune.launch import create_finetune_run
from engine.finetune.qlora import add_lora, evaluating, load_base_model, load_with_adapter
from engine.finetune.trainer import FinetuneTrainer, labelled, labelled_loss_sum, token_loss_sum
from engine.locations import CACHE_ENV
from engine.train.loop import TrainingStopped
from tests.finetune_fixtures import tiny_base, tiny_tokenizer

pytestmark = pytest.mark.slow  # a 40-step QLoRA fine-tune shared by the module, and more

SETS = [
    "max_steps=40",
    "seq_len=128",
    "micro_batch=4",
    "grad_accum=1",
    "lr=5e-3",
    "lora_r=8",
    "val_fraction=0.1",
    "eval_batches=4",
    "eval_every=20",
    "log_every=5",
    "lora_dropout=0",
]
DATA = "embedded?limit=240"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, corpus_cache):
    root = tmp_path_factory.mktemp("ft-base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(corpus_cache))  # the corpus, extracted once per session
        return tiny_base(root / "llama", tiny_tokenizer(root / "tok"))


def config(base_dir, *extra: str):
    return load_finetune_config(base=str(base_dir), data=DATA, sets=[*SETS, *extra])


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory, corpus_cache):
    """One 40-step fine-tune (about 5 s), shared by the tests that inspect its result."""
    home = tmp_path_factory.mktemp("ft-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("CANVAS_HOME", str(home))
    mp.setenv(CACHE_ENV, str(corpus_cache))
    cfg = config(base_dir)
    run = create_finetune_run(cfg)
    trainer = FinetuneTrainer(cfg, run.path, None)
    trainer.run()
    yield run, trainer
    mp.undo()


def sample_ids(seed: int = 3) -> torch.Tensor:
    return torch.randint(5, 512, (2, 24), generator=torch.Generator().manual_seed(seed))


def logits_of(model, precision) -> torch.Tensor:
    with torch.no_grad(), evaluating(model), precision.autocast():
        return model(input_ids=sample_ids()).logits.float()


def test_fine_tuning_lowers_the_validation_loss(trained, base_dir, tmp_path):
    _, trainer = trained
    before = FinetuneTrainer(config(base_dir), tmp_path / "fresh", None)
    before.setup()  # the same base and data, adapters fresh (B = 0: the base's own predictions)
    base_loss, tuned_loss = before.evaluate(), trainer.evaluate()
    assert math.isfinite(base_loss) and tuned_loss < base_loss - 0.1, (base_loss, tuned_loss)
    assert trainer.best_val == pytest.approx(tuned_loss, rel=1e-3)


def test_only_the_adapters_train_and_the_count_is_exact(trained):
    _, trainer = trained
    # Two layers; LoRA adds r * (in + out) per projection: q, o 64->64; k, v 64->32; gate, up 64->128;
    # down 128->64. 128 + 96 + 96 + 128 + 192 + 192 + 192 = 1024 per rank per layer.
    assert trainer.trainable == 2 * 8 * 1024
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    import bitsandbytes as bnb

    quantised = [m for m in trainer.model.modules() if type(m) is bnb.nn.Linear4bit]
    assert len(quantised) == 2 * 7  # every projection of every block is 4-bit


def test_the_published_adapter_is_small_and_reloads_to_the_same_logits(trained, base_dir):
    run, trainer = trained
    adapter = run.path / "adapter"
    config_json = json.loads((adapter / "adapter_config.json").read_text())
    assert (config_json["r"], config_json["lora_alpha"]) == (8, 32)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert sum(t.numel() for t in weights.values()) == trainer.trainable
    expected = logits_of(trainer.model, trainer.precision)
    dtype = trainer.precision.dtype or torch.float32
    reloaded = load_with_adapter(str(base_dir), adapter, trainer.cfg, torch.device("cpu"), dtype)
    assert torch.equal(logits_of(reloaded, trainer.precision), expected)
    plain = load_base_model(str(base_dir), trainer.cfg, torch.device("cpu"), dtype)
    assert (logits_of(plain, trainer.precision) - expected).abs().max() > 1e-2  # the adapter matters


def test_the_merged_export_matches_base_plus_adapter(trained, base_dir, tmp_path):
    run, trainer = trained
    from transformers import AutoModelForCausalLM

    checkpoint = run.checkpoints_dir / json.loads((run.checkpoints_dir / "best.json").read_text())["dir"]
    out = export_merged(run, checkpoint, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert not any("lora" in k for k in load_file(str(out / "model.safetensors")))
    reference = load_with_adapter(
        str(base_dir), checkpoint, trainer.cfg, torch.device("cpu"), torch.float32, quantize=False
    )
    x = sample_ids()
    with torch.no_grad():
        got, want = merged(input_ids=x).logits, reference(input_ids=x).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_validation_does_not_corrupt_4bit_gradients(base_dir):
    """bitsandbytes 0.50 repacks 4-bit weights for a backward-less kernel after an eval-mode forward
    on AVX512-BF16 CPUs; :func:`evaluating` must leave the gradients exactly as they were."""
    cfg = config(base_dir)
    device, dtype = torch.device("cpu"), torch.bfloat16
    model = add_lora(load_base_model(str(base_dir), cfg, device, dtype), cfg, "all-linear")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1, generator=torch.Generator().manual_seed(len(name)))
    x = sample_ids()

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=dtype):
            logits = model(input_ids=x).logits
        token_loss_sum(logits, x).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    before = grads()
    with torch.no_grad(), evaluating(model):
        model(input_ids=x)
    after = grads()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_the_loss_counts_labelled_tokens_only():
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, 3, 4, -100, -100], [-100, -100, -100, 7, 1]])
    batch = {"labels": labels}
    assert labelled(batch) == 4
    manual = sum(
        -torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]]
        for b in range(2)
        for t in range(1, 5)
        if labels[b, t] != -100
    )
    torch.testing.assert_close(token_loss_sum(logits, labels), manual)


def test_non_finite_losses_stop_the_run_with_advice(base_dir, tmp_path, monkeypatch):
    trainer = FinetuneTrainer(config(base_dir, "max_nonfinite=2", "max_steps=6"), tmp_path / "nan", None)
    monkeypatch.setattr(trainer, "_loss_sum", lambda batch: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingStopped, match="not finite for 2 steps"):
        trainer.run()


def test_out_of_memory_names_the_knobs(base_dir, tmp_path, monkeypatch):
    trainer = FinetuneTrainer(config(base_dir, "gradient_checkpointing=false"), tmp_path / "oom", None)

    def oom(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(trainer, "_loss_sum", oom)
    with pytest.raises(TrainingStopped) as err:
        trainer.run()
    message = str(err.value)
    assert "micro_batch=2" in message and "grad_accum=2" in message
    assert "gradient_checkpointing=true" in message and "paged_adamw_8bit" in message


@pytest.mark.parametrize(
    ("quantization", "optimizer", "layer", "optimizer_class"),
    [
        ("8bit", "adamw", "Linear8bitLt", "AdamW"),
        ("none", "paged_adamw_8bit", "Linear", "PagedAdamW8bit"),
    ],
)
def test_the_other_quantisations_and_optimizers_train(
    base_dir, tmp_path, quantization, optimizer, layer, optimizer_class
):
    cfg = config(
        base_dir,
        f"quantization={quantization}",
        f"optimizer={optimizer}",
        "max_steps=6",
        "eval_every=6",
        "packing=true",
    )
    trainer = FinetuneTrainer(cfg, tmp_path / "run", None)
    trainer.run()
    assert type(trainer.optimizer).__name__ == optimizer_class
    wrapped = trainer.model.get_submodule("base_model.model.model.layers.0.self_attn.q_proj.base_layer")
    assert type(wrapped).__name__ == layer
    assert trainer.trainable == 2 * 8 * 1024 and trainer.step == 6
    assert math.isfinite(trainer.best_val)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


def test_the_labelled_rows_head_gives_the_full_logits_loss(trained):
    """The fast path (vocabulary projection on labelled positions only) is the same loss."""
    _, trainer = trained
    assert trainer.plain_head  # a Llama: the fast path is the one that trained
    batch = trainer.batches.next_batch()
    assert 0 < labelled(batch) < batch["input_ids"].numel()  # some positions are not the assistant's
    with torch.no_grad(), evaluating(trainer.model):
        full = token_loss_sum(
            trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
            batch["labels"],
        )
        fast = labelled_loss_sum(trainer.model.get_base_model(), batch)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-4)


def _records(run, kind: str) -> list[dict]:
    from engine.runs.reader import EventReader

    return [r for r in EventReader(run.events_path).read_new() if r["type"] == kind]


def test_samples_during_a_fine_tune_answer_held_out_questions_and_change_no_loss(
    base_dir, tmp_path, monkeypatch
):
    from engine.finetune.chat_data.load import load_conversations
    from engine.finetune.chat_data.split import split_conversations
    from engine.finetune.preflight import preflight
    from engine.finetune.worker import run_finetune

    runs = []
    for i, extra in enumerate(([], ["sample_every=4"])):
        monkeypatch.setenv("CANVAS_HOME", str(tmp_path / f"home{i}"))
        cfg = preflight(config(base_dir, "max_steps=8", "eval_every=4", *extra)).config
        run = create_finetune_run(cfg)
        run_finetune(run, install_signals=False)  # the engine's own entry: events written as in a real run
        assert run.read_meta().status == "finished", run.read_meta().message
        runs.append(run)
    plain, sampled = runs
    held_out = split_conversations(load_conversations(DATA), cfg.val_fraction, cfg.seed)[1]
    samples = _records(sampled, "sample")
    # The first user messages of three held-out conversations, answered at steps 4 and 8.
    questions = [next(m["content"] for m in c if m["role"] == "user") for c in held_out[:3]]
    assert [(s["step"], s["index"], s["prompt"]) for s in samples] == [
        (step, i, q) for step in (4, 8) for i, q in enumerate(questions)
    ]
    assert all(0 < s["new_tokens"] <= 32 for s in samples)
    assert not _records(plain, "sample")
    # Generating between steps changes nothing the run computes (RNG, mode, adapters).
    losses = [(m["step"], m["loss"], m["grad_norm"]) for m in _records(plain, "metric")]
    assert len(losses) >= 2
    assert [(m["step"], m["loss"], m["grad_norm"]) for m in _records(sampled, "metric")] == losses
    vals = [e["val_loss"] for e in _records(plain, "eval")]
    assert [e["val_loss"] for e in _records(sampled, "eval")] == vals
