"""Inspect a config or a checkpoint without training.

    python check.py config/train_reflow_1.py              # parameter table, then `params: 463.67M`
    python check.py out/shakespeare_reflow                # a checkpoint (run dir or .pt file)
    python check.py config/train_shakespeare_reflow.py out/shakespeare_reflow/ckpt.pt
    python check.py --keys                                # every config key, by group, with defaults

The config's model is built on the meta device (shapes, no memory), so even the 515M configs
report in about a second.
"""

import sys
from pathlib import Path

import torch

from core.checkpoint import (
    check_same_architecture,
    checkpoint_path,
    load_checkpoint,
    model_from_checkpoint,
    model_name_of,
)
from core.config import describe_keys, load_config, parse_args
from core.errors import UserError, exit_on_user_error
from core.metrics import ACTIVE_FRACTION, active_mask, effective_rank
from models import Transformer, build_model


def format_millions(n: int) -> str:
    """Parameter counts as the published table writes them: M = 10^6, two decimals."""
    return f"{n / 1e6:.2f}M"


def parameter_table(model: Transformer) -> list[tuple[str, int]]:
    """(module, params) rows: each top-level module, and one block broken down by its parts."""
    rows = []
    for name, module in model.named_children():
        count = sum(p.numel() for p in module.parameters())
        if name == "blocks":
            per_block = count // len(module)
            rows.append((f"blocks ({len(module)} x {per_block:,})", count))
            for part, sub in module[0].named_children():
                sub_count = sum(p.numel() for p in sub.parameters())
                if sub_count:
                    rows.append((f"  {part}", sub_count))
        elif count:
            rows.append((name, count))
    for name, param in model.named_parameters(recurse=False):
        rows.append((name, param.numel()))
    return rows


def print_model_params(model: Transformer, name: str) -> None:
    print(f"model: {name}  {model.config}")
    rows = parameter_table(model)
    width = max(len(r[0]) for r in rows) + 2
    for label, count in rows:
        print(f"{label:<{width}}{count:>15,}")
    print(f"params: {format_millions(model.num_params())}")


def print_checkpoint(checkpoint: dict) -> None:
    print("tensors:")
    for key, tensor in checkpoint["model"].items():
        norm = tensor.float().norm().item()
        print(f"  {key:<40} {str(tuple(tensor.shape)):<16} {str(tensor.dtype):<15} norm {norm:.4g}")
    print(f"model: {model_name_of(checkpoint)}")
    print(f"model_args: {checkpoint['model_args']}")
    print(f"iter_num: {checkpoint.get('iter_num')}")
    print(f"best_val_loss: {checkpoint.get('best_val_loss')}")
    model = model_from_checkpoint(checkpoint)
    print(f"params: {format_millions(model.num_params())}")
    if model.has_recipes:
        print_recipe_summary(model)


@torch.no_grad()
def print_recipe_summary(model) -> None:
    """How the vocabulary uses its signals, and the shape of the signal basis."""
    recipe, basis = model.effective_recipe().float(), model.basis.float()
    V, S = recipe.shape
    active = active_mask(recipe).sum(dim=1).float()
    usage = recipe.abs().sum(dim=0)
    print(f"recipes: {V} tokens x {S} signals; exact zeros {(recipe == 0).float().mean():.1%}; "
          f"active per token (>={ACTIVE_FRACTION:.0%} of row max) mean {active.mean():.1f} of {S}; "
          f"signal usage max/mean {usage.max() / usage.mean():.2f}")
    singular = torch.linalg.svdvals(basis)
    print(f"basis: {S} signals x {basis.shape[1]} dims; singular values max {singular[0]:.4g} "
          f"min {singular[-1]:.4g}; effective rank {effective_rank(basis):.1f}")


@exit_on_user_error
def main(argv: list[str]) -> None:
    if "--keys" in argv:
        print(describe_keys())
        return
    paths = [a for a in argv if not a.startswith("-")]
    if not paths:
        raise UserError("usage: python check.py [CONFIG.py] [CHECKPOINT] [--key=value ...], "
                        "or python check.py --keys")
    config_file = next((p for p in paths if p.endswith(".py")), None)
    checkpoint_arg = next((p for p in paths if not p.endswith(".py")), None)
    _, overrides = parse_args([a for a in argv if a.startswith("-")])
    cfg = load_config(config_file, overrides)  # checked even when only a checkpoint is inspected
    if checkpoint_arg is None:
        with torch.device("meta"):
            model = build_model(cfg.model, cfg.model_config())
        print_model_params(model, cfg.model)
        return
    checkpoint = load_checkpoint(Path(checkpoint_arg))
    if config_file is not None:
        check_same_architecture(checkpoint, cfg.model, cfg.model_config(), checkpoint_path(checkpoint_arg))
    print_checkpoint(checkpoint)


if __name__ == "__main__":
    main(sys.argv[1:])
