"""Fine-tune config and base resolution: every bad input is refused by name, before any loading."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from engine.config.errors import ConfigError
from engine.config.finetune import FinetuneConfig, load_finetune_config
from engine.finetune.base import (
    lora_targets,
    projection_names,
    resolve_base,
    safetensors_shapes,
    weight_shapes,
)
from tests.finetune_fixtures import tiny_base, tiny_tokenizer

LLAMA_PROJECTIONS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    return tiny_base(root / "llama", tiny_tokenizer(root / "tok"))


def test_defaults_are_the_qlora_recipe():
    cfg = FinetuneConfig().validate()
    assert (cfg.quantization, cfg.quant_type, cfg.double_quant) == ("4bit", "nf4", True)
    assert (cfg.lr, cfg.grad_clip, cfg.weight_decay, cfg.lora_target) == (2e-4, 0.3, 0.0, "all")


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["lora_r=0"], "lora_r"),
        (["lora_dropout=1.5"], "lora_dropout"),
        (["quantization=3bit"], "quantization"),
        (["optimizer=sgd"], "optimizer"),
        (["chat_template=llama"], "chat_template"),
        (["max_steps=0", "epochs=0"], "max_steps"),
        (["lora_target= , "], "lora_target"),
    ],
)
def test_bad_settings_name_the_field(sets, field):
    with pytest.raises(ConfigError) as err:
        load_finetune_config(sets=sets)
    assert err.value.field == field
    assert "Fix:" in str(err.value)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="Did you mean lora_r"):
        load_finetune_config(sets=["lora_rank=8"])


def test_settings_layer_file_then_flags(tmp_path):
    toml = tmp_path / "ft.toml"
    toml.write_text('data = "chats.jsonl"\nlora_r = 8\nmax_steps = 40\nlr = "fast"\n')
    with pytest.raises(ConfigError, match="lr"):
        load_finetune_config(config_file=toml)
    toml.write_text('data = "chats.jsonl"\nlora_r = 8\nmax_steps = 40\n')
    cfg = load_finetune_config(base="b", config_file=toml, sets=["lora_r=4"], data="embedded")
    assert (cfg.base, cfg.data, cfg.lora_r, cfg.max_steps, cfg.epochs) == ("b", "embedded", 4, 40, 0.0)
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg


def test_a_model_folder_resolves(base_dir):
    base = resolve_base(str(base_dir))
    assert (base.kind, base.path) == ("folder", base_dir.resolve())


def test_a_folder_that_is_not_a_model_lists_what_it_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError) as err:
        resolve_base(str(tmp_path))
    assert err.value.field == "base" and "no config.json" in str(err.value) and "notes.txt" in str(err.value)
    with pytest.raises(ConfigError, match="is a file"):
        resolve_base(str(tmp_path / "notes.txt"))


def test_a_model_that_is_not_a_causal_lm_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a causal language model"):
        resolve_base(str(tmp_path))


def test_config_without_weights_is_refused(tmp_path, base_dir):
    (tmp_path / "config.json").write_text((base_dir / "config.json").read_text())
    with pytest.raises(ConfigError, match="no weights"):
        resolve_base(str(tmp_path))


def test_a_hub_id_offline_and_not_cached_says_so_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError) as err:
        resolve_base("meta-llama/Llama-2-7b-hf")
    assert "HF_HUB_OFFLINE" in str(err.value) and "cache" in str(err.value)
    with pytest.raises(ConfigError, match="meta-llama/Llama-2-7b-hf"):
        resolve_base("llama-2-7b")  # the preset name is the same Hub id


def test_a_hub_id_unreachable_without_offline_env(monkeypatch, tmp_path):
    import engine.data.sources as sources

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=1.5: False)
    with pytest.raises(ConfigError, match="cannot reach"):
        resolve_base("Qwen/Qwen2.5-7B")


def test_nonsense_is_none_of_the_kinds():
    with pytest.raises(ConfigError, match="not a folder on this machine, not a run"):
        resolve_base("no such thing")


def test_no_base_and_no_runs_tells_how_to_get_one():
    with pytest.raises(ConfigError, match="canvas train"):
        resolve_base("")


def test_safetensors_header_names_and_shapes_match_the_file(base_dir):
    shapes = safetensors_shapes(base_dir / "model.safetensors")
    tensors = load_file(str(base_dir / "model.safetensors"))
    assert shapes == {k: list(v.shape) for k, v in tensors.items()}


def test_all_targets_are_the_block_projections_and_typos_list_them(base_dir):
    shapes = weight_shapes(base_dir)
    assert projection_names(shapes) == LLAMA_PROJECTIONS  # not embed_tokens, lm_head or the norms
    assert lora_targets(["all"], shapes) == LLAMA_PROJECTIONS
    assert lora_targets(["q_proj", "v_proj"], shapes) == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError) as err:
        lora_targets(["q_proj", "c_attn"], shapes)
    assert err.value.field == "lora_target"
    assert "c_attn" in str(err.value) and "down_proj, gate_proj, k_proj" in str(err.value)
    assert lora_targets(["all"], None) == "all-linear"  # pickled weights: peft decides at load
