"""Post-hoc factorizations: recipes and signals cut out of a standard model's embedding after training.

reFlow's claim is *native* interpretability: its embedding is trained as E = W_recipe @ W_basis.
The fair control for the recipe experiments is a standard model (gpt2, gpt2-new) whose embedding
E (V x C) is factorized afterwards into recipes R (V x S) and a basis B (S x C), E ~ R @ B:

    svd          truncated SVD, R = U_S diag(sigma_S), B = V_S^T: the best rank-S approximation
                 (exact when S >= rank E; S is capped at C, the rank E can have).
    dictionary   a sparse dictionary (scikit-learn's MiniBatchDictionaryLearning): S atoms B, and
                 recipes coded by orthogonal matching pursuit with round(active_fraction x S)
                 nonzeros per row, so the recipes are as sparse as asked.

`FactorizedModel` lets the recipe experiments run on such a model unchanged: it runs exactly as
the model it wraps (forward, hooks, caches) and answers the signal interface (`effective_recipe`,
`basis`, `signal_activations`) from the factorization.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from core.config import POSTHOC_CHOICES as POSTHOC_METHODS  # the config key `posthoc`
from core.i18n import _

DICTIONARY_PASSES = 3  # passes over the coded rows while fitting the atoms (more: slower, barely better)
DICTIONARY_BATCH = 256


@dataclass
class Factorization:
    """E ~ recipes @ basis for one model's embedding, and how it was obtained."""

    recipes: torch.Tensor  # (V, S)
    basis: torch.Tensor  # (S, C)
    method: str  # 'native', 'svd' or 'dictionary'
    description: str  # one sentence for the reports

    @property
    def n_signals(self) -> int:
        return self.basis.size(0)

    def signal_activations(self, h: torch.Tensor) -> torch.Tensor:
        """A state (..., C) read along every signal: a_s = h . basis_s, shape (..., S)."""
        return h @ self.basis.t().to(h.dtype)

    def relative_error(self, embedding: torch.Tensor, rows: torch.Tensor | None = None) -> float:
        """||E - R B|| / ||E|| (Frobenius), over `rows` or all rows."""
        E = embedding.double() if rows is None else embedding.double()[rows]
        R = self.recipes.double() if rows is None else self.recipes.double()[rows]
        return ((E - R @ self.basis.double()).norm() / E.norm().clamp_min(1e-30)).item()


def svd_factorization(embedding: torch.Tensor, rank: int) -> Factorization:
    """Truncated SVD of E (V x C) at rank min(rank, C): R = U_k diag(sigma_k) (V x k), B = V_k^T (k x C).
    Computed in float64 so that at full rank R @ B reproduces E to float tolerance."""
    E = embedding.detach().double().cpu()
    k = min(rank, E.size(1))
    U, sigma, Vh = torch.linalg.svd(E, full_matrices=False)
    recipes, basis = (U[:, :k] * sigma[:k]).float(), Vh[:k].float()
    capped = _(" (capped from {rank} at C = {C})").format(rank=rank, C=E.size(1)) if k < rank else ""
    return Factorization(
        recipes,
        basis,
        "svd",
        _("post-hoc truncated SVD of the embedding at rank {k}{capped}: recipes = U diag(sigma), signals = "
          "the right singular vectors (relative error {error}).").format(
            k=k, capped=capped, error=f"{frobenius_error(E, recipes, basis):.3g}"),
    )


