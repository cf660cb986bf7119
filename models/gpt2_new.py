"""GPT-2 with the modern recipe: rotary positions, SwiGLU MLP, RMSNorm, tied embedding and head."""

import torch.nn as nn

from models.layers import ModelConfig, SwiGLU, rms_norm
from models.transformer import Transformer


class GPT2New(Transformer):
    def __init__(self, config: ModelConfig):
        super().__init__(config, norm=rms_norm, mlp=SwiGLU)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # also the output head (tied)
        self._init_weights()

    def vocab_parts(self):
        return self.wte.weight

    def embed(self, idx, start_pos, parts):
        return nn.functional.embedding(idx, parts)

    def unembed(self, h, parts):
        return h @ parts.t()

    def vocab_matrix(self):
        return self.wte.weight
