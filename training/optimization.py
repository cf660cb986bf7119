"""The pieces of one optimization step and of the loss estimate, shared by train.py and bench.py
so both time the same code."""

import contextlib
import math

import torch
import torch.nn as nn

from core.config import Config
from core.hardware import autocast
from training.batches import Batches
from training.distillation import Distillation
from training.distributed import Distributed
from training.regularizers import Regularizers


def parameter_groups(model: nn.Module, cfg: Config) -> list[dict]:
    """Weight decay on matrices (2-D and up: linears, embeddings, recipes, basis) and none on
    vectors (norm gains, biases), as nanoGPT does."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, cfg: Config, device: str) -> torch.optim.AdamW:
    """AdamW over parameter_groups."""
    groups = parameter_groups(model, cfg)
    # Fused AdamW updates every parameter in one kernel, on GPUs and (torch >= 2.4) on CPU, where the
    # default is a per-tensor loop of ~10 passes: 3.5x less optimizer time, ~5% of a Shakespeare step.
    fused = device.split(":")[0] in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)


def learning_rate_at(iter_num: int, cfg: Config) -> float:
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters; constant if not decay_lr."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if iter_num < cfg.warmup_iters:
        return cfg.learning_rate * (iter_num + 1) / (cfg.warmup_iters + 1)
    if iter_num > cfg.lr_decay_iters:
        return cfg.min_lr
    progress = (iter_num - cfg.warmup_iters) / max(1, cfg.lr_decay_iters - cfg.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


class NonFiniteUpdate(ArithmeticError):
    """A step whose loss was finite left NaN or inf in the weights (an overflowing update)."""


def train_step(model, optimizer, scaler, micro_batches, *, lr: float, grad_clip: float,
               device: str, dtype: str, dist: Distributed | None = None,
               regularizers: Regularizers | None = None, distillation: Distillation | None = None,
               undo_non_finite: bool = False) -> float:
    """One optimizer step over the given (x, y) micro-batches; returns the mean loss.

    Under DDP (and FSDP), gradients are reduced only on the last micro-batch, and the
    returned loss is the mean over every rank's micro-batches: the loss of the global batch.
    The loss is divided by the number of micro-batches, so the summed gradient is their mean.
    A non-finite loss is returned without touching the weights: the step is not taken. A finite
    loss whose update leaves a non-finite weight raises NonFiniteUpdate; with `undo_non_finite`
    the weights and optimizer state are first put back as they were (a copy of both is kept
    during the step for that), so the step is skipped as a non-finite loss is.
    With active `regularizers`, their weighted terms join the objective; the returned loss stays the
    language-model loss, and the terms' raw global-batch means go to `regularizers.latest`.
    With `distillation`, the objective mixes the language-model loss with the teacher's term
    (training/distillation.py); the returned loss is still the language-model loss.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    steps = len(micro_batches)
    regularized = regularizers is not None and regularizers.active
    total = torch.zeros((), device=device)
    raw_totals: dict[str, torch.Tensor] = {}
    for i, (x, y) in enumerate(micro_batches):
        last = i == steps - 1
        with contextlib.nullcontext() if last else gradients_kept_local(model):
            with autocast(device, dtype):
                if regularized or distillation is not None:
                    active = regularizers if regularized else None
                    loss, objective, values = step_objective(model, x, y, active, distillation)
                    for name, value in values.items():
                        raw_totals[name] = raw_totals.get(name, 0.0) + value.detach().float()
                else:
                    loss = model(x, targets=y)[1]  # the logits dropped now, not held through backward
                    objective = loss
            scaler.scale(objective / steps).backward()
        total += loss.detach().float()
    # A host sync: every rank must agree on the loss before deciding to step.
    dist = dist or Distributed()
    names = list(raw_totals)
    sums = dist.sum([total.item() / steps] + [raw_totals[n].item() / steps for n in names])
    loss = sums[0] / dist.world_size
    if regularized:
        regularizers.latest = {n: value / dist.world_size for n, value in zip(names, sums[1:], strict=True)}
    if not math.isfinite(loss) or not all(map(math.isfinite, sums[1:])):
        optimizer.zero_grad(set_to_none=True)
        return loss
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    before = state_copy(model, optimizer) if undo_non_finite else None
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if not weights_finite(model, dist):
        if before is not None:
            restore(before)
        raise NonFiniteUpdate(f"the update of a step with loss {loss:.4f} left NaN or inf in the weights")
    return loss


