"""Signal distillation: a student trained on a teacher's logits, optionally sharing its W_basis.

Config keys (core/config.py, group "distillation"):
- `distill_from=RUN`: the teacher, a run directory or checkpoint, whose logits on each micro-batch
  the student learns from. The student's objective is
      (1 - distill_weight) * LM loss + distill_weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))
  with T = distill_temperature, the KL taken per position and averaged over the positions the LM
  loss counts (targets != -1). The T^2 keeps the term's gradient on the scale of the LM loss's as T
  changes (Hinton et al., 2015). The logged and evaluated loss stays the LM loss.
- `init_basis_from=RUN`: the student starts from that run's W_basis (S x C), so both read and write
  the same signals; S and C must match. Applied when a run starts, not when it resumes (the
  checkpoint holds the basis by then).
- `rotate_basis_seed=N` (with init_basis_from): the copied basis times a random orthogonal C x C
  matrix drawn from N, a control that keeps the signals' lengths and angles among themselves (B B^T)
  but points them at other directions of the residual stream than the teacher's.
- `init_recipes_from=RUN`: the same for W_recipe (V x S), e.g. to freeze both at the teacher's.
- `freeze_basis`, `freeze_recipes`: W_basis / W_recipe get no gradient and are left out of the
  optimizer, so they stay bit-identical through training (reflow family only).
"""

import torch
import torch.nn.functional as F

from core.checkpoint import architecture_of, load_checkpoint, model_from_checkpoint
from core.config import Config
from core.errors import UserError
from experiments.nulls import random_rotations
from models import Transformer
from models.chunked_loss import IGNORE_INDEX

# Logits per chunk of the KL: on a CPU 2^18 fp32 (1 MB, a core's cache: 13 positions at V = 19,379); on a
# GPU 2^26 (256 MB), where each chunk costs kernel launches and bandwidth is plentiful.
KL_CHUNK_ELEMENTS = {"cpu": 2**18}
KL_CHUNK_ELEMENTS_ELSEWHERE = 2**26


