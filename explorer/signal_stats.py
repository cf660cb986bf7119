"""Per-signal statistics over a fixed slice of validation text: experiment 14's dashboard, precomputed
once at start-up so that the Signal tab answers from a table.

activation: what the reading gives (explorer/reading.py) at every position: a_s = ln_f(h) . basis_s, the
final hidden state read along signal s, or an SAE's latent on the residual stream after its layer.
firing rate: share of positions where |a_s| exceeds FIRING_FRACTION x its peak |a_s| over the slice.
selectivity: peak |a_s| / mean |a_s|: how much stronger its best context is than its typical one.
(Both from experiments/related_work.py, so the explorer and the report agree.)

The activations themselves are kept (N*T x S floats, 8 MB for S = 256), so a signal's contexts can be
shaded token by token and its histogram drawn without another forward. They cost most of the start-up
(a forward over the slice), so they are cached on disk beside the checkpoint, under a key that hashes
the checkpoint file, the text slice and the reading (the signal basis, or the SAE's weights): a second
start on the same checkpoint reads them back, and any change to one of the three computes them afresh.
"""

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.related_work import FIRING_FRACTION, selectivity_stats
from explorer.model_interface import residual_states
from explorer.reading import SignalReading
from models import Transformer

CONTEXT_LEFT, CONTEXT_RIGHT = 12, 4  # tokens shown around the activating token
BATCH_WINDOWS = 8  # validation windows per forward pass
CACHE_FOLDER = "explorer_cache"  # beside the checkpoint
CACHE_FORMAT = 1  # bump when what the cache holds changes
HASH_CHUNK = 1 << 20

__all__ = ["FIRING_FRACTION", "SignalStats", "signal_statistics", "cached_signal_statistics"]


@dataclass
class SignalStats:
    activations: torch.Tensor  # (N * T, S) float32: every signal at every position of the slice
    firing_rate: torch.Tensor  # (S,)
    selectivity: torch.Tensor  # (S,)
    tokens: np.ndarray  # (N * T,) the validation slice, window after window
    window: int  # T: a context never reaches back past the start of its window

    @property
    def positions(self) -> int:
        return len(self.tokens)

    def context_span(self, position: int) -> tuple[int, int]:
        """[start, end) of the tokens shown around a position, within the window the model saw."""
        start = max(position - CONTEXT_LEFT, position - position % self.window)
        end = min(position + 1 + CONTEXT_RIGHT, position - position % self.window + self.window)
        return start, end


def statistics_of(activations: torch.Tensor, windows: torch.Tensor) -> SignalStats:
    firing, selectivity = selectivity_stats(activations)
    return SignalStats(activations=activations, firing_rate=firing, selectivity=selectivity,
                       tokens=windows.flatten().cpu().numpy(), window=windows.size(1))


@torch.no_grad()
def signal_statistics(model: Transformer, reading: SignalReading, windows: torch.Tensor) -> SignalStats:
    """Read every position of the (N, T) validation windows along every signal."""
    activations = []
    for batch in windows.split(BATCH_WINDOWS):
        states = residual_states(model, batch)  # (L+1, B, T, C)
        activations.append(reading.read(model, states).flatten(0, 1).float().cpu())
    return statistics_of(torch.cat(activations), windows)


def cache_key(checkpoint: Path, reading: SignalReading, windows: torch.Tensor) -> str:
    """sha256 over the checkpoint file's bytes, the token slice and the reading's fingerprint."""
    digest = hashlib.sha256(f"signal-stats-{CACHE_FORMAT}".encode())
    with open(checkpoint, "rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    digest.update(windows.cpu().numpy().astype(np.int64).tobytes())
    digest.update(reading.fingerprint())
    return digest.hexdigest()


def read_cache(path: Path, windows: torch.Tensor, n_signals: int) -> torch.Tensor | None:
    """The cached activations if the file is there and has the expected shape, else None."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        activations = torch.load(path, weights_only=True, map_location="cpu")["activations"]
    except Exception:  # a damaged or foreign file: recompute rather than trust it
        return None
    if not (isinstance(activations, torch.Tensor) and activations.dtype == torch.float32
            and tuple(activations.shape) == (windows.numel(), n_signals)):
        return None
    return activations


def write_cache(path: Path, activations: torch.Tensor) -> str:
    """Write the activations to a new file in the cache folder, then rename it into place (a temp file
    created exclusively, never through a link); a note if it could not be written."""
    folder = path.parent
    try:
        if folder.is_symlink():
            return f"not cached: {folder} is a link"
        folder.mkdir(exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=folder, prefix=".signal_stats-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save({"activations": activations}, file)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as error:
        return f"not cached ({error.strerror or error})"
    return f"cached in {path}"


def cached_signal_statistics(model: Transformer, reading: SignalReading, windows: torch.Tensor,
                             checkpoint: Path) -> tuple[SignalStats, str]:
    """signal_statistics, read from the checkpoint's cache when it was computed before; (stats, note)."""
    key = cache_key(checkpoint, reading, windows)
    path = checkpoint.parent / CACHE_FOLDER / f"signal_stats-{key[:32]}.pt"
    activations = read_cache(path, windows, reading.n_signals)
    if activations is not None:
        return statistics_of(activations, windows), f"read from {path}"
    stats = signal_statistics(model, reading, windows)
    return stats, write_cache(path, stats.activations)
