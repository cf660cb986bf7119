"""Group A, signal identity: what the recipes and the signal basis look like on their own.

1. Recipe Atlas: which tokens have similar recipes.
2. Sparsity Profile: how many signals a token uses, and how evenly the signals are used.
3. Basis Geometry: the shape of the signal basis W_basis.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from core.i18n import N_, _
from experiments.common import (
    ACTIVE_FRACTION,
    active_mask,
    cosine_matrix,
    effective_rank,
    gini,
    grouped_words,
    token_ids,
    token_space,
)
from experiments.context import Context
from experiments.nulls import NULL_BASES, random_rotations, svd_factorization
from experiments.report import Report
from experiments.statistics import paired_p, percentile

NEIGHBOURS = 8  # neighbours listed per probe word
PAIR_POOL = 500  # the top pairs are searched among this many most frequent tokens
TOP_PAIRS = 20
LABEL_SHUFFLES = 200  # shuffled word-group labels: the null of group agreement


def group_agreement(vectors: torch.Tensor, groups: list[str]) -> float:
    """Fraction of words whose nearest other word (by cosine) belongs to the same group."""
    sims = cosine_matrix(vectors, vectors).fill_diagonal_(-float("inf"))
    nearest = sims.argmax(dim=1).tolist()
    return float(np.mean([groups[i] == groups[j] for i, j in enumerate(nearest)]))


def agreement_per_word(vectors: torch.Tensor, groups: list[str]) -> np.ndarray:
    """(N,) 1.0 where a word's nearest other word (by cosine) belongs to its group, else 0.0."""
    sims = cosine_matrix(vectors, vectors).fill_diagonal_(-float("inf"))
    return np.array([float(groups[i] == groups[j]) for i, j in enumerate(sims.argmax(dim=1).tolist())])


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
    label = ctx.tokenizer.label  # the model's token ids as text
    cfg = ctx.cfg
    table, space = token_space(ctx.model)
    control_table = token_space(ctx.control)[0]  # for the figure; the floor below draws cfg.floor_draws
    probes = token_ids(cfg.probe_words, ctx.tokenizer, "probe_words")
    vocab = ctx.vocabulary_with(probes)
    rows_of = _("the effective W_recipe (V x S)") if ctx.model.has_recipes else _("the embedding (V x C)")
    report.define(N_("space"), _("tokens are compared in {space}: each token is its row of {rows}.").format(
        space=_(space), rows=rows_of))
    report.define(N_("searched vocabulary"), _(
        "the {count} most frequent tokens of the training text (train.bin; val.bin if there is none), plus "
        "the probe words.").format(count=len(ctx.frequent_tokens)))

    sims = cosine_matrix(table[probes], table[vocab])  # (P, N)
    rows = []
    for p, token in enumerate(probes):
        order = sims[p].argsort(descending=True).tolist()
        neighbours = [i for i in order if vocab[i] != token][:NEIGHBOURS]
        rows.append([label(token)] + [f"{label(vocab[i].item())} ({sims[p, i]:.2f})" for i in neighbours])
    report.table([_("probe")] + [f"#{k + 1}" for k in range(NEIGHBOURS)], rows,
                 title=_("Nearest neighbours (cosine in {space})").format(space=_(space)))

    pool = ctx.frequent_tokens[:PAIR_POOL]
    pairs, values = top_pairs(table[pool], TOP_PAIRS)
    ids, groups = grouped_words(ctx)
    control_values, control_agreements = [], []
    for c in ctx.table_floor():  # one pass: each draw is built once for both floors
        floor_table = token_space(c)[0]
        control_values.append(top_pairs(floor_table[pool], TOP_PAIRS)[1].mean().item())
        control_agreements.append(group_agreement(floor_table[ids], groups))
    report.table([_("token"), _("token"), _("cosine")],
                 [[label(pool[i].item()), label(pool[j].item()), v.item()]
                  for (i, j), v in zip(pairs, values, strict=True)],
                 title=_("The {pairs} most similar pairs among the {count} most frequent tokens").format(
                     pairs=TOP_PAIRS, count=len(pool)))
    report.define(N_("top-pair cosine"), _(
        "mean cosine of the {pairs} most similar pairs among the {count} most frequent tokens. Higher: the "
        "space groups some tokens tightly.").format(pairs=TOP_PAIRS, count=len(pool)))
    report.metric(N_("top-pair cosine"), values.mean().item(), control_values,
                  N_("random-init models (floor)"))

    chance = sum((groups.count(g) - 1) / (len(groups) - 1) for g in groups) / len(groups)
    report.define(N_("group agreement"), _(
        "fraction of word-group words whose nearest other group word (cosine) is in its own group. Chance, "
        "for labels with no relation to the vectors, is {chance}.").format(chance=f"{chance:.3f}"))
    rng = np.random.default_rng(ctx.cfg.seed)
    shuffled = [group_agreement(table[ids], list(rng.permutation(groups))) for _ in range(LABEL_SHUFFLES)]
    report.metric(N_("group agreement"), group_agreement(table[ids], groups), shuffled,
                  N_("shuffled labels ({count})").format(count=LABEL_SHUFFLES), higher_is_structure=True)
    if ctx.model.has_recipes:
        report.metric(N_("group agreement in the model's own E = R B"),
                      group_agreement(ctx.model.vocab_matrix().detach().float().cpu()[ids], groups))
    if ctx.reference is not None:
        reference_table = token_space(ctx.reference.model)[0]
        ours = agreement_per_word(table[ids], groups)
        theirs = agreement_per_word(reference_table[ids], groups)
        report.metric(N_("group agreement (vs reference)"), float(ours.mean()), float(theirs.mean()),
                      N_("reference model"), higher_is_structure=True, p_value=paired_p(ours, theirs, True),
                      n=len(ours), test="paired")
    report.metric(N_("group agreement (random-init floor)"), group_agreement(table[ids], groups),
                  control_agreements, N_("random-init models"), higher_is_structure=True)

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    names = [label(i) for i in ids]
    panels = ((axes[0], table, _("trained")), (axes[1], control_table, _("random init (control)")))
    for ax, t, title in panels:
        sns.heatmap(cosine_matrix(t[ids], t[ids]).numpy(), ax=ax, cmap="vlag", center=0, vmin=-1, vmax=1,
                    xticklabels=names, yticklabels=names, square=True, cbar_kws={"shrink": 0.6})
        ax.set_title(_("{model}: cosine between word-group words").format(model=title), fontsize=10)
        ax.tick_params(labelsize=6)
    report.figure(fig, "group_similarity")


