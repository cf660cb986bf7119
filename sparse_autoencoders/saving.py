"""Save a trained SAE to a folder and open it again, in SAELens' own format, with what is needed to use it.

    save_sae(sae, "out/run/audit_reports/saes/last_layer_512", "blocks.3.hook_resid_post", "out/run/ckpt.pt")
    saved = load_sae("out/run/audit_reports/saes/last_layer_512")   # saved.sae.encode(...), saved.layer

The folder is what SAELens' `save_model` writes (cfg.json and sae_weights.safetensors; `load_from_disk`
reads it back, so SAELens and its tools open it too). Where the SAE reads is kept in the config's
metadata, which SAELens saves with it: `hook_name` (blocks.L.hook_resid_post), and our `checkpoint`
(the file whose activations it was trained on). Width (`d_sae`), k and the activation width (`d_in`)
are SAELens' own config fields.

A save is written to a new hidden folder beside the target and renamed into place, so a run killed
halfway leaves the old SAE or the new one, never half of one. The weights are safetensors: reading
them back runs no pickled code.
"""

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

CONFIG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"  # SAELens' SAE_CFG_FILENAME, ..._WEIGHTS_
RESIDUAL_HOOK = re.compile(r"blocks\.(\d+)\.hook_resid_post")
NO_SAE_LENS = 'SAEs are saved and opened with SAELens: pip install -e ".[sae]"'


@dataclass
class SavedSae:
    """A SAELens SAE read back from its folder, and where it reads the model."""

    sae: object  # a SAELens SAE in eval mode: encode (..., d_in) -> (..., width), decode back
    folder: Path
    hook_name: str  # blocks.L.hook_resid_post
    layer: int  # L
    checkpoint: str | None  # the checkpoint it was trained on, as recorded when saved

    @property
    def d_in(self) -> int:
        return self.sae.cfg.d_in

    @property
    def width(self) -> int:
        return self.sae.cfg.d_sae

    @property
    def k(self) -> int | None:
        return getattr(self.sae.cfg, "k", None)  # TopK SAEs only


def save_sae(sae, folder: str | Path, hook_name: str, checkpoint: str | Path) -> Path:
    """Write `sae` (a SAELens SAE) to `folder` with SAELens' save_model, its hook and checkpoint in the
    config's metadata; the folder appears whole or not at all (an older SAE there is replaced)."""
    folder = Path(folder)
    if not RESIDUAL_HOOK.fullmatch(hook_name):
        raise ValueError(f"an SAE is saved with the residual-stream hook it reads, got {hook_name!r}")
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    if parent.is_symlink():
        raise UserError(f"not saving the SAE: {parent} is a link; give a real reports folder")
    sae.cfg.metadata.hook_name = hook_name
    sae.cfg.metadata.checkpoint = str(checkpoint)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}-"))  # created exclusively, ours
    try:
        sae.save_model(staging)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the SAE from the folder's other readers
        if folder.exists() or folder.is_symlink():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}-old-"))
            os.replace(folder, old)  # a link is moved, not followed
            os.replace(staging, folder)
            if old.is_symlink():
                old.unlink()
            else:
                shutil.rmtree(old)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_config(folder: Path) -> dict:
    """The folder's cfg.json, checked to be a saved SAE reading a residual-stream hook; one line if not."""
    if not folder.is_dir():
        raise UserError(f"no SAE at {folder}: not a folder; give a folder experiment 15 saved "
                        "(audit_reports/saes/<layer>_<width>)")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder} is not a saved SAE: it has no {' or '.join(missing)} "
                        "(the files SAELens' save_model writes)")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{folder / CONFIG_FILE} is not readable JSON ({error}); save the SAE again")
    if not isinstance(config, dict) or not isinstance(config.get("d_in"), int) \
            or not isinstance(config.get("d_sae"), int):
        raise UserError(f"{folder / CONFIG_FILE} is not an SAE's config (no whole d_in and d_sae)")
    hook_name = (config.get("metadata") or {}).get("hook_name")
    if not isinstance(hook_name, str) or not RESIDUAL_HOOK.fullmatch(hook_name):
        raise UserError(f"the SAE at {folder} reads {hook_name!r}, not the residual stream after a layer "
                        "(blocks.L.hook_resid_post, metadata.hook_name in its cfg.json)")
    return config


def load_sae(folder: str | Path, device: str = "cpu") -> SavedSae:
    """The SAE saved in `folder`, loaded by SAELens' load_from_disk, in eval mode on `device`."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        from sae_lens import TrainingSAE
    except ImportError:
        raise UserError(NO_SAE_LENS)
    try:  # the training class opens both SAELens formats, training and inference, of every architecture
        sae = TrainingSAE.load_from_disk(folder, device=device)
    except Exception as error:  # a foreign or damaged file: what SAELens said, in one line
        raise UserError(f"SAELens cannot open the SAE at {folder} ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''}); save it again")
    metadata = config["metadata"]
    hook_name = metadata["hook_name"]
    return SavedSae(sae.eval(), folder, hook_name, int(RESIDUAL_HOOK.fullmatch(hook_name).group(1)),
                    metadata.get("checkpoint"))


def check_fits(saved: SavedSae, n_layer: int, width: int) -> None:
    """One line if the SAE cannot read this model: its hook's layer or its input width differ."""
    if saved.layer >= n_layer:
        raise UserError(f"the SAE at {saved.folder} reads {saved.hook_name}, but this model has layers 0 to "
                        f"{n_layer - 1}; give an SAE trained on this model")
    if saved.d_in != width:
        raise UserError(f"the SAE at {saved.folder} reads {saved.d_in}-wide activations, but this model's "
                        f"residual stream is {width} wide; give an SAE trained on this model")
