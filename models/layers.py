"""Layers shared by every architecture: norms, rotary positions, attention, MLPs, the block, hooks.

Each architecture file composes these; none of them is copied. Shapes in comments use
B = batch, T = time, C = n_embd, H = query heads, K = key/value heads, D = head size.
"""

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F


def checked(default, **rules):
    """A dataclass field whose valid values are declared beside it, for the config loader to enforce
    (core/config.py): ge, gt, le, lt (bounds), nonempty (a string), pattern (a regex, with `means`
    saying in words what it accepts). Choices are declared in the annotation, with Literal."""
    return field(default=default, metadata=rules)


@dataclass
class ModelConfig:
    """Architecture hyper-parameters. nanoGPT's names, plus what the newer models need.

    Every field is also a key of core/config.py's Config, settable from a config file or the
    command line; its trailing comment is its line in `python train.py --help`.
    """

    block_size: int = checked(1024, ge=1)  # longest context in tokens (the RoPE / position tables)
    vocab_size: int = checked(50304, ge=1)  # GPT-2's 50257 padded up to a multiple of 64 for fast matmuls
    n_layer: int = checked(12, ge=1)  # transformer blocks
    n_head: int = checked(12, ge=1)  # attention (query) heads; n_embd / n_head is the head size
    n_embd: int = checked(768, ge=1)  # width of the residual stream (C)
    dropout: float = checked(0.0, ge=0, lt=1)  # dropout probability in attention, MLP and embedding
    bias: bool = False  # biases in linear layers and LayerNorms (GPT-2 style)
    n_kv_head: int | None = checked(None, ge=1)  # grouped-query attention: key/value heads; None = n_head
    n_signals: int = checked(1024, ge=1)  # reflow family: S, the number of shared signals
    topk: int = checked(64, ge=1)  # reflow-topk: non-zero entries kept per recipe row
    rope_theta: float = checked(10000.0, gt=0)  # base of the rotary position frequencies
    swiglu_multiple_of: int = checked(256, ge=1)  # SwiGLU hidden size is rounded up to a multiple of this
    # Attention weights: softmax over the visible keys, or sigmoid(q.k/sqrt(D) + b) with no
    # normalization over keys (Ramapuram et al., 2024). See CausalSelfAttention for b.
    attention: Literal["softmax", "sigmoid"] = "softmax"  # how scores become attention weights
    sigmoid_bias: Literal["-log(T)", "learned"] = "-log(T)"  # b of sigmoid attention
    # How a training step computes, not what: these may differ between a checkpoint and its resume.
    chunked_loss: bool = False  # cross-entropy loss_chunk_size positions at a time (models/chunked_loss.py)
    loss_chunk_size: int = checked(1024, ge=1)  # positions per chunk: one chunk's (chunk, V) logits at once
    activation_checkpointing: bool = False  # keep only each block's input; recompute it in the backward

    EXECUTION_KEYS = ("chunked_loss", "loss_chunk_size", "activation_checkpointing")

    def __post_init__(self):
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.attention not in ("softmax", "sigmoid"):
            raise ValueError(f"attention must be 'softmax' or 'sigmoid', got {self.attention!r}")
        if self.sigmoid_bias not in ("-log(T)", "learned"):
            raise ValueError(f"sigmoid_bias must be '-log(T)' or 'learned', got {self.sigmoid_bias!r}")
        if self.loss_chunk_size < 1:
            raise ValueError(f"loss_chunk_size must be at least 1, got {self.loss_chunk_size}")

    @property
    def swiglu_hidden(self) -> int:
        """LLaMA's choice: 2/3 of the 4C a GELU MLP would use, rounded up to swiglu_multiple_of."""
        hidden = int(8 * self.n_embd / 3)
        m = self.swiglu_multiple_of
        return m * ((hidden + m - 1) // m)


class HookPoint(nn.Module):
    """An identity with a name: the place where code reads or replaces an activation.

    Forward hooks registered on it (see `Transformer.hooks`) may return a tensor that replaces
    the activation, exactly like TransformerLens' hook points. `name` is the point's path in the
    model (`blocks.0.attn.hook_pattern`), set by the Transformer that holds it.
    """

    def __init__(self):
        super().__init__()
        self.name = ""

    @property
    def active(self) -> bool:
        """Whether a hook is registered here: attention writes out its pattern only then."""
        return bool(self._forward_hooks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1 on every path)."""

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Rotary(nn.Module):
    """Rotary position embedding tables (cos, sin) for positions 0 .. block_size - 1."""

    def __init__(self, head_size: int, block_size: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_size, 2).float() / head_size))
        angles = torch.outer(torch.arange(block_size).float(), inv_freq)  # (T, D/2)
        # Buffers, not parameters: derived from the config, so never saved or counted.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, start_pos: int) -> torch.Tensor:
        """Rotate x (B, T, heads, D) as if its first position were `start_pos`."""
        T = x.size(1)
        cos = self.cos[start_pos : start_pos + T, None].to(x.dtype)  # (T, 1, D/2)
        sin = self.sin[start_pos : start_pos + T, None].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # interleaved pairs, as in the RoFormer paper
        rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return rotated.flatten(-2)


class KVCache:
    """Keys and values of one layer for incremental decoding, preallocated to block_size."""

    def __init__(self, batch: int, n_kv_head: int, block_size: int, head_size: int, device, dtype):
        shape = (batch, n_kv_head, block_size, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = k.size(2)
        self.k[:, :, self.length : self.length + T] = k
        self.v[:, :, self.length : self.length + T] = v
        self.length += T
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query, when n_kv_head < n_head) causal attention.

    Softmax attention runs on SDPA's fused kernels, which never form the (T, T) weights; they are
    written out only when a hook is on `hook_pattern`. A hook that only reads them leaves the output
    exactly SDPA's; one that edits them (returns a tensor, or changes them in place) makes the
    edited weights act on the values. Sigmoid attention always writes its weights out.

    Sigmoid attention (config.attention = "sigmoid") weighs key j for the query at position i by
    sigmoid(q_i . k_j / sqrt(D) + b) for j <= i, and 0 after it, with no normalization over keys.
    The bias b keeps the total weight of a query near that of softmax attention at start:
    - "-log(T)": b_i = -log(i + 1), where i + 1 is the number of keys query i sees (i counted
      from 0 in the current window). The paper's b = -log(n) uses the sequence length n; under a
      causal mask each query sees its own n, and this choice depends only on the query's
      position, so cached decoding equals recomputation.
    - "learned": one learned scalar per head, the same at every position, starting at
      -log(block_size).
    """

    def __init__(self, config: ModelConfig, rotary: Rotary | None):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        assert config.n_head % config.n_kv_head == 0
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_size = config.n_embd // config.n_head
        kv_size = self.n_kv_head * self.head_size
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv_size, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = rotary  # shared by all layers; None for learned absolute positions
        self.sigmoid = config.attention == "sigmoid"
        self.learned_bias = self.sigmoid and config.sigmoid_bias == "learned"
        if self.learned_bias:
            self.sigmoid_bias = nn.Parameter(torch.full((self.n_head,), -math.log(config.block_size)))
        self.hook_q = HookPoint()  # (B, H, T, D), after rotary positions
        self.hook_k = HookPoint()  # (B, K, T, D), the new keys only, before the cache
        self.hook_v = HookPoint()  # (B, K, T, D)
        self.hook_pattern = HookPoint()  # (B, H, T, keys): the attention weights, on request

    def project(self, x: torch.Tensor, start_pos: int = 0):
        """Queries (B, H, T, D), keys and values (B, K, T, D) of x (B, T, C), positions rotated."""
        B, T, _ = x.size()
        H, K = self.n_head, self.n_kv_head
        qk, v = self.c_attn(x).view(B, T, H + 2 * K, self.head_size).split([H + K, K], dim=2)
        if self.rotary is not None:
            qk = self.rotary(qk, start_pos)  # queries and keys in one pass: half the small ops
        q, k = qk.transpose(1, 2).split([H, K], dim=1)
        return q, k, v.transpose(1, 2)

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: KVCache | None = None,
                write_pattern: bool | None = None):
        """`write_pattern` forces the choice of path that a hook on hook_pattern makes (None: ask
        the hook point), so that activation checkpointing recomputes the path the forward took."""
        B, T, C = x.size()
        q, k, v = self.project(x, start_pos)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, K, start_pos + T, D)
        if write_pattern is None:
            write_pattern = self.hook_pattern.active
        if self.sigmoid:
            y = self.apply_weights(self.hook_pattern(self.attention_weights(q, k, start_pos)), v)
        elif write_pattern:
            weights = self.attention_weights(q, k, start_pos)
            version = weights._version
            seen = self.hook_pattern(weights)
            if seen is weights and weights._version == version:  # only read: the output stays SDPA's
                y = self.attend_fused(q, k, v, start_pos)
            else:  # edited (returned or changed in place): the edited weights act on the values
                y = self.apply_weights(seen, v)
        else:
            y = self.attend_fused(q, k, v, start_pos)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, H, T, D) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def attend_fused(self, q, k, v, start_pos: int) -> torch.Tensor:
        """Softmax attention through SDPA's fused kernels: (B, H, T, D)."""
        T = q.size(2)
        # Queries see every cached key plus the causal part of the new ones.
        if start_pos == 0:
            mask, causal = None, True
        elif T == 1:
            mask, causal = None, False
        else:
            total = k.size(2)
            mask = torch.ones(T, total, dtype=torch.bool, device=q.device).tril(total - T)
            causal = False
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_head != self.n_head,
        )

    def attention_weights(self, q, k, start_pos: int) -> torch.Tensor:
        """The attention weights written out: (B, H, T, keys), zero where the causal mask hides."""
        T, total = q.size(2), k.size(2)
        k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)  # a key head per query group
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)  # (B, H, T, total)
        query_pos = torch.arange(start_pos, start_pos + T, device=q.device)
        visible = torch.arange(total, device=q.device)[None, :] <= query_pos[:, None]  # (T, total)
        if not self.sigmoid:
            return F.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        if self.learned_bias:
            bias = self.sigmoid_bias.to(scores.dtype)[:, None, None]  # (H, 1, 1)
        else:
            bias = -torch.log1p(query_pos.to(scores.dtype))[:, None]  # (T, 1): -log(keys seen)
        return torch.sigmoid(scores + bias).masked_fill(~visible, 0.0)

    def apply_weights(self, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """weights (B, H, T, keys) @ values (B, K, keys, D) -> (B, H, T, D), with attention dropout."""
        v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        return F.dropout(weights, self.dropout, self.training) @ v


class GeluMLP(nn.Module):
    """GPT-2's MLP: C -> 4C -> GELU -> C."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.hook_post = HookPoint()  # (B, T, 4C): the hidden activations, after the GELU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.hook_post(F.gelu(self.c_fc(x)))))


class SwiGLU(nn.Module):
    """LLaMA's MLP: C -> (silu(x W_gate) * x W_up) -> C, hidden size config.swiglu_hidden."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.swiglu_hidden
        # Gate and up projections in one matmul: one kernel launch instead of two.
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.hook_post = HookPoint()  # (B, T, hidden): silu(gate) * up, what c_proj reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(self.hook_post(F.silu(gate) * up)))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(x)), with hook points."""

    def __init__(self, config: ModelConfig, norm: type, mlp: type, rotary: Rotary | None):
        super().__init__()
        self.ln_1 = norm(config)
        self.attn = CausalSelfAttention(config, rotary)
        self.ln_2 = norm(config)
        self.mlp = mlp(config)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: KVCache | None = None,
                write_pattern: bool | None = None):
        x = self.hook_resid_pre(x)
        attn_out = self.attn(self.ln_1(x), start_pos, cache, write_pattern)
        x = self.hook_resid_mid(x + self.hook_attn_out(attn_out))
        x = self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln_2(x))))
        return x


def layer_norm(config: ModelConfig) -> LayerNorm:
    return LayerNorm(config.n_embd, bias=config.bias)


def rms_norm(config: ModelConfig) -> RMSNorm:
    return RMSNorm(config.n_embd)


def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2 init: N(0, 0.02) for matrices, zero biases; residual projections scaled 1/sqrt(2L)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj") else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
