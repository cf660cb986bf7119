"""Group E, from related work: the representation-geometry and feature-dashboard views.

13. Representation Geometry: effective rank and isotropy of hidden states, head similarity, the
    share of MLP units above their layer's RMS, per layer; on every model.
14. Signal Selectivity: for every signal over validation text, how often it fires, how peaked it is,
    and the contexts where it fires most, like a sparse-autoencoder feature dashboard.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from tqdm import tqdm

from core.i18n import N_, _
from core.tokenizer import Tokenizer
from experiments.common import effective_rank
from experiments.context import Context
from experiments.nulls import NULL_BASES, random_rotations
from experiments.report import Report
from experiments.statistics import percentile

GEOMETRY_WINDOWS = 16  # validation windows for the hidden-state statistics
ATTENTION_WINDOWS = 4  # of which this many for the attention patterns (T x T each)
RANDOM_PAIRS = 4096  # position pairs sampled for the anisotropy
BATCH_WINDOWS = 8  # windows per forward pass
MLP_ABOVE_RMS = N_("MLP units above layer RMS")  # formerly "active fraction", which read like the paper's 11%
FIRING_FRACTION = 0.5  # a signal fires where its activation exceeds this fraction of its peak
NULL_POSITIONS = 4096  # positions read in each rotated basis of the selectivity null
DASHBOARD_SIGNALS = 8
DASHBOARD_CONTEXTS = 5
CONTEXT_LEFT, CONTEXT_RIGHT = 12, 3  # tokens shown around an activation


def head_similarity(patterns: torch.Tensor) -> float:
    """Mean cosine between the flattened attention patterns of every pair of heads (B, H, T, T)."""
    flat = F.normalize(patterns.flatten(2), dim=-1)  # (B, H, T*T)
    sims = flat @ flat.transpose(1, 2)  # (B, H, H)
    H = sims.size(-1)
    off = ~torch.eye(H, dtype=torch.bool, device=sims.device)
    return sims[:, off].mean().item() if H > 1 else float("nan")


@torch.no_grad()
def layer_geometry(model, windows: torch.Tensor, generator: torch.Generator) -> dict[str, list[float]]:
    """Per layer: effective rank and anisotropy of the residual stream, head similarity, and the
    share of MLP hidden units above their layer's RMS."""
    L = model.config.n_layer
    names = ["hook_embed"] + [model.resid_hook(i) for i in range(L)]
    mlp = [f"blocks.{i}.mlp.hook_post" for i in range(L)]
    patterns = [f"blocks.{i}.attn.hook_pattern" for i in range(L)]
    states: dict[str, list] = {}
    for n, batch in enumerate(tqdm(windows.split(BATCH_WINDOWS), desc="representation geometry",
                                   leave=False, disable=None)):
        # Attention patterns (T x T per head) only for the first ATTENTION_WINDOWS windows.
        first = batch[: max(ATTENTION_WINDOWS - n * BATCH_WINDOWS, 0)]
        cache = model.run_with_cache(batch, names + mlp, stop_at_layer=L)[1]
        if len(first):
            pattern_cache = model.run_with_cache(first, patterns, stop_at_layer=L)[1]
            cache.update(pattern_cache)
        for name, value in cache.items():
            states.setdefault(name, []).append(value)
    # The embedding has no attention or MLP: those two start with a gap (NaN) at 'embed'.
    out = {N_("effective rank"): [], N_("anisotropy"): [], N_("head similarity"): [math.nan],
           MLP_ABOVE_RMS: [math.nan]}
    for name in names:
        H = torch.cat(states[name]).flatten(0, 1)  # (N, C)
        out["effective rank"].append(effective_rank(H - H.mean(0)))
        i, j = torch.randint(len(H), (2, RANDOM_PAIRS), generator=generator)
        keep = i != j
        out["anisotropy"].append(F.cosine_similarity(H[i[keep]], H[j[keep]], dim=-1).mean().item())
    for layer in range(L):
        out["head similarity"].append(head_similarity(torch.cat(states[patterns[layer]])))
        hidden = torch.cat([h.flatten(0, 1) for h in states[mlp[layer]]])
        rms = hidden.pow(2).mean().sqrt()
        out[MLP_ABOVE_RMS].append((hidden.abs() > rms).float().mean().item())
    return out


