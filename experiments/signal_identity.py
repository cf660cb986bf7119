"""Group A, signal identity: what the recipes and the signal basis look like on their own.

1. Recipe Atlas: which tokens have similar recipes.
2. Sparsity Profile: how many signals a token uses, and how evenly the signals are used.
3. Basis Geometry: the shape of the signal basis W_basis.
"""

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from experiments.common import (
    ACTIVE_FRACTION,
    active_mask,
    cosine_matrix,
    effective_rank,
    gini,
    grouped_words,
    label,
    token_ids,
    token_space,
)
from experiments.context import Context
from experiments.report import Report

NEIGHBOURS = 8  # neighbours listed per probe word
PAIR_POOL = 500  # the top pairs are searched among this many most frequent tokens
TOP_PAIRS = 20


def group_agreement(vectors: torch.Tensor, groups: list[str]) -> float:
    """Fraction of words whose nearest other word (by cosine) belongs to the same group."""
    sims = cosine_matrix(vectors, vectors).fill_diagonal_(-float("inf"))
    nearest = sims.argmax(dim=1).tolist()
    return float(np.mean([groups[i] == groups[j] for i, j in enumerate(nearest)]))


def top_pairs(vectors: torch.Tensor, count: int) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """The `count` most similar (i, j) pairs, i < j, of the rows of vectors, and their cosines."""
    sims = cosine_matrix(vectors, vectors)
    upper = torch.triu(torch.ones_like(sims, dtype=torch.bool), diagonal=1)
    values, flat = sims.masked_fill(~upper, -float("inf")).flatten().topk(count)
    n = sims.size(0)
    return [(i // n, i % n) for i in flat.tolist()], values


@torch.no_grad()
def recipe_atlas(ctx: Context, report: Report) -> None:
    """Recipe Atlas: nearest neighbours in recipe space (cosine over W_recipe rows) for the probe
    words, the 20 most similar pairs among frequent tokens, and whether neighbours respect the
    labelled word groups. On gpt2 and gpt2-new the same is done with embedding rows."""
    cfg = ctx.cfg
    table, space = token_space(ctx.model)
    control_tables = [token_space(control)[0] for control in ctx.controls]
    control_table = control_tables[0]
    probes = token_ids(cfg.probe_words, ctx.vocab_size, "probe_words")
    vocab = ctx.vocabulary_with(probes)
    rows_of = "the effective W_recipe (V x S)" if ctx.model.has_recipes else "the embedding (V x C)"
    report.define("space", f"tokens are compared in {space}: each token is its row of {rows_of}.")
    report.define("searched vocabulary", f"the {len(ctx.frequent_tokens)} most frequent tokens of the "
                  "training text (train.bin; val.bin if there is none), plus the probe words.")

    sims = cosine_matrix(table[probes], table[vocab])  # (P, N)
    rows = []
    for p, token in enumerate(probes):
        order = sims[p].argsort(descending=True).tolist()
        neighbours = [i for i in order if vocab[i] != token][:NEIGHBOURS]
        rows.append([label(token)] + [f"{label(vocab[i].item())} ({sims[p, i]:.2f})" for i in neighbours])
    report.table(["probe"] + [f"#{k + 1}" for k in range(NEIGHBOURS)], rows,
                 title=f"Nearest neighbours (cosine in {space})")

    pool = ctx.frequent_tokens[:PAIR_POOL]
    pairs, values = top_pairs(table[pool], TOP_PAIRS)
    control_values = [top_pairs(t[pool], TOP_PAIRS)[1].mean().item() for t in control_tables]
    report.table(["token", "token", "cosine"],
                 [[label(pool[i].item()), label(pool[j].item()), v.item()]
                  for (i, j), v in zip(pairs, values, strict=True)],
                 title=f"The {TOP_PAIRS} most similar pairs among the {len(pool)} most frequent tokens")
    report.define("top-pair cosine", f"mean cosine of the {TOP_PAIRS} most similar pairs among the "
                  f"{len(pool)} most frequent tokens. Higher: the space groups some tokens tightly.")
    report.metric("top-pair cosine", values.mean().item(), control_values, "random-init models",
                  higher_is_structure=True)

    ids, groups = grouped_words(ctx)
    chance = sum((groups.count(g) - 1) / (len(groups) - 1) for g in groups) / len(groups)
    report.define("group agreement", "fraction of word-group words whose nearest other group word "
                  f"(cosine) is in its own group. Chance, for labels with no relation to the vectors, "
                  f"is {chance:.3f}.")
    report.metric("group agreement", group_agreement(table[ids], groups),
                  [group_agreement(t[ids], groups) for t in control_tables], "random-init models",
                  higher_is_structure=True)

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    names = [label(i) for i in ids]
    for ax, t, title in ((axes[0], table, "trained"), (axes[1], control_table, "random init (control)")):
        sns.heatmap(cosine_matrix(t[ids], t[ids]).numpy(), ax=ax, cmap="vlag", center=0, vmin=-1, vmax=1,
                    xticklabels=names, yticklabels=names, square=True, cbar_kws={"shrink": 0.6})
        ax.set_title(f"{title}: cosine between word-group words", fontsize=10)
        ax.tick_params(labelsize=6)
    report.figure(fig, "group_similarity")


@torch.no_grad()
def sparsity_profile(ctx: Context, report: Report) -> None:
    """Sparsity Profile: how many signals each token's recipe uses, and how evenly the S signals
    are used across the vocabulary (Gini of per-signal usage)."""
    vocab = ctx.frequent_tokens
    recipe = ctx.model.effective_recipe().float().cpu()[vocab]
    controls = [c.effective_recipe().float().cpu()[vocab] for c in ctx.controls]
    control = controls[0]
    S = recipe.size(1)
    report.define("active signal", f"entry s of a token's recipe with |r_s| >= {ACTIVE_FRACTION} x the "
                  "largest |r| in that recipe (scale-free, so models of any norm compare).")
    report.define("active fraction", f"mean number of active signals per token / S (S = {S}), over the "
                  f"{len(vocab)} most frequent training tokens. Lower: sparser recipes.")
    report.define("usage Gini", "Gini coefficient of per-signal usage u_s = sum over tokens of |r_s|: "
                  "0 when every signal carries the same weight, near 1 when a few carry it all. Higher: "
                  "signals specialize rather than all being shared alike.")
    report.define("exact zeros", "fraction of recipe entries that are exactly 0 (reflow-topk's mask).")
    report.define("dead signals", "signals active in no token's recipe.")
    is_active = active_mask(recipe)  # (N, S)
    active, control_active = is_active.sum(1), active_mask(control).sum(1)
    usage, control_usage = recipe.abs().sum(0), control.abs().sum(0)
    report.metric("active fraction", active.float().mean().item() / S,
                  [active_mask(c).sum(1).float().mean().item() / S for c in controls], "random-init models",
                  higher_is_structure=False)
    report.metric("usage Gini", gini(usage), [gini(c.abs().sum(0)) for c in controls], "random-init models",
                  higher_is_structure=True)
    report.metric("exact zeros", (recipe == 0).float().mean().item(), (control == 0).float().mean().item(),
                  "random-init model")
    report.metric("dead signals", int((is_active.sum(0) == 0).sum()))
    quantiles = torch.quantile(active.float(), torch.tensor([0.1, 0.5, 0.9])).tolist()
    report.say(f"Active signals per token: 10th percentile {quantiles[0]:.0f}, median {quantiles[1]:.0f}, "
               f"90th percentile {quantiles[2]:.0f} of {S}.")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    bins = np.linspace(0, S, min(S, 64) + 1)
    axes[0].hist(active.numpy(), bins=bins, alpha=0.7, label="trained")
    axes[0].hist(control_active.numpy(), bins=bins, alpha=0.5, label="random init (control)")
    axes[0].set(xlabel="active signals per token", ylabel="tokens", title="Signals per recipe")
    axes[0].legend()
    for u, name in ((usage, "trained"), (control_usage, "random init (control)")):
        x = u.sort().values.double()
        axes[1].plot(np.linspace(0, 1, S + 1), np.concatenate([[0], (x.cumsum(0) / x.sum()).numpy()]),
                     label=f"{name}, Gini {gini(u):.3f}")
    axes[1].plot([0, 1], [0, 1], "k:", lw=0.8, label="equal use (Gini 0)")
    axes[1].set(xlabel="fraction of signals (least used first)", ylabel="fraction of usage",
                title="Lorenz curve of signal usage")
    axes[1].legend(fontsize=8)
    report.figure(fig, "profile")


@torch.no_grad()
def basis_geometry(ctx: Context, report: Report) -> None:
    """Basis Geometry: singular values of W_basis (S x C), its effective rank and condition number,
    and the coherence of its rows (how close to parallel two signals are)."""
    basis = ctx.model.basis.detach().float().cpu()
    S, C = basis.shape

    def geometry(b):
        singular = torch.linalg.svdvals(b)
        cos = cosine_matrix(b, b)
        off = cos[~torch.eye(S, dtype=torch.bool)].abs()
        return singular, off, {
            "effective rank": effective_rank(b),
            "condition number": (singular[0] / singular[-1]).item(),
            "coherence (max |cos|)": off.max().item(),
            "mean |cos| between signals": off.mean().item(),
        }

    singular, off, stats = geometry(basis)
    control_geometries = [geometry(c.basis.detach().float().cpu()) for c in ctx.controls]
    control_singular, control_off, _ = control_geometries[0]
    report.define("effective rank", f"exp(entropy of the normalized singular values) of W_basis: how many of "
                  f"its min(S, C) = {min(S, C)} directions carry weight.")
    report.define("condition number", "largest / smallest singular value (infinite when rank-deficient).")
    report.define("coherence (max |cos|)", "largest |cosine| between two different basis rows (signals).")
    report.define("mean |cos| between signals", "mean |cosine| over all pairs of basis rows; random "
                  f"directions in {C} dimensions give about {np.sqrt(2 / np.pi / C):.3f}.")
    report.say("These numbers describe the basis and claim no structure by themselves: a trained basis "
               "that differs from the random-init one shows what training did to the signals.")
    for name, value in stats.items():
        report.metric(name, value, [g[2][name] for g in control_geometries], "random-init models")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].semilogy(singular.numpy(), label="trained")
    axes[0].semilogy(control_singular.numpy(), label="random init (control)")
    axes[0].set(xlabel="index", ylabel="singular value", title="Singular values of W_basis")
    axes[0].legend()
    bins = np.linspace(0, max(off.max().item(), control_off.max().item()), 60)
    axes[1].hist(off.numpy(), bins=bins, alpha=0.7, density=True, label="trained")
    axes[1].hist(control_off.numpy(), bins=bins, alpha=0.5, density=True, label="random init (control)")
    axes[1].set(xlabel="|cosine| between two signals", ylabel="density", title="Coherence of basis rows")
    axes[1].legend()
    report.figure(fig, "spectrum")
