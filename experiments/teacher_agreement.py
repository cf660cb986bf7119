"""Group E, from related work: agreement with a teacher (knowledge distillation, issue 23 §4).

16. Teacher Agreement: how closely the audited model (a student) follows a teacher, in what it
    predicts and signal by signal. The teacher is the run named by distill_from, else teacher_run
    (experiments/teacher.py); both are reflow-family models with the same S and tokenizer, so
    signal s and token v mean the same slot in both. Four measures on the validation text:
  (a) KL(teacher || model) of the next-token distributions, over the real tokens;
  (b) per signal s, the Pearson correlation over positions of a_s = hook_final . W_basis[s] in the two
      models (hook_final: the last layer's residual stream after the final norm, what the unembedding
      reads, so logits = a W_recipe^T);
  (c) per signal, the overlap of the TOP_CONTEXTS positions where |a_s| is largest in each model;
  (d) per signal, the rise in next-token loss when its basis row is projected out of the residual
      stream at every layer (experiment 9's forward-pass ablation), in each model, and the Spearman
      correlation of the two models' effects over the signals.
Only a model sharing the teacher's basis (init_basis_from) can agree signal by signal by design; a model
with its own basis is the case where (b) to (d) should sit at chance. The null for (b) to (d) pairs
the model's signal s with the teacher's signal pi(s) for random permutations pi: the same numbers when
the signals' labels carry no correspondence (chance: correlation 0, overlap TOP_CONTEXTS / positions,
Spearman 0). The floor for (a) is the KL from the teacher to random-init models of this architecture.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from core.i18n import N_, _
from experiments.context import Context
from experiments.mechanistic_analysis import ablation_effect, ablation_text
from experiments.related_work import final_signals
from experiments.report import Report
from experiments.statistics import percentile

TOP_CONTEXTS = 20  # positions per signal whose overlap between the two models is measured
PERMUTATIONS = 200  # random pairings of the model's signals with the teacher's: the null of (b) to (d)
CORRELATED = 0.5  # a signal follows the teacher's above this activation correlation
BATCH_WINDOWS = 8  # windows per forward in the KL: two (8, T, V) log-probability tensors at once
TABLE_SIGNALS = 8  # signals listed: those whose ablation costs the teacher most

KL = N_("KL(teacher || model), nats per token")
CORRELATION = N_("activation correlation, median over signals")
OVERLAP = N_("top-context overlap, median over signals")
AGREEMENT = N_("ablation agreement (Spearman over signals)")
SHARE = N_("share of signals with activation correlation above {threshold}")
PERMUTED = N_("teacher's signals randomly permuted")


@torch.no_grad()
def next_token_kl(teacher, models: list, windows: torch.Tensor, n_vocab: int) -> list[torch.Tensor]:
    """For each model, (N,): per window, the mean over its positions of KL(teacher || model) of the
    next-token distributions over the first n_vocab ids (the real tokens; later rows are padding), nats."""
    out = [[] for _model in models]
    for batch in windows.split(BATCH_WINDOWS):
        p = F.log_softmax(teacher(batch)[0][..., :n_vocab].float(), dim=-1)
        for values, model in zip(out, models, strict=True):
            q = F.log_softmax(model(batch)[0][..., :n_vocab].float(), dim=-1)
            values.append(F.kl_div(q, p, reduction="none", log_target=True).sum(-1).mean(-1).cpu())
    return [torch.cat(values) for values in out]


def correlation_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(S, S): entry (i, j) the Pearson correlation over positions of a[:, i] and b[:, j] (P, S each),
    in float64; NaN for a signal that is constant over the text."""
    a, b = a.double(), b.double()
    za = (a - a.mean(0)) / a.std(0, unbiased=False)
    zb = (b - b.mean(0)) / b.std(0, unbiased=False)
    return za.t() @ zb / len(a)