@torch.no_grad()
def representation_geometry(ctx: Context, report: Report) -> None:
    """Representation Geometry: per layer, the effective rank and the anisotropy of the hidden states
    over validation text, how similar the attention heads' patterns are, and the share of MLP
    units above their layer's RMS; random init is a floor. Runs on every architecture."""
    windows = ctx.text_windows(max_windows=GEOMETRY_WINDOWS)
    geometry = layer_geometry(ctx.model, windows, ctx.generator(report.number))
    controls = [layer_geometry(c, windows, ctx.generator(report.number)) for c in ctx.controls]
    control = controls[0]
    names = ["embed"] + [f"L{i}" for i in range(ctx.model.config.n_layer)]
    C = ctx.model.config.n_embd
    report.define(N_("effective rank"), _(
        "exp(entropy of normalized singular values) of the centered hidden states (all {positions} "
        "positions of {windows} validation windows), 1 to C = {C}.").format(
        positions=windows.numel(), windows=len(windows), C=C))
    report.define(N_("anisotropy"), _(
        "mean cosine between the hidden states at {pairs} random pairs of positions (Ethayarajh, 2019): 0 = "
        "isotropic, near 1 = all in one narrow cone.").format(pairs=RANDOM_PAIRS))
    report.define(N_("head similarity"), _(
        "mean cosine between the attention patterns (T x T, flattened) of every pair of heads in a layer, "
        "over {windows} windows. Lower: heads attend differently.").format(windows=ATTENTION_WINDOWS))
    report.define(MLP_ABOVE_RMS, _(
        "fraction of MLP hidden activations (SwiGLU / GELU outputs) whose magnitude exceeds their layer's "
        "RMS: a shape statistic of the MLP activations (a Gaussian gives 0.317). It is not the paper's 11% "
        "'active signals per token', which is about recipes; see experiment 2."))
    last = len(names) - 1
    report.metric(N_("effective rank (last layer)"), geometry["effective rank"][last],
                  [c["effective rank"][last] for c in controls], N_("random-init models"))
    report.metric(N_("anisotropy (last layer)"), geometry["anisotropy"][last],
                  [c["anisotropy"][last] for c in controls], N_("random-init models"))
    report.metric(N_("head similarity (mean over layers)"), float(np.nanmean(geometry["head similarity"])),
                  [float(np.nanmean(c["head similarity"])) for c in controls], N_("random-init models"),
                  higher_is_structure=False)
    report.metric(N_("{measure} (mean over layers)").format(measure=MLP_ABOVE_RMS),
                  float(np.nanmean(geometry[MLP_ABOVE_RMS])),
                  [float(np.nanmean(c[MLP_ABOVE_RMS])) for c in controls], N_("random-init models"))
    report.say(_("Effective rank, anisotropy and the {measure} describe the geometry and claim no structure "
                 "by themselves; heads that attend less alike than at initialization have "
                 "specialized.").format(measure=_(MLP_ABOVE_RMS)))
    rows = []
    for key in geometry:
        pairs = zip(geometry[key], control[key], strict=True)
        rows.append([_(key)] + [f"{v:.3g} ({c:.3g})" for v, c in pairs])
    report.table([_("metric (random init)")] + names, rows, title=_("Per layer"))

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for ax, key in zip(axes, geometry, strict=True):
        ax.plot(names, geometry[key], "o-", label=_("trained"))
        ax.plot(names, control[key], "s--", label=_("random init (control)"))
        ax.set(title=_(key), xlabel=_("layer"))
        ax.tick_params(axis="x", labelsize=7)
    axes[0].legend(fontsize=8)
    report.figure(fig, "by_layer")


@torch.no_grad()
def final_signals(model, windows: torch.Tensor) -> torch.Tensor:
    """(N*T, S): the final hidden state (after ln_f) of every position, read in signal space."""
    last = model.resid_hook(model.config.n_layer - 1)
    out = []
    for batch in tqdm(windows.split(BATCH_WINDOWS), desc="signal selectivity", leave=False, disable=None):
        h = model.run_with_cache(batch, [last], stop_at_layer=model.config.n_layer)[1][last]
        out.append(model.signal_activations(model.ln_f(h)).flatten(0, 1).cpu())
    return torch.cat(out)


