"""Ablating and steering along one reading's features (experiment 15, issue 23 §3).

A reading (native signals, SVD directions, an SAE) gives each of its F features a unit direction u_i in
the residual stream at one layer, and each token a value per feature in residual units. Two edits, the
same for every reading, so that readings differ only in the directions they offer and how they choose:

  causal ablation  first-order estimate, on one half of experiment 9's held-out windows, of how much
                   mean-ablating each feature's direction at the layer lowers log p(true next token):
                   u^T M u, M = mean over scored positions of sum_t (h_t - m) g_t^T, g_t the gradient of
                   those log-probs at position t of the layer and m the training activations' mean;
                   then, on the other half, the top features' directions mean-ablated together
                   (experiment 9's ablation_effect). The null runs the same choice over F random unit
                   directions, so a larger dictionary gets no more candidates than its null.
  steering         for each target word, the one feature whose value rises most above its own mean on
                   training tokens followed by the word (train activations only); its direction, signed
                   and scaled to a fixed norm, added at the layer to held-out validation windows; the rise
                   of log p(word) at scored positions. The control adds random features of the same
                   reading at the same norm.
"""

import torch
import torch.nn.functional as F

from experiments.common import logits_at, steering_hook
from experiments.mechanistic_analysis import AblationText, ablation_effect

VALUE_CHUNK = 4096  # training tokens coded at once when tying features to words: (4096, 2048) values at most


def gradient_product(model, hook: str, windows: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
                     mean: torch.Tensor) -> torch.Tensor:
    """M (C, C) = sum over windows and positions t of (h_t - mean) g_t^T, divided by the number of scored
    (window, position) pairs, h_t the activation at `hook` and g_t the gradient there of the summed
    log p(targets) at `positions`. For a unit direction u, u^T M u is the first-order drop in mean
    log p(target) when u's component of h - mean is removed at every position (mean ablation)."""
    seen = {}

    def capture(h):
        seen["h"] = h.detach().requires_grad_(True)
        return seen["h"]

    with torch.enable_grad(), model.hooks({hook: capture, "hook_final": lambda h: h[:, positions]}):
        logits, _ = model(windows)
        dtype = torch.promote_types(logits.dtype, torch.float32)  # a float64 model stays float64
        log_p = F.log_softmax(logits.to(dtype), dim=-1).gather(-1, targets[..., None]).sum()
        (gradient,) = torch.autograd.grad(log_p, seen["h"])
    h = seen["h"].detach()
    centred = (h - mean.to(h.dtype)).flatten(0, 1).double()  # (N T, C)
    return (centred.t() @ gradient.flatten(0, 1).double() / targets.numel()).to(torch.promote_types(h.dtype,
                                                                                                   torch.float32))


def top_by_estimated_drop(directions: torch.Tensor, product: torch.Tensor, counts: list[int]) -> dict:
    """{k: (k, C) the k unit directions with the largest estimated drop u^T M u}."""
    estimated = ((directions @ product) * directions).sum(-1)
    order = estimated.argsort(descending=True)
    return {k: directions[order[:k]] for k in counts}


@torch.no_grad()
def ablation_drops(model, text: AblationText, hook: str, mean: torch.Tensor, directions: torch.Tensor,
                   product: torch.Tensor, counts: list[int], targets_of) -> dict[int, float]:
    """{k: mean drop in log p(true next token) on text.measure} when the k directions with the largest
    estimated drop (chosen with `product`, from text.choose) are mean-ablated together at `hook`."""
    chosen = top_by_estimated_drop(directions.to(product.device), product, counts)
    return {k: ablation_effect(model, text.measure, text.positions, targets_of(text.measure), sub[None],
                               at=[hook], mean=mean)[0].item() for k, sub in chosen.items()}


@torch.no_grad()
def random_direction_drops(model, text: AblationText, hook: str, mean: torch.Tensor, product: torch.Tensor,
                           features: int, counts: list[int], draws: int, generator: torch.Generator,
                           targets_of) -> dict[int, list[float]]:
    """{k: `draws` drops}: ablation_drops over `features` independent uniformly random unit directions
    (normalized Gaussians), drawn anew for each draw: the null of a reading with as many features."""
    C = product.size(0)
    picked = {k: [] for k in counts}
    for _draw in range(draws):
        directions = F.normalize(torch.randn(features, C, generator=generator), dim=-1).to(product.device)
        for k, sub in top_by_estimated_drop(directions, product, counts).items():
            picked[k].append(sub)
    targets = targets_of(text.measure)
    return {k: ablation_effect(model, text.measure, text.positions, targets, torch.stack(subs), at=[hook],
                               mean=mean)[0].tolist() for k, subs in picked.items()}


@torch.no_grad()
def features_tied_to_words(values_of, activations: torch.Tensor, next_tokens: torch.Tensor,
                           words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each word: (the feature, its sign, the word's count) where the feature's mean value on
    tokens followed by the word, minus its mean on all tokens, is largest in size. values_of(h) gives
    (n, F) values of activations (n, C); next_tokens (N,) holds each activation's next token (-1: none)."""
    sums = counts = total = 0.0
    for start in range(0, activations.size(0), VALUE_CHUNK):
        values = values_of(activations[start:start + VALUE_CHUNK]).double().cpu()  # (n, F)
        follows = (next_tokens[start:start + VALUE_CHUNK, None].cpu() == words.cpu()[None]).double()  # (n, W)
        sums, counts, total = sums + follows.t() @ values, counts + follows.sum(0), total + values.sum(0)
    lift = sums / counts.clamp_min(1)[:, None] - total / activations.size(0)  # (W, F)
    feature = lift.abs().argmax(-1)
    return feature, lift.gather(-1, feature[:, None])[:, 0].sign(), counts.long()


@torch.no_grad()
def steering_rises(model, hook: str, windows: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor,
                   words: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """(D, W): for each of D vectors (D, C) added at `hook` at every position of `windows` (N, T), the
    mean over windows and `positions` of the rise in log p(word) of each of the W words. The vectors run
    in one batch, `chunk` at a time."""
    clean = F.log_softmax(logits_at(model, windows, positions), dim=-1)[..., words]  # (N, P, W)
    rises = []
    for group in vectors.split(chunk):
        batch = windows.repeat(len(group), 1)  # (G * N, T): vector g steers rows g*N .. (g+1)*N
        steer = steering_hook(group.repeat_interleave(len(windows), 0)[:, None, :])
        log_p = F.log_softmax(logits_at(model, batch, positions, {hook: steer}), dim=-1)[..., words]
        rises.append((log_p.view(len(group), *clean.shape) - clean).mean((1, 2)))
    return torch.cat(rises).cpu()
