"""reFlow: gpt2-new's backbone with a factorized vocabulary, E = W_recipe @ W_basis.

Every token v is a recipe, a row of W_recipe (V, S), over S shared signals, the rows of
W_basis (S, C). The same product embeds tokens and scores them: logits = h @ (W_recipe @ W_basis)^T.
There is no separate head.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import ModelConfig, SwiGLU, rms_norm
from models.matmul_form import skinny_matmul
from models.transformer import Transformer


class Reflow(Transformer):
    has_recipes = True

    def __init__(self, config: ModelConfig):
        super().__init__(config, norm=rms_norm, mlp=SwiGLU)
        self.recipe = nn.Parameter(torch.empty(config.vocab_size, config.n_signals))  # W_recipe
        self.basis = nn.Parameter(torch.empty(config.n_signals, config.n_embd))  # W_basis
        self._init_weights()

    def _init_weights(self):
        super()._init_weights()
        # Scale so that each row of recipe @ basis starts like GPT-2's N(0, 0.02) embedding:
        # a row sums `active_signals` terms, each recipe entry ~0.02, each basis entry ~1/sqrt(that).
        nn.init.normal_(self.recipe, mean=0.0, std=0.02)
        nn.init.normal_(self.basis, mean=0.0, std=1.0 / math.sqrt(self.active_signals()))

    def active_signals(self) -> int:
        """How many signals a recipe row uses: all S here, top-k in reflow-topk."""
        return self.config.n_signals

    def effective_recipe(self) -> torch.Tensor:
        """The (V, S) recipes the model actually uses (reflow-topk sparsifies them)."""
        return self.recipe

    def shared_vocab_weights(self):
        return self.effective_recipe(), self.basis

    def embed(self, idx, start_pos, shared):
        recipe, basis = shared
        return F.embedding(idx, recipe) @ basis  # (B, T, S) @ (S, C) -> (B, T, C)

    def unembed(self, h, shared):
        recipe, basis = shared
        # Two skinny matmuls, h @ basis^T (C -> S) then @ recipe^T (S -> V), rather than
        # materializing E = recipe @ basis (V, C) each step. Materializing costs 3 x 2VSC FLOPs
        # (product and its two gradients, 20 GFLOP at the Shakespeare size) against 2 x 3 x 2NSC
        # for the skinny basis matmuls here and in embed (1.6 GFLOP for N = 2048 tokens), so the
        # skinny path wins while a micro-batch holds fewer than V/2 = 25k tokens. Measured with
        # bench.py's reflow-materialized row: 8% slower per step at the Shakespeare size.
        # Each is a skinny product when decoding: skinny_matmul picks its faster form on this CPU.
        return skinny_matmul(skinny_matmul(h, basis), recipe)

    def vocab_matrix(self):
        return self.effective_recipe() @ self.basis

    def token_table(self):
        return self.recipe  # W_recipe itself: reflow-topk's top-k selection is recomputed from it

    def signal_activations(self, h: torch.Tensor) -> torch.Tensor:
        """A hidden state (..., C) read in signal space: its projection onto each basis row (..., S)."""
        return h @ self.basis.t()