def weights_finite(model, dist: Distributed) -> bool:
    """Whether every weight is finite, on every rank (sharded weights differ between ranks): a sum of
    the per-tensor norms, which is NaN or inf exactly when some weight is."""
    local = [p.detach().to_local() if hasattr(p, "to_local") else p.detach() for p in model.parameters()]
    total = torch.stack([norm.float() for norm in torch._foreach_norm(local)]).sum()
    return math.isfinite(dist.sum([total.item()])[0])


def state_copy(model, optimizer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tensor, copy) for every weight and optimizer moment this rank holds, to undo a step."""
    local = getattr(optimizer, "optim", optimizer)  # ZeroRedundancyOptimizer keeps its shard's state there
    tensors = [p.detach() for p in model.parameters()]
    tensors += [v for state in local.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return [(t, t.clone()) for t in tensors]


@torch.no_grad()
def restore(copies: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for tensor, saved in copies:
        tensor.copy_(saved)


@contextlib.contextmanager
def gradients_kept_local(model):
    """No gradient reduction across ranks within the block: DDP's no_sync, FSDP2's
    set_requires_gradient_sync(False); nothing to do in a single process."""
    if hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def step_objective(model, x, y, regularizers: Regularizers | None,
                   distillation: Distillation | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One micro-batch's language-model loss, the objective its backward takes (the loss, mixed with
    the distillation term, plus the weighted regularizer terms), and the regularizers' raw terms."""
    with regularizers.capture(model) if regularizers else contextlib.nullcontext({}) as captured:
        logits, loss = model(x, targets=y)
    objective = loss if distillation is None else distillation.objective(loss, logits, x, y)
    values = regularizers.terms(model, captured) if regularizers else {}
    if values:
        objective = objective + regularizers.weighted_sum(values)
    return loss, objective, values


def regularized_loss(model, x, y, regularizers: Regularizers) -> tuple[torch.Tensor, dict]:
    """The language-model loss of one micro-batch and the raw regularizer terms of its forward."""
    with regularizers.capture(model) as captured:
        _, loss = model(x, targets=y)
    return loss, regularizers.terms(model, captured)


@torch.no_grad()
def estimate_loss(model, batches: Batches, eval_iters: int, *, device: str, dtype: str,
                  dist: Distributed, regularizers: Regularizers | None = None,
                  should_stop=None) -> dict[str, float] | None:
    """Mean loss over `eval_iters` fixed batches of each split; the ranks share the batches.
    With active regularizers, also each term's raw mean, as `<split>_<term>`.

    `should_stop()` (the run's stop request, agreed by every rank) is asked before each batch, so a
    long evaluation never delays a stop: it then returns None, an evaluation left unfinished.
    Every rank runs the same number of rounds, so the ranks' all-reduces stay paired.
    """
    regularized = regularizers is not None and regularizers.active
    model.eval()
    losses = {}
    rounds = math.ceil(eval_iters / dist.world_size)
    for split in ("train", "val"):
        total, count, raw = 0.0, 0, {}
        for round_index in range(rounds):
            if should_stop is not None and should_stop():
                model.train()
                return None
            index = round_index * dist.world_size + dist.rank
            if index >= eval_iters:
                continue
            x, y = batches.eval_batch(split, index, device)
            with autocast(device, dtype):
                if regularized:
                    loss, values = regularized_loss(model, x, y, regularizers)
                    for name, value in values.items():
                        raw[name] = raw.get(name, 0.0) + value.item()
                else:
                    _, loss = model(x, targets=y)
            total, count = total + loss.item(), count + 1
        names = sorted(raw)
        sums = dist.sum([total, count] + [raw[n] for n in names])
        losses[split] = sums[0] / sums[1]
        losses.update({f"{split}_{n}": value / sums[1] for n, value in zip(names, sums[2:], strict=True)})
    model.train()
    return losses


def make_grad_scaler(device: str, dtype: str) -> torch.amp.GradScaler:
    """Loss scaling is needed for fp16 only; for other dtypes the scaler is a pass-through."""
    return torch.amp.GradScaler(device.split(":")[0], enabled=dtype == "float16")
