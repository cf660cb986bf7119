"""Group C, mechanistic analysis: how a prediction forms, layer by layer and signal by signal.

7. Layer Evolution: the logit lens at every layer.
8. Signal Flow: the residual stream read in signal space, per layer and position.
9. Causal Ablation: remove the signals that carry the target's logit and watch its probability.
"""

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
import torch.nn.functional as F

from core.i18n import N_, _
from experiments.common import (
    lens_logits,
    logits_at,
    projection_hook,
    projector,
    stream_hooks,
    token_id,
)
from experiments.context import Context
from experiments.nulls import NULL_BASES, random_rotations, rotated_signals, svd_factorization
from experiments.report import Report
from experiments.statistics import bootstrap_ci, paired_p, percentile

TOP_SIGNALS = 16  # signals shown in the flow heatmaps and counted in the energy share
ABLATE_K = 10  # signals removed together (besides the single top signal)
ABLATION_WINDOWS = 16  # validation windows: half to choose the signals, half to measure
ABLATION_CONTEXT = 64  # tokens per window
ABLATION_STRIDE = 2  # every other position from T/4 on is scored: 24 per window of 64, 192 per half
CODEBOOK_TOKENS = 8


def layer_names(model) -> list[str]:
    return ["embed"] + [f"L{i}" for i in range(model.config.n_layer)]


@torch.no_grad()
def lens(model, idx: torch.Tensor, target: int) -> dict:
    """Logit lens at the last position after the embedding and after every layer: the target's
    probability and rank (1 = top prediction), and the top token, per layer."""
    states = torch.stack([h[0, -1] for h in model.hidden_states(idx)])  # (L+1, C)
    probs = F.softmax(lens_logits(model, states).float(), dim=-1)  # (L+1, V)
    target_probs = probs[:, target]
    return {"prob": target_probs.cpu(), "rank": ((probs > target_probs[:, None]).sum(-1) + 1).cpu(),
            "top": probs.argmax(-1).tolist()}


def crystallization_layer(ranks: torch.Tensor) -> int | None:
    """The first lens position from which the target stays the top prediction to the end."""
    if ranks[-1] != 1:
        return None
    first = len(ranks) - 1
    while first > 0 and ranks[first - 1] == 1:
        first -= 1
    return first


