"""Packing: sources → tokenizer → contiguous token files + manifest, cached by content hash.

Layout of a prepared-data folder (``cache_dir()/data/<key>/``)::

    manifest.json     documents, tokens, sources, tokenizer hash, dtype, timings
    train.bin         all training documents' tokens, each document followed by EOS
    val.bin           the held-out documents, same layout (absent when val_fraction is 0)
    tokenizer/        tokenizer.json + tokenizer_config.json (+ special_tokens_map.json)

The ``.bin`` files are raw little-endian ``uint16`` (vocabulary ≤ 65,536) or ``uint32`` arrays,
nanoGPT's format: ``numpy.memmap(path, dtype)`` reads them with no parsing and no copy.

``<key>`` hashes everything that determines the bytes: the canonical spec, each local file's
path, size and modification time, the embedded corpus's id, the tokenizer settings (or the hash
of an adopted tokenizer), the validation fraction, the seed and this format's version. Hub
sources are keyed by name/config/split/revision/limit; pin ``revision=`` for a frozen snapshot.
A second ``prepare`` with the same inputs opens the folder and does no work at all.

The pipeline, one function a step: :func:`check_sources` (cheap checks, before anything costly)
→ :func:`read_sources` → :func:`mix_sources` → :func:`split_held_out` → :func:`build_tokenizer` →
:func:`pack_splits` (:func:`tokenize_split` per split, :func:`split_by_tokens` for a lone document)
→ :class:`~engine.data.manifest.Manifest` written last. :func:`prepare` chains them.

Preparation happens in ``.tmp-<key>-<pid>-<nonce>/`` next to the final folder and is renamed into
place only when complete, so a killed run never leaves a half-written cache entry; leftovers of
dead processes are removed by the next ``prepare``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.errors import ConfigError
from engine.data.manifest import MANIFEST_FILE, Manifest, SourceInfo, SplitInfo, TokenizerRecord
from engine.data.progress import ProgressCallback, StageTimer, ignore_progress
from engine.data.spec import DataSpec, SourceSpec, local_files, spec_from_obj, validate_spec
from engine.data.tokenizer import TokenizerConfig, TokenizerInfo, tokenizer_info
from engine.locations import cache_dir, ensure_private_dir, make_private

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from engine.data.sources import SourceCheck

PACK_FORMAT = 1
#: How documents are joined in a token file (recorded in the manifest).
SEPARATOR = "eos-after-each-document"
DEFAULT_VAL_FRACTION = 0.02
DEFAULT_SEED = 1337
#: Text per tokenization chunk: one progress report and one ``datasets.map`` call each.
CHUNK_BYTES = 32_000_000


def data_cache_root() -> Path:
    return cache_dir() / "data"


@dataclass(frozen=True)
class PreparedData:
    """A finished, immutable prepared-data folder: what training, evaluation and export read."""

    root: Path
    manifest: Manifest
    cached: bool = False

    @classmethod
    def open(cls, root: Path, *, cached: bool = True) -> PreparedData:
        return cls(root=Path(root), manifest=Manifest.read(Path(root)), cached=cached)

    @property
    def train(self) -> Path:
        return self.root / self.manifest.splits["train"].file

    @property
    def val(self) -> Path | None:
        split = self.manifest.splits.get("val")
        return self.root / split.file if split else None

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def dtype(self) -> str:
        return self.manifest.dtype

    @property
    def vocab_size(self) -> int:
        return self.manifest.tokenizer.vocab_size

    @property
    def eos_id(self) -> int:
        return self.manifest.tokenizer.eos_id

    def tokens(self, split: str = "train") -> np.memmap:
        """The split's tokens as a read-only memory map."""
        import numpy as np

        path = self.train if split == "train" else self.val
        if path is None:
            raise ConfigError(
                "data.val_fraction",
                "this prepared data has no validation split "
                "(val_fraction was 0). Fix: prepare with a val_fraction above 0.",
            )
        return np.memmap(path, dtype=self.dtype, mode="r")

    def summary(self) -> str:
        """A few lines for the CLI and logs."""
        m = self.manifest
        lines = [f"prepared data {m.key}{' (cached)' if self.cached else ''}: {self.root}"]
        for name, split in m.splits.items():
            lines.append(
                f"  {name:5s} {split.documents:>10,} documents {split.tokens:>14,} tokens "
                f"({split.file}, {m.dtype})"
            )
        tok = m.tokenizer
        lines.append(
            f"  tokenizer {tok.source}: vocab {tok.vocab_size:,}, eos {tok.eos_token} = "
            f"{tok.eos_id}, sha256 {tok.sha256[:12]}"
        )
        for s in m.sources:
            extra = f", {s.invalid_utf8_bytes:,} invalid UTF-8 bytes replaced" if s.invalid_utf8_bytes else ""
            lines.append(f"  source {s.spec}: {s.documents:,} documents, {s.text_bytes / 1e6:.2f} MB{extra}")
        if m.seconds is not None:
            lines.append(f"  prepared in {m.seconds:.1f} s ({m.tokenize_mb_per_s or 0:.1f} MB/s tokenizing)")
        return "\n".join(lines)


