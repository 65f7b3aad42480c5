"""The Llama-style decoder, written out so a student can read the architecture top to bottom.

Module and parameter names follow ``transformers``' ``LlamaForCausalLM`` one-to-one
(``model.layers.0.self_attn.q_proj.weight`` …), so export and import are a plain copy of the
state dict and a parity test can compare logits directly.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from engine.config.model import ModelConfig
from engine.model.cache import KVCache


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): no mean subtraction, no bias.

    Computed in float32 whatever the input dtype, as Llama does, because the mean of squares of
    bf16 activations loses too much precision.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """:class:`RMSNorm`'s arithmetic, also called directly by the single-token decode step."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        # One fused kernel; the same arithmetic as the general path below.
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    normed = F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)
    return weight * normed


class RotaryEmbedding(nn.Module):
    """Rotary position embedding tables (Su et al. 2021) in Llama's "rotate half" convention.

    The channel pairs are (i, i + head_dim/2), not interleaved (i, i+1): this is the layout of
    Hugging Face Llama checkpoints, so weights move between the two without permuting q/k.
    """

    def __init__(self, head_dim: int, max_seq_len: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        positions = torch.arange(max_seq_len, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        # Not saved in checkpoints: they are a pure function of the config. The first half of
        # ``sin`` carries rotate-half's minus sign, so rotating is one ``roll`` (see apply_rotary).
        signed_sin = torch.cat((-freqs.sin(), freqs.sin()), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", signed_sin, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for ``positions`` of shape (T,) or (B, T), broadcastable against (B, H, T, D),
        cast once here rather than in every layer."""
        cos, sin = self.cos[positions].to(dtype), self.sin[positions].to(dtype)
        if positions.dim() == 2:
            return cos.unsqueeze(1), sin.unsqueeze(1)
        return cos, sin


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin, where rotate_half(x) = (-x₂, x₁) for halves x₁, x₂.

    ``roll`` swaps the halves in one op and ``signed_sin`` supplies the minus sign; in a decode
    step, where every op costs a dispatch, this is a third of the rotary work.
    """
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


class Attention(nn.Module):
    """Grouped-query causal self-attention through ``scaled_dot_product_attention``.

    K/V keep their ``n_kv_heads`` heads; ``enable_gqa=True`` lets torch broadcast them over the
    query groups inside the kernel instead of materialising a repeated copy.
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.n_kv_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        gqa = self.n_kv_heads != self.n_heads
        if mask is None:
            # Training and cache-less prefill: the causal kernel (flash attention on GPUs).
            # A single decode step (t == 1) attends to everything cached, so needs no mask at all.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    """Gated feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """Embeddings, the stack of blocks and the final norm (HF's ``LlamaModel``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)


class CausalLM(nn.Module):
    """The whole language model: ``model(tokens)`` gives logits, ``model(tokens, targets)`` the loss."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # Recompute each block's activations in the backward pass instead of storing them: about
        # a third more compute for a fraction of the activation memory. Set by the trainer.
        self.activation_checkpointing = False
        self.reset_parameters()

    # ------------------------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std) everywhere; the two projections that write into the residual
        stream (o_proj, down_proj) are scaled by 1/sqrt(2·n_layers) (GPT-2), so the residual's
        variance does not grow with depth."""
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                is_residual = name.endswith(("o_proj", "down_proj"))
                nn.init.normal_(module.weight, mean=0.0, std=residual_std if is_residual else std)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    # --------------------------------------------------------------------------------- forward
    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        ignore_index: int = -100,
    ) -> torch.Tensor:
        """Logits (B, T, vocab) for ``tokens`` (B, T), or the mean cross-entropy if ``targets``.

        ``attention_mask`` (B, S) marks real tokens with 1 and left padding with 0 over everything
        seen so far (cached tokens plus these), as in ``transformers``; positions then count real
        tokens only, so a left-padded prompt is rotated exactly like an unpadded one.
        """
        t = tokens.shape[1]
        start = cache.length if cache is not None else 0
        if start + t > self.config.max_seq_len:
            self.config.check_seq_len(start + t, "sequence length")
        if attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)[:, start : start + t]
            mask = _padded_causal_mask(attention_mask.bool(), start, t)
        else:
            positions = torch.arange(start, start + t, device=tokens.device)
            # Only a chunk appended after cached tokens needs an explicit (offset) causal mask.
            mask = _offset_causal_mask(start, t, tokens.device) if (start > 0 and t > 1) else None
        x = self.model.embed_tokens(tokens)
        # q and k leave their projections in the autocast dtype when autocast is on.
        device_type = x.device.type
        rope_dtype = (
            torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
        )
        cos, sin = self.model.rotary(positions, rope_dtype)
        checkpointed = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.model.layers:
            if checkpointed:
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask, cache, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache)
        if cache is not None:
            cache.advance(t)
        x = self.model.norm(x)
        if targets is None:
            return self.lm_head(x)
        logits = self.lm_head(x)
        return F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=ignore_index
        )

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """A preallocated KV cache in the dtype and device of the weights."""
        w = self.lm_head.weight
        return KVCache(
            n_layers=self.config.n_layers,
            batch_size=batch_size,
            n_kv_heads=self.config.n_kv_heads,
            head_dim=self.config.head_dim,
            max_len=max_len or self.config.max_seq_len,
            dtype=w.dtype,
            device=w.device,
        )

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _offset_causal_mask(start: int, t: int, device: torch.device) -> torch.Tensor:
    """Boolean (t, start+t) mask: query i (at position start+i) sees keys 0..start+i."""
    q = torch.arange(start, start + t, device=device).unsqueeze(1)
    k = torch.arange(start + t, device=device).unsqueeze(0)
    return k <= q


def _padded_causal_mask(keep: torch.Tensor, start: int, t: int) -> torch.Tensor:
    """Boolean (B, 1, t, start+t) mask: causal, and never attending to padding.

    A fully padded query row (a pad token itself) would have no key at all and give NaNs, so it
    is allowed to see itself; its output is never used.
    """
    s = start + t
    causal = _offset_causal_mask(start, t, keep.device)
    mask = causal.unsqueeze(0) & keep[:, None, :s]
    diag = torch.zeros_like(mask)
    diag[:, torch.arange(t), torch.arange(start, s)] = True
    return (mask | (diag & ~mask.any(-1, keepdim=True))).unsqueeze(1)


class DecodeStep:
    """The single-token decode step, written flat: generation's inner loop.

    ``step(tokens)`` computes what ``model(tokens[:, None], cache=cache, attention_mask=keep)``
    computes for one new token per sequence: the same kernels on the same operands, so the
    logits are bit-for-bit equal (tests check it, padded and unpadded). What it leaves out is
    the work around those kernels, which at batch 1 costs as much as the arithmetic:

    * no module calls: the weights are read once, when the step is built, into a flat list;
    * every projection is one ``mm`` on a pre-transposed view, with activations kept 2-D
      (``F.linear`` on a (B, 1, dim) input dispatches linear → t → matmul → view → mm);
    * no position, mask or rotary tensors built per step: unpadded, the rotary row is a
      ``select`` of the table at the cache length; padded, the positions are one tensor bumped
      in place and the mask is a ``narrow`` of the ``keep`` buffer the caller filled once;
    * rotate-half is one ``index_select`` instead of ``roll`` (slice, slice, cat).

    Build it once per generation with :meth:`build` (weights can be replaced between
    generations, for example by ``model.to(dtype)``); it returns ``None`` where the flat step
    would not be the model's forward: hooks, replaced or biased layers, autocast, a subclass.

    ``contiguous=True`` trades exactness and memory for speed on a CPU: each projection gets a
    copy of its weight laid out (in, out), and a one-row ``mm`` then streams the weight in the
    order it is stored. On a CPU a batch-1 decode step mostly reads weights (a 6-layer model's
    23 MB of fp32 a token), and the copies made it 1.10-1.14x faster on a 2-core AMD EPYC (measured,
    ``bench_model.py``). The copies double the weights' memory for the generation, and a one-row
    ``mm`` on them rounds differently (logits agree with the forward to ~1e-5, not bit for
    bit), so :func:`engine.model.generate.stream` asks for it only on a CPU and for small models.
    """

    def __init__(
        self, model: CausalLM, cache: KVCache, keep: torch.Tensor | None = None, *, contiguous: bool = False
    ) -> None:
        cfg = model.config
        self.cache = cache
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.gqa = cfg.n_kv_heads != cfg.n_heads
        dtype = model.lm_head.weight.dtype
        rotary = model.model.rotary
        # Cast once here; the forward casts the same fp32 values at every step.
        self.cos, self.sin = rotary.cos.to(dtype), rotary.sin.to(dtype)
        device = self.cos.device
        self.roll = torch.arange(cfg.head_dim, device=device).roll(cfg.head_dim // 2)  # x.roll(D/2)
        self.embed = model.model.embed_tokens.weight
        self.layers = [
            (
                block.input_layernorm.weight,
                block.input_layernorm.eps,
                block.self_attn.q_proj.weight.t(),
                block.self_attn.k_proj.weight.t(),
                block.self_attn.v_proj.weight.t(),
                block.self_attn.o_proj.weight.t(),
                block.post_attention_layernorm.weight,
                block.post_attention_layernorm.eps,
                block.mlp.gate_proj.weight.t(),
                block.mlp.up_proj.weight.t(),
                block.mlp.down_proj.weight.t(),
            )
            for block in model.model.layers
        ]
        self.norm, self.norm_eps = model.model.norm.weight, model.model.norm.eps
        self.lm_head = model.lm_head.weight.t()
        if contiguous:
            self.layers = [
                tuple(t.contiguous() if isinstance(t, torch.Tensor) and t.dim() == 2 else t for t in layer)
                for layer in self.layers
            ]
            self.lm_head = self.lm_head.contiguous()
        self.keep: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None
        if keep is not None:
            if keep.shape != (cache.keys[0].shape[0], cache.max_len):
                raise ValueError(f"keep must be (batch, cache.max_len), got {tuple(keep.shape)}")
            self.keep = keep.bool()[:, None, None, :]  # (B, 1, 1, max_len): SDPA's mask layout
            # A token's position counts the real tokens before it (left padding does not count).
            self.positions = keep[:, : cache.length].long().sum(-1)

    @classmethod
    def build(
        cls, model: nn.Module, cache: KVCache, keep: torch.Tensor | None = None, *, contiguous: bool = False
    ) -> DecodeStep | None:
        """The flat step for ``model``, or ``None`` when only its own forward is faithful."""
        if type(model) is not CausalLM or type(cache) is not KVCache or model.training:
            return None
        device_type = model.lm_head.weight.device.type
        if torch.is_autocast_enabled(device_type):
            return None
        from torch.nn.modules import module as module_globals

        if (
            module_globals._global_forward_hooks
            or module_globals._global_forward_pre_hooks
            or module_globals._global_forward_hooks_always_called
        ):
            return None
        exact = {CausalLM, Decoder, nn.ModuleList, Block, Attention, SwiGLU, RMSNorm, RotaryEmbedding}
        for m in model.modules():
            if m._forward_hooks or m._forward_pre_hooks:
                return None
            if type(m) is nn.Linear:
                if m.bias is not None:
                    return None
            elif type(m) is nn.Embedding:
                if m.max_norm is not None:
                    return None
            elif type(m) not in exact:
                return None
        return cls(model, cache, keep, contiguous=contiguous)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x * cos, x.index_select(-1, self.roll), sin)  # = apply_rotary

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, vocab) for ``tokens`` (B,), appended to the cache at its current length."""
        cache = self.cache
        start = cache.length
        end = start + 1
        if end > cache.max_len:
            raise ValueError(
                f"KV cache is full: {end} tokens needed, {cache.max_len} allocated. "
                "Allocate the cache with max_len >= prompt length + max_new_tokens."
            )
        b = tokens.shape[0]
        h_, kv_, d_ = self.n_heads, self.n_kv_heads, self.head_dim
        mask = None
        if self.positions is None:
            cos, sin = self.cos[start], self.sin[start]
        else:
            assert self.keep is not None
            cos = self.cos.index_select(0, self.positions).unsqueeze(1)
            sin = self.sin.index_select(0, self.positions).unsqueeze(1)
            mask = self.keep.narrow(3, 0, end)
        x = F.embedding(tokens, self.embed)
        mm, rotate = torch.mm, self._rotate
        for i, (n1, eps1, wq, wk, wv, wo, n2, eps2, wg, wu, wd) in enumerate(self.layers):
            h = rms_norm(x, n1, eps1)
            q = rotate(mm(h, wq).view(b, h_, d_), cos, sin)
            keys, values = cache.keys[i], cache.values[i]
            keys.select(2, start).copy_(rotate(mm(h, wk).view(b, kv_, d_), cos, sin))
            values.select(2, start).copy_(mm(h, wv).view(b, kv_, d_))
            y = F.scaled_dot_product_attention(
                q.view(b, h_, 1, d_),
                keys.narrow(2, 0, end),
                values.narrow(2, 0, end),
                attn_mask=mask,
                enable_gqa=self.gqa,
            )
            x = x + mm(y.reshape(b, -1), wo)
            h = rms_norm(x, n2, eps2)
            x = x + mm(F.silu(mm(h, wg)) * mm(h, wu), wd)
        cache.advance(1)
        if self.positions is not None:
            self.positions += 1
        return mm(rms_norm(x, self.norm, self.norm_eps), self.lm_head)


class GraphedDecodeStep:
    """The flat step with shapes that do not change from token to token, replayed as a CUDA graph.

    On a GPU at batch 1 a decode step is a few hundred tiny kernels whose launches cost more
    than their work; a CUDA graph launches them all at once. A graph needs every shape and
    address fixed, so this body attends over the whole preallocated cache with a mask of the
    filled positions (instead of a view of the filled prefix), writes the new key/value with
    ``index_copy_`` at a position held in a device tensor, and reads the rotary rows the same
    way. The arithmetic is the flat step's, but the attention sums over a longer (masked) row,
    so logits agree to rounding, not bit for bit.

    The first call runs the body eagerly (the warm-up CUDA graphs need) and captures it; every
    later call copies the new tokens in and replays. ``capture=False`` runs the body eagerly
    every time: how the static-shape arithmetic is tested on machines without a GPU. Built per
    generation, since the graph is bound to that generation's cache.
    """

    def __init__(self, flat: DecodeStep, *, capture: bool = True) -> None:
        self.flat = flat
        self.capture = capture
        cache = flat.cache
        device = cache.keys[0].device
        batch = cache.keys[0].shape[0]
        self.tokens = torch.zeros(batch, dtype=torch.long, device=device)
        self.pos = torch.full((1,), cache.length, dtype=torch.long, device=device)
        self.slots = torch.arange(cache.max_len, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None
        self.eager = False  # set when capture failed: plain flat steps from then on

    def _body(self) -> torch.Tensor:
        f, cache = self.flat, self.flat.cache
        b = self.tokens.shape[0]
        h_, kv_, d_ = f.n_heads, f.n_kv_heads, f.head_dim
        filled = (self.slots <= self.pos).view(1, 1, 1, -1)  # cached positions plus this one
        if f.positions is None:
            where = self.pos
            mask = filled
        else:
            assert f.keep is not None
            where = f.positions
            mask = f.keep & filled
        cos = f.cos.index_select(0, where).unsqueeze(1)  # (1 or B, 1, D)
        sin = f.sin.index_select(0, where).unsqueeze(1)
        x = F.embedding(self.tokens, f.embed)
        mm, rotate = torch.mm, f._rotate
        for i, (n1, eps1, wq, wk, wv, wo, n2, eps2, wg, wu, wd) in enumerate(f.layers):
            h = rms_norm(x, n1, eps1)
            q = rotate(mm(h, wq).view(b, h_, d_), cos, sin)
            keys, values = cache.keys[i], cache.values[i]
            keys.index_copy_(2, self.pos, rotate(mm(h, wk).view(b, kv_, d_), cos, sin).unsqueeze(2))
            values.index_copy_(2, self.pos, mm(h, wv).view(b, kv_, 1, d_))
            y = F.scaled_dot_product_attention(
                q.view(b, h_, 1, d_), keys, values, attn_mask=mask, enable_gqa=f.gqa
            )
            x = x + mm(y.reshape(b, -1), wo)
            h = rms_norm(x, n2, eps2)
            x = x + mm(F.silu(mm(h, wg)) * mm(h, wu), wd)
        return mm(rms_norm(x, f.norm, f.norm_eps), f.lm_head)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, vocab) for ``tokens`` (B,); valid until the next call (the graph's buffer)."""
        f, cache = self.flat, self.flat.cache
        if cache.length + 1 > cache.max_len:
            raise ValueError(
                f"KV cache is full: {cache.length + 1} tokens needed, {cache.max_len} allocated. "
                "Allocate the cache with max_len >= prompt length + max_new_tokens."
            )
        if self.eager:
            return f(tokens)
        self.tokens.copy_(tokens)
        self.pos.fill_(cache.length)
        if self.graph is not None:
            self.graph.replay()
            assert self.logits is not None
            logits = self.logits
        elif not self.capture:
            logits = self._body()
        else:
            # Warm-up on a side stream (this is the real step), then capture: recording a graph
            # runs nothing, so the cache and positions are untouched by the capture.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                logits = self._body().clone()
            torch.cuda.current_stream().wait_stream(side)
            try:
                graph = torch.cuda.CUDAGraph()
                # thread_local: another thread generating on the same GPU meanwhile is no error.
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    self.logits = self._body()
                self.graph = graph
            except Exception as err:  # an op that cannot be captured: the flat step carries on
                warnings.warn(f"CUDA graph capture failed ({err}); decoding without it", stacklevel=2)
                self.capture = False
                self.eager = True
        cache.advance(1)
        if f.positions is not None:
            f.positions += 1
        return logits