@torch.no_grad()
def layer_evolution(ctx: Context, report: Report) -> None:
    """Layer Evolution: the logit lens, reading the residual stream after each layer through the
    final norm and the vocab matrix: the target's probability and rank by layer, and the layer at
    which the prediction crystallizes."""
    label = ctx.tokenizer.label  # the model's token ids as text
    names = layer_names(ctx.model)
    report.define(N_("logit lens"), _(
        "softmax(vocab_matrix @ ln_f(h_l)) for the residual stream h_l at the last prompt position after "
        "layer l ('embed' = before any layer); after the last layer this is the model's own prediction."))
    report.define(N_("crystallization layer"), _(
        "the first layer from which the target stays the top prediction through the last layer (n/a if it "
        "never becomes top)."))
    report.define(N_("control"), _("the random-init model on the same prompts."))
    results, rows = [], []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for n, (prompt, target_word) in enumerate(ctx.cfg.target_prompts):
        idx = ctx.prompt(prompt, f"target_prompts[{n}]")
        target = token_id(target_word, ctx.tokenizer, f"target_prompts[{n}]")
        result = lens(ctx.model, idx, target)
        control = lens(ctx.control, idx, target)
        results.append(result)
        crystal = crystallization_layer(result["rank"])
        rows.append([prompt, label(target), result["prob"][-1].item(), int(result["rank"][-1]),
                     names[crystal] if crystal is not None else "n/a", control["prob"][-1].item()])
        report.table([_("layer"), _("target prob"), _("target rank"), _("top token")],
                     [[names[i], result["prob"][i].item(), int(result["rank"][i]), label(result["top"][i])]
                      for i in range(len(names))], title=f"{prompt!r} → {label(target)}")
        line = axes[0].plot(names, result["prob"].numpy(), "o-", label=f"{prompt[:28]!r}")[0]
        axes[0].plot(names, control["prob"].numpy(), ":", color=line.get_color())
        axes[1].plot(names, result["rank"].numpy(), "o-", color=line.get_color())
        axes[1].plot(names, control["rank"].numpy(), ":", color=line.get_color())
    report.table([_("prompt"), _("target"), _("final prob"), _("final rank"), _("crystallizes at"),
                  _("final prob (random init)")], rows, title=_("Summary"))
    # Per model: the mean over prompts; each random-init seed is one draw of the control.
    by_seed = [[lens(c, ctx.prompt(p, "target_prompts"), token_id(w, ctx.tokenizer, "target_prompts"))
                for p, w in ctx.cfg.target_prompts] for c in ctx.floor_models()]
    final_probs = [r["prob"][-1].item() for r in results]
    mean_prob = lambda rs: float(np.mean([r["prob"][-1].item() for r in rs]))
    mean_rank = lambda rs: float(np.exp(np.mean([np.log(r["rank"][-1].item()) for r in rs])))
    top_share = lambda rs: float(np.mean([int(r["rank"][-1]) == 1 for r in rs]))
    report.define(N_("intervals"), _("95% bootstrap intervals over the target prompts."))
    report.define(N_("final target rank"), _(
        "the target's rank among all tokens in the model's own prediction (after the last layer; 1 = "
        "predicted), as a geometric mean over the target prompts."))
    report.define(N_("targets predicted first"), _(
        "the fraction of target prompts whose target the model ranks first after the last layer."))
    report.metric(N_("final target probability"), mean_prob(results), [mean_prob(rs) for rs in by_seed],
                  N_("random-init models"), higher_is_structure=True, ci=bootstrap_ci(final_probs))
    report.metric(N_("final target rank (geometric mean)"), mean_rank(results),
                  [mean_rank(rs) for rs in by_seed], N_("random-init models (floor)"))
    report.metric(N_("targets predicted first"), top_share(results), [top_share(rs) for rs in by_seed],
                  N_("random-init models (floor)"),
                  ci=bootstrap_ci([float(r["rank"][-1] == 1) for r in results]))
    if ctx.reference is not None:
        theirs = [lens(ctx.reference.model, ctx.prompt(p, "target_prompts"),
                       token_id(w, ctx.tokenizer, "target_prompts"))["prob"][-1].item()
                  for p, w in ctx.cfg.target_prompts]
        report.metric(N_("final target probability (vs reference)"), mean_prob(results),
                      float(np.mean(theirs)), N_("reference model"), higher_is_structure=True,
                      n=len(theirs), test="paired",
                      p_value=paired_p(final_probs, theirs, True))
    axes[0].set(xlabel=_("layer"), ylabel=_("target probability"),
                title=_("Logit lens (dotted: random init)"))
    axes[0].legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[1].invert_yaxis()
    axes[1].set(xlabel=_("layer"), ylabel=_("target rank (1 = top)"), title=_("Target rank by layer"))
    report.figure(fig, "lens")


@torch.no_grad()
def signal_readout(model, idx: torch.Tensor) -> torch.Tensor:
    """(L+1, T, S): the residual stream after each layer, through the final norm, in signal space."""
    return torch.stack([model.signal_activations(model.ln_f(h))[0] for h in model.hidden_states(idx)]).cpu()


def energy_share(activations: torch.Tensor, k: int) -> float:
    """Fraction of sum(a^2) held by the k largest |a|."""
    energy = activations.pow(2)
    return (energy.topk(k).values.sum() / energy.sum()).item()


