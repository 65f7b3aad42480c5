"""The scratch model is numerically the same network as transformers' LlamaForCausalLM."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from engine.config import ConfigError
from engine.model import CausalLM, export_hf, load_hf_llama, load_model, save_model
from tests.helpers import random_model


@pytest.mark.parametrize(
    ("tie", "n_kv_heads"),
    [(False, 2), (True, 2), (False, 8)],
    ids=["gqa-untied", "gqa-tied", "mha-untied"],
)
def test_export_loads_as_llama_with_equal_logits(tmp_path, tie, n_kv_heads):
    model = random_model(tie_embeddings=tie, n_kv_heads=n_kv_heads)
    out = export_hf(model, tmp_path / "hf")
    assert (out / "model.safetensors").is_file()
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf) is LlamaForCausalLM
    assert hf.config.num_key_value_heads == n_kv_heads
    assert hf.config.tie_word_embeddings == tie
    tokens = torch.randint(0, 256, (3, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    assert ours.std() > 0.5  # logits carry signal, so equality is not trivial
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_tied_export_stores_the_embedding_once(tmp_path):
    from safetensors import safe_open

    out = export_hf(random_model(tie_embeddings=True), tmp_path / "hf")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "lm_head.weight" not in names
    assert "model.embed_tokens.weight" in names


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("shard", [False, True], ids=["single-file", "sharded"])
def test_import_of_a_saved_hf_llama_gives_equal_logits(tmp_path, tie, shard):
    torch.manual_seed(3)
    cfg = LlamaConfig(
        vocab_size=320,
        hidden_size=96,
        intermediate_size=200,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=12345.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie,
        initializer_range=0.2,
    )
    hf = LlamaForCausalLM(cfg).eval()
    kwargs = {"max_shard_size": "200KB"} if shard else {}
    hf.save_pretrained(tmp_path / "hf", **kwargs)
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file() == shard

    ours = load_hf_llama(tmp_path / "hf")
    assert ours.config.ffn_dim == 200 and ours.config.n_kv_heads == 2
    assert ours.config.rope_theta == 12345.0
    tokens = torch.randint(0, 320, (2, 70), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, atol=1e-4, rtol=0)


def test_import_refuses_what_the_model_does_not_implement(tmp_path):
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        attention_bias=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "hf")
    with pytest.raises(ConfigError) as err:
        load_hf_llama(tmp_path / "hf")
    assert err.value.field == "attention_bias"
    assert "canvas finetune --base" in str(err.value)


def test_import_of_a_folder_that_is_not_a_model_names_the_problem(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="no config\\.json"):
        load_hf_llama(tmp_path)


def test_weights_round_trip_and_mismatch_is_explained(tmp_path):
    model = random_model()
    save_model(model, tmp_path / "w")
    back = load_model(tmp_path / "w")
    for (name, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # A config that does not describe the weights is refused with the names that do not fit.
    cfg = json.loads((tmp_path / "w" / "model_config.json").read_text())
    cfg["n_layers"] = 3
    (tmp_path / "w" / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"missing \['model\.layers\.2"):
        load_model(tmp_path / "w")


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    import engine.model.hf as hf_mod

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        hf_mod.export_hf(random_model(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_hf(random_model(), tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_export_carries_the_tokenizer(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|pad|>", "<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    fast.save_pretrained(tmp_path / "tok")

    from engine.model.hf import token_ids_from_tokenizer

    ids = token_ids_from_tokenizer(tmp_path / "tok")
    assert ids == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    model = random_model(vocab_size=tok.get_vocab_size())
    out = export_hf(model, tmp_path / "hf", tokenizer_dir=tmp_path / "tok", token_ids=ids)
    loaded = AutoTokenizer.from_pretrained(out)
    assert loaded("the lazy fox")["input_ids"] == tok.encode("the lazy fox").ids
    assert AutoModelForCausalLM.from_pretrained(out).config.eos_token_id == 2


def test_parameter_count_formula_is_exact_for_every_preset():
    from engine.config import PRESETS

    for preset in PRESETS.values():
        with torch.device("meta"):  # counts seed-1b without allocating 5 GB
            model = CausalLM(preset.model)
        assert model.num_params() == preset.model.num_params(), preset.name
    assert PRESETS["seed-base"].model.num_params() == 200_827_904