@dataclass
class TokenCount:
    """Running totals over the splits tokenized so far, for the progress bar of the whole stage."""

    documents: int = 0
    tokens: int = 0
    text_bytes: int = 0


# --- the cache key -------------------------------------------------------------------------------


def _fingerprint(source: SourceSpec) -> dict[str, Any]:
    out = source.to_dict()
    if source.kind == "embedded":
        from engine.data.embedded import corpus_id

        out["corpus"] = corpus_id()
    elif source.kind == "local":
        files = []
        for path in local_files(source):
            members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in members:
                st = f.stat()
                files.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
        out["files"] = files
    return out


def cache_key(spec: DataSpec, tokenizer: TokenizerConfig, val_fraction: float, seed: int) -> str:
    """Hash of everything that determines the prepared bytes (see the module docstring)."""
    material = {
        "format": PACK_FORMAT,
        "sources": [_fingerprint(s) for s in spec.sources],
        "tokenizer": tokenizer.key(),
        "val_fraction": val_fraction,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def _cleanup_orphans(root: Path) -> None:
    """Remove temporary folders left by preparations whose process is gone (killed, crashed)."""
    if not root.is_dir():
        return
    for tmp in root.glob(".tmp-*"):
        parts = tmp.name.split("-")
        try:
            pid = int(parts[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass


# --- preparation: the pipeline -------------------------------------------------------------------


def prepare(
    spec: str | DataSpec | Any = None,
    tokenizer: TokenizerConfig | None = None,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    num_proc: int | None = None,
    progress: ProgressCallback = ignore_progress,
    force: bool = False,
) -> PreparedData:
    """Prepare (or reuse) token files for ``spec``: the one call training makes before its loop.

    ``spec`` is a spec string, a structured spec or a :class:`DataSpec` (None: the embedded
    corpus). ``num_proc`` is how many processes tokenize (None: one per CPU for large corpora,
    one for small ones where process start-up would cost more than it saves). Every check that
    can fail on bad input runs before the tokenizer is trained.
    """
    started = time.perf_counter()
    data_spec = spec_from_obj(spec)
    tok_cfg = (tokenizer or TokenizerConfig()).validate()
    if not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 0.5):
        raise ConfigError(
            "data.val_fraction",
            f"val_fraction {val_fraction!r} must be at least 0 and below "
            "0.5. Fix: use 0.02 (the default), or 0 for no validation split.",
        )
    validate_spec(data_spec)
    key = cache_key(data_spec, tok_cfg, float(val_fraction), int(seed))
    root = data_cache_root()
    final = root / key
    if (final / MANIFEST_FILE).is_file() and not force:
        prepared = PreparedData.open(final, cached=True)
        _report_done(progress, prepared.manifest, f"reused cached data {key}")
        return prepared

    checks = check_sources(data_spec, tok_cfg, progress)
    _cleanup_orphans(root)
    ensure_private_dir(root)  # owner-only, like everything under the home
    tmp = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(mode=0o700)
    try:
        manifest = pack_into(
            tmp, key, data_spec, checks, tok_cfg, float(val_fraction), int(seed), num_proc, progress
        )
        manifest = replace(manifest, seconds=round(time.perf_counter() - started, 3))
        manifest.write(tmp)
        make_private(tmp)  # the token files and tokenizer were written with the umask's modes
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prepared = PreparedData.open(final, cached=False)
    _report_done(progress, manifest, f"prepared {key}")
    return prepared


def _report_done(progress: ProgressCallback, manifest: Manifest, message: str) -> None:
    StageTimer("done", progress).report(
        documents=manifest.documents, tokens=manifest.tokens, message=message, force=True
    )


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished folder into place: the cache entry appears whole or not at all."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / MANIFEST_FILE).is_file():
            raise
        # Another process finished the same preparation first: its result is identical.


def check_sources(spec: DataSpec, tok_cfg: TokenizerConfig, progress: ProgressCallback) -> list[SourceCheck]:
    """Step 1: the cheap checks of every source (and an adopted tokenizer), before any real work.

    Bad paths, empty files, an unreachable Hub or an unknown pretrained tokenizer fail here in
    seconds; invalid UTF-8 is reported (it will be replaced), not fatal.
    """
    from engine.data.sources import check_source

    check_timer = StageTimer("check", progress)
    check_timer.report(message="checking sources", force=True)
    checks = [check_source(s) for s in spec.sources]
    if tok_cfg.pretrained is not None:
        from engine.data.tokenizer import check_pretrained

        check_pretrained(tok_cfg.pretrained)
    for c in checks:
        if c.invalid_bytes:
            check_timer.report(
                message=f"{c.source.to_string()}: {c.invalid_bytes:,} invalid UTF-8 byte(s) will "
                f"be replaced with U+FFFD (first in {c.first_invalid})",
                force=True,
            )
    return checks


def pack_into(
    tmp: Path,
    key: str,
    spec: DataSpec,
    checks: list[SourceCheck],
    tok_cfg: TokenizerConfig,
    val_fraction: float,
    seed: int,
    num_proc: int | None,
    progress: ProgressCallback,
) -> Manifest:
    """Steps 2–6 inside the temporary folder ``tmp``: every file of the final folder but the manifest.

    Read the sources, mix them, hold out validation documents, train (or adopt) the tokenizer on
    the training part, tokenize both parts into token files; returns the manifest to write.
    """
    work = tmp / "work"
    work.mkdir()
    load_timer = StageTimer("load", progress)
    parts = read_sources(checks, work, load_timer, progress)
    counts = mix_counts(spec, [len(p) for p in parts])
    ds = mix_sources(spec, parts, counts, seed, load_timer)
    train_ds, val_ds = split_held_out(ds, val_fraction, seed)
    info, tok_source = build_tokenizer(tok_cfg, train_ds, tmp / "tokenizer", progress)
    dtype = "uint16" if info.vocab_size <= 2**16 else "uint32"
    total_bytes = _text_bytes(train_ds) + (_text_bytes(val_ds) if val_ds is not None else 0)
    tokenize_started = time.perf_counter()
    splits = pack_splits(
        train_ds, val_ds, info, dtype, tmp, work, val_fraction, num_proc, total_bytes, progress
    )
    tokenize_s = time.perf_counter() - tokenize_started
    shutil.rmtree(work, ignore_errors=True)
    return Manifest(
        format=PACK_FORMAT,
        key=key,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        spec=spec.to_string(),
        spec_structured=spec.to_dict(),
        sources=source_records(checks, parts, counts),
        val_fraction=val_fraction,
        seed=seed,
        dtype=dtype,
        separator=SEPARATOR,
        splits=splits,
        tokenizer=TokenizerRecord(
            source=tok_source,
            vocab_size=info.vocab_size,
            eos_id=info.eos_id,
            eos_token=info.eos_token,
            sha256=info.sha256,
            dir="tokenizer",
        ),
        text_bytes=total_bytes,
        tokenize_seconds=round(tokenize_s, 3),
        tokenize_mb_per_s=round(total_bytes / 1e6 / tokenize_s, 3) if tokenize_s > 0 else None,
    )


def read_sources(
    checks: list[SourceCheck], work: Path, load_timer: StageTimer, progress: ProgressCallback
) -> list[datasets.Dataset]:
    """Step 2: load each checked source as a table of one ``text`` column, in spec order."""
    from engine.data.sources import load_source

    parts: list[datasets.Dataset] = []
    for i, check in enumerate(checks):
        load_timer.report(
            documents=sum(len(p) for p in parts), message=f"loading {check.source.to_string()}", force=True
        )
        parts.append(load_source(check, work / f"src{i}", progress=progress))
    return parts


def mix_sources(
    spec: DataSpec, parts: list[datasets.Dataset], counts: list[int], seed: int, load_timer: StageTimer
) -> datasets.Dataset:
    """Step 3: one table of every document to train on, each source cut to its share of the mix.

    A weighted source gives a seeded subset of its documents, kept in file order for fast reads.
    No document at all is an error: there would be nothing to train a tokenizer on.
    """
    import datasets
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen = []
    for part, n in zip(parts, counts, strict=False):
        if n < len(part):
            part = part.select(np.sort(rng.choice(len(part), size=n, replace=False)).tolist())
        chosen.append(part)
    ds = chosen[0] if len(chosen) == 1 else datasets.concatenate_datasets(chosen)
    if len(ds) == 0:
        raise ConfigError(
            "data",
            f"data spec {spec.to_string()!r} gives no documents (every row is empty "
            "or missing). Fix: check the text column (`#COLUMN`) and the files' contents.",
        )
    load_timer.report(documents=len(ds), message=f"loaded {len(ds):,} documents", force=True)
    return ds


def split_held_out(
    ds: datasets.Dataset, val_fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Step 4: ``(train, val)`` by whole documents, a seeded choice kept in corpus order.

    ``round(val_fraction * n)`` documents are held out (at least one, and at least one left to
    train on). With a single document ``val`` is None and :func:`split_by_tokens` cuts its tokens
    instead, after tokenizing.
    """
    import numpy as np

    total_docs = len(ds)
    n_val = 0
    if val_fraction > 0 and total_docs >= 2:
        n_val = min(total_docs - 1, max(1, round(val_fraction * total_docs)))
    if not n_val:
        return ds, None
    perm = np.random.default_rng([seed, 1]).permutation(total_docs)
    return ds.select(np.sort(perm[n_val:]).tolist()), ds.select(np.sort(perm[:n_val]).tolist())


def build_tokenizer(
    tok_cfg: TokenizerConfig, train_ds: datasets.Dataset, tok_dir: Path, progress: ProgressCallback
) -> tuple[TokenizerInfo, str]:
    """Step 5: train byte-level BPE on the training documents, or adopt a pretrained tokenizer.

    Trained on the training part only, so held-out text never shapes the vocabulary. Returns the
    saved tokenizer's info and what it came from (``trained`` or the adopted name).
    """
    tok_timer = StageTimer("tokenizer", progress)
    if tok_cfg.pretrained is not None:
        from engine.data.tokenizer import adopt_pretrained

        tok_timer.report(message=f"loading tokenizer {tok_cfg.pretrained}", force=True)
        adopt_pretrained(tok_cfg.pretrained, tok_dir)
        tok_source = tok_cfg.pretrained
    else:
        from engine.data.tokenizer import save_tokenizer, train_tokenizer

        tok_timer.report(message=f"training byte-level BPE, vocab {tok_cfg.vocab_size:,}", force=True)
        batches = (b["text"] for b in train_ds.iter(batch_size=1000))
        tok = train_tokenizer(batches, tok_cfg, length=len(train_ds))
        save_tokenizer(tok, tok_dir, special_tokens=tok_cfg.special_tokens)
        tok_source = "trained"
    info = tokenizer_info(tok_dir)
    tok_timer.report(message=f"tokenizer ready: vocab {info.vocab_size:,}", force=True)
    return info, tok_source


def pack_splits(
    train_ds: datasets.Dataset,
    val_ds: datasets.Dataset | None,
    info: TokenizerInfo,
    dtype: str,
    tmp: Path,
    work: Path,
    val_fraction: float,
    num_proc: int | None,
    total_bytes: int,
    progress: ProgressCallback,
) -> dict[str, SplitInfo]:
    """Step 6: tokenize each split into its token file (``train.bin``, ``val.bin``), one progress bar."""
    timer = StageTimer("tokenize", progress, bytes_total=total_bytes)
    done = TokenCount()
    splits = {"train": tokenize_split(train_ds, info, dtype, tmp / "train.bin", work, num_proc, timer, done)}
    if val_ds is not None:
        splits["val"] = tokenize_split(val_ds, info, dtype, tmp / "val.bin", work, num_proc, timer, done)
    elif val_fraction > 0:
        splits.update(split_by_tokens(tmp, dtype, val_fraction))
    timer.report(
        documents=done.documents,
        tokens=done.tokens,
        bytes_done=done.text_bytes,
        force=True,
        message="tokenized",
    )
    return splits


def source_records(
    checks: list[SourceCheck], parts: list[datasets.Dataset], counts: list[int]
) -> list[SourceInfo]:
    """The manifest's per-source lines: what each source had, what the mix took, what was repaired."""
    return [
        SourceInfo(
            spec=check.source.to_string(),
            kind=check.source.kind,
            documents=int(n),
            available_documents=len(part),
            text_bytes=_text_bytes(part),
            invalid_utf8_bytes=check.invalid_bytes,
            first_invalid_utf8=check.first_invalid,
            files=len(check.files),
        )
        for check, part, n in zip(checks, parts, counts, strict=False)
    ]


def mix_counts(spec: DataSpec, available: list[int]) -> list[int]:
    """Documents to take from each source: all of them, or the largest mix with the given weights."""
    if not spec.weighted:
        return list(available)
    weights = [s.weight or 0.0 for s in spec.sources]
    total_w = sum(weights)
    shares = [w / total_w for w in weights]
    scale = min(n / p for n, p in zip(available, shares, strict=False))
    return [
        min(n, max(1 if n else 0, math.floor(p * scale + 1e-9)))
        for n, p in zip(available, shares, strict=False)
    ]


def _text_bytes(ds: datasets.Dataset | None) -> int:
    """UTF-8 bytes of a table's ``text`` column, summed in Arrow (no Python strings)."""
    if ds is None:
        return 0
    import pyarrow.compute as pc

    total = 0
    for batch in ds.with_format("arrow").iter(batch_size=100_000):
        total += pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
    return int(total)


def _encode(batch: dict[str, list], tokenizer: Any, eos_id: int) -> dict[str, list]:
    """``datasets.map`` worker: token ids of each document followed by EOS."""
    encodings = tokenizer.encode_batch_fast(batch["text"], add_special_tokens=False)
    ids = []
    for enc in encodings:
        row = enc.ids
        row.append(eos_id)
        ids.append(row)
    return {"ids": ids}


def _auto_num_proc(total_bytes: int) -> int:
    # Small corpora: the Rust batch encoder already uses every core; forking would only cost.
    return 1 if total_bytes < 4 * CHUNK_BYTES else min(os.cpu_count() or 1, 8)


def tokenize_split(
    ds: datasets.Dataset,
    info: TokenizerInfo,
    dtype: str,
    out: Path,
    work: Path,
    num_proc: int | None,
    timer: StageTimer,
    done: TokenCount,
) -> SplitInfo:
    """Tokenize ``ds`` with ``datasets.map`` (batched, ``num_proc`` processes) and append to ``out``.

    With one process the map runs in this process (``num_proc=None``: ``datasets`` 5 starts a
    pool for any number ≥ 1) and the Rust batch encoder spreads each batch over every core.
    """
    import datasets
    import numpy as np
    import pyarrow.compute as pc

    from engine.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(info.path)
    n = len(ds)
    split_bytes = _text_bytes(ds)
    procs = num_proc or _auto_num_proc(timer.bytes_total)
    rows_per_chunk = max(1000, math.ceil(n * CHUNK_BYTES / max(1, split_bytes)))
    features = datasets.Features({"ids": datasets.Sequence(datasets.Value("int32"))})
    documents = tokens = 0
    env_before = os.environ.get("TOKENIZERS_PARALLELISM")
    if procs > 1:  # each worker encodes serially; Rust threads inside forked workers would contend
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with out.open("wb") as fh:
            for start in range(0, n, rows_per_chunk):
                chunk = ds.select(range(start, min(n, start + rows_per_chunk))) if n > rows_per_chunk else ds
                chunk_bytes = _text_bytes(chunk) if n > rows_per_chunk else split_bytes
                cache_file = work / f"{out.stem}-{start}.arrow"
                mapped = chunk.map(
                    _encode,
                    batched=True,
                    batch_size=1000,
                    num_proc=procs if 1 < procs <= len(chunk) else None,
                    fn_kwargs={"tokenizer": tokenizer, "eos_id": info.eos_id},
                    remove_columns=chunk.column_names,
                    features=features,
                    cache_file_name=str(cache_file),
                    load_from_cache_file=False,
                    new_fingerprint=f"{out.stem}-{start}-{uuid.uuid4().hex}",
                    desc=None,
                )
                chunk_tokens = 0
                for batch in mapped.with_format("arrow").iter(batch_size=10_000):
                    flat = pc.list_flatten(batch.column("ids")).to_numpy()
                    fh.write(flat.astype(dtype, copy=False).tobytes())
                    documents += batch.num_rows
                    chunk_tokens += len(flat)
                tokens += chunk_tokens
                done.documents += len(chunk)
                done.text_bytes += chunk_bytes
                done.tokens += chunk_tokens
                timer.report(
                    documents=done.documents,
                    tokens=done.tokens,
                    bytes_done=done.text_bytes,
                    message=f"tokenizing {out.stem}",
                )
                del mapped
                for f in work.glob(f"{out.stem}-{start}*.arrow"):
                    f.unlink(missing_ok=True)
    finally:
        if procs > 1:
            if env_before is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = env_before
    assert out.stat().st_size == tokens * np.dtype(dtype).itemsize
    return SplitInfo(file=out.name, documents=documents, tokens=tokens, text_bytes=split_bytes)


def split_by_tokens(tmp: Path, dtype: str, val_fraction: float) -> dict[str, SplitInfo]:
    """One document only: hold out its last ``val_fraction`` of tokens (nanoGPT's 90/10 cut)."""
    import numpy as np

    train_path = tmp / "train.bin"
    all_tokens = np.fromfile(train_path, dtype=dtype)
    n_val = max(2, math.ceil(len(all_tokens) * val_fraction))
    if len(all_tokens) - n_val < 2:
        raise ConfigError(
            "data",
            f"the corpus is a single document of {len(all_tokens)} tokens, too short to "
            "hold out a validation part. Fix: add more text, or use val_fraction 0.",
        )
    cut = len(all_tokens) - n_val
    all_tokens[cut:].tofile(tmp / "val.bin")
    all_tokens[:cut].tofile(train_path)
    return {
        "train": SplitInfo(file="train.bin", documents=1, tokens=int(cut), split_by="tokens"),
        "val": SplitInfo(file="val.bin", documents=0, tokens=int(n_val), split_by="tokens"),
    }