@torch.no_grad()
def signal_flow(ctx: Context, report: Report) -> None:
    """Signal Flow: the hidden state after each layer, through the final norm, projected onto the
    signal basis (a = h @ W_basis^T, one number per signal); heatmaps of the strongest signals
    across layers at the last position, and across positions after the last layer."""
    label = ctx.tokenizer.label  # the model's token ids as text
    prompt = ctx.cfg.target_prompts[0][0]
    idx = ctx.prompt(prompt, "target_prompts[0]")
    flow = signal_readout(ctx.model, idx)
    control_flows = [signal_readout(c, idx) for c in ctx.floor_models()]
    names = layer_names(ctx.model)
    k = min(TOP_SIGNALS, flow.size(-1))
    top = flow[-1, -1].abs().topk(k).indices  # strongest signals of the final readout
    report.define(N_("signal activation"), _(
        "a_s = ln_f(h) . basis_s: the residual stream read along signal s, the quantity the output "
        "multiplies by each token's recipe weight r_vs."))
    report.define(N_("energy share"), _(
        "fraction of sum_s a_s^2 (last position, after the last layer) held by the {k} strongest signals. "
        "Higher: the readout is concentrated in a few signals.").format(k=k))
    report.define(N_("persistence"), _(
        "overlap (Jaccard) of the {k} strongest signals after each layer with those after the last layer, "
        "averaged over layers: how early the final signals appear.").format(k=k))
    rotations = random_rotations(NULL_BASES, flow.size(-1), ctx.generator(report.number))
    null = [energy_share(flow[-1, -1] @ q, k) for q in rotations]
    report.define(N_("basis null"), _(
        "the energy share of the same state read in {count} Haar-random rotations of signal space (a -> a "
        "Q: the same model with W_recipe Q, Q^T W_basis).").format(count=NULL_BASES))
    report.metric(N_("energy share"), energy_share(flow[-1, -1], k), null,
                  N_("basis null ({count} rotated signal bases)").format(count=NULL_BASES),
                  higher_is_structure=True)
    report.metric(N_("energy share: percentile in the basis null"),
                  percentile(energy_share(flow[-1, -1], k), null))
    report.metric(N_("energy share (random-init floor)"), energy_share(flow[-1, -1], k),
                  [energy_share(f[-1, -1], k) for f in control_flows], N_("random-init models"),
                  higher_is_structure=True)
    reference = ctx.reference.signal_model if ctx.reference is not None else None
    if reference is not None:  # the reference's own (native or post-hoc) signals on the same prompt
        theirs_flow = signal_readout(reference, idx)
        ours = [energy_share(a, k) for a in flow[-1]]
        theirs = [energy_share(a, min(k, theirs_flow.size(-1))) for a in theirs_flow[-1]]
        report.define(N_("energy share (vs reference)"), _(
            "per position of the prompt, the energy share after the last layer in this model's signals and "
            "in the trained reference's (native or post-hoc): a paired sign-flip test over positions."))
        report.metric(N_("energy share (vs reference)"), float(np.mean(ours)), float(np.mean(theirs)),
                      N_("reference model"), higher_is_structure=True, p_value=paired_p(ours, theirs, True),
                      n=len(ours), test="paired")

    def persistence(f):
        strongest = lambda a: set(a.abs().topk(k).indices.tolist())
        final = strongest(f[-1, -1])
        return float(np.mean([len(final & strongest(a)) / len(final | strongest(a)) for a in f[:-1, -1]]))

    report.metric(N_("persistence"), persistence(flow), [persistence(f) for f in control_flows],
                  N_("random-init models"))
    recipe = ctx.model.effective_recipe().cpu()
    vocab = ctx.frequent_tokens
    rows = []
    for s in top.tolist():
        sign = 1.0 if flow[-1, -1, s] >= 0 else -1.0
        promoted = vocab[(sign * recipe[vocab, s]).topk(min(5, len(vocab))).indices]
        rows.append([s, flow[-1, -1, s].item(), ", ".join(label(t) for t in promoted.tolist())])
    report.table([_("signal"), _("activation (last position, last layer)"), _("tokens it promotes here")],
                 rows, title=_("Strongest signals for {prompt}").format(prompt=repr(prompt)))

    tokens = [label(t) for t in idx[0].tolist()]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    sns.heatmap(flow[:, -1, top].numpy(), ax=axes[0], cmap="vlag", center=0, yticklabels=names,
                xticklabels=top.tolist())
    axes[0].set(xlabel=_("signal"), ylabel=_("layer"),
                title=_("Last position ({token}) across layers").format(token=repr(tokens[-1])))
    sns.heatmap(flow[-1][:, top].numpy(), ax=axes[1], cmap="vlag", center=0, yticklabels=tokens,
                xticklabels=top.tolist())
    axes[1].set(xlabel=_("signal"), ylabel=_("position"), title=_("After the last layer, across positions"))
    report.figure(fig, "heatmaps")


# --- 9. causal ablation in the forward pass ------------------------------------------------
@dataclass
class AblationText:
    """Validation windows split in two: signals are chosen on `choose`, their removal is measured on
    `measure`, so the choice cannot fit the positions it is judged on."""
    choose: torch.Tensor  # (N, T) windows
    measure: torch.Tensor  # (N, T) windows
    positions: torch.Tensor  # (P,) positions scored in every window


