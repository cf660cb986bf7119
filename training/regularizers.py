"""Training-time regularizers from the related work, added to the language-model loss with a weight.

All three are off by default (weight 0), and a run whose weights are all 0 is bit for bit the run
without this module: nothing is captured, nothing is added. Each term is logged raw (unweighted), so a
user can see whether a weight has a useful scale, as Surface Tension Transformers (STT) reports them.

- `recipe_l1` (reflow family): soft sparsity of the effective recipes, the dense counterpart of
  reflow-topk. The term is the mean over tokens v of ||r_v||_1 / (sqrt(S) ||r_v||_2): 1 for a row
  whose S entries have equal magnitude, 1/sqrt(S) for a row with one non-zero entry, about 0.80 for
  a Gaussian row. Its meaning is the same at any V and S. Why not a plain mean |r|: the model is
  unchanged by R -> cR, B -> B/c, so a plain L1 is lowered by shrinking R and growing B without
  making any row sparser; the per-row ratio is blind to that rescaling and measures concentration.
- `repulsion` (STT's representation repulsion): the mean squared cosine similarity between hidden
  states of different positions of one sequence, at the layers in `regularize_layers` (all if
  empty), read at `blocks.{L}.hook_resid_post`. 0 when the hidden states are orthogonal; lowering
  it spreads them over more directions (higher effective rank, lower isotropy).
- `head_diversity` (STT's head diversity): the mean cosine similarity between the attention
  patterns of different heads of one layer (each pattern flattened over query x key), at the same
  layers, read at `blocks.{L}.attn.hook_pattern`. Patterns are non-negative, so it lies in [0, 1]:
  0 when heads attend to disjoint positions, 1 when they are identical. Reading the pattern makes
  the attention of those layers take the explicit path instead of fused SDPA (slower).
"""

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.errors import UserError

NAMES = ("recipe_l1", "repulsion", "head_diversity")


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Cosines of bf16/fp16 activations in float32; float64 stays float64 (for gradcheck)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def unwrapped(model):
    """The Transformer inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def recipe_concentration(recipe: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ||r||_1 / (sqrt(S) ||r||_2), the `recipe_l1` term; recipe is (V, S)."""
    l1 = recipe.abs().sum(dim=-1)
    l2 = recipe.norm(dim=-1).clamp_min(1e-12)
    return (l1 / (l2 * math.sqrt(recipe.size(-1)))).mean()


def position_similarity(hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine between different positions of each sequence, the `repulsion` term;
    hidden is (B, T, C)."""
    unit = F.normalize(at_least_float32(hidden), dim=-1)
    cos = unit @ unit.transpose(1, 2)  # (B, T, T)
    T = cos.size(-1)
    off_diagonal = cos.pow(2).sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).pow(2).sum(dim=-1)
    return (off_diagonal / max(1, T * (T - 1))).mean()


def head_similarity(pattern: torch.Tensor) -> torch.Tensor:
    """Mean cosine between different heads' attention patterns, the `head_diversity` term;
    pattern is (B, H, T, T)."""
    flat = F.normalize(at_least_float32(pattern).flatten(2), dim=-1)  # (B, H, T*T)
    cos = flat @ flat.transpose(1, 2)  # (B, H, H)
    H = cos.size(-1)
    off_diagonal = cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(dim=-1)
    return (off_diagonal / max(1, H * (H - 1))).mean()


@dataclass
class Regularizers:
    """The weighted terms of one run, and the raw values of the latest step (for the log)."""

    weights: dict[str, float]  # only the non-zero ones
    layers: list[int]
    latest: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg, n_layer: int, has_recipes: bool) -> "Regularizers":
        weights = {name: float(getattr(cfg, name)) for name in NAMES if getattr(cfg, name)}
        for name, weight in weights.items():
            if not (weight > 0 and math.isfinite(weight)):
                raise UserError(f"{name} must be a finite weight >= 0, got {weight}")
        if "recipe_l1" in weights and not has_recipes:
            raise UserError(f"recipe_l1 needs a model with recipes (the reflow family), not {cfg.model!r}; "
                            "set --recipe_l1=0")
        layers = list(cfg.regularize_layers) or list(range(n_layer))
        bad = [layer for layer in layers if not (isinstance(layer, int) and 0 <= layer < n_layer)]
        if bad:
            raise UserError(f"regularize_layers {bad} must be layers between 0 and {n_layer - 1}")
        return cls(weights, layers)

    @property
    def active(self) -> bool:
        return bool(self.weights)

    def hook_names(self) -> dict[str, list[str]]:
        """The activations each term reads during the forward pass."""
        names = {}
        if "repulsion" in self.weights:
            names["repulsion"] = [f"blocks.{layer}.hook_resid_post" for layer in self.layers]
        if "head_diversity" in self.weights:
            names["head_diversity"] = [f"blocks.{layer}.attn.hook_pattern" for layer in self.layers]
        return names

    def capture(self, model) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
        """Within the block, the forward pass records (with their gradient) what the terms read."""
        names = [name for group in self.hook_names().values() for name in group]
        if not names:
            return contextlib.nullcontext({})
        return unwrapped(model).recording(names, detach=False)

    def terms(self, model, captured: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The raw (unweighted) value of each active term, as tensors that carry gradient."""
        values = {}
        if "recipe_l1" in self.weights:
            values["recipe_l1"] = recipe_concentration(unwrapped(model).effective_recipe())
        names = self.hook_names()
        if "repulsion" in names:
            values["repulsion"] = torch.stack([position_similarity(captured[n])
                                               for n in names["repulsion"]]).mean()
        if "head_diversity" in names:
            values["head_diversity"] = torch.stack([head_similarity(captured[n])
                                                    for n in names["head_diversity"]]).mean()
        return values

    def weighted_sum(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[name] * value for name, value in values.items())

    def describe(self, values: dict[str, float]) -> str:
        """`recipe_l1 0.7812 (x 0.01)` for each term, for the log lines."""
        return ", ".join(f"{name} {values[name]:.4f} (x {self.weights[name]:g})" for name in values)
