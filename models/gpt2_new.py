"""GPT-2 with the modern recipe: rotary positions, SwiGLU MLP, RMSNorm, tied embedding and head."""

import torch.nn as nn

from models.layers import ModelConfig, SwiGLU, rms_norm
from models.matmul_form import skinny_matmul
from models.transformer import Transformer


class GPT2New(Transformer):
    def __init__(self, config: ModelConfig):
        super().__init__(config, norm=rms_norm, mlp=SwiGLU)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # also the output head (tied)
        self._init_weights()

    def shared_vocab_weights(self):
        return self.wte.weight

    def embed(self, idx, start_pos, shared):
        return nn.functional.embedding(idx, shared)

    def unembed(self, h, shared):
        return skinny_matmul(h, shared)  # h @ wte^T, in the faster form for decoding's few rows

    def vocab_matrix(self):
        return self.wte.weight

    def token_table(self):
        return self.wte.weight
