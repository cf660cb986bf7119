"""Cross-entropy over the vocabulary without ever holding the full (B, T, V) logits.

At V = 50304 the logits, their softmax and its gradient are the largest activations of a training
step (206 MB in fp32 for one Shakespeare micro-batch). Here the positions are scored `chunk_size`
at a time, and, as Liger Kernel's fused linear cross-entropy does, each chunk's gradient (with
respect to the hidden states and the unembedding's weights) is taken right away in the forward pass
and kept; the chunk's logits are then freed. So at most one chunk's logits exist at once, nothing
is recomputed, and the backward pass only scales the kept gradients by the incoming one.

What is kept: a gradient the size of the hidden states (N, C) and one the size of the weights.
The per-chunk gradients are of the summed loss (entries of order 1, not 1/N), so fp16 under a
GradScaler does not underflow them; the mean is applied in the backward pass.

Under torch.compile the chunk loop runs eagerly (dynamo does not trace torch.autograd.grad, so the
graph breaks there); the results are the same.

The result equals F.cross_entropy(unembed(h, *weights), targets, ignore_index=-1) and its
gradients up to float rounding: the same per-position terms, added in chunks.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1  # targets equal to this are left out (padding, or prompt tokens under a loss mask)


def chunk_loss_sum(h: torch.Tensor, targets: torch.Tensor, unembed: Callable, weights) -> torch.Tensor:
    logits = unembed(h, *weights)  # (chunk, V)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


class ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy whose gradients are computed chunk by chunk during the forward pass."""

    @staticmethod
    def forward(ctx, h, targets, unembed, chunk_size, *weights):
        wants = [h.requires_grad] + [w.requires_grad for w in weights]  # which gradients to keep
        grad_h = torch.zeros_like(h) if wants[0] else None
        grad_weights = [torch.zeros_like(w) if w.requires_grad else None for w in weights]
        total = h.new_zeros((), dtype=torch.float32)
        with torch.enable_grad():
            leaves = [w.detach().requires_grad_(w.requires_grad) for w in weights]
            for start in range(0, h.size(0), chunk_size):
                h_chunk = h[start : start + chunk_size].detach().requires_grad_(wants[0])
                loss = chunk_loss_sum(h_chunk, targets[start : start + chunk_size], unembed, leaves)
                inputs = [x for x, want in zip([h_chunk, *leaves], wants, strict=True) if want]
                grads = iter(torch.autograd.grad(loss, inputs))
                if wants[0]:
                    grad_h[start : start + chunk_size] = next(grads)
                for i, want in enumerate(wants[1:]):
                    if want:
                        grad_weights[i] += next(grads)
                total += loss.detach()
        count = (targets != IGNORE_INDEX).sum()
        ctx.save_for_backward(grad_h, count, *grad_weights)
        return total / count

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, count, *grad_weights = ctx.saved_tensors
        scale = grad_output / count  # d(mean)/d(sum), times what comes from above
        scaled = [g * scale.to(g.dtype) if g is not None else None for g in (grad_h, *grad_weights)]
        return scaled[0], None, None, None, *scaled[1:]


def chunked_cross_entropy(h: torch.Tensor, targets: torch.Tensor, unembed: Callable, weights: tuple,
                          chunk_size: int) -> torch.Tensor:
    """Mean cross-entropy of the logits unembed(h, *weights) (..., V) against targets (...), for
    hidden states h (..., C), computed `chunk_size` positions at a time."""
    h = h.reshape(-1, h.size(-1))  # (N, C)
    targets = targets.reshape(-1)  # (N,)
    needs_grad = torch.is_grad_enabled() and (h.requires_grad or any(w.requires_grad for w in weights))
    if needs_grad:
        return ChunkedCrossEntropy.apply(h, targets, unembed, chunk_size, *weights)
    total = sum(chunk_loss_sum(hc, tc, unembed, weights)  # evaluation: no gradient to keep
                for hc, tc in zip(h.split(chunk_size), targets.split(chunk_size), strict=True))
    return total / (targets != IGNORE_INDEX).sum()