def dictionary_factorization(
    embedding: torch.Tensor, atoms: int, active_fraction: float, seed: int, rows: torch.Tensor | None = None
) -> Factorization:
    """A sparse dictionary of `atoms` signals fitted to the rows `rows` of E (all rows if None), and
    those rows' recipes coded by orthogonal matching pursuit with round(active_fraction x atoms)
    nonzeros each; the other rows' recipes are 0. Coding every one of GPT-2's 50k rows would cost
    minutes on a CPU, and the rows a model never trained on carry nothing to find."""
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    if not 0 < active_fraction <= 1:
        raise ValueError(f"active_fraction must be in (0, 1], got {active_fraction}")
    E = embedding.detach().float().cpu()
    coded = torch.arange(E.size(0)) if rows is None else rows.cpu()
    X = E[coded].numpy().astype(np.float64)
    nonzeros = max(1, round(active_fraction * atoms))
    learner = MiniBatchDictionaryLearning(
        n_components=atoms,
        fit_algorithm="cd",
        transform_algorithm="omp",
        transform_n_nonzero_coefs=nonzeros,
        batch_size=min(DICTIONARY_BATCH, len(X)),
        max_iter=DICTIONARY_PASSES,
        random_state=seed,
    )
    with warnings.catch_warnings():  # coordinate descent's early stops while fitting: atoms are still fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        codes = learner.fit(X).transform(X)
    recipes = torch.zeros(E.size(0), atoms)
    recipes[coded] = torch.from_numpy(codes).float()
    basis = torch.from_numpy(learner.components_).float()
    coverage = _("every row") if rows is None else \
        _("the {count} rows the experiments read (others 0)").format(count=len(coded))
    return Factorization(
        recipes,
        basis,
        "dictionary",
        _("post-hoc sparse dictionary of the embedding: {atoms} atoms (MiniBatchDictionaryLearning), "
          "recipes coded by orthogonal matching pursuit with {nonzeros} nonzeros ({active} active) for "
          "{coverage} (relative error {error}).").format(
            atoms=atoms, nonzeros=nonzeros, active=f"{nonzeros / atoms:.1%}", coverage=coverage,
            error=f"{frobenius_error(E[coded], recipes[coded], basis):.3g}"),
    )


def frobenius_error(E: torch.Tensor, R: torch.Tensor, B: torch.Tensor) -> float:
    """||E - R B|| / ||E|| (Frobenius), for the description written before the Factorization exists."""
    E = E.double()
    return ((E - R.double() @ B.double()).norm() / E.norm().clamp_min(1e-30)).item()


def native_factorization(model) -> Factorization:
    """A reflow-family model's own recipes and basis."""
    return Factorization(
        model.effective_recipe().detach(),
        model.basis.detach(),
        "native",
        "the model's own W_recipe and W_basis (native, trained as E = W_recipe @ W_basis).",
    )


@torch.no_grad()
def factorize(
    model, method: str, signals: int, active_fraction: float, seed: int, rows: torch.Tensor | None = None
) -> Factorization | None:
    """The factorization the recipe experiments read on `model`: its own recipes when it has them,
    else the post-hoc `method` of its embedding (None for 'none')."""
    if model.has_recipes:
        return native_factorization(model)
    if method == "none":
        return None
    embedding = model.vocab_matrix().detach()
    if method == "svd":
        return svd_factorization(embedding, signals)
    if method == "dictionary":
        return dictionary_factorization(embedding, signals, active_fraction, seed, rows)
    raise ValueError(f"unknown post-hoc method {method!r}; choose from {', '.join(POSTHOC_METHODS)}")


class FactorizedModel:
    """A standard model seen through a post-hoc factorization of its embedding.

    Everything the model does (forward, hooks, run_with_cache, the logit lens through its own
    vocab matrix) is the wrapped model's; only the signal interface comes from the factorization:
    a hidden state h is read in signal space as h @ B^T, and R @ B ~ E, so the readout
    (h @ B^T) @ R^T ~ h @ E^T is the model's logits (exactly so for a full-rank SVD).
    """

    has_recipes = True

    def __init__(self, model, factorization: Factorization):
        self.model, self.factorization = model, factorization
        device = next(model.parameters()).device
        self.recipe = factorization.recipes.to(device)
        self.basis = factorization.basis.to(device)

    def effective_recipe(self) -> torch.Tensor:
        return self.recipe

    def signal_activations(self, h: torch.Tensor) -> torch.Tensor:
        """A hidden state (..., C) read along each signal (..., S)."""
        return h @ self.basis.to(h.dtype).t()

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name):  # everything else is the wrapped model's
        return getattr(self.model, name)
