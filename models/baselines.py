"""Baselines bench.py races our models against; not for training.

- `ReferenceGPT2`: GPT-2 written plainly from its equations, the way one would write it from the
  paper (explicit attention scores, mask and softmax; nn.Linear, nn.LayerNorm, GELU; tied head).
  It holds the same parameters under the same names as models/gpt2.py, so both compute the same
  function from one state dict (tests/test_bench.py checks it), and only their speed differs.
- `MaterializedReflow`: reflow computing its vocab matrix E = W_recipe @ W_basis once per forward
  and using it like a tied embedding, the alternative to the two skinny matmuls of models/reflow.py.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import ModelConfig, Transformer
from models.reflow import Reflow


class ReferenceAttention(nn.Module):
    """softmax(Q K^T / sqrt(D) + causal mask) V over H heads, then an output projection."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("causal", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        D = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, D).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H, T, T)
        scores = scores.masked_fill(~self.causal[:T, :T], float("-inf"))
        y = F.softmax(scores, dim=-1) @ v  # (B, H, T, D)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class ReferenceMLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class ReferenceBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = ReferenceAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = ReferenceMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ReferenceGPT2(nn.Module):
    """GPT-2: token + position embedding, pre-norm blocks, final LayerNorm, logits = h @ wte^T."""

    REIMPLEMENTS = "gpt2"  # the model whose parameters it holds (memory plans size it as that one)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(ReferenceBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    # Counted exactly as our models count them, so MFU compares like with like.
    num_params = Transformer.num_params
    flops_per_token = Transformer.flops_per_token

    def position_params(self) -> int:
        return self.wpe.weight.numel()


class MaterializedReflow(Reflow):
    """reflow with E = W_recipe @ W_basis computed once per forward and used as a tied embedding."""

    REIMPLEMENTS = "reflow"  # the model whose parameters it holds (memory plans size it as that one)

    def shared_vocab_weights(self):
        return self.effective_recipe() @ self.basis  # (V, S) @ (S, C) -> (V, C)

    def embed(self, idx, start_pos, vocab):
        return F.embedding(idx, vocab)

    def unembed(self, h, vocab):
        return h @ vocab.t()


BASELINES = {"gpt2-reference": ReferenceGPT2, "reflow-materialized": MaterializedReflow}
