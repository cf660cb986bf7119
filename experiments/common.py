"""Helpers every experiment group shares: probe-token lookup, token spaces, small metrics, hooks.

Everything here works on the models' common interface (`vocab_matrix`, `effective_recipe`,
`basis`, `hidden_states`, `run_with_cache`, `hooks`, `resid_hook`, `signal_activations`), so an
experiment reads the same on all five architectures.
"""

import re
import sys

import torch
import torch.nn.functional as F

from core.errors import UserError
from core.i18n import N_
from core.metrics import ACTIVE_FRACTION, active_mask, effective_rank  # noqa: F401  (re-exported)
from core.tokenizer import Tokenizer, decode, encode
from models import Transformer

SAMPLES_PER_PROMPT = 4  # rows generated at once per prompt by the steering experiments (10, 12)


# --- words and prompts -------------------------------------------------------------------------
def token_id(word: str, tokenizer: Tokenizer, key: str) -> int:
    """The model's id of a word that must be exactly one GPT-2 token, and one the model has;
    anything else is a one-line error that shows how the word was tokenized and names the config
    key it came from."""
    ids = encode(word)
    if len(ids) != 1:
        fields = dict(key=key, word=repr(word), count=len(ids),
                      pieces=" + ".join(repr(decode([i])) for i in ids) or N_("nothing"))
        if not word.startswith(" ") and word.strip():
            raise UserError(N_("{key}: {word} is {count} GPT-2 tokens ({pieces}), not one; use a word that "
                               "is a single token; try {suggestion}"), suggestion=repr(" " + word.strip()),
                            **fields)
        raise UserError(N_("{key}: {word} is {count} GPT-2 tokens ({pieces}), not one; use a word that is a "
                           "single token"), **fields)
    return int(tokenizer.from_gpt2(ids, key)[0])


def token_ids(words: list[str], tokenizer: Tokenizer, key: str) -> list[int]:
    return [token_id(w, tokenizer, key) for w in words]


def prompt_ids(text: str, block_size: int, tokenizer: Tokenizer, key: str) -> torch.Tensor:
    """A prompt as a (1, T) batch of the model's ids; empty prompts are refused, long ones keep their
    last block_size tokens."""
    ids = tokenizer.encode(text, f"{key}: the prompt {text!r}")
    if not ids:
        raise UserError(f"{key}: the prompt {text!r} is empty; give some text")
    if len(ids) > block_size:
        print(f"note: {key}: the prompt is {len(ids)} tokens, longer than the context; keeping the "
              f"last {block_size}", file=sys.stderr)
    return torch.tensor([ids[-block_size:]])


def frequent_words(ctx, exclude) -> list[int]:
    """The frequent tokens that are whole words like the config's (a space, then letters: ' crown'),
    minus `exclude`: the pool of random words for nulls, so a null word is the same kind of token as
    the words it stands in for, not punctuation or a word piece."""
    excluded = set(exclude)
    return [t for t in ctx.frequent_tokens.tolist()
            if t not in excluded and re.fullmatch(r" [A-Za-z]+", ctx.tokenizer.decode([t]))]


def grouped_words(ctx) -> tuple[list[int], list[str]]:
    """The ids of every word in cfg.word_groups and each one's group name, in config order."""
    ids, groups = [], []
    for group, words in ctx.cfg.word_groups.items():
        for token in token_ids(words, ctx.tokenizer, f"word_groups[{group!r}]"):
            ids.append(token)
            groups.append(group)
    return ids, groups


# --- token spaces ------------------------------------------------------------------------------
def token_space(model: Transformer) -> tuple[torch.Tensor, str]:
    """The (V, D) rows that describe each token, on the CPU: recipes (D = S) on the reflow family,
    the embedding (D = C) on gpt2 and gpt2-new, which have no recipes."""
    if model.has_recipes:
        return model.effective_recipe().detach().float().cpu(), N_("recipe space")
    return model.vocab_matrix().detach().float().cpu(), N_("embedding space")


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of a with every row of b."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).t()


# --- metrics -----------------------------------------------------------------------------------
def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (n-1)/n when one holds all."""
    x = values.double().flatten().sort().values
    n, total = x.numel(), x.sum()
    if total <= 0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return (2 * (ranks * x).sum() / (n * total) - (n + 1) / n).item()


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats, 0 to ln 2) between distributions on the last axis."""
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * (a.clamp_min(1e-30).log() - b.clamp_min(1e-30).log())).sum(-1)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def sentiment_log_odds(probs: torch.Tensor, positive: list[int], negative: list[int]) -> torch.Tensor:
    """log(P(next token is a positive word) / P(it is a negative word)) for probs (..., V)."""
    return probs[..., positive].sum(-1).log() - probs[..., negative].sum(-1).log()