# --- 2. sparsity ----------------------------------------------------------------------------
PAPER_ACTIVE_RATE = 0.1138  # "116.6/1024 signals active per token", threshold not stated
PAPER_GINI = 0.085  # presented as even use of the signals
L1_MASS = 0.9
GAUSSIAN_RMS_THRESHOLD = 1.58  # |z| > 1.58 sd holds 11.4% of a Gaussian's entries: the paper's rate


def hoyer_sparsity(rows: torch.Tensor) -> torch.Tensor:
    """(N,): Hoyer's sparsity of each row, (sqrt(n) - |r|_1 / |r|_2) / (sqrt(n) - 1): 0 when every
    entry is equal in size, 1 when one entry holds all; a Gaussian row gives about 0.20."""
    n = rows.size(-1)
    ratio = rows.abs().sum(-1) / rows.norm(dim=-1).clamp_min(1e-30)
    return (math.sqrt(n) - ratio) / (math.sqrt(n) - 1)


def l1_mass_fraction(rows: torch.Tensor, mass: float = L1_MASS) -> torch.Tensor:
    """(N,): the smallest share of a row's entries whose magnitudes hold `mass` of its L1 norm
    (largest first). A Gaussian row needs 64.6% of its entries for 90%; a row with 11% of its
    entries non-zero needs at most 11%."""
    sorted_abs = rows.abs().sort(dim=-1, descending=True).values
    cumulative = sorted_abs.cumsum(-1) / sorted_abs.sum(-1, keepdim=True).clamp_min(1e-30)
    return ((cumulative < mass).sum(-1) + 1).float() / rows.size(-1)


def share_beyond_rms(rows: torch.Tensor, threshold: float = GAUSSIAN_RMS_THRESHOLD) -> torch.Tensor:
    """(N,): share of a row's entries with |r| > threshold x the row's RMS: 11.4% for Gaussian rows."""
    rms = rows.pow(2).mean(-1, keepdim=True).sqrt()
    return (rows.abs() > threshold * rms).float().mean(-1)


def excess_kurtosis(rows: torch.Tensor) -> float:
    """Excess kurtosis of all entries after removing each row's scale: 0 for Gaussian rows, large for
    sparse (heavy-tailed) ones."""
    z = rows / rows.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-30)
    return (z.pow(4).mean() - 3).item()


