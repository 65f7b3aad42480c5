"""Fine-tuning batches from encoded conversations: padded or packed, seeded, exactly resumable.

Two ways to make rectangles out of examples of different lengths (:class:`ChatBatches`):

- **padded** (``packing=False``): each epoch visits the examples in an order drawn from
  ``(seed, epoch)``; a batch is the next ``micro_batch`` of them, right-padded to the longest one
  in the batch (``pad_id`` in ``input_ids``, ``-100`` in ``labels``, ``0`` in
  ``attention_mask``). Simple and exact, but short examples next to a long one waste compute on
  padding.
- **packed** (``packing=True``): once, at construction, the examples in an order drawn from
  ``seed`` are laid greedily into rows of ``seq_len`` tokens (next-fit: an example goes into the
  current row if it fits whole, else it starts a new row), so no example is ever split across
  rows (none is longer than ``seq_len``: :func:`~engine.finetune.chat_format.encode_all`
  truncated them with ``max_len = seq_len``). The unused tail of a row is padding as above.
  Each epoch visits the rows in an order drawn from ``(seed, epoch)``, and every batch has shape
  ``(micro_batch, seq_len)`` — static shapes, little padding.

  Attention crosses example boundaries inside a row: a token may attend to the end of the
  unrelated conversation packed before it, and position ids run on across the row. This is
  TRL's classic packing (``ConstantLengthDataset``) and what most QLoRA recipes trained with. It
  is acceptable because the loss is only on assistant tokens, every example opens with its
  template's own markers (role header, BOS where the tokenizer uses one) which tell the model a
  new conversation starts, and the model learns quickly to ignore what precedes them; in return
  it needs no per-example attention masks or position resets, which not every model, attention
  kernel or 4-bit path supports. Use ``packing=False`` where strict isolation matters.

The last batch of an epoch is kept even when it holds fewer than ``micro_batch`` rows (it is
dropped only if it would be empty, i.e. never): fine-tuning sets are small and every example
should count each epoch. So ``batches_per_epoch = ceil(units / micro_batch)`` exactly, where
units are examples (padded) or rows (packed); the loss is a mean over labelled tokens, so a
smaller last batch is only a slightly noisier step.

Exact resume, as :class:`engine.data.loader.TokenLoader`: the whole state is ``(epoch, step)``
plus settings and a fingerprint of the examples, checked on load
(:meth:`ChatBatches.state_dict`, plain ints). After ``load_state_dict`` the next batch is
identical to the one an uninterrupted loader would have produced; nothing depends on time or
global RNG state.
"""

from __future__ import annotations

import math
import weakref
import zlib
from collections import deque
from typing import Any

import numpy as np

from engine.config.errors import ConfigError
from engine.data.loader import check_resume_state
from engine.finetune.chat_format import IGNORE_INDEX, Example

STATE_VERSION = 1
_PACK_STREAM = 0x7061636B  # "pack": the packing order's RNG stream, apart from the epoch orders


def _fingerprint(examples: list[Example]) -> int:
    """A CRC of every example's ids and labels, so a resume refuses re-encoded or different data."""
    crc = 0
    for ex in examples:
        crc = zlib.crc32(np.asarray(ex.input_ids, dtype=np.int64).tobytes(), crc)
        crc = zlib.crc32(np.asarray(ex.labels, dtype=np.int64).tobytes(), crc)
    return crc