# --- reading and editing the residual stream ---------------------------------------------------
def lens_logits(model: Transformer, h: torch.Tensor) -> torch.Tensor:
    """Logit lens: read a residual-stream state (..., C) through the final norm and the vocab
    matrix, as if the network stopped there. On the last layer this is the model's own output."""
    return model.unembed(model.ln_f(h), model.shared_vocab_weights())


def steering_hook(vector: torch.Tensor):
    """A hook that adds `vector` to the residual stream at every position it sees: one (C) vector
    for the whole batch, or (B, 1, C) for one vector per batch row."""
    return lambda h: h + vector.to(h.dtype)


@torch.no_grad()
def steered_next_token_probs(model: Transformer, idx: torch.Tensor, layer: int,
                             vectors: torch.Tensor) -> torch.Tensor:
    """(D, V): next-token distributions after a (1, T) prompt with each of the D vectors (D, C)
    added after `layer`, all in one batched forward instead of D separate ones."""
    batch = idx.expand(len(vectors), -1)
    with model.hooks({model.resid_hook(layer): steering_hook(vectors[:, None, :])}):
        logits, _ = model(batch, last_only=True)
    return F.softmax(logits[:, -1].float(), dim=-1)


@torch.no_grad()
def next_token_probs(model: Transformer, idx: torch.Tensor, hooks: dict | None = None) -> torch.Tensor:
    """Next-token distribution (V) after a (1, T) prompt, with optional hooks in place."""
    with model.hooks(hooks or {}):
        logits, _ = model(idx, last_only=True)
    return F.softmax(logits[0, -1].float(), dim=-1)


def residual_norms(model: Transformer, idx: torch.Tensor) -> torch.Tensor:
    """(L,): mean L2 norm of the residual stream after each layer over the prompt's positions. Steering
    strengths are given in this unit, so alpha means the same at every layer and on every model."""
    names = [model.resid_hook(i) for i in range(model.config.n_layer)]
    _, cache = model.run_with_cache(idx, names, stop_at_layer=model.config.n_layer)  # no readout
    return torch.stack([cache[name].norm(dim=-1).mean() for name in names])


# --- removing directions from the residual stream ----------------------------------------------
def stream_hooks(model: Transformer) -> list[str]:
    """The points where the residual stream is complete: after the embedding and after every layer.
    Editing all of them edits everything any layer reads or the readout sees."""
    return ["hook_embed"] + [model.resid_hook(i) for i in range(model.config.n_layer)]


def projection_hook(projectors: torch.Tensor, mean: torch.Tensor | None = None):
    """A hook that removes from each group of batch rows its own subspace: projectors (G, C, C)
    are orthogonal projectors, the batch (G * b, T, C) holds G groups of b rows, and row group g
    becomes h - h P_g. G = 1 removes one subspace from the whole batch. With a `mean` (C), the part
    of h - mean is removed instead, h - (h - mean) P_g: the subspace keeps the mean's component (mean
    ablation), so a direction is not judged by the large constant a residual stream carries."""
    def hook(h):
        G = projectors.size(0)
        grouped = h.view(G, -1, h.size(-1))  # (G, b * T, C)
        centred = grouped if mean is None else grouped - mean.to(h.dtype)
        return (grouped - centred @ projectors.to(h.dtype)).view_as(h)
    return hook


def projector(directions: torch.Tensor) -> torch.Tensor:
    """(C, C) orthogonal projector onto the span of the rows of directions (k, C)."""
    q, _ = torch.linalg.qr(directions.double().t())  # (C, k) orthonormal columns
    return (q @ q.t()).float()


@torch.no_grad()
def logits_at(model: Transformer, idx: torch.Tensor, positions: torch.Tensor,
              hooks: dict | None = None) -> torch.Tensor:
    """(B, P, V) logits of idx (B, T) at the given positions only, with optional hooks in place:
    the readout, most of a forward's cost at a 50k vocabulary, runs on P positions, not T."""
    with model.hooks({**(hooks or {}), "hook_final": lambda h: h[:, positions]}):
        logits, _ = model(idx)
    return logits.float()
