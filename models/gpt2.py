"""GPT-2 as in nanoGPT: learned absolute positions, LayerNorm, GELU MLP, tied embedding and head."""

import torch
import torch.nn as nn

from models.layers import GeluMLP, ModelConfig, layer_norm
from models.matmul_form import skinny_matmul
from models.transformer import Transformer


class GPT2(Transformer):
    uses_rope = False

    def __init__(self, config: ModelConfig):
        super().__init__(config, norm=layer_norm, mlp=GeluMLP)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # also the output head (tied)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self._init_weights()

    def shared_vocab_weights(self):
        return self.wte.weight

    def embed(self, idx, start_pos, shared):
        pos = torch.arange(start_pos, start_pos + idx.size(1), device=idx.device)
        return nn.functional.embedding(idx, shared) + self.wpe(pos)

    def unembed(self, h, shared):
        return skinny_matmul(h, shared)  # h @ wte^T, in the faster form for decoding's few rows

    def vocab_matrix(self):
        return self.wte.weight

    def token_table(self):
        return self.wte.weight

    def position_params(self):
        return self.wpe.weight.numel()