class ChatBatches:
    """Batches ``{"input_ids", "labels", "attention_mask"}`` (int64 tensors) forever, epoch after epoch."""

    def __init__(
        self,
        examples: list[Example],
        micro_batch: int,
        seq_len: int,
        *,
        packing: bool,
        pad_id: int,
        seed: int,
        shuffle: bool = True,
        device: Any = None,
    ) -> None:
        if micro_batch < 1 or seq_len < 1:
            raise ConfigError(
                "micro_batch",
                f"micro_batch ({micro_batch}) and seq_len ({seq_len}) must be positive. "
                "Fix: use e.g. micro_batch 4 and seq_len 512.",
            )
        if not examples:
            raise ConfigError(
                "data",
                "no training examples: every conversation was dropped or the data is empty. Fix: check "
                "the data, or raise seq_len if truncation left no assistant reply.",
            )
        for i, ex in enumerate(examples):
            if not 1 <= len(ex.input_ids) <= seq_len or len(ex.labels) != len(ex.input_ids):
                raise ValueError(
                    f"example {i} has {len(ex.input_ids)} ids and {len(ex.labels)} labels; every example "
                    f"needs 1..{seq_len} (seq_len) tokens and one label each: encode with max_len=seq_len"
                )
        self.examples = examples
        self.micro_batch = micro_batch
        self.seq_len = seq_len
        self.packing = packing
        self.pad_id = pad_id
        self.seed = seed
        self.shuffle = shuffle
        self.device = device
        self.n_tokens = sum(len(ex.input_ids) for ex in examples)
        self.fingerprint = _fingerprint(examples)
        #: The units an epoch visits: one example each (padded) or the examples packed in a row.
        self.rows: list[tuple[int, ...]] = self._pack() if packing else [(i,) for i in range(len(examples))]
        unit = "packed rows" if packing else "examples"
        if len(self.rows) < micro_batch:
            raise ConfigError(
                "micro_batch",
                f"the data makes {len(self.rows)} {unit} ({len(examples)} examples), fewer than one batch "
                f"of micro_batch {micro_batch}. Fix: use a micro_batch of at most {len(self.rows)}, "
                f"{'turn packing off, ' if packing else ''}or use more data.",
            )
        self.batches_per_epoch = math.ceil(len(self.rows) / micro_batch)
        self.epoch = 0
        self.step = 0
        self._order_epoch = -1
        self._order: np.ndarray | None = None
        #: (weak reference to a batch's attention_mask, its real tokens): tokens_in without a device sync
        self._recent: deque[tuple[weakref.ref, int]] = deque(maxlen=256)

    def _pack(self) -> list[tuple[int, ...]]:
        """Next-fit packing of the examples, in a seeded order, into rows of at most seq_len tokens."""
        n = len(self.examples)
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_PACK_STREAM,)))
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        rows: list[tuple[int, ...]] = []
        row: list[int] = []
        used = 0
        for i in order.tolist():
            length = len(self.examples[i].input_ids)
            if row and used + length > self.seq_len:
                rows.append(tuple(row))
                row, used = [], 0
            row.append(i)
            used += length
        if row:
            rows.append(tuple(row))
        return rows

    # --- position ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Where the batches are, as plain ints; save it with the checkpoint."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "micro_batch": self.micro_batch,
            "packing": int(self.packing),
            "shuffle": int(self.shuffle),
            "n_examples": len(self.examples),
            "n_tokens": self.n_tokens,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was taken (see the module docstring)."""
        check_resume_state(
            state,
            self.state_dict(),
            ("seq_len", "micro_batch", "packing", "shuffle", "seed", "n_examples", "n_tokens", "fingerprint"),
            "the fine-tuning batches",
            "(the same data, template, tokenizer and seq_len)",
        )
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])

    # --- batches ----------------------------------------------------------------------------------

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch or self._order is None:
            n = len(self.rows)
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
            else:
                self._order = np.arange(n)
            self._order_epoch = self.epoch
        return self._order

    def next_units(self) -> list[tuple[int, ...]]:
        """The rows (tuples of example indices) of the next batch; advances the position."""
        if self.step >= self.batches_per_epoch:
            self.epoch += 1
            self.step = 0
        order = self._epoch_order()
        start = self.step * self.micro_batch
        self.step += 1
        return [self.rows[int(u)] for u in order[start : start + self.micro_batch]]

    def next_batch(self) -> dict[str, Any]:
        """``input_ids``, ``labels``, ``attention_mask``: int64 ``(rows, length)`` tensors, on ``device``.

        ``length`` is ``seq_len`` when packing, else the longest example in the batch.
        """
        import torch

        units = self.next_units()
        lengths = [sum(len(self.examples[i].input_ids) for i in unit) for unit in units]
        width = self.seq_len if self.packing else max(lengths)
        ids = np.full((len(units), width), self.pad_id, dtype=np.int64)
        labels = np.full((len(units), width), IGNORE_INDEX, dtype=np.int64)
        mask = np.zeros((len(units), width), dtype=np.int64)
        for r, unit in enumerate(units):
            pos = 0
            for i in unit:
                ex = self.examples[i]
                end = pos + len(ex.input_ids)
                ids[r, pos:end] = ex.input_ids
                labels[r, pos:end] = ex.labels
                pos = end
            mask[r, :pos] = 1
        batch = {
            "input_ids": torch.from_numpy(ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(mask),
        }
        if self.device is not None and str(self.device) != "cpu":
            cuda = torch.device(self.device).type == "cuda"
            batch = {
                k: (v.pin_memory() if cuda else v).to(self.device, non_blocking=True)
                for k, v in batch.items()
            }
        self._recent.append((weakref.ref(batch["attention_mask"]), sum(lengths)))
        return batch

    def tokens_in(self, batch: dict[str, Any]) -> int:
        """Real (non-pad) tokens in ``batch``, for tokens/s.

        Known without a device sync for the last 256 batches this loader made (the hot loop must
        not wait on the GPU each step; gradient accumulation fetches several before counting);
        any other batch is counted from its attention mask.
        """
        mask = batch["attention_mask"]
        for seen, count in reversed(self._recent):
            if seen() is mask:
                return count
        return int(mask.sum())

    def __iter__(self):
        while True:
            yield self.next_batch()