def ablation_text(ctx: Context) -> AblationText:
    """ABLATION_WINDOWS windows of ABLATION_CONTEXT tokens (or fewer if the text is short), halved;
    every ABLATION_STRIDE-th position from the ABLATION_CONTEXT // 4-th on is scored."""
    tokens = ctx.audit_text.astype(np.int64)
    T = min(ABLATION_CONTEXT, ctx.model.config.block_size, len(tokens) // 2)
    n = min(ABLATION_WINDOWS, len(tokens) // T) // 2 * 2
    windows = torch.from_numpy(tokens[: n * T].reshape(n, T)).to(ctx.device)
    positions = torch.arange(T // 4, T - 1, ABLATION_STRIDE, device=ctx.device)
    return AblationText(windows[: n // 2], windows[n // 2 :], positions)


@torch.no_grad()
def readout_coordinates(model, windows: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
                        directions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(n,): each direction's mean contribution to the target's logit over the scored positions.

    The readout writes logits = sum_j (f . d_j) w_vj for a decomposition of the vocab matrix over
    directions d_j (signal basis rows with recipes as weights, or any orthonormal basis u_j with
    weights E u_j); contribution_j = (f . d_j) w_{target, j}, f the final state after ln_f."""
    final = model.run_with_cache(windows, ["hook_final"])[1]["hook_final"][:, positions]  # (N, P, C)
    coordinates = final @ directions.t()  # (N, P, n)
    return (coordinates * weights[targets]).mean((0, 1))


@torch.no_grad()
def ablation_effect(model, windows: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
                    subspaces: torch.Tensor, chunk: int = 8, at: list[str] | None = None,
                    mean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of G subspaces (G, k, C): the mean drop in log p(target) and the share of positions
    whose top-1 prediction changes, when the subspace is projected out of the residual stream after
    the embedding and after every layer (or at the hook points `at`; with a `mean`, mean-ablated:
    see projection_hook). Several subspaces run in one batch, `chunk` at a time."""
    clean = F.log_softmax(logits_at(model, windows, positions), dim=-1)
    clean_target = clean.gather(-1, targets[..., None])[..., 0]  # (N, P)
    clean_top = clean.argmax(-1)
    drops, changed = [], []
    for group in subspaces.split(chunk):
        projectors = torch.stack([projector(d) for d in group]).to(windows.device)
        hook = projection_hook(projectors, mean)
        batch = windows.repeat(len(group), 1)  # (G * N, T): group g's windows are rows g*N .. (g+1)*N
        edited = {name: hook for name in (at or stream_hooks(model))}
        logp = F.log_softmax(logits_at(model, batch, positions, edited), dim=-1).view(len(group),
                                                                                       *clean.shape)
        target = logp.gather(-1, targets.expand(len(group), -1, -1)[..., None])[..., 0]
        drops.append((clean_target - target).mean((1, 2)))
        changed.append((logp.argmax(-1) != clean_top).float().mean((1, 2)))
    return torch.cat(drops).cpu(), torch.cat(changed).cpu()


@torch.no_grad()
def attribute_then_ablate(model, text: AblationText, targets_of, directions: torch.Tensor,
                          weights: torch.Tensor, counts: list[int]) -> dict:
    """The whole procedure in one basis: choose the k directions with the largest mean contribution
    to the target logit on text.choose, remove them on text.measure (for each k in counts)."""
    chosen = readout_coordinates(model, text.choose, text.positions, targets_of(text.choose), directions,
                                 weights).argsort(descending=True)
    subspaces = [directions[chosen[:k]] for k in counts]
    out = {"chosen": chosen[: max(counts)].tolist()}
    for k, sub in zip(counts, subspaces, strict=True):
        drop, changed = ablation_effect(model, text.measure, text.positions, targets_of(text.measure),
                                        sub[None])
        out[k] = (drop.item(), changed.item())
    return out


@torch.no_grad()
def window_drops(model, text: AblationText, targets_of, directions: torch.Tensor, weights: torch.Tensor,
                 k: int) -> np.ndarray:
    """(N,): attribute-then-ablate with the top k directions, the drop in log p(target) averaged over
    each measured window's positions: per-window items for a paired test between two models read on
    the same windows."""
    chosen = readout_coordinates(model, text.choose, text.positions, targets_of(text.choose), directions,
                                 weights).argsort(descending=True)[:k]
    targets = targets_of(text.measure)[..., None]
    clean = F.log_softmax(logits_at(model, text.measure, text.positions), dim=-1).gather(-1, targets)
    hook = projection_hook(projector(directions[chosen])[None].to(text.measure.device))
    hooks = {name: hook for name in stream_hooks(model)}
    ablated = F.log_softmax(logits_at(model, text.measure, text.positions, hooks), dim=-1).gather(-1, targets)
    return (clean - ablated)[..., 0].mean(1).cpu().numpy()


@torch.no_grad()
def null_ablations(model, text: AblationText, targets_of, recipe: torch.Tensor, basis: torch.Tensor,
                   rotations: torch.Tensor, k: int) -> torch.Tensor:
    """(G, 2): attribute-then-ablate with k directions in each rotated signal basis (recipe Q,
    Q^T basis) for the G rotations Q (G, S, S), batched: the drop in log p(target) and the top-1
    change rate per basis. The model is the same in every basis; only which directions count as
    "signals" changes."""
    choose_targets, measure_targets = targets_of(text.choose), targets_of(text.measure)
    final = model.run_with_cache(text.choose, ["hook_final"])[1]["hook_final"][:, text.positions]  # (N, P, C)
    subspaces = []
    for rotation in rotations:
        weights, frame = rotated_signals(recipe[choose_targets], basis, rotation)
        contribution = ((final @ frame.t()) * weights).mean((0, 1))
        subspaces.append(frame[contribution.topk(k).indices])
    drop, changed = ablation_effect(model, text.measure, text.positions, measure_targets,
                                    torch.stack(subspaces))
    return torch.stack([drop, changed], dim=1)


@torch.no_grad()
def causal_ablation(ctx: Context, report: Report) -> None:
    """Causal Ablation, in the forward pass and out of sample: on one half of the validation
    windows, rank the signals by their mean contribution a_s r_ts to the logit of the true next
    token t; on the other half, project the top 1 and top ABLATE_K signal directions (basis rows) out
    of the residual stream after the embedding and after every layer, and measure how much log p(t)
    drops and how often the top prediction changes. The same procedure in NULL_BASES random
    orthonormal bases of the residual stream, and in the SVD basis of the model's own vocab matrix,
    is the null: the signals are special only if removing them does more than removing the
    directions any basis would pick."""
    label = ctx.tokenizer.label  # the model's token ids as text
    model = ctx.model
    text = ablation_text(ctx)
    next_token = lambda windows: windows[:, text.positions + 1]  # (N, P): the true next tokens
    recipe, basis = model.effective_recipe().detach().float(), model.basis.detach().float()
    counts = sorted({1, min(ABLATE_K, basis.size(0))})
    signal = attribute_then_ablate(model, text, next_token, basis, recipe, counts)
    E = model.vocab_matrix().detach().float()
    svd_rows = svd_factorization(E.cpu())[1]
    svd_rows = svd_rows.to(ctx.device)
    svd = attribute_then_ablate(model, text, next_token, svd_rows, E @ svd_rows.t(), counts)
    rotations = random_rotations(NULL_BASES, basis.size(0), ctx.generator(report.number)).to(ctx.device)
    nulls = {k: null_ablations(model, text, next_token, recipe, basis, rotations, k) for k in counts}
    positions = text.measure.size(0) * text.positions.numel()

    report.define(N_("procedure"), _(
        "signals ranked by mean contribution c_s = a_s r_ts to the true next token's logit over {chosen} "
        "positions of {windows} validation windows (a_s = ln_f(h) . basis_s, r_ts the target's recipe "
        "weight); their basis rows projected out of the residual stream after the embedding and after each "
        "of the {layers} layers (h <- h - h P, P the projector onto their span) on {positions} positions of "
        "{other} other windows.").format(
        chosen=text.choose.size(0) * text.positions.numel(), windows=text.choose.size(0),
        layers=model.config.n_layer, positions=positions, other=text.measure.size(0)))
    report.define(N_("log-prob drop"), _(
        "mean over measured positions of log p(true next token) clean minus ablated. Higher: the removed "
        "directions carried the prediction."))
    report.define(N_("top-1 changed"), _("share of measured positions whose top prediction changes."))
    report.define(N_("basis null"), _(
        "the same attribute-then-ablate procedure in {count} Haar-random orthonormal rotations of signal "
        "space (W_recipe -> W_recipe Q, W_basis -> Q^T W_basis: the same model, other directions called "
        "signals), chosen and measured on the same halves. The signal basis's percentile among them is "
        "shown; the orthonormal SVD basis of E (right singular vectors, weights E V) beside.").format(
        count=NULL_BASES))
    rotated_bases = N_("basis null (rotated signal bases)")
    for k in counts:
        drop, changed = signal[k]
        null_drop, null_changed = nulls[k][:, 0].tolist(), nulls[k][:, 1].tolist()
        what = N_("the top signal") if k == 1 else N_("the top {count} signals").format(count=k)
        report.metric(N_("log-prob drop, {what}").format(what=what), drop, null_drop, rotated_bases,
                      higher_is_structure=True)
        report.metric(N_("log-prob drop, {what}: percentile in the basis null").format(what=what),
                      percentile(drop, null_drop))
        svd_name = N_("log-prob drop, 1 SVD direction of E") if k == 1 else \
            N_("log-prob drop, {count} SVD directions of E").format(count=k)
        report.metric(svd_name, svd[k][0])
        report.metric(N_("top-1 changed, {what}").format(what=what), changed, null_changed, rotated_bases,
                      higher_is_structure=True)

    reference = ctx.reference.signal_model if ctx.reference is not None else None
    if reference is not None:  # the same procedure in the reference's own (native or post-hoc) signals
        theirs = attribute_then_ablate(reference, text, next_token, reference.basis.detach().float(),
                                       reference.effective_recipe().detach().float(), counts)
        for k in counts:
            name = N_("log-prob drop, top 1 signal of the reference") if k == 1 else \
                N_("log-prob drop, top {count} signals of the reference").format(count=k)
            report.metric(name, theirs[k][0], signal[k][0], N_("this model"))
        report.define(N_("log-prob drop (vs reference)"), _(
            "the drop from removing each model's own top {count} signals (the reference: native or "
            "post-hoc), averaged per measured window; this model against the reference on the same windows "
            "and targets: a paired sign-flip test over windows. Higher: this model's chosen signals carry "
            "more of its predictions.").format(count=max(counts)))
        k = max(counts)
        ours = window_drops(model, text, next_token, basis, recipe, k)
        theirs_windows = window_drops(reference, text, next_token, reference.basis.detach().float(),
                                      reference.effective_recipe().detach().float(), k)
        report.metric(N_("log-prob drop, top {count} signals (vs reference)").format(count=k),
                      float(ours.mean()), float(theirs_windows.mean()), N_("reference model"),
                      higher_is_structure=True,
                      p_value=paired_p(ours, theirs_windows, True), n=len(ours), test="paired")

    vocab = ctx.frequent_tokens
    rows = []
    for rank, s in enumerate(signal["chosen"]):
        codebook = vocab[recipe[vocab, s].cpu().topk(min(CODEBOOK_TOKENS, len(vocab))).indices]
        rows.append([rank + 1, s, ", ".join(label(t) for t in codebook.tolist())])
    report.table(["#", _("signal"), _("codebook: tokens with the largest recipe weight")], rows,
                 title=_("Signals chosen on the first half (most contribution first)"))

    fig, axes = plt.subplots(1, len(counts), figsize=(6 * len(counts), 4), squeeze=False)
    for ax, k in zip(axes[0], counts, strict=True):
        ax.hist(nulls[k][:, 0].numpy(), bins=25, color="C7", alpha=0.7,
                label=_("random orthonormal bases ({count})").format(count=NULL_BASES))
        ax.axvline(signal[k][0], color="C3", lw=2, label=_("signal basis"))
        ax.axvline(svd[k][0], color="C0", ls="--", label=_("SVD basis of E"))
        ax.set(xlabel=_("mean drop in log p(true next token)"), ylabel=_("bases"),
               title=_("Removing the top direction at every layer") if k == 1 else
               _("Removing the top {count} directions at every layer").format(count=k))
        ax.legend(fontsize=8)
    report.figure(fig, "null")
