"""Checkpoints: written atomically, read as data only, and turned back into models.

A checkpoint is a dict with nanoGPT's keys (`model`, `optimizer`, `model_args`, `iter_num`,
`best_val_loss`, `config`) plus whatever exact resume needs. `model_args` holds the architecture's
name (`model`) beside its ModelConfig fields, so a checkpoint alone says what it is; checkpoints
written before kept the name only in `config`, and still load. A checkpoint is loaded with
`torch.load(..., weights_only=True)`: tensors and plain Python values, never code.
"""

import dataclasses
import os
import pickle
import zipfile
from pathlib import Path

import torch

from core.config import Config
from core.errors import UserError
from models import MODELS, ModelConfig, Transformer, build_model

CHECKPOINT_NAME = "ckpt.pt"


def checkpoint_path(path: str | Path) -> Path:
    """A run directory means its ckpt.pt; a file path is taken as it is."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Write to a temporary file, fsync it, then rename over `path`: a reader (or a crash) sees
    either the previous checkpoint or the new one whole, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint as data (weights_only=True); any problem is one clear UserError."""
    file = checkpoint_path(path)
    if not file.is_file():
        raise UserError(f"no checkpoint at {file}; train one first or pass the right path")
    if not zipfile.is_zipfile(file):  # torch.save writes a zip; a cut-off one has lost its directory
        raise UserError(f"checkpoint {file} is truncated or corrupt (not a whole zip file); "
                        "resume from an earlier one or retrain")
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"refusing to load {file}: it holds more than tensors and plain data "
                        f"({first_line})")
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise UserError(f"checkpoint {file} is truncated or corrupt ({type(error).__name__}); "
                        "resume from an earlier one or retrain")
    missing = {"model", "model_args"} - set(checkpoint) if isinstance(checkpoint, dict) else {"model"}
    if missing or not isinstance(checkpoint["model_args"], dict):
        what = f"missing {sorted(missing)}" if missing else "its model_args is not a dict"
        raise UserError(f"{file} is not a reflow checkpoint ({what})")
    return checkpoint


def model_args_of(name: str, model: Transformer) -> dict:
    """What a checkpoint stores as `model_args`: the architecture's name (so the file alone says
    what it holds) and every ModelConfig field."""
    return {"model": name, **dataclasses.asdict(model.config)}


def model_name_of(checkpoint: dict) -> str:
    """The architecture's name: in model_args since this version; older checkpoints kept it only
    in their saved config."""
    name = checkpoint["model_args"].get("model") or (checkpoint.get("config") or {}).get("model")
    if not isinstance(name, str):
        raise UserError("the checkpoint does not say which architecture it holds (no 'model' in its "
                        f"model_args or config); valid models: {', '.join(MODELS)}")
    return name


def architecture_of(checkpoint: dict) -> tuple[str, ModelConfig]:
    """The name and ModelConfig of the model a checkpoint was saved from."""
    name = model_name_of(checkpoint)
    if name not in MODELS:
        raise UserError(f"checkpoint holds unknown model {name!r}; valid models: {', '.join(MODELS)}")
    args = {k: v for k, v in checkpoint["model_args"].items() if k != "model"}
    unknown = sorted(set(args) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise UserError(f"checkpoint model_args has keys this version does not know: {', '.join(unknown)}")
    return name, ModelConfig(**args)


def with_architecture_of(checkpoint: dict, cfg: Config, keep: tuple[str, ...] = ()) -> Config:
    """`cfg` with the checkpoint's model and architecture keys in place of its own (except `keep`):
    a run that starts from a checkpoint is that checkpoint's model, whatever the config said."""
    name, architecture = architecture_of(checkpoint)
    replaced = {k: v for k, v in dataclasses.asdict(architecture).items() if k not in keep}
    return dataclasses.replace(cfg, model=name, **replaced)


def model_from_checkpoint(checkpoint: dict) -> Transformer:
    """Rebuild the model a checkpoint was saved from, with its weights."""
    name, architecture = architecture_of(checkpoint)
    model = build_model(name, architecture)
    state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"checkpoint weights do not fit a {name} model: {str(error).splitlines()[0]}")
    return model


def check_same_architecture(checkpoint: dict, model_name: str, config: ModelConfig, file: Path) -> None:
    """Refuse to resume a checkpoint into a different model than the config describes.

    Left out: block_size (the length of training windows, which may shrink), dropout, and the keys
    that change how a step computes, not what (ModelConfig.EXECUTION_KEYS)."""
    name, saved = architecture_of(checkpoint)
    differences = [f"model {name!r} vs {model_name!r}"] if name != model_name else []
    differences += [
        f"{key} {getattr(saved, key)} vs {getattr(config, key)}" for key in vars(saved)
        if key not in ("block_size", "dropout", *ModelConfig.EXECUTION_KEYS)
        and getattr(saved, key) != getattr(config, key)
    ]
    if differences:
        raise UserError(f"{file} holds a different architecture than the config (checkpoint vs config: "
                        f"{'; '.join(differences)}); resume with the config it was trained with")


def ensure_writable_dir(folder: str | Path) -> None:
    """Create `folder` if needed and prove it takes a file, before any work is done."""
    folder = Path(folder)
    probe = folder / f".write_test_{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to out_dir {folder} ({error.strerror or error}); "
                        "choose another with --out_dir=...")