def top_context_overlap(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """(S, S): entry (i, j) the share of the n positions of largest |a[:, i]| that are also among the n
    of largest |b[:, j]| (a signal's sign is arbitrary, as in experiment 14)."""
    def members(x):
        chosen = torch.zeros(x.shape, dtype=torch.float64)
        return chosen.scatter_(0, x.abs().topk(n, dim=0).indices, 1.0)
    return members(a).t() @ members(b) / n


@torch.no_grad()
def signal_ablation_effects(model, windows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(S,): per signal, the mean rise in next-token loss (the drop in log p of the true next token,
    nats) over the scored positions when its basis row is projected out of the residual stream after
    the embedding and after every layer: experiment 9's ablation_effect, one signal at a time."""
    targets = windows[:, positions + 1]
    directions = model.basis.detach().float()[:, None, :]  # (S, 1, C): one subspace per signal
    return ablation_effect(model, windows, positions, targets, directions)[0].double()


def paired_measures(correlations: torch.Tensor, overlaps: torch.Tensor, ours: torch.Tensor,
                    theirs: torch.Tensor, pairing: torch.Tensor) -> dict[str, float]:
    """(b) to (d) when the model's signal s is paired with the teacher's signal pairing[s]."""
    s = torch.arange(len(pairing))
    paired = correlations[s, pairing]
    return {
        CORRELATION: paired.nanmedian().item(),
        "share": (paired > CORRELATED).double().mean().item(),
        OVERLAP: overlaps[s, pairing].median().item(),
        AGREEMENT: float(stats.spearmanr(ours.numpy(), theirs[pairing].numpy()).statistic),
    }


@torch.no_grad()
def teacher_agreement(ctx: Context, report: Report) -> None:
    """Teacher Agreement: (a) to (d) of the module docstring, each beside its null or floor."""
    teacher = ctx.teacher
    if teacher.is_the_model:
        report.skip(_("the model is its own teacher ({checkpoint}): every agreement would be perfect by "
                      "construction (KL 0, correlation 1)").format(checkpoint=teacher.checkpoint))
        return
    model = ctx.model
    windows = ctx.text_windows()
    ours, theirs = final_signals(model, windows), final_signals(teacher.model, windows)  # (P, S)
    positions, S = len(ours), ours.size(1)
    kl, *floor = next_token_kl(teacher.model, [model, *ctx.controls], windows, ctx.tokenizer.n_vocab)
    n = min(TOP_CONTEXTS, positions)
    correlations, overlaps = correlation_matrix(ours, theirs), top_context_overlap(ours, theirs, n)
    text = ablation_text(ctx)
    ablation_windows = torch.cat([text.choose, text.measure])
    our_effects = signal_ablation_effects(model, ablation_windows, text.positions).cpu()
    their_effects = signal_ablation_effects(teacher.model, ablation_windows, text.positions).cpu()
    measured = paired_measures(correlations, overlaps, our_effects, their_effects, torch.arange(S))
    generator = ctx.generator(report.number)
    null = [paired_measures(correlations, overlaps, our_effects, their_effects,
                            torch.randperm(S, generator=generator)) for _draw in range(PERMUTATIONS)]

    report.define(N_("teacher"), _(
        "{model} from {checkpoint} (iter {iter_num}), named by {key}; both models have S = {signals} signals "
        "and one tokenizer, so signal s and token v are the same slot in both.").format(
        model=teacher.model_name, checkpoint=teacher.checkpoint, iter_num=teacher.iter_num, signals=S,
        key="distill_from" if ctx.cfg.distill_from else "teacher_run"))
    report.define(N_("signal activation"), _(
        "a_s = hook_final . W_basis[s] at each of {positions} positions of the validation text in {windows} "
        "windows: the last layer's residual stream after the final norm, which the unembedding reads "
        "(logits = a W_recipe^T), in each model with its own W_basis.").format(
        positions=positions, windows=len(windows)))
    report.define(KL, _(
        "mean over the same positions of sum_v p_teacher(v) log(p_teacher(v) / p_model(v)), the "
        "next-token distributions over the {vocab} real tokens ({tokens}). 0: the model predicts exactly as "
        "the teacher. Floor: the same KL to {count} random-init models of this architecture (shown, not "
        "judged).").format(
        vocab=ctx.tokenizer.n_vocab, tokens=ctx.tokenizer.describe(), count=len(floor)))
    report.define(CORRELATION, _(
        "per signal s, the Pearson correlation over positions of the model's a_s and the teacher's a_s; the "
        "median over the {signals} signals. 1: the signal rises and falls with the teacher's; chance 0."
        ).format(signals=S))
    report.define(SHARE.format(threshold=CORRELATED), _(
        "the share of signals whose activation correlation with the teacher's same signal exceeds "
        "{threshold}.").format(threshold=CORRELATED))
    report.define(OVERLAP, _(
        "per signal, |A ∩ B| / N, A and B the N = {n} positions of largest |a_s| in the model and in the "
        "teacher; the median over signals. 1: the same top contexts; chance N / {positions} positions = "
        "{chance}.").format(n=n, positions=positions, chance=f"{n / positions:.2g}"))
    report.define(AGREEMENT, _(
        "per signal, the rise in next-token loss (nats) when its basis row is projected out of the residual "
        "stream after the embedding and after every layer (experiment 9's ablation), on {scored} positions "
        "of {windows} validation windows, in each model; the Spearman correlation of the two models' "
        "effects over the signals (scipy.stats.spearmanr). 1: the signals matter in the same order in both; "
        "chance 0.").format(scored=len(ablation_windows) * text.positions.numel(),
                            windows=len(ablation_windows)))
    report.define(PERMUTED, _(
        "the null of the three per-signal measures: the model's signal s paired with the teacher's signal "
        "pi(s) for {count} random permutations pi of the signals, on the same activations and ablation "
        "effects: what they give when the signals' labels carry no correspondence. A model with its own "
        "basis (not the teacher's) is expected to stay inside it.").format(count=PERMUTATIONS))

    report.metric(KL, kl.mean().item(), [f.mean().item() for f in floor], N_("random-init models (floor)"),
                  higher_is_structure=False)
    report.metric(CORRELATION, measured[CORRELATION], [d[CORRELATION] for d in null], PERMUTED,
                  higher_is_structure=True)
    report.metric(SHARE.format(threshold=CORRELATED), measured["share"], [d["share"] for d in null],
                  PERMUTED, higher_is_structure=True)
    report.metric(N_("activation correlation: percentile in the permutation null"),
                  percentile(measured[CORRELATION], [d[CORRELATION] for d in null]))
    report.metric(OVERLAP, measured[OVERLAP], [d[OVERLAP] for d in null], PERMUTED, higher_is_structure=True)
    report.metric(AGREEMENT, measured[AGREEMENT], [d[AGREEMENT] for d in null], PERMUTED,
                  higher_is_structure=True)

    s = torch.arange(S)
    rows = [[signal, their_effects[signal].item(), our_effects[signal].item(),
             correlations[signal, signal].item(), overlaps[signal, signal].item()]
            for signal in their_effects.topk(min(TABLE_SIGNALS, S)).indices.tolist()]
    report.table([_("signal"), _("ablation effect, teacher"), _("ablation effect, model"),
                  _("activation correlation"), _("top-context overlap")], rows,
                 title=_("The signals whose removal costs the teacher most"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    pairing = torch.randperm(S, generator=generator)
    bins = np.linspace(-1, 1, 41)
    axes[0].hist(correlations[s, pairing].nan_to_num().numpy(), bins=bins, alpha=0.5, color="C7",
                 label=_(PERMUTED))
    axes[0].hist(correlations[s, s].nan_to_num().numpy(), bins=bins, alpha=0.7, label=_("same signal"))
    axes[0].set(xlabel=_("activation correlation with the teacher"), ylabel=_("signals"),
                title=_("Per-signal activation correlation"))
    axes[0].legend(fontsize=8)
    axes[1].scatter(their_effects.numpy(), our_effects.numpy(), s=8)
    axes[1].set(xlabel=_("ablation effect in the teacher (nats)"),
                ylabel=_("ablation effect in the model (nats)"),
                title=_("Ablation agreement: Spearman {rho}").format(rho=f"{measured[AGREEMENT]:.2f}"))
    report.figure(fig, "agreement")
