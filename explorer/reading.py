"""What the Signal view reads as "signals": a factorization's basis, or a sparse autoencoder's latents.

Both answer one interface, so the Signal view, its statistics and its cache do not ask which it is:
  - `read(model, states)`: every signal's activation from the residual stream `states` (L+1, ..., C)
    (after the embedding and after each layer), shape (..., S);
  - `n_signals`; `recipes` (V, S), each signal's codebook column, or None where a signal has no
    recipe; `definition`, the name of its activation's definition (views.DEFINITIONS);
  - `fingerprint()`: bytes that change whenever the reading does (the statistics' cache key).

BasisReading: a_s = ln_f(h) . basis_s, h the residual stream after the last layer (reflow's own
W_basis, or a post-hoc factorization of a standard model's embedding).
SaeReading: the latents of a SAELens SAE on the residual stream after layer L, f = sae.encode(h_L):
they are read from activations, so any model, reflow included, can be read through one.
"""

import hashlib

import torch

from core.errors import UserError
from core.i18n import _
from experiments.posthoc import Factorization
from models import Transformer
from sparse_autoencoders.saving import SavedSae, check_fits, load_sae


class BasisReading:
    """The signals of a factorization E ~ recipes @ basis, read in the final hidden state."""

    definition = "activation"

    def __init__(self, factorization: Factorization):
        self.factorization = factorization
        self.recipes = factorization.recipes
        self.n_signals = factorization.n_signals

    def read(self, model: Transformer, states: torch.Tensor) -> torch.Tensor:
        return self.factorization.signal_activations(model.ln_f(states[-1]))

    def fingerprint(self) -> bytes:
        return self.factorization.basis.detach().float().cpu().numpy().tobytes()


class SaeReading:
    """The latents of an SAE on the residual stream after one layer; they have no recipes."""

    definition = "SAE activation"
    recipes = None

    def __init__(self, saved: SavedSae, device: torch.device):
        self.saved, self.sae = saved, saved.sae.to(device)
        self.sae.requires_grad_(False)  # nothing here trains
        self.n_signals = saved.width
        k = _(", k = {k}").format(k=saved.k) if saved.k is not None else ""
        trained = (_(", trained on {checkpoint}").format(checkpoint=saved.checkpoint)
                   if saved.checkpoint else "")
        self.description = _("the latents of the SAE in {folder} ({width} latents{k}) on {hook}{trained}")
        self.description = self.description.format(folder=saved.folder, width=saved.width, k=k,
                                                   hook=saved.hook_name, trained=trained)

    def read(self, model: Transformer, states: torch.Tensor) -> torch.Tensor:
        return self.sae.encode(states[self.saved.layer + 1].float())  # states[0] is the embedding's output

    def fingerprint(self) -> bytes:
        digest = hashlib.sha256(self.saved.hook_name.encode())
        for name, tensor in sorted(self.sae.state_dict().items()):
            digest.update(name.encode() + tensor.detach().float().cpu().numpy().tobytes())
        return digest.digest()


SignalReading = BasisReading | SaeReading


def sae_reading(folder: str, model: Transformer) -> SaeReading:
    """The SAE saved in `folder` as the model's reading; one line if it is not an SAE or does not fit."""
    if not folder:
        raise UserError("--posthoc=sae: names no folder; give --posthoc=sae:PATH, a folder experiment 15 "
                        "saved (audit_reports/saes/last_layer_512)")
    saved = load_sae(folder)
    check_fits(saved, model.config.n_layer, model.config.n_embd)
    return SaeReading(saved, next(model.parameters()).device)