def selectivity_stats(activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per signal, on |a| (a signal's sign is arbitrary: W_recipe -> -W_recipe column, W_basis ->
    -row leaves the model unchanged): firing rate (share of positions where |a| exceeds
    FIRING_FRACTION of its peak |a|) and selectivity (peak |a| / mean |a|)."""
    magnitude = activations.abs()
    peak = magnitude.max(0).values
    firing = (magnitude > FIRING_FRACTION * peak).float().mean(0)
    return firing, peak / magnitude.mean(0).clamp_min(1e-12)


def selectivity_null(activations: torch.Tensor, rotations: torch.Tensor) -> list[float]:
    """Median selectivity of the same positions read in each rotated signal basis (a Q): the same
    model, other directions called signals."""
    return [selectivity_stats(activations @ q)[1].median().item() for q in rotations]


def show_context(tokens: np.ndarray, position: int, tokenizer: Tokenizer) -> str:
    left = tokenizer.decode(tokens[max(0, position - CONTEXT_LEFT) : position].tolist())
    right = tokenizer.decode(tokens[position + 1 : position + 1 + CONTEXT_RIGHT].tolist())
    return f"{left}[[{tokenizer.decode([int(tokens[position])])}]]{right}".replace("\n", "⏎")


@torch.no_grad()
def signal_selectivity(ctx: Context, report: Report) -> None:
    """Signal Selectivity: every signal's activation (final hidden state read along it) over the
    validation text: firing rate, selectivity (max / mean), and a dashboard of its top-activating
    contexts and the tokens its recipe column promotes. The random-init model is the control."""
    label = ctx.tokenizer.label  # the model's token ids as text
    windows = ctx.text_windows()
    activations = final_signals(ctx.model, windows)
    firing, selectivity = selectivity_stats(activations)
    control_stats = [selectivity_stats(final_signals(c, windows)) for c in ctx.controls]
    control_firing, control_selectivity = control_stats[0]
    report.define(N_("activation"), _(
        "a_s = ln_f(h) . basis_s at every position of the validation text ({count} positions).").format(
        count=activations.size(0)))
    report.define(N_("firing rate"), _(
        "share of positions where |a_s| exceeds {fraction} x its peak |a_s| over the text (both signs: a "
        "signal's sign is arbitrary). Lower: rare, specific contexts.").format(fraction=FIRING_FRACTION))
    report.define(N_("selectivity"), _(
        "peak |a_s| / mean |a_s|: how much stronger its best context is than its typical one. Higher: a more "
        "feature-like, selective signal."))
    report.define(N_("random-init floor"), _(
        "{count} random-init models, shown and not judged: each draw is a forward pass over the whole "
        "validation text, so 20 would multiply this experiment's time.").format(count=len(ctx.controls)))
    order = torch.randperm(len(activations), generator=ctx.generator(report.number))
    sample = activations[order[:NULL_POSITIONS]]
    rotations = random_rotations(NULL_BASES, activations.size(1), ctx.generator(report.number))
    null = selectivity_null(sample, rotations)
    sample_selectivity = selectivity_stats(sample)[1].median().item()
    report.define(N_("basis null"), _(
        "the median selectivity of {positions} random positions read in {count} Haar-random rotations of "
        "signal space (a -> a Q; the model is unchanged when W_recipe -> W_recipe Q, W_basis -> Q^T "
        "W_basis), against the signal basis on the same positions.").format(
        positions=len(sample), count=NULL_BASES))
    report.metric(N_("median selectivity (sampled positions)"), sample_selectivity, null,
                  N_("basis null ({count} rotated signal bases)").format(count=NULL_BASES),
                  higher_is_structure=True)
    report.metric(N_("median selectivity: percentile in the basis null"),
                  percentile(sample_selectivity, null))
    report.metric(N_("median selectivity"), selectivity.median().item(),
                  [s.median().item() for _firing, s in control_stats], N_("random-init models (floor)"))
    reference = ctx.reference.signal_model if ctx.reference is not None else None
    if reference is not None:  # the reference's own (native or post-hoc) signals on the same text
        theirs = selectivity_stats(final_signals(reference, windows))[1]
        test = stats.mannwhitneyu(selectivity.numpy(), theirs.numpy(), alternative="greater")
        report.define(N_("selectivity (vs reference)"), _(
            "this model's signals' selectivities against the trained reference's signals' (native or "
            "post-hoc) on the same positions: a one-sided Mann-Whitney U test (signals of two models are not "
            "paired)."))
        report.metric(N_("median selectivity (vs reference)"), selectivity.median().item(),
                      theirs.median().item(), N_("reference model"), higher_is_structure=True,
                      p_value=float(test.pvalue), n=len(selectivity), test="Mann-Whitney U")
    report.metric(N_("median firing rate"), firing.median().item(),
                  [f.median().item() for f, _selectivity in control_stats], N_("random-init models (floor)"))

    tokens = windows.flatten().cpu().numpy()
    recipe = ctx.model.effective_recipe().cpu()
    vocab = ctx.frequent_tokens
    for s in selectivity.topk(min(DASHBOARD_SIGNALS, selectivity.numel())).indices.tolist():
        promoted = vocab[recipe[vocab, s].topk(min(6, len(vocab))).indices].tolist()
        top = activations[:, s].abs().topk(DASHBOARD_CONTEXTS).indices.tolist()
        report.table([_("activation"), _("context ([[token]] where it fires)")],
                     [[activations[p, s].item(), show_context(tokens, p, ctx.tokenizer)] for p in top],
                     title=_("Signal {signal}: selectivity {selectivity}, firing rate {rate}; its recipe "
                             "column promotes {tokens}").format(
                         signal=s, selectivity=f"{selectivity[s]:.1f}", rate=f"{firing[s]:.2%}",
                         tokens=", ".join(label(t) for t in promoted)))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].scatter(control_firing.numpy(), control_selectivity.numpy(), s=6, alpha=0.5, color="C7",
                    label=_("random init (control)"))
    axes[0].scatter(firing.numpy(), selectivity.numpy(), s=6, alpha=0.6, label=_("trained"))
    axes[0].set(xscale="log", yscale="log", xlabel=_("firing rate"), ylabel=_("selectivity (max / mean)"),
                title=_("Every signal"))
    axes[0].legend()
    bins = np.logspace(0, np.log10(max(selectivity.max().item(), control_selectivity.max().item()) + 1), 40)
    axes[1].hist(selectivity.numpy(), bins=bins, alpha=0.7, label=_("trained"))
    axes[1].hist(control_selectivity.numpy(), bins=bins, alpha=0.5, label=_("random init (control)"))
    axes[1].set(xscale="log", xlabel=_("selectivity"), ylabel=_("signals"), title=_("Selectivity"))
    axes[1].legend()
    report.figure(fig, "selectivity")