def gaussian_expectation(statistic, n: int, generator: torch.Generator, rows: int = 4096) -> float:
    """A row statistic's mean over Gaussian rows of length n (Monte Carlo, fixed seed)."""
    return statistic(torch.randn(rows, n, generator=generator)).float().mean().item()


def sparsity_null(recipe: torch.Tensor, rotations: torch.Tensor) -> dict[str, list[float]]:
    """Mean Hoyer sparsity and L1-mass fraction of the recipes written in each rotated signal basis
    (recipe Q): the same model, other directions called signals."""
    out = {"Hoyer": [], "L1": []}
    for q in rotations:
        rotated = recipe @ q
        out["Hoyer"].append(hoyer_sparsity(rotated).mean().item())
        out["L1"].append(l1_mass_fraction(rotated).mean().item())
    return out


@torch.no_grad()
def sparsity_profile(ctx: Context, report: Report) -> None:
    """Sparsity Profile: is each token's recipe sparse in the signal basis, more than in any other
    basis of the same signal space? Hoyer sparsity and the share of entries holding 90% of a row's
    L1 mass, against the same model written in NULL_BASES random signal bases (W_recipe Q) and in
    the SVD basis of its vocab matrix; and how evenly the S signals are used (Gini)."""
    vocab = ctx.frequent_tokens
    recipe = ctx.model.effective_recipe().float().cpu()[vocab]
    controls = [c.effective_recipe().detach().float().cpu()[vocab] for c in ctx.table_floor()]
    control = controls[0]
    S = recipe.size(1)
    generator = ctx.generator(report.number)
    rotations = random_rotations(NULL_BASES, S, generator)
    null = sparsity_null(recipe, rotations)
    svd_recipe = svd_factorization(ctx.model.vocab_matrix().detach().float().cpu(), S)[0][vocab]
    relative_active = lambda rows: active_mask(rows).float().mean(-1)
    gaussian = {name: gaussian_expectation(f, S, generator)
                for name, f in (("Hoyer", hoyer_sparsity), ("L1", l1_mass_fraction),
                                ("RMS", share_beyond_rms), ("relative", relative_active))}
    basis_null = N_("basis null ({count} rotated signal bases)").format(count=NULL_BASES)
    report.define(N_("Hoyer sparsity"), _(
        "(sqrt(S) - |r|_1/|r|_2) / (sqrt(S) - 1) per recipe row, mean over the {count} most frequent "
        "training tokens: 0 = all entries equal, 1 = one entry; Gaussian rows give {gaussian}. Higher: "
        "sparser.").format(count=len(vocab), gaussian=f"{gaussian['Hoyer']:.3f}"))
    report.define(N_("L1-90% share"), _(
        "the smallest share of a row's entries holding {mass} of its L1 mass, mean over tokens; Gaussian "
        "rows give {gaussian}. Lower: sparser.").format(mass=f"{L1_MASS:.0%}",
                                                        gaussian=f"{gaussian['L1']:.3f}"))
    report.define(N_("basis null"), _(
        "the same measure on W_recipe Q for Haar-random orthogonal Q (S x S): the model is unchanged "
        "(W_basis -> Q^T W_basis), so sparsity that is a property of the signal basis must beat these "
        "bases; the SVD basis of E (recipes U Sigma) is shown beside."))
    report.define(N_("share beyond 1.58 RMS"), _(
        "share of recipe entries with |r| > {threshold} x their row's RMS: exactly the paper's 11.4% "
        "({rate} active) for Gaussian rows. The paper does not state its threshold; its 11% means sparsity "
        "only if its threshold gives far more than 11% on Gaussian rows (as 0.1 x the row max does, "
        "below).").format(threshold=GAUSSIAN_RMS_THRESHOLD, rate=f"{PAPER_ACTIVE_RATE:.2%}"))
    report.define(N_("relative active fraction"), _(
        "share of entries with |r| >= {fraction} x the row's largest |r| (this suite's former 'active "
        "fraction'): {gaussian} for Gaussian rows of this length, so not comparable with the paper's "
        "11%.").format(fraction=ACTIVE_FRACTION, gaussian=f"{gaussian['relative']:.3f}"))
    report.define(N_("usage Gini"), _(
        "Gini coefficient of per-signal usage u_s = sum over tokens of |r_s|: 0 when every signal carries "
        "the same weight. The paper reports 0.085 as evidence of *even* use (no dead or dominant signals): "
        "lower is what it claims."))
    report.define(N_("exact zeros"), _("fraction of recipe entries that are exactly 0 (reflow-topk's mask)."))
    report.define(N_("dead signals"), _("signals active (relative threshold) in no token's recipe."))
    report.define(N_("random-init floor"), _(
        "{count} random-init models, judged by their empirical p-value (Hoyer sparsity).").format(
        count=len(controls)))
    hoyer, l1 = hoyer_sparsity(recipe), l1_mass_fraction(recipe)
    report.metric(N_("Hoyer sparsity"), hoyer.mean().item(), null["Hoyer"], basis_null,
                  higher_is_structure=True)
    report.metric(N_("Hoyer sparsity: percentile in the basis null"),
                  percentile(hoyer.mean().item(), null["Hoyer"]))
    report.metric(N_("Hoyer sparsity, SVD basis of E"), hoyer_sparsity(svd_recipe).mean().item(),
                  gaussian["Hoyer"], N_("Gaussian rows"))
    report.metric(N_("Hoyer sparsity (random-init floor)"), hoyer.mean().item(),
                  [hoyer_sparsity(c).mean().item() for c in controls], N_("random-init models"),
                  higher_is_structure=True)
    reference = ctx.reference.signal_model if ctx.reference is not None else None
    if reference is not None:  # the reference's own recipes against its own rotated bases
        theirs = reference.effective_recipe().detach().float().cpu()[vocab]
        their_hoyer = hoyer_sparsity(theirs).mean().item()
        report.metric(N_("Hoyer sparsity of the reference"), their_hoyer, hoyer.mean().item(),
                      N_("this model"))
        report.define(N_("Hoyer sparsity (vs reference)"), _(
            "per token, this model's recipe Hoyer sparsity against the reference's (its native recipes, or "
            "the post-hoc factorization named under 'trained reference': a dictionary's sparsity is set by "
            "construction, so compare with an SVD reference): a paired sign-flip test over the tokens."))
        their_rows = hoyer_sparsity(theirs)
        report.metric(N_("Hoyer sparsity (vs reference)"), hoyer.mean().item(), their_hoyer,
                      N_("reference model"),
                      higher_is_structure=True, p_value=paired_p(hoyer.numpy(), their_rows.numpy(), True),
                      n=len(hoyer), test="paired")
        report.metric(N_("Hoyer sparsity of the reference: percentile in its basis null"),
                      percentile(their_hoyer, sparsity_null(
                          theirs, random_rotations(NULL_BASES, theirs.size(1), generator))["Hoyer"]))
    report.metric(N_("L1-90% share"), l1.mean().item(), null["L1"], basis_null, higher_is_structure=False)
    report.metric(N_("L1-90% share, SVD basis of E"), l1_mass_fraction(svd_recipe).mean().item(),
                  gaussian["L1"], N_("Gaussian rows"))
    report.metric(N_("share beyond 1.58 RMS"), share_beyond_rms(recipe).mean().item(), PAPER_ACTIVE_RATE,
                  N_("the paper's active rate"))
    is_active = active_mask(recipe)  # (N, S)
    active, control_active = is_active.sum(1), active_mask(control).sum(1)
    report.metric(N_("relative active fraction"), active.float().mean().item() / S, gaussian["relative"],
                  N_("Gaussian rows"))
    report.metric(N_("excess kurtosis of recipe entries"), excess_kurtosis(recipe), 0.0, N_("Gaussian rows"))
    usage, control_usage = recipe.abs().sum(0), control.abs().sum(0)
    report.metric(N_("usage Gini"), gini(usage), PAPER_GINI, N_("the paper's value (even use)"))
    report.metric(N_("exact zeros"), (recipe == 0).float().mean().item(),
                  (control == 0).float().mean().item(), N_("random-init model"))
    report.metric(N_("dead signals"), int((is_active.sum(0) == 0).sum()))
    quantiles = torch.quantile(active.float(), torch.tensor([0.1, 0.5, 0.9])).tolist()
    report.say(_("Signals at >= {fraction} x the row's max, per token: 10th percentile {low}, median "
                 "{median}, 90th percentile {high} of {S}. The paper's 11% is comparable with ours only "
                 "under the same threshold; 'share beyond 1.58 RMS' shows what Gaussian rows give at the "
                 "threshold that yields 11%.").format(fraction=ACTIVE_FRACTION, low=f"{quantiles[0]:.0f}",
                                            median=f"{quantiles[1]:.0f}", high=f"{quantiles[2]:.0f}", S=S))

    fig, axes = plt.subplots(1, 3, figsize=(17, 4))
    axes[0].hist(null["Hoyer"], bins=25, color="C7", alpha=0.7,
                 label=_("rotated bases ({count})").format(count=NULL_BASES))
    axes[0].axvline(hoyer.mean().item(), color="C3", lw=2, label=_("signal basis"))
    axes[0].axvline(hoyer_sparsity(svd_recipe).mean().item(), color="C0", ls="--", label=_("SVD basis of E"))
    axes[0].axvline(gaussian["Hoyer"], color="k", ls=":", label=_("Gaussian rows"))
    axes[0].set(xlabel=_("mean Hoyer sparsity of recipes"), ylabel=_("bases"), title=_("Basis null"))
    axes[0].legend(fontsize=8)
    bins = np.linspace(0, S, min(S, 64) + 1)
    axes[1].hist(active.numpy(), bins=bins, alpha=0.7, label=_("trained"))
    axes[1].hist(control_active.numpy(), bins=bins, alpha=0.5, label=_("random init"))
    axes[1].set(xlabel=_("signals >= {fraction} x row max").format(fraction=ACTIVE_FRACTION),
                ylabel=_("tokens"), title=_("Signals per recipe"))
    axes[1].legend()
    for u, name in ((usage, _("trained")), (control_usage, _("random init"))):
        x = u.sort().values.double()
        axes[2].plot(np.linspace(0, 1, S + 1), np.concatenate([[0], (x.cumsum(0) / x.sum()).numpy()]),
                     label=f"{name}, Gini {gini(u):.3f}")
    axes[2].plot([0, 1], [0, 1], "k:", lw=0.8, label=_("equal use (Gini 0)"))
    axes[2].set(xlabel=_("fraction of signals (least used first)"), ylabel=_("fraction of usage"),
                title=_("Lorenz curve of signal usage"))
    axes[2].legend(fontsize=8)
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
            N_("effective rank"): effective_rank(b),
            N_("condition number"): (singular[0] / singular[-1]).item(),
            N_("coherence (max |cos|)"): off.max().item(),
            N_("mean |cos| between signals"): off.mean().item(),
        }

    singular, off, stats = geometry(basis)
    control_geometries = [geometry(c.basis.detach().float().cpu()) for c in ctx.controls]
    control_singular, control_off = control_geometries[0][:2]
    report.define(N_("effective rank"), _(
        "exp(entropy of the normalized singular values) of W_basis: how many of its min(S, C) = {rank} "
        "directions carry weight.").format(rank=min(S, C)))
    report.define(N_("condition number"),
                  _("largest / smallest singular value (infinite when rank-deficient)."))
    report.define(N_("coherence (max |cos|)"),
                  _("largest |cosine| between two different basis rows (signals)."))
    report.define(N_("mean |cos| between signals"), _(
        "mean |cosine| over all pairs of basis rows; random directions in {C} dimensions give about "
        "{expected}.").format(C=C, expected=f"{np.sqrt(2 / np.pi / C):.3f}"))
    report.say(_("These numbers describe the basis and claim no structure by themselves: a trained basis "
                 "that differs from the random-init one shows what training did to the signals."))
    for name, value in stats.items():
        report.metric(name, value, [g[2][name] for g in control_geometries], N_("random-init models"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].semilogy(singular.numpy(), label=_("trained"))
    axes[0].semilogy(control_singular.numpy(), label=_("random init (control)"))
    axes[0].set(xlabel=_("index"), ylabel=_("singular value"), title=_("Singular values of W_basis"))
    axes[0].legend()
    bins = np.linspace(0, max(off.max().item(), control_off.max().item()), 60)
    axes[1].hist(off.numpy(), bins=bins, alpha=0.7, density=True, label=_("trained"))
    axes[1].hist(control_off.numpy(), bins=bins, alpha=0.5, density=True, label=_("random init (control)"))
    axes[1].set(xlabel=_("|cosine| between two signals"), ylabel=_("density"),
                title=_("Coherence of basis rows"))
    axes[1].legend()
    report.figure(fig, "spectrum")
