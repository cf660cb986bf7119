"""Checkpoints: written atomically, read as data only, and turned back into models.

A checkpoint is a dict with nanoGPT's keys (`model`, `optimizer`, `model_args`, `iter_num`,
`best_val_loss`, `config`) plus whatever exact resume needs. `model_args` holds the architecture's
name (`model`) beside its ModelConfig fields, so a checkpoint alone says what it is; checkpoints
written before kept the name only in `config`, and still load. A model trained with vocab='corpus'
also stores `vocab_gpt2_ids`, the GPT-2 id of each of its token ids (an int64 tensor), so the file
alone says what its ids mean (`tokenizer_of`). A checkpoint is loaded with
`torch.load(..., weights_only=True)`: tensors and plain Python values, never code.
"""

import dataclasses
import os
import pickle
import re
import tempfile
import typing
import zipfile
from pathlib import Path

import torch

from core.atomic_write import replacing
from core.config import Config, check_type, validate
from core.errors import UserError
from core.memory_plan import model_bytes, refuse_unless_it_fits, target_of
from core.run_files import check_checkpoint_fields
from core.tokenizer import GPT2_VOCAB_SIZE, Tokenizer
from models import MODELS, ModelConfig, Transformer, build_model

CHECKPOINT_NAME = "ckpt.pt"
VOCAB_KEY = "vocab_gpt2_ids"  # vocab='corpus': the GPT-2 id of each model id (docs/vocab.md)


def checkpoint_path(path: str | Path) -> Path:
    """A run directory means its ckpt.pt; a file path is taken as it is."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Write to a temporary file, fsync it, then rename over `path`: a reader (or a crash) sees
    either the previous checkpoint or the new one whole, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "wb") as f:  # a failed write: one line, nothing lost
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
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
        raise UserError(unsafe_checkpoint_message(file, error))
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise UserError(f"checkpoint {file} is truncated or corrupt ({type(error).__name__}); "
                        "resume from an earlier one or retrain")
    missing = {"model", "model_args"} - set(checkpoint) if isinstance(checkpoint, dict) else {"model"}
    if missing or not isinstance(checkpoint["model_args"], dict):
        what = f"missing {sorted(missing)}" if missing else "its model_args is not a dict"
        raise UserError(f"{file} is not a reflow checkpoint ({what})")
    check_model_args(checkpoint, file)
    adapted = adapt_foreign_checkpoint(checkpoint, file)
    if adapted is not checkpoint:
        check_model_args(adapted, file)  # now named gpt2, its values meet gpt2's rules
    check_checkpoint_fields(adapted, file)
    return adapted


def unsafe_checkpoint_message(file: Path, error: pickle.UnpicklingError) -> str:
    """One line for a checkpoint that holds pickled code. torch's own message advises loading it
    with weights_only=False, which would run that code: we name what it holds and stop there."""
    named = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    what = f" ({named.group(1)})" if named else ""
    return (f"refusing to load {file}: it holds pickled code{what}, not only tensors and plain data; "
            "a checkpoint from an untrusted source could run anything")


# nanoGPT's GPT is our gpt2 under other names: its blocks live in transformer.h, its tied output
# head is saved a second time as lm_head.weight, and older torch versions save each block's causal
# mask as the buffer attn.bias. Everything else maps one to one (same shapes, same nn.Linear layout).
NANOGPT_MARKERS = ("transformer.wte.weight", "lm_head.weight")


def adapt_foreign_checkpoint(checkpoint: dict, file: Path) -> dict:
    """A nanoGPT checkpoint (train.py of karpathy/nanoGPT) becomes one of our gpt2 checkpoints;
    any other checkpoint is returned as it is."""
    state = {name.removeprefix("_orig_mod."): tensor for name, tensor in checkpoint["model"].items()}
    if not all(name in state for name in NANOGPT_MARKERS):
        return checkpoint
    if not torch.equal(state["lm_head.weight"], state["transformer.wte.weight"]):
        raise UserError(f"{file} is a nanoGPT checkpoint whose lm_head is not tied to wte; our gpt2 "
                        "ties them, so it cannot be loaded as one")
    renamed = {}
    for name, tensor in state.items():
        if name == "lm_head.weight" or name.endswith(".attn.bias"):
            continue
        name = name.removeprefix("transformer.")
        renamed["blocks." + name.removeprefix("h.") if name.startswith("h.") else name] = tensor
    config = checkpoint.get("config") if isinstance(checkpoint.get("config"), dict) else {}
    return {**checkpoint, "model": renamed, "config": {**config, "model": "gpt2"}, "model_name": "gpt2",
            "optimizer": None}  # nanoGPT's optimizer groups do not match ours: a resume starts afresh


def check_model_args(checkpoint: dict, file: Path) -> None:
    """The parts every script reads must have our shapes: `model` a dict of tensors, `config` a
    dict, `model_args` a dict of ModelConfig's keys (and the model's name) with values of their
    types, within their limits. A checkpoint from another program or a newer version is refused here,
    in one line, before anything is printed or built."""
    weights = checkpoint["model"]
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise UserError(f"{file}: its 'model' is not a state dict of tensors; it was not written by reFlow "
                        "or nanoGPT")
    if not isinstance(checkpoint.get("config", {}), dict):
        raise UserError(f"{file}: its 'config' is a {type(checkpoint['config']).__name__}, not a dict")
    args = checkpoint["model_args"]
    if not isinstance(args, dict):
        raise UserError(f"{file}: model_args is a {type(args).__name__}, not a dict of architecture keys; "
                        "it was not written by reFlow or nanoGPT")
    hints = typing.get_type_hints(ModelConfig)
    unknown = sorted(str(key) for key in args if key not in hints and key != "model")
    if unknown:
        raise UserError(f"{file}: model_args has keys this version does not know ({', '.join(unknown)}); "
                        "it was written by another program or a newer version of reFlow")
    for key, value in args.items():
        if key == "model":
            continue
        choices = typing.get_args(hints[key]) if typing.get_origin(hints[key]) is typing.Literal else None
        if choices is not None:  # a choice among names
            if value not in choices:
                raise UserError(f"{file}: model_args {key}={value!r} is not one of {choices}")
        else:
            check_type(key, value, hints[key], source=str(file))
    check_vocab_ids(checkpoint, file)
    name = args.get("model") or checkpoint.get("config", {}).get("model") or checkpoint.get("model_name")
    if name in MODELS:  # the limits and cross-key rules of a config (an unknown name is refused later)
        keys = {f.name for f in dataclasses.fields(Config)}
        architecture = {k: v for k, v in args.items() if k in keys and k != "model"}
        try:
            validate(dataclasses.replace(Config(), model=name, **architecture))
        except UserError as error:
            raise UserError(f"{file}: model_args: {error}")


def check_vocab_ids(checkpoint: dict, file: Path) -> None:
    """A remapped vocabulary, when there is one, is distinct GPT-2 ids in increasing order, one per
    real token id of the model (no more than its vocab_size rows)."""
    ids = checkpoint.get(VOCAB_KEY)
    if ids is None:
        return
    vocab_size = checkpoint["model_args"].get("vocab_size")
    fits = (isinstance(ids, torch.Tensor) and ids.dim() == 1 and not ids.is_floating_point()
            and len(ids) > 0 and isinstance(vocab_size, int) and len(ids) <= vocab_size)
    if not fits or ids.min() < 0 or ids.max() >= GPT2_VOCAB_SIZE or (ids[1:] <= ids[:-1]).any():
        raise UserError(f"{file}: its {VOCAB_KEY} is not a list of increasing GPT-2 ids (at most the model's "
                        "vocab_size of them); the file is damaged or was not written by reFlow")


def tokenizer_of(checkpoint: dict) -> Tokenizer:
    """The tokenizer of the model a checkpoint holds: GPT-2's ids, or its corpus's remapped ones."""
    ids = checkpoint.get(VOCAB_KEY)
    vocab_size = checkpoint["model_args"].get("vocab_size", ModelConfig().vocab_size)
    return Tokenizer(vocab_size, None if ids is None else ids.numpy())


def vocab_entry(tokenizer: Tokenizer) -> dict:
    """What a checkpoint stores about its vocabulary: nothing for GPT-2's own ids."""
    return {VOCAB_KEY: torch.from_numpy(tokenizer.gpt2_ids.copy())} if tokenizer.remapped else {}


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


