"""What a run reads back from disk, checked against one schema before anything uses it.

A checkpoint's weights and model_args are checked in core/checkpoint.py (they decide what model is
built); this file holds the rest of what a run reads back: the checkpoint's other fields (`iter_num`,
`best_val_loss`, `optimizer`, `scaler`, `config`, ...), a run's val_history.json and the experiments'
NN_slug.json reports. A field that is missing, of the wrong type or out of range is refused in one
line naming the file and the field, before it can resume a run "at step -5" or crash a report.
"""

import json
import math
import typing
from pathlib import Path

import torch

from core.config import Config, check_type
from core.errors import UserError


def refuse(file: Path, field: str, problem: str,
           fix: str = "resume from an earlier checkpoint or retrain") -> typing.NoReturn:
    raise UserError(f"{file}: {field} {problem}; {fix}")


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- checkpoints ------------------------------------------------------------------------------
def check_checkpoint_fields(checkpoint: dict, file: Path) -> None:
    """The fields besides `model` and `model_args`, where present: a step count, a loss, an optimizer
    state of AdamW's form, a saved config of the right types, and weights that are all finite.
    nanoGPT saves best_val_loss as a 0-d tensor: it becomes a float here."""
    if "iter_num" in checkpoint:
        step = checkpoint["iter_num"]
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            refuse(file, "iter_num", f"must be a whole number of steps >= 0, got {step!r}")
    if "best_val_loss" in checkpoint:
        loss = checkpoint["best_val_loss"]
        if isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point():
            loss = checkpoint["best_val_loss"] = loss.item()
        if not is_number(loss) or math.isnan(loss) or loss < 0:
            refuse(file, "best_val_loss", f"must be a loss (a number >= 0), got {loss!r}")
    optimizer = checkpoint.get("optimizer")
    if optimizer:  # None or {}: no state to resume (a fine-tune's starting point)
        groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
        if (not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict)
                or not isinstance(groups, list)
                or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
            refuse(file, "optimizer", "is not an optimizer state (a dict of 'state' and 'param_groups')")
    for field, kind in (("scaler", dict), ("wandb_run_id", str), ("evaluated", bool)):
        if checkpoint.get(field) is not None and not isinstance(checkpoint[field], kind):
            refuse(file, field, f"must be a {kind.__name__}, got {type(checkpoint[field]).__name__}")
    check_saved_config(checkpoint.get("config") or {}, file)
    for name, tensor in checkpoint["model"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            refuse(file, f"weight {name}", "holds NaN or inf",
                   "the run diverged before this save; use an earlier checkpoint or retrain")


def check_saved_config(saved: dict, file: Path) -> None:
    """Each key this version knows has a value of its declared type (keys it dropped are ignored,
    as core.config.from_dict ignores them)."""
    hints = typing.get_type_hints(Config)
    for key, value in saved.items():
        if key in hints:
            check_type(key, value, hints[key], source=f"{file}'s saved config")


def check_optimizer_fits(optimizer: dict, groups: list[list[torch.Size]], file: Path) -> None:
    """A saved AdamW state fits the model it resumes: as many groups, of as many parameters, and
    each moment of its parameter's shape (`groups`: the shapes, per group, of parameter_groups)."""
    saved = optimizer["param_groups"]
    sizes = [len(g["params"]) for g in saved]
    if sizes != [len(g) for g in groups]:
        refuse(file, "optimizer", f"has parameter groups of {sizes} parameters, this model "
               f"{[len(g) for g in groups]}", "resume with the config it was trained with")
    shapes = [shape for group in groups for shape in group]
    indices = [i for g in saved for i in g["params"]]
    for position, index in enumerate(indices):
        for name, moment in (optimizer["state"].get(index) or {}).items():
            if isinstance(moment, torch.Tensor) and moment.dim() > 0 and moment.shape != shapes[position]:
                refuse(file, f"optimizer state {index} {name}", f"has shape {tuple(moment.shape)}, its "
                       f"parameter {tuple(shapes[position])}", "resume with the config it was trained with")


def check_resumable(checkpoint: dict, file: Path) -> None:
    """What a resume reads besides the weights: the step and best loss it continues from."""
    for field in ("iter_num", "best_val_loss"):
        if field not in checkpoint:
            refuse(file, field, "is missing, so the run cannot continue where it stopped",
                   f"fine-tune from its weights with --init_from={file} and another --out_dir")


# --- run folders ------------------------------------------------------------------------------
def read_json_object(path: Path, what: str, fix: str) -> dict:
    """The JSON object in `path`; anything else (unreadable, not JSON, a list) refused in one line."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        refuse(path, "the file", f"cannot be read as JSON ({type(error).__name__})", fix)
    if not isinstance(value, dict):
        refuse(path, "the file", f"must hold {what}, got {type(value).__name__}", fix)
    return value


def read_val_history(path: Path) -> dict[str, dict[str, float]]:
    """A run's evaluations by step, {"step": {"train": loss, "val": loss}} ({} when there is no file)."""
    if not path.is_file():
        return {}
    fix = f"delete {path.name} to start the history afresh (the checkpoint is not affected)"
    history = read_json_object(path, "an object of steps", fix)
    for step, losses in history.items():
        if not step.isdigit():
            refuse(path, f"step {step!r}", "is not a step number", fix)
        if not isinstance(losses, dict) or not all(is_number(v) for v in losses.values()):
            refuse(path, f"step {step}", f"must map split names to losses, got {losses!r:.80}", fix)
    return history


def read_report(path: Path) -> dict:
    """An experiment's NN_slug.json (experiments/report.py writes it), with the fields its readers use."""
    fix = "run the experiment again to rewrite it"
    report = read_json_object(path, "an object", fix)
    fields = {"experiment": int, "title": str, "metrics": list, "figures": list}
    for field, kind in fields.items():
        if not isinstance(report.get(field), kind) or isinstance(report.get(field), bool):
            refuse(path, field, f"must be a {kind.__name__}, got {report.get(field)!r:.60}", fix)
    for i, metric in enumerate(report["metrics"]):
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            refuse(path, f"metrics[{i}]", "must be an object with a 'name'", fix)
    if not all(isinstance(figure, str) for figure in report["figures"]):
        refuse(path, "figures", "must be a list of file names", fix)
    return report
