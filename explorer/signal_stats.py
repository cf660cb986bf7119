"""Per-signal statistics over a fixed slice of validation text: experiment 14's dashboard, precomputed
once at start-up so that the Signal tab answers from a table.

activation: a_s = ln_f(h) . basis_s, the final hidden state read along signal s, at every position.
firing rate: share of positions where a_s exceeds FIRING_FRACTION x its peak over the slice.
selectivity: peak of a_s / mean of max(a_s, 0): how much stronger its best context is than its typical one.
(Both from experiments/related_work.py, so the explorer and the report agree.)
"""

from dataclasses import dataclass

import numpy as np
import torch

from core.tokenizer import Tokenizer
from experiments.posthoc import Factorization
from experiments.related_work import FIRING_FRACTION, selectivity_stats
from explorer.model_interface import residual_states
from models import Transformer

TOP_CONTEXTS = 8  # top-activating contexts kept per signal
CONTEXT_LEFT, CONTEXT_RIGHT = 12, 4  # tokens shown around the activating token
BATCH_WINDOWS = 8  # validation windows per forward pass

__all__ = ["FIRING_FRACTION", "SignalStats", "signal_statistics"]


@dataclass
class SignalStats:
    firing_rate: torch.Tensor  # (S,)
    selectivity: torch.Tensor  # (S,)
    top_values: torch.Tensor  # (TOP_CONTEXTS, S): the largest activations of each signal
    top_positions: torch.Tensor  # (TOP_CONTEXTS, S): where they are, as indices into `tokens`
    tokens: np.ndarray  # (N * T,) the validation slice, window after window (the model's ids)
    window: int  # T: a context never reaches back past the start of its window
    tokenizer: Tokenizer  # the model's ids as text

    @property
    def positions(self) -> int:
        return len(self.tokens)

    def context(self, position: int) -> tuple[str, str, str]:
        """(text before, the token, text after) around a position, within what the model saw."""
        start = max(position - CONTEXT_LEFT, position - position % self.window)
        decode = self.tokenizer.decode
        left = decode(self.tokens[start:position].tolist())
        right = decode(self.tokens[position + 1 : position + 1 + CONTEXT_RIGHT].tolist())
        return left, decode([int(self.tokens[position])]), right


@torch.no_grad()
def signal_statistics(model: Transformer, factorization: Factorization, windows: torch.Tensor,
                      tokenizer: Tokenizer) -> SignalStats:
    """Read every position of the (N, T) validation windows along every signal, and keep each
    signal's firing rate, selectivity and top-activating positions."""
    last = model.config.n_layer
    activations = []
    for batch in windows.split(BATCH_WINDOWS):
        h = residual_states(model, batch)[last]  # (B, T, C) after the last layer
        activations.append(factorization.signal_activations(model.ln_f(h)).flatten(0, 1).float().cpu())
    activations = torch.cat(activations)  # (N*T, S)
    firing, selectivity = selectivity_stats(activations)
    top = activations.topk(min(TOP_CONTEXTS, len(activations)), dim=0)
    return SignalStats(firing_rate=firing, selectivity=selectivity, top_values=top.values,
                       top_positions=top.indices, tokens=windows.flatten().cpu().numpy(),
                       window=windows.size(1), tokenizer=tokenizer)
