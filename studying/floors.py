"""The floors a study's models must clear: count-based unigram, bigram and trigram models of train.bin,
scored on the study's val text (the windows every run is scored on, studying/outcomes.val_windows).

    unigram   p1(c) = (c(c) + 1) / (N + V): add-one counts of train.bin (never zero)
    bigram    w1 p1(c) + w2 p2(c | b)               p2 = c(b c) / c(b), or p1(c) when b never occurs
    trigram   w1 p1(c) + w2 p2(c | b) + w3 p3(c | a b)
                                                    p3 = c(a b c) / c(a b), or p2(c | b) when a b never
                                                    occurs or the window gives no second token of context
The weights (on the simplex, w1 >= MIN_WEIGHT so unseen text keeps a finite loss) are tuned by
scipy.optimize on held-out text: the last HELD_OUT_FRACTION of train.bin, in windows as long as the
val text's, with counts from the rest of train.bin; the floors are then scored with counts from all
of train.bin. A model sees only its window, so the n-gram models see only the window too: the first
target of a window has one token of context. Cross-entropy in nats per token, like the val loss.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from core.config import Config

HELD_OUT_FRACTION = 0.1  # the tail of train.bin the interpolation weights are tuned on
MIN_WEIGHT = 1e-4  # the unigram's least weight: a word pair never seen in train.bin keeps a finite loss


def count_of(keys: np.ndarray, counts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """counts[i] where keys[i] == wanted (keys sorted), 0 where wanted is not among the keys."""
    if len(keys) == 0:
        return np.zeros(wanted.shape, dtype=np.int64)
    at = np.clip(np.searchsorted(keys, wanted), 0, len(keys) - 1)
    return np.where(keys[at] == wanted, counts[at], 0)


class NgramCounts:
    """Unigram, pair and triple counts of a token sequence over a vocabulary of V ids."""

    def __init__(self, tokens: np.ndarray, vocab: int):
        t = tokens.astype(np.int64)
        self.vocab = vocab
        self.unigram = (np.bincount(t, minlength=vocab) + 1) / (len(t) + vocab)
        self.as_context = np.bincount(t[:-1], minlength=vocab)  # c(b) followed by anything
        self.pairs, self.pair_counts = np.unique(t[:-1] * vocab + t[1:], return_counts=True)
        self.context_pairs, self.context_pair_counts = np.unique(t[:-2] * vocab + t[1:-1], return_counts=True)
        self.triples, self.triple_counts = np.unique(
            (t[:-2] * vocab + t[1:-1]) * vocab + t[2:], return_counts=True
        )

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """(3, n, T): p1, p2 and p3 (as defined above) of every target windows[:, 1:] given its window."""
        V = self.vocab
        before, target = windows[:, :-1], windows[:, 1:]
        p1 = self.unigram[target]
        seen = self.as_context[before]
        pair = count_of(self.pairs, self.pair_counts, before * V + target)
        p2 = np.where(seen > 0, pair / np.maximum(seen, 1), p1)
        p3 = p2.copy()
        two_back, one_back, later = windows[:, :-2], windows[:, 1:-1], windows[:, 2:]
        pair_seen = count_of(self.context_pairs, self.context_pair_counts, two_back * V + one_back)
        triple = count_of(self.triples, self.triple_counts, (two_back * V + one_back) * V + later)
        p3[:, 1:] = np.where(pair_seen > 0, triple / np.maximum(pair_seen, 1), p2[:, 1:])
        return np.stack([p1, p2, p3])


def mixture_loss(weights: np.ndarray, parts: np.ndarray) -> float:
    """Mean -log(sum_k w_k p_k) over every target; parts (k, ...) are the p_k."""
    return float(-np.mean(np.log(np.tensordot(weights, parts, axes=1))))


def tune_weights(parts: np.ndarray) -> np.ndarray:
    """The simplex weights (w1 >= MIN_WEIGHT) that minimize mixture_loss on `parts` (SLSQP, with the
    exact gradient -mean(p_k / mixture))."""
    k = len(parts)
    flat = parts.reshape(k, -1)

    def loss_and_gradient(w):
        mixture = w @ flat
        return -np.mean(np.log(mixture)), -(flat / mixture).mean(axis=1)

    result = minimize(
        loss_and_gradient,
        np.full(k, 1 / k),
        jac=True,
        method="SLSQP",
        bounds=[(MIN_WEIGHT, 1.0)] + [(0.0, 1.0)] * (k - 1),
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    return np.clip(result.x, 0.0, 1.0) / np.clip(result.x, 0.0, 1.0).sum()


def text_windows(tokens: np.ndarray, length: int) -> np.ndarray:
    """Consecutive non-overlapping windows of `length` tokens (the remainder dropped)."""
    n = len(tokens) // length
    return tokens[: n * length].reshape(n, length)


@dataclass
class Floors:
    """Cross-entropy (nats per token) of each count-based model on the val text, and its weights
    (unigram, bigram, trigram)."""

    unigram: float
    bigram: float
    trigram: float
    bigram_weights: list[float]
    trigram_weights: list[float]

    def as_dict(self) -> dict[str, float]:
        return {"unigram": self.unigram, "bigram": self.bigram, "trigram": self.trigram}


def ngram_floors(train: np.ndarray, val_windows: np.ndarray) -> Floors:
    """The three floors of val_windows (n, T + 1) from counts of `train`, weights tuned on its tail."""
    train = train.astype(np.int64)
    vocab = int(max(train.max(), val_windows.max())) + 1
    cut = int(len(train) * (1 - HELD_OUT_FRACTION))
    held_out = text_windows(train[cut:], val_windows.shape[1])
    tuning = NgramCounts(train[:cut], vocab).probabilities(held_out)
    bigram_weights, trigram_weights = tune_weights(tuning[:2]), tune_weights(tuning)
    parts = NgramCounts(train, vocab).probabilities(val_windows)
    return Floors(
        unigram=mixture_loss(np.ones(1), parts[:1]),
        bigram=mixture_loss(bigram_weights, parts[:2]),
        trigram=mixture_loss(trigram_weights, parts),
        bigram_weights=[float(w) for w in bigram_weights],
        trigram_weights=[float(w) for w in trigram_weights],
    )


def floors_of(cfg: Config, val_windows: np.ndarray) -> Floors | None:
    """The floors for a run's config (its dataset's train.bin); None when train.bin is missing or
    too short to hold out windows from."""
    path = Path(cfg.data_dir) / cfg.dataset / "train.bin"
    if not path.is_file():
        return None
    train = np.fromfile(path, dtype=np.uint16)
    if len(train) * HELD_OUT_FRACTION < 2 * val_windows.shape[1]:
        return None
    return ngram_floors(train, val_windows)
