"""Cross-entropy over the vocabulary without ever holding the full (B, T, V) logits.

At V = 50304 the logits, their softmax and its gradient are the largest activations of a training
step (206 MB in fp32 for one Shakespeare micro-batch). Here the positions are scored `chunk_size`
at a time and each chunk's loss is checkpointed (torch.utils.checkpoint, non-reentrant): the forward
keeps only the chunk's hidden states, and the backward recomputes that chunk's logits, takes its
gradient and frees it before the next chunk. So at most one chunk's logits exist at once, at the
price of computing the unembedding's forward twice (torchtune's chunked loss makes the same trade;
Liger's fused kernel avoids the recomputation by taking the gradient in the forward pass).

The result equals F.cross_entropy(unembed(h), targets, ignore_index=-1) up to float rounding: the
same sum of per-position losses over the same count of positions, added in chunks.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -1  # targets equal to this are left out (padding, or prompt tokens under a loss mask)


def _chunk_loss_sum(h: torch.Tensor, targets: torch.Tensor, unembed: Callable) -> torch.Tensor:
    logits = unembed(h)  # (chunk, V)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_cross_entropy(h: torch.Tensor, targets: torch.Tensor,
                          unembed: Callable[[torch.Tensor], torch.Tensor], chunk_size: int) -> torch.Tensor:
    """Mean cross-entropy of unembed(h) (..., V) against targets (...), for hidden states h (..., C),
    computed `chunk_size` positions at a time."""
    h = h.reshape(-1, h.size(-1))  # (N, C)
    targets = targets.reshape(-1)  # (N,)
    recompute = torch.is_grad_enabled()
    total = h.new_zeros((), dtype=torch.float32)
    for h_chunk, target_chunk in zip(h.split(chunk_size), targets.split(chunk_size), strict=True):
        if recompute:
            total = total + checkpoint(_chunk_loss_sum, h_chunk, target_chunk, unembed, use_reentrant=False)
        else:  # evaluation: nothing is kept for a backward pass anyway
            total = total + _chunk_loss_sum(h_chunk, target_chunk, unembed)
    return total / (targets != IGNORE_INDEX).sum()
