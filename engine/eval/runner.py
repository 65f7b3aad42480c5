"""The evaluation itself: each model loaded once, perplexity and generation scored, results written.

:func:`evaluate` is what the ``eval`` engine process (:mod:`engine.eval.worker`) runs inside its
run context. For each model, in the order given:

1. load it through :class:`engine.serve.session.InferenceSession` (the very code chat and
   ``canvas generate`` use), so the weights scored are the weights that generate;
2. **perplexity**: every evaluation document scored with rolling windows of the model's context
   (:func:`engine.eval.perplexity.loglikelihood_rolling`), per-document summed log-likelihoods kept;
   for a fine-tune on its held-out conversations, the log-likelihood of each final reply given the
   conversation (``reply_perplexity``: the quantity the fine-tune optimises);
3. **generation**: greedy continuation of each prompt (``temperature 0``, seeded), or the final reply
   of each held-out conversation through the fine-tune's chat template;
4. with ``--with-base``, steps 2 and 3 again for each fine-tune with its adapter off (same loaded
   weights), labelled ``"<label> (base)"``.

Then the generations are scored (:func:`engine.eval.scoring.score_generation`, seeded with the run's
seed, so ``canvas score EVAL_RUN`` reproduces the numbers from ``samples.jsonl``), every pair of
models that read the same text is compared on the same samples, and ``samples.jsonl`` and
``results.json`` are written (atomically), and each evaluated run's ``evals`` lists this run.

Progress goes to ``events.jsonl`` as ``progress`` events (``phase`` names the model and task);
a stop request (``canvas stop``, the control file) is honoured between documents and samples.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from engine.eval import tasks
from engine.eval.launch import EvalConfig
from engine.eval.results import (
    GENERATION_METRICS,
    RESULTS_FILE,
    SAMPLES_FILE,
    ComparisonResult,
    EvalResults,
    ModelResult,
    write_results,
)


class Stopped(Exception):
    """A stop was requested; the evaluation ends without results."""


@dataclass
class Variant:
    """One scored configuration of a loaded model: adapter on (the model as given) or off."""

    label: str
    adapter: bool
    result: ModelResult
    nll: list[float] = field(default_factory=list)  # per perplexity document: -Σ log p
    reply_nll: list[float] = field(default_factory=list)
    reply_tokens: list[int] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class SourceState:
    """The samples cut from one text source (shared by every model that reads it)."""

    texts: tasks.EvalTexts
    docs: list[int] = field(default_factory=list)  # perplexity documents (indices)
    samples: list[tasks.GenerationSample] | None = None
    labels: list[str] = field(default_factory=list)
    cut_by: str | None = None  # the model whose tokenizer cut the documents into prompts


def _as_metric(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"value": float(value["value"]), "ci95": value.get("ci95")}
    if hasattr(value, "to_json"):
        return _as_metric(value.to_json())
    if is_dataclass(value) and not isinstance(value, type):
        return _as_metric(asdict(value))
    return {"value": float(value), "ci95": None}


def _unique(label: str, taken: set[str], checkpoint: str | None) -> str:
    if label not in taken:
        return label
    candidate = f"{label}@{checkpoint}" if checkpoint else label
    n = 2
    while candidate in taken:
        candidate = f"{label} #{n}"
        n += 1
    return candidate


class Evaluator:
    """One evaluation run; see the module docstring. ``emit``/``log``/``stop`` come from the run's
    :class:`~engine.runs.session.EngineSession` (or a test's stand-ins)."""

    def __init__(
        self,
        cfg: EvalConfig,
        *,
        emit: Callable[..., Any] = lambda *a, **k: None,
        log: Callable[[str], Any] = lambda message: None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self.emit = emit
        self.log = log
        self.stop = stop
        self.sources: dict[str, SourceState] = {}
        self.variants: list[Variant] = []
        self._last_progress = 0.0
        self._scores: dict[str, Any] = {}
        self._samples: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------ helpers
    def _check_stop(self) -> None:
        if self.stop():
            raise Stopped

    def _progress(
        self, phase: str, done: int, total: int, unit: str, started: float, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and done < total and now - self._last_progress < 0.5:
            return
        self._last_progress = now
        elapsed = now - started
        rate = done / elapsed if elapsed > 0 and done else None
        eta = (total - done) / rate if rate else None
        self.emit("progress", phase=phase, done=done, total=total, unit=unit, rate=rate, eta=eta)

    def _entry(self, index: int) -> dict[str, Any]:
        """The resolved model (kind, label, run id) plus its run's path and config."""
        from engine.serve import models

        spec = self.cfg.models[index]
        r = models.resolve(spec, self.cfg.checkpoint)
        config: dict[str, Any] = dict(r.config)
        if r.run_path is not None and not config:
            from engine.runs.store import RunDir

            config = dict(RunDir(r.run_path).read_meta().config)
        return {
            "model": spec,
            "label": r.label,
            "kind": r.kind,
            "run_id": r.run_id,
            "run_path": str(r.run_path) if r.run_path else None,
            "checkpoint": r.checkpoint,
            "config": config,
            "tokenizer": str(r.tokenizer or r.source or r.adapter or ""),
        }

    def _source(self, entry: dict[str, Any]) -> SourceState:
        data = self.cfg.data
        key = f"data:{data}" if data is not None else f"run:{entry['run_id']}"
        if key not in self.sources:
            self.log(f"reading the evaluation text for {entry['label']} ({data or 'its held-out split'})")
            texts = tasks.texts_for(entry, data)
            state = SourceState(texts)
            state.docs = tasks.perplexity_documents(texts.documents, self.cfg.samples, self.cfg.seed)
            if texts.chat:
                state.samples = tasks.conversation_samples(
                    texts.conversations, self.cfg.samples, self.cfg.seed
                )
            self.sources[key] = state
        return self.sources[key]

    # ------------------------------------------------------------------------------ the run
    def run(self) -> EvalResults:
        from engine.serve import protocol
        from engine.serve.session import InferenceSession

        cfg = self.cfg
        taken: set[str] = set()
        for index, spec in enumerate(cfg.models):
            self._check_stop()
            entry = self._entry(index)
            state = self._source(entry)
            session = InferenceSession()
            self.log(f"loading {spec} ({entry['checkpoint'] or 'default checkpoint'})")
            ready = session.load(
                protocol.Load(
                    id=f"load-{index}",
                    model=spec,
                    checkpoint=cfg.checkpoint,
                    device=cfg.device,
                    dtype=cfg.dtype,
                ),
                on_progress=lambda p, s=spec: self.emit(
                    "progress", phase=f"{s}: {p.phase or 'load'}", done=p.done, total=p.total, unit=p.unit
                ),
            )
            try:
                label = _unique(entry["label"], taken, entry["checkpoint"])
                taken.add(label)
                runs = [(label, True)]
                if cfg.with_base and entry["kind"] == "finetune":
                    base = _unique(f"{label} (base)", taken, None)
                    taken.add(base)
                    runs.append((base, False))
                for name, adapter in runs:
                    variant = self._variant(name, adapter, entry, ready, session, state)
                    self.variants.append(variant)
                    state.labels.append(name)
            finally:
                session.close()
        self._check_stop()
        return self._finish()

    def _variant(
        self, label: str, adapter: bool, entry: dict[str, Any], ready: Any, session: Any, state: SourceState
    ) -> Variant:
        cfg = self.cfg
        result = ModelResult(
            label=label,
            model=entry["model"],
            kind=entry["kind"],
            checkpoint=entry["checkpoint"],
            adapter=(adapter if entry["kind"] == "finetune" or session.peft else None),
            run_id=entry["run_id"],
            tokenizer=_tokenizer_name(session, entry),
            window=_max_seq_len(session),
            source=state.texts.source,
        )
        variant = Variant(label, adapter, result)
        if "perplexity" in cfg.tasks:
            if state.docs:
                self._perplexity(variant, session, state)
            if state.texts.chat:
                self._reply_perplexity(variant, session, state)
        if "generation" in cfg.tasks:
            self._generation(variant, session, state)
        return variant

    # ------------------------------------------------------------------------------ perplexity
    def _perplexity(self, v: Variant, session: Any, state: SourceState) -> None:
        from engine.eval.perplexity import loglikelihood_rolling, perplexity_from

        cfg = self.cfg
        docs = [state.texts.documents[i] for i in state.docs]
        encoded = [_encode(session, d) for d in docs]
        fn = _logits_fn(session, v.adapter)
        window = _max_seq_len(session)
        lls: list[float] = []
        started = time.monotonic()
        phase = f"{v.label}: perplexity"
        self._progress(phase, 0, len(docs), "documents", started, force=True)
        step = max(1, cfg.batch_size)
        for at in range(0, len(encoded), step):
            self._check_stop()
            lls.extend(
                loglikelihood_rolling(
                    fn,
                    encoded[at : at + step],
                    prefix_token=_bos(session),
                    pad_id=session.pad_id,
                    max_seq_len=window,
                    batch_size=cfg.batch_size,
                )
            )
            self._progress(phase, len(lls), len(docs), "documents", started)
        seconds = max(time.monotonic() - started, 1e-9)
        tokens = [len(ids) for ids in encoded]
        word_counts = [tasks.words(d) for d in docs]
        byte_counts = [tasks.text_bytes(d) for d in docs]
        ppl = perplexity_from(
            lls, tokens, word_counts, byte_counts, seed=cfg.seed, n_bootstrap=cfg.n_bootstrap
        )
        for name in ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"):
            v.result.metrics[name] = _as_metric(getattr(ppl, name))
        v.nll = [-x for x in lls]
        v.result.documents = len(docs)
        v.result.tokens = sum(tokens)
        v.result.bytes = sum(byte_counts)
        v.result.tokens_per_s = sum(tokens) / seconds
        v.result.per_document = [
            {"index": i, "loglikelihood": ll, "tokens": t, "words": w, "bytes": b}
            for i, ll, t, w, b in zip(state.docs, lls, tokens, word_counts, byte_counts, strict=True)
        ]
        self._progress(phase, len(docs), len(docs), "documents", started, force=True)
        bpb = v.result.metrics["bits_per_byte"]["value"]
        self.log(f"{v.label}: bits per byte {bpb:.4f} over {len(docs)} documents ({sum(tokens)} tokens)")

    def _reply_perplexity(self, v: Variant, session: Any, state: SourceState) -> None:
        from engine.eval.bootstrap import ratio_metric
        from engine.eval.perplexity import loglikelihood

        if session.formatter is None or state.samples is None:
            return
        cfg = self.cfg
        pairs: list[tuple[list[int], list[int]]] = []
        for sample in state.samples:
            conv = [*(sample.messages or []), {"role": "assistant", "content": sample.reference}]
            context, reply = _reply_pair(session.formatter, conv)
            pairs.append((context, reply[: _max_seq_len(session)]))
        fn = _logits_fn(session, v.adapter)
        lls: list[float] = []
        started = time.monotonic()
        phase = f"{v.label}: reply perplexity"
        step = max(1, cfg.batch_size)
        for at in range(0, len(pairs), step):
            self._check_stop()
            lls.extend(
                loglikelihood(
                    fn,
                    pairs[at : at + step],
                    max_seq_len=_max_seq_len(session),
                    batch_size=cfg.batch_size,
                    pad_id=session.pad_id,
                )
            )
            self._progress(phase, len(lls), len(pairs), "conversations", started)
        v.reply_nll = [-x for x in lls]
        v.reply_tokens = [len(c) for _, c in pairs]
        if pairs:
            v.result.metrics["reply_perplexity"] = ratio_metric(
                v.reply_nll, v.reply_tokens, transform=_exp, seed=cfg.seed, n_bootstrap=cfg.n_bootstrap
            )
            v.result.extra["reply_tokens"] = sum(v.reply_tokens)
            v.result.extra["reply_per_sample"] = [
                {"index": s.index, "loglikelihood": ll, "tokens": t}
                for s, ll, t in zip(state.samples, lls, v.reply_tokens, strict=True)
            ]
            value = v.result.metrics["reply_perplexity"]["value"]
            self.log(f"{v.label}: reply perplexity {value:.3f} over {len(pairs)} held-out replies")

    # ------------------------------------------------------------------------------ generation
    def _generation(self, v: Variant, session: Any, state: SourceState) -> None:
        from engine.serve import protocol

        cfg = self.cfg
        if state.samples is None:  # documents: cut with the first model's tokenizer, shared after
            state.samples = tasks.document_samples(
                state.texts.documents,
                cfg.samples,
                cfg.seed,
                prompt_tokens=cfg.prompt_tokens,
                new_tokens=cfg.new_tokens,
                encode=lambda text: _encode(session, text),
                decode=lambda ids: session.tokenizer.decode(ids, skip_special_tokens=False),
            )
            state.cut_by = v.label
        samples = state.samples
        started = time.monotonic()
        phase = f"{v.label}: generation"
        new_tokens, gen_seconds, refused = 0, 0.0, 0
        cancelled = threading.Event()
        for n, sample in enumerate(samples):
            self._check_stop()
            self._progress(phase, n, len(samples), "samples", started)
            if sample.messages is not None:
                request = protocol.Generate(
                    id=f"g{n}",
                    messages=[protocol.Message(m["role"], m["content"]) for m in sample.messages],
                    max_new_tokens=cfg.new_tokens,
                    temperature=0.0,
                    seed=cfg.seed,
                    adapter=v.adapter,
                )
            else:
                request = protocol.Generate(
                    id=f"g{n}",
                    prompt=sample.prompt,
                    max_new_tokens=cfg.new_tokens,
                    temperature=0.0,
                    seed=cfg.seed,
                    adapter=v.adapter,
                )
            t0 = time.perf_counter()
            try:
                done = session.generate(request, lambda delta: None, cancelled)
            except protocol.ProtocolError as exc:  # e.g. a conversation longer than the context
                refused += 1
                if refused == 1:
                    self.log(f"{v.label}: sample {n} cannot be generated ({exc.message}); it scores as empty")
                v.outputs.append("")
                continue
            gen_seconds += time.perf_counter() - t0
            new_tokens += done.new_tokens
            v.outputs.append(done.text)
        self._progress(phase, len(samples), len(samples), "samples", started, force=True)
        if refused:
            self.log(
                f"{v.label}: {refused} of {len(samples)} samples could not be generated (scored as empty)"
            )
        v.result.extra["generation_refused"] = refused
        v.result.extra["generation_tokens_per_s"] = new_tokens / gen_seconds if gen_seconds > 0 else None
        if v.result.tokens_per_s is None and gen_seconds > 0:
            v.result.tokens_per_s = new_tokens / gen_seconds

    # ------------------------------------------------------------------------------ results
    def _finish(self) -> EvalResults:
        from engine.eval.scoring import score_generation

        cfg = self.cfg
        per_sample: dict[str, list[dict[str, float]]] = {}
        for v in self.variants:
            state = self._state_of(v)
            if "generation" in cfg.tasks and state.samples:
                scores = score_generation(
                    v.outputs,
                    [[s.reference] for s in state.samples],
                    seed=cfg.seed,
                    n_bootstrap=cfg.n_bootstrap,
                )
                for name, value in scores.metrics.items():
                    v.result.metrics[name] = _as_metric(value)
                v.result.bleu_signature = scores.bleu_signature
                v.result.chrf_signature = scores.chrf_signature
                v.result.extra["chrf_pp_signature"] = getattr(scores, "chrf_pp_signature", None)
                per_sample[v.label] = list(scores.per_sample)
                self._scores[v.label] = scores
        comparisons = self._comparisons(per_sample)
        settings = {
            "data": cfg.data,
            "samples": cfg.samples,
            "tasks": list(cfg.tasks),
            "seed": cfg.seed,
            "prompt_tokens": cfg.prompt_tokens,
            "continuation_tokens": cfg.new_tokens,
            "sampling": {"temperature": 0.0, "top_k": None, "top_p": None, "max_new_tokens": cfg.new_tokens},
            "n_bootstrap": cfg.n_bootstrap,
            "with_base": cfg.with_base,
            "checkpoint": cfg.checkpoint,
            "sources": {
                key: {
                    "source": s.texts.source,
                    "documents": len(s.texts.documents) or len(s.texts.conversations),
                    "perplexity_documents": len(s.docs),
                    "generation_samples": len(s.samples or []),
                    "cut_by": s.cut_by,
                    "models": list(s.labels),
                }
                for key, s in self.sources.items()
            },
        }
        self._samples = self._sample_records(per_sample)
        return EvalResults(
            settings=settings, models=[v.result for v in self.variants], comparisons=comparisons
        )

    def _state_of(self, v: Variant) -> SourceState:
        return next(s for s in self.sources.values() if v.label in s.labels)

    def _comparisons(self, per_sample: dict[str, list[dict[str, float]]]) -> list[ComparisonResult]:
        from engine.eval import bootstrap

        cfg = self.cfg
        out: list[ComparisonResult] = []
        for state in self.sources.values():
            group = [v for v in self.variants if v.label in state.labels]
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    labels = (a.label, b.label)
                    found: list[Any] = []
                    if a.nll and b.nll:
                        byte_counts = [d["bytes"] for d in a.result.per_document]
                        found.append(
                            bootstrap.paired_ratio_difference(
                                "bits_per_byte", a.nll, byte_counts, b.nll, byte_counts,
                                transform=_bits, labels=labels, seed=cfg.seed, n_bootstrap=cfg.n_bootstrap,
                            )
                        )  # fmt: skip
                    if a.reply_nll and b.reply_nll:
                        found.append(
                            bootstrap.paired_ratio_difference(
                                "reply_perplexity", a.reply_nll, a.reply_tokens, b.reply_nll, b.reply_tokens,
                                transform=_exp, labels=labels, seed=cfg.seed, n_bootstrap=cfg.n_bootstrap,
                            )
                        )  # fmt: skip
                    if a.label in self._scores and b.label in self._scores:
                        found.extend(self._generation_comparisons(a, b))
                    out.extend(ComparisonResult(**_comparison_json(c)) for c in found)
        return out

    def _generation_comparisons(self, a: Variant, b: Variant) -> list[Any]:
        """ROUGE (paired bootstrap of means), BLEU / chrF / chrF++ (sacrebleu's paired bootstrap)."""
        from engine.eval.scoring import paired_comparison

        cfg = self.cfg
        sa, sb = self._scores[a.label], self._scores[b.label]
        return [
            paired_comparison(
                sa, sb, name, labels=(a.label, b.label), seed=cfg.seed, n_bootstrap=cfg.n_bootstrap
            )
            for name in GENERATION_METRICS
        ]

    def _sample_records(self, per_sample: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for state in self.sources.values():
            if not state.samples:
                continue
            group = [v for v in self.variants if v.label in state.labels and v.outputs]
            if not group:
                continue
            task = "reply" if state.texts.chat else "generation"
            for n, sample in enumerate(state.samples):
                records.append(
                    {
                        "index": len(records),
                        "task": task,
                        "source": state.texts.source,
                        "prompt": sample.prompt,
                        "reference": sample.reference,
                        "outputs": {v.label: v.outputs[n] for v in group},
                        "scores": {v.label: per_sample[v.label][n] for v in group if v.label in per_sample},
                    }
                )
        return records

    def write(self, folder: Path, results: EvalResults) -> None:
        """``samples.jsonl`` then ``results.json``, each atomically."""
        from engine.eval.samples import Sample, write_samples

        write_samples(folder / SAMPLES_FILE, [Sample(**r) for r in self._samples])
        write_results(folder / RESULTS_FILE, results)


def _comparison_json(c: Any) -> dict[str, Any]:
    data = c.to_json() if hasattr(c, "to_json") else dict(c)
    return {k: data.get(k) for k in ("a", "b", "metric", "difference", "ci95", "p_value", "verdict")}


def _exp(r: Any) -> Any:
    import numpy as np

    return np.exp(np.minimum(r, 700.0))


def _bits(r: Any) -> Any:
    return r / math.log(2)


# ------------------------------------------------------------------------------ session access
def _encode(session: Any, text: str) -> list[int]:
    return [int(t) for t in session.tokenizer(text, add_special_tokens=False)["input_ids"]]


def _max_seq_len(session: Any) -> int:
    value = session.max_seq_len
    return int(value) if isinstance(value, int) and value > 0 else 2048


def _bos(session: Any) -> int:
    """What the first token of a document is conditioned on (lm-eval's prefix token)."""
    return int(session.prefix_token)


def _logits_fn(session: Any, adapter: bool) -> Callable[[Any], Any]:
    """The session's forward (input ids → logits), with a fine-tune's adapter off when asked."""
    return session.logits_fn(adapter=adapter)


def _tokenizer_name(session: Any, entry: dict[str, Any]) -> str:
    tok = session.tokenizer
    inner = getattr(tok, "tok", None)
    size = inner.get_vocab_size() if inner is not None else len(tok)
    where = entry.get("tokenizer") or getattr(tok, "name_or_path", "") or ""
    kind = type(tok).__name__.lstrip("_")
    return f"{kind}, vocabulary {size}" + (f" ({where})" if where else "")


def _reply_pair(formatter: Any, conversation: Sequence[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(context, reply) token ids of a conversation's final assistant reply, exactly as the
    fine-tune's loss sees it: the template's rendering, the reply's labelled tokens."""
    from engine.finetune.chat_format import IGNORE_INDEX

    ids, labels = formatter._tokens(list(conversation))
    end = len(labels)
    while end > 0 and labels[end - 1] == IGNORE_INDEX:
        end -= 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    if start == end or start == 0:
        raise ValueError("the conversation's final reply has no tokens the template marks as the assistant's")
    return ids[:start], ids[start:end]


def evaluate(cfg: EvalConfig, session: Any) -> EvalResults:
    """Run the evaluation inside an engine session (:func:`engine.runs.session.run_context`):
    results written into its run directory and linked from every evaluated run."""
    evaluator = Evaluator(
        cfg,
        emit=session.emit,
        log=session.log,
        stop=lambda: session.stop_requested,
    )
    evaluator.emit("run_info", config=cfg.to_dict(), device=cfg.device)
    results = evaluator.run()
    evaluator.write(session.run.path, results)
    link_runs(session.run.id, results)
    for c in results.comparisons:
        session.log(c.verdict)
    return results


def link_runs(eval_id: str, results: EvalResults) -> None:
    """Add ``eval_id`` to ``evals`` in the run.json of every evaluated run (under its lock)."""
    import contextlib

    from engine.runs.store import RunStoreError, resolve_run

    for run_id in dict.fromkeys(m.run_id for m in results.models if m.run_id):
        with contextlib.suppress(RunStoreError, OSError, ValueError):
            run = resolve_run(run_id)
            with run.locked():
                meta = run.read_meta()
                if eval_id not in meta.evals:
                    run.write_meta(meta.with_changes(evals=[*meta.evals, eval_id]))