def load_checkpoint_of(cfg: Config, ckpt: str | None) -> tuple[dict, str, Path]:
    """The checkpoint a script analyses: --ckpt, else the config's out_dir; refused in one line unless
    it holds the model the config describes. Returns (checkpoint, model name, file)."""
    path = ckpt if ckpt else cfg.out_dir
    checkpoint = load_checkpoint(path)
    name = model_name_of(checkpoint)
    if name != cfg.model:
        raise UserError(f"the checkpoint at {checkpoint_path(path)} is a {name} model but the config "
                        f"describes a {cfg.model}; pass the config it was trained with")
    return checkpoint, name, checkpoint_path(path)


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
    state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    with torch.device("meta"):  # shapes and sizes first: model_args may describe something absurd
        skeleton = build_model(name, architecture)
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    misfit = next((f"{k}: {shape} in model_args, {tuple(state[k].shape)} in the file"
                   for k, shape in shapes.items() if k in state and shape != tuple(state[k].shape)), None)
    if misfit:
        raise UserError(f"checkpoint weights do not fit its model_args ({misfit}); the file is damaged")
    refuse_unless_it_fits(model_bytes(skeleton), target_of("cpu", "float32"),
                          f"the {name} model its model_args describe",
                          "the checkpoint's model_args are damaged or not this program's")
    model = build_model(name, architecture)
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
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=folder)  # a new file: never through a link
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"cannot write to out_dir {folder} ({error.strerror or error}); "
                        "choose another with --out_dir=...")
