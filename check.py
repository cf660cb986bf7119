"""Inspect a config or a checkpoint without training.

    python check.py config/train_reflow_1.py              # parameter table, then `params: 463.67M`
    python check.py out/shakespeare_reflow                # a checkpoint (run dir or .pt file)
    python check.py config/train_shakespeare_reflow.py out/shakespeare_reflow/ckpt.pt
    python check.py --keys                                # every config key, by group, with defaults
    python check.py config/train_reflow_1_big.py --memory --gpu=t4 --world_size=4   # memory plan

--memory plans one training step per device (core/memory_plan.py) on --gpu (t4, a100-40gb, a100-80gb,
h100, h200, or cpu; default: cpu for a config whose device is cpu, else t4) with --world_size
data-parallel processes (default 1).

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
    tokenizer_of,
)
from core.config import describe_keys, load_config, parse_args
from core.errors import UserError, exit_on_user_error
from core.memory_plan import GPUS, format_plan, largest_batch_that_fits, plan_memory, target_named
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
    print(f"vocabulary: {tokenizer_of(checkpoint).describe()}")  # vocab='corpus' remaps (docs/vocab.md)
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


def memory_options(argv: list[str]) -> tuple[dict | None, list[str]]:
    """Pull --memory, --gpu=NAME and --world_size=N out of argv (they are not config keys)."""
    options, rest = {"gpu": "", "world_size": "1"}, []
    asked = False
    for arg in argv:
        key, _, value = arg.removeprefix("--").partition("=")
        if arg == "--memory":
            asked = True
        elif arg.startswith("--") and key in options:
            if not value:
                raise UserError(f"--{key} needs a value: write --{key}=VALUE")
            options[key] = value
        else:
            rest.append(arg)
    if not asked:
        return None, argv
    gpus = [*GPUS, "cpu"]
    if options["gpu"] not in ["", *gpus]:
        raise UserError(f"unknown --gpu={options['gpu']}; choose one of {', '.join(gpus)}")
    if not options["world_size"].isdigit() or int(options["world_size"]) < 1:
        raise UserError(f"--world_size must be a whole number >= 1, got {options['world_size']!r}")
    return {"gpu": options["gpu"], "world_size": int(options["world_size"])}, rest


def print_memory_plan(cfg, gpu: str, world_size: int) -> None:
    target = target_named(gpu or ("cpu" if cfg.device == "cpu" else "t4"), cfg.dtype)
    plan = plan_memory(cfg, target, world_size)
    largest = None if target.is_cpu else largest_batch_that_fits(cfg, target, world_size)
    print(format_plan(plan, largest))


@exit_on_user_error
def main(argv: list[str]) -> None:
    if "--keys" in argv:
        print(describe_keys())
        return
    memory, argv = memory_options(argv)
    paths = [a for a in argv if not a.startswith("-")]
    if not paths:
        raise UserError("usage: python check.py [CONFIG.py] [CHECKPOINT] [--key=value ...], "
                        "or python check.py --keys")
    config_file = next((p for p in paths if p.endswith(".py")), None)
    checkpoint_arg = next((p for p in paths if not p.endswith(".py")), None)
    _, overrides = parse_args([a for a in argv if a.startswith("-")])
    cfg = load_config(config_file, overrides)  # checked even when only a checkpoint is inspected
    if memory is not None and config_file is not None:
        print_memory_plan(cfg, **memory)
        return
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
