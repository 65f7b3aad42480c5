"""Tokenizers: train a byte-level BPE on the chosen data, or adopt an existing one.

Byte-level BPE (GPT-2's scheme, via Hugging Face ``tokenizers``) needs no unknown token, never
fails on odd bytes, and trains on a few MB in under a second, which is what lets ``canvas train``
build its own vocabulary on any machine. The saved folder is what ``transformers`` expects
(``tokenizer.json`` + ``tokenizer_config.json`` + ``special_tokens_map.json``), so a run's exported
model loads with ``AutoTokenizer.from_pretrained(folder)``.

Special tokens take the first ids, in this order: ``<|pad|>`` 0, ``<|bos|>`` 1, ``<|eos|>`` 2,
``<|im_start|>`` 3, ``<|im_end|>`` 4 (ChatML turns for fine-tuning and chat; the saved config
carries a ChatML ``chat_template``), then any extra ones. No token is added automatically on
encode: the packer separates documents with ``<|eos|>`` itself, GPT-2 style.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, IM_START, IM_END)
BYTE_ALPHABET = 256
#: EOS names of widely used tokenizers, tried in order when a bare ``tokenizer.json`` is adopted.
_KNOWN_EOS = (EOS, "<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
)
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)


@dataclass(frozen=True)
class TokenizerConfig:
    """How to get the tokenizer. ``pretrained`` (a local path or Hub name) skips training."""

    vocab_size: int = 4096
    pretrained: str | None = None
    min_frequency: int = 2
    #: Train on at most this much text (the start of the training split); BPE merges settle early.
    max_train_bytes: int = 100_000_000
    extra_special_tokens: tuple[str, ...] = ()

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return SPECIAL_TOKENS + tuple(t for t in self.extra_special_tokens if t not in SPECIAL_TOKENS)

    def validate(self, field_name: str = "tokenizer") -> TokenizerConfig:
        """Fail before any work if the vocabulary cannot hold the bytes and the special tokens."""
        if self.pretrained is not None:
            return self
        minimum = BYTE_ALPHABET + len(self.special_tokens) + 1
        if not isinstance(self.vocab_size, int) or self.vocab_size < minimum:
            raise ConfigError(
                f"{field_name}.vocab_size",
                (
                    f"vocab_size {self.vocab_size!r} is too small: a byte-level BPE needs {BYTE_ALPHABET} "
                    f"byte tokens plus {len(self.special_tokens)} special tokens "
                    f"({', '.join(self.special_tokens)}) plus at least one merge, so at least {minimum}. "
                    "Fix: use --vocab-size 4096 (the tiny preset) or 32000 (seed-base)."
                ),
            )
        if self.vocab_size > 2**32 - 1:
            raise ConfigError(
                f"{field_name}.vocab_size",
                f"vocab_size {self.vocab_size} does not fit in "
                "uint32 token shards. Fix: use at most 4294967295 (in practice ≤ 256000).",
            )
        if self.min_frequency < 1:
            raise ConfigError(
                f"{field_name}.min_frequency",
                f"min_frequency {self.min_frequency} must be at least 1. Fix: use 2 (the default).",
            )
        return self

    def key(self) -> dict[str, Any]:
        """What about this config determines the tokenizer (for the prepared-data cache key)."""
        if self.pretrained is not None:
            return {"pretrained": pretrained_identity(self.pretrained)}
        return {
            "vocab_size": self.vocab_size,
            "min_frequency": self.min_frequency,
            "max_train_bytes": self.max_train_bytes,
            "special_tokens": list(self.special_tokens),
            "algorithm": "byte-level-bpe",
        }


def train_tokenizer(
    batches: Iterable[list[str]], cfg: TokenizerConfig, *, length: int | None = None
) -> Tokenizer:
    """Train a byte-level BPE on ``batches`` of texts (stopping after ``cfg.max_train_bytes``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    cfg.validate()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(cfg.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def capped() -> Iterator[list[str]]:
        seen = 0
        for batch in batches:
            yield batch
            seen += sum(len(t) for t in batch)
            if seen >= cfg.max_train_bytes:
                return

    tok.train_from_iterator(capped(), trainer=trainer, length=length)
    return tok


def save_tokenizer(
    tok: Tokenizer,
    out_dir: Path,
    *,
    special_tokens: Iterable[str] = SPECIAL_TOKENS,
    model_max_length: int | None = None,
) -> Path:
    """Write the ``transformers``-loadable folder for a tokenizer we trained."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    extra = [t for t in special_tokens if t not in (PAD, BOS, EOS)]
    special_map = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "additional_special_tokens": extra}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_map,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length or 1_000_000_000,
        "chat_template": CHAT_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(special_map, indent=2) + "\n", encoding="utf-8"
    )
    return out_dir


def pretrained_identity(name_or_path: str) -> str:
    """A stable identity for an adopted tokenizer: the hash of a local file, or the Hub name."""
    path = Path(name_or_path).expanduser()
    file = path / "tokenizer.json" if path.is_dir() else path
    if file.is_file():
        return "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest()
    return f"hub:{name_or_path}"


def check_pretrained(name_or_path: str) -> None:
    """Cheap early check of ``--tokenizer``: a local path must exist, a Hub name needs the Hub."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return
    looks_like_path = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
    if looks_like_path or "\\" in name_or_path:
        raise ConfigError(
            "tokenizer.pretrained",
            f"tokenizer {name_or_path!r}: no such file or folder. Fix: "
            "check the path, or leave --tokenizer out to train one on the data.",
        )
    from engine.data.sources import ensure_hub_reachable

    ensure_hub_reachable(f"tokenizer {name_or_path!r}", "tokenizer.pretrained")


def adopt_pretrained(name_or_path: str, out_dir: Path) -> Path:
    """Copy an existing tokenizer (local folder / ``tokenizer.json`` / Hub name) into ``out_dir``."""
    path = Path(name_or_path).expanduser()
    field = "tokenizer.pretrained"
    if path.is_file() or (path.is_dir() and not (path / "tokenizer_config.json").is_file()):
        file = path if path.is_file() else path / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(
                field,
                f"tokenizer {name_or_path!r}: the folder has no tokenizer.json. Fix: "
                "point at a folder saved by `save_pretrained` or at a tokenizer.json file.",
            )
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as exc:
            raise ConfigError(
                field,
                f"tokenizer {name_or_path!r}: {file} is not a tokenizers JSON file "
                f"({str(exc).splitlines()[0]}). Fix: point at a tokenizer.json saved by "
                "Hugging Face tokenizers/transformers.",
            ) from None
        vocab = tok.get_vocab()
        eos = next((t for t in _KNOWN_EOS if t in vocab), None)
        if eos is None:
            raise ConfigError(
                field,
                f"tokenizer {name_or_path!r} has no end-of-text token (looked for "
                f"{', '.join(_KNOWN_EOS)}); documents are separated with one. Fix: use a "
                "folder with a tokenizer_config.json naming eos_token.",
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, out_dir / "tokenizer.json")
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": eos,
            "clean_up_tokenization_spaces": False,
        }
        (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return out_dir
    check_pretrained(name_or_path)
    from transformers import AutoTokenizer

    try:
        hf_tok = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as exc:  # transformers raises OSError/ValueError subclasses with long texts
        raise ConfigError(
            field,
            f"tokenizer {name_or_path!r} could not be loaded: "
            f"{str(exc).strip().splitlines()[0]} Fix: check the name or path; offline, only "
            "tokenizers already in the Hugging Face cache or on disk can be used.",
        ) from None
    if not getattr(hf_tok, "is_fast", False):
        raise ConfigError(
            field,
            f"tokenizer {name_or_path!r} has no fast (Rust) version, which packing "
            "needs. Fix: choose a tokenizer that ships tokenizer.json.",
        )
    if hf_tok.eos_token_id is None:
        raise ConfigError(
            field,
            f"tokenizer {name_or_path!r} defines no eos_token; documents are separated "
            "with one. Fix: choose a tokenizer with an EOS token.",
        )
    if (path / "tokenizer.json").is_file():
        # Keep the files byte for byte, so the manifest's hash names the very same tokenizer.
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in _TOKENIZER_FILES:
            if (path / name).is_file():
                shutil.copyfile(path / name, out_dir / name)
    else:
        hf_tok.save_pretrained(str(out_dir))
    return out_dir


@dataclass(frozen=True)
class TokenizerInfo:
    """What the packer and the model need to know about a saved tokenizer folder."""

    path: Path
    vocab_size: int
    eos_id: int
    eos_token: str
    sha256: str

    def load(self) -> Tokenizer:
        return load_tokenizer(self.path)


def load_tokenizer(folder: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))


def tokenizer_info(folder: Path) -> TokenizerInfo:
    """Read a saved folder: vocabulary size (with added tokens), EOS, content hash."""
    folder = Path(folder)
    tok = load_tokenizer(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    eos = config.get("eos_token", EOS)
    if isinstance(eos, dict):  # transformers may save AddedToken dicts
        eos = eos.get("content", EOS)
    eos_id = tok.token_to_id(eos)
    if eos_id is None:
        raise ConfigError(
            "tokenizer",
            f"tokenizer in {folder}: its eos_token {eos!r} is not in the "
            "vocabulary. Fix: re-train it or choose another tokenizer.",
        )
    digest = hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()
    return TokenizerInfo(
        path=folder,
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        eos_id=eos_id,
        eos_token=eos,
        sha256=digest,
    )


def export_tokenizer(folder: Path, dest: Path) -> Path:
    """Copy a saved tokenizer's files next to an exported model (``dest`` is created)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in Path(folder).iterdir():
        if item.is_file():
            shutil.copyfile(item, dest / item.name)
    return dest