class TemperedKL(torch.autograd.Function):
    """sum over rows of KL(softmax(teacher / T) || softmax(student / T)) for (N, V) logits, its gradient
    for the student, (softmax(student / T) - softmax(teacher / T)) / T, taken chunk by chunk in the
    forward pass. Formed whole, the same KL took over half of a 2-layer student's step at V = 19k
    (eight passes over (N, V) tensors and their autograd copies); by chunks it stays in cache."""

    @staticmethod
    def forward(ctx, student, teacher, temperature):
        grad = torch.empty(student.shape, dtype=torch.float32, device=student.device)
        total = torch.zeros((), dtype=torch.float64, device=student.device)
        budget = KL_CHUNK_ELEMENTS.get(student.device.type, KL_CHUNK_ELEMENTS_ELSEWHERE)
        step = max(1, budget // student.size(-1))  # rows per chunk
        for i in range(0, student.size(0), step):
            rows = slice(i, i + step)
            log_q = F.log_softmax(student[rows].float() / temperature, dim=-1)
            log_p = F.log_softmax(teacher[rows].float() / temperature, dim=-1)
            p = log_p.exp()
            total += (p * (log_p - log_q)).sum(dtype=torch.float64)
            grad[rows] = (log_q.exp() - p) / temperature
        ctx.save_for_backward(grad)
        ctx.student_dtype = student.dtype
        return total.to(torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return (grad * grad_output).to(ctx.student_dtype), None, None


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), the mean over positions whose target is
    not ignored; logits (B, T, V), targets (B, T). Computed in float32 at least."""
    kept = targets.reshape(-1) != IGNORE_INDEX
    student, teacher = student_logits.flatten(0, -2), teacher_logits.flatten(0, -2)
    if not kept.all():  # copying (N, V) logits only when some positions are left out
        student, teacher = student[kept], teacher[kept]
    count = max(student.size(0), 1)
    return temperature**2 * TemperedKL.apply(student, teacher.detach(), temperature) / count


class Distillation:
    """The teacher of a run and how its logits join the student's objective."""

    def __init__(self, teacher: Transformer, temperature: float, weight: float):
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = temperature
        self.weight = weight

    @classmethod
    def from_config(cls, cfg: Config, student: Transformer, device: str) -> "Distillation | None":
        """The run's teacher, on `device`; None without distill_from. Refused in one line when its
        vocabulary differs from the student's or its context is shorter than the student's windows."""
        if not cfg.distill_from:
            return None
        teacher = model_from_checkpoint(load_checkpoint(cfg.distill_from))
        vocab, block = teacher.config.vocab_size, teacher.config.block_size
        if vocab != student.config.vocab_size:
            raise UserError(f"the teacher at {cfg.distill_from} has vocab_size {vocab} and the student "
                            f"{student.config.vocab_size}; distillation compares their logits token by token,"
                            " so they must be equal")
        if block < cfg.block_size:
            raise UserError(f"the teacher at {cfg.distill_from} reads at most {block} tokens; "
                            f"use --block_size={block} or less")
        return cls(teacher.to(device), cfg.distill_temperature, cfg.distill_weight)

    def objective(self, lm_loss: torch.Tensor, student_logits: torch.Tensor, x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
        """(1 - weight) * lm_loss + weight * distillation_loss on this micro-batch."""
        with torch.no_grad():
            teacher_logits, _ = self.teacher(x)
        term = distillation_loss(student_logits, teacher_logits, y, self.temperature)
        return (1 - self.weight) * lm_loss + self.weight * term


FREEZE_KEYS = ("freeze_basis", "freeze_recipes")


def share_and_freeze(model: Transformer, cfg: Config, resume: dict | None) -> None:
    """Apply init_basis_from and init_recipes_from (when starting, not when resuming `resume`),
    freeze_basis and freeze_recipes to `model`, before its optimizer is built. Refused in one line for
    a model without recipes, weights whose shape differs from the model's, or a resume that changes
    what is frozen (the optimizer state holds exactly the trained parameters)."""
    if resume is not None:
        saved = resume.get("config") or {}
        for key in FREEZE_KEYS:
            if bool(saved.get(key, False)) != getattr(cfg, key):
                raise UserError(f"the checkpoint was trained with {key}={saved.get(key, False)}; resume with "
                                f"--{key}={saved.get(key, False)}")
    wanted = [key for key in ("init_basis_from", "init_recipes_from", *FREEZE_KEYS) if getattr(cfg, key)]
    if not wanted:
        return
    if not model.has_recipes:
        raise UserError(f"{', '.join(wanted)} need a model with W_basis and W_recipe (the reflow family), "
                        f"not {cfg.model!r}")
    if cfg.init_basis_from and resume is None:
        basis = weight_of(cfg.init_basis_from, "basis", model)
        if cfg.rotate_basis_seed is not None:
            generator = torch.Generator().manual_seed(cfg.rotate_basis_seed)
            basis = basis @ random_rotations(1, basis.size(1), generator)[0].to(basis.dtype)  # Haar-random
        with torch.no_grad():
            model.basis.copy_(basis)
    if cfg.init_recipes_from and resume is None:
        with torch.no_grad():
            model.recipe.copy_(weight_of(cfg.init_recipes_from, "recipe", model))
    model.basis.requires_grad_(not cfg.freeze_basis)
    model.recipe.requires_grad_(not cfg.freeze_recipes)


SHAPES = {"basis": ("W_basis", "S x C", ("n_signals", "n_embd")),
          "recipe": ("W_recipe", "V x S", ("vocab_size", "n_signals"))}


def weight_of(run: str, name: str, model: Transformer) -> torch.Tensor:
    """The `name` weight ("basis" or "recipe") of the checkpoint at `run`, refused in one line unless
    it has `model`'s shape."""
    matrix, dims, keys = SHAPES[name]
    checkpoint = load_checkpoint(run)
    architecture, teacher = architecture_of(checkpoint)
    weights = {key.removeprefix("_orig_mod."): value for key, value in checkpoint["model"].items()}
    if name not in weights:
        raise UserError(f"init_{name}_from={run} holds a {architecture} model, which has no {matrix}; give a "
                        "reflow-family run")
    theirs = [getattr(teacher, key) for key in keys]
    ours = [getattr(model.config, key) for key in keys]
    if theirs != ours:
        fix = " ".join(f"--{key}={value}" for key, value in zip(keys, theirs, strict=True))
        raise UserError(f"init_{name}_from={run} has a {matrix} of {dims} = {theirs[0]} x {theirs[1]}, "
                        f"this model {ours[0]} x {ours[1]}; set {fix}")
    return weights[name]
