"""Group B, semantic properties: does recipe space (or embedding space) carry meaning?

4. Semantic Galaxy: do labelled word groups form clusters?
5. Semantic Algebra: do a - b + c analogies land on the expected word?
6. Typo Resilience: do misspelled inputs stay close to the correct ones?
"""

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
import torch.nn.functional as F
from adjustText import adjust_text
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_samples, silhouette_score

from core.i18n import N_, _
from experiments.common import (
    cosine_matrix,
    grouped_words,
    js_divergence,
    token_ids,
    token_space,
)
from experiments.context import Context
from experiments.report import Report
from experiments.statistics import bootstrap_ci, paired_p, percentile

LABEL_SHUFFLES = 200  # shuffled-label silhouettes: the null of the silhouette
NULL_TYPOS = 50  # overlap-matched sentences per typo sentence


@torch.no_grad()
def semantic_galaxy(ctx: Context, report: Report) -> None:
    """Semantic Galaxy: PCA of the recipes of labelled word groups, drawn as a scatter plot, and the
    silhouette score of the groups (cosine distance, in the full space, not the 2-D picture)."""
    label = ctx.tokenizer.label  # the model's token ids as text
    table, space = token_space(ctx.model)
    ids, groups = grouped_words(ctx)
    X, X_control = table[ids].numpy(), token_space(ctx.control)[0][ids].numpy()
    labels = np.array(groups)
    silhouette = silhouette_score(X, labels, metric="cosine")
    rng = np.random.default_rng(ctx.cfg.seed)
    shuffled = [silhouette_score(X, rng.permutation(labels), metric="cosine") for _ in range(LABEL_SHUFFLES)]
    report.define(N_("silhouette"), _(
        "mean over words of (b - a) / max(a, b), a = mean cosine distance to its own group, b = to the "
        "nearest other group, computed in {space}: 1 = tight separate groups, 0 = no grouping, < 0 = mixed "
        "up.").format(space=_(space)))
    report.define(N_("controls"), _(
        "the same words with their group labels shuffled ({count} shuffles), and the true labels on "
        "random-init models.").format(count=LABEL_SHUFFLES))
    report.metric(N_("silhouette"), silhouette, shuffled, N_("shuffled labels"), higher_is_structure=True)
    per_word = silhouette_samples(X, labels, metric="cosine")
    if ctx.model.has_recipes:  # the same words in the model's own E = R B: is recipe space better?
        own = silhouette_samples(ctx.model.vocab_matrix().detach().float().cpu()[ids].numpy(), labels,
                                 metric="cosine")
        report.metric(N_("silhouette (recipe space vs own E)"), silhouette, float(own.mean()),
                      N_("the model's own E = R B"), higher_is_structure=True, n=len(ids), test="paired",
                      p_value=paired_p(per_word, own, True))
    if ctx.reference is not None:
        theirs = silhouette_samples(token_space(ctx.reference.model)[0][ids].numpy(), labels, metric="cosine")
        report.metric(N_("silhouette (vs reference)"), silhouette, float(theirs.mean()),
                      N_("reference model"),
                      higher_is_structure=True, p_value=paired_p(per_word, theirs, True), n=len(ids),
                      test="paired")
    control_silhouettes = [silhouette_score(token_space(c)[0][ids].numpy(), labels, metric="cosine")
                           for c in ctx.table_floor()]
    report.metric(N_("silhouette (random-init floor)"), silhouette, control_silhouettes,
                  N_("random-init models"), higher_is_structure=True)

    per_group = []
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        others = [i for i, g in enumerate(groups) if g != group]
        sims = cosine_matrix(table[ids][members], table[ids])
        within = sims[:, members][~torch.eye(len(members), dtype=torch.bool)].mean().item()
        per_group.append([group, len(members), within, sims[:, others].mean().item()])
    report.table([_("group"), _("words"), _("mean cosine within"), _("mean cosine to other groups")],
                 per_group, title=_("Per group"))

    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    palette = dict(zip(dict.fromkeys(groups), sns.color_palette("tab10", len(set(groups))), strict=False))
    panels = ((axes[0], X, _("trained ({space})").format(space=_(space))),
              (axes[1], X_control, _("random init (control)")))
    for ax, data, title in panels:
        points = PCA(n_components=2, random_state=0).fit_transform(data)
        for group in palette:
            mask = labels == group
            ax.scatter(points[mask, 0], points[mask, 1], color=palette[group], label=group, s=30)
        texts = [ax.text(x, y, label(t), fontsize=7) for (x, y), t in zip(points, ids, strict=True)]
        adjust_text(texts, ax=ax)
        ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    axes[0].legend(fontsize=8)
    report.figure(fig, "galaxy")


def analogy_ranks(table: torch.Tensor, vocab: torch.Tensor, analogies: list[list[int]],
                  only_c: bool = False) -> list[tuple[int, list[int]]]:
    """For each [a, b, c, d]: the rank (1 = best) of d among vocab by cosine to a - b + c
    (or to c alone), a, b and c excluded as usual (3CosAdd), and the top 3 ids found."""
    results = []
    for a, b, c, d in analogies:
        query = table[c] if only_c else table[a] - table[b] + table[c]
        sims = cosine_matrix(query[None], table[vocab])[0]
        sims[torch.isin(vocab, torch.tensor([a, b, c]))] = -float("inf")
        target = sims[(vocab == d).nonzero()[0, 0]]
        rank = int((sims > target).sum()) + 1
        results.append((rank, vocab[sims.topk(3).indices].tolist()))
    return results


@torch.no_grad()
def semantic_algebra(ctx: Context, report: Report) -> None:
    """Semantic Algebra: a - b + c in recipe space, and the rank of the expected answer d among the
    searched vocabulary (paper: king - man + woman -> queen, walked - walking + running -> ran,
    Paris - France + China -> Beijing)."""
    label = ctx.tokenizer.label  # the model's token ids as text
    table, space = token_space(ctx.model)
    analogies = [token_ids(words, ctx.tokenizer, "analogies") for words in ctx.cfg.analogies]
    vocab = ctx.vocabulary_with([t for quad in analogies for t in quad])
    found = analogy_ranks(table, vocab, analogies)
    only_c = analogy_ranks(table, vocab, analogies, only_c=True)
    controls = [analogy_ranks(token_space(c)[0], vocab, analogies) for c in ctx.table_floor()]
    control = controls[0]
    reciprocal = lambda results: [1 / rank for rank, _ in results]
    mrr = lambda results: float(np.mean(reciprocal(results)))
    report.define(N_("rank"), _(
        "position of d among {count} candidates (the frequent training tokens and the analogy words, a, b, c "
        "excluded) by cosine to a - b + c in {space}; 1 is best.").format(count=len(vocab), space=_(space)))
    report.define(N_("MRR"), _(
        "mean reciprocal rank over the analogies, with a 95% bootstrap interval over analogies: 1 when every "
        "answer ranks first; random guessing gives about {chance}.").format(
        chance=f"{np.log(len(vocab)) / len(vocab):.4f}"))
    report.define(N_("only c"), _(
        "the same search with c alone as the query: the offset a - b must add something beyond c's own "
        "neighbourhood. Judged by a paired sign-flip test over analogies."))
    n = len(analogies)
    report.metric(N_("MRR"), mrr(found), mrr(only_c), N_("only c (no offset)"), higher_is_structure=True,
                  p_value=paired_p(reciprocal(found), reciprocal(only_c), True), n=n, test="paired",
                  ci=bootstrap_ci(reciprocal(found)))
    if ctx.model.has_recipes:  # the same measure on the model's own E = R B: is recipe space better?
        own = analogy_ranks(ctx.model.vocab_matrix().detach().float().cpu(), vocab, analogies)
        report.metric(N_("MRR (recipe space vs own E)"), mrr(found), mrr(own), N_("the model's own E = R B"),
                      higher_is_structure=True, p_value=paired_p(reciprocal(found), reciprocal(own), True),
                      n=n, test="paired")
    if ctx.reference is not None:
        theirs = analogy_ranks(token_space(ctx.reference.model)[0], vocab, analogies)
        report.metric(N_("MRR (vs reference)"), mrr(found), mrr(theirs), N_("reference model"),
                      higher_is_structure=True, p_value=paired_p(reciprocal(found), reciprocal(theirs), True),
                      n=n, test="paired")
    report.metric(N_("MRR (random-init floor)"), mrr(found), [mrr(c) for c in controls],
                  N_("random-init models"), higher_is_structure=True)
    first = lambda results: float(np.mean([rank == 1 for rank, _ in results]))
    report.define(N_("answers ranked first"), _("the fraction of analogies whose answer d has rank 1."))
    report.metric(N_("answers ranked first"), first(found), [first(c) for c in controls],
                  N_("random-init models"),
                  ci=bootstrap_ci([float(rank == 1) for rank, _ in found]))
    rows = []
    for quad, (rank, top), (rank_c, _top_c), (rank_ctrl, _top_ctrl) in zip(analogies, found, only_c, control,
                                                                            strict=True):
        a, b, c, d = (label(t) for t in quad)
        rows.append([f"{a} - {b} + {c}", d, rank, ", ".join(label(t) for t in top), rank_c, rank_ctrl])
    report.table([_("query"), _("expected"), _("rank"), _("top 3"), _("rank (only c)"),
                  _("rank (random init)")], rows)

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    x = np.arange(len(rows))
    for offset, results, name in ((-0.25, found, "a - b + c"), (0, only_c, _("only c")),
                                  (0.25, control, _("random init"))):
        ax.bar(x + offset, [r for r, _ in results], width=0.25, label=name)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{r[0]}\n→{r[1]}" for r in rows], fontsize=8)
    ax.set(ylabel=_("rank of expected answer (lower is better)"), title=_("Semantic Algebra"))
    ax.legend()
    report.figure(fig, "ranks")


def overlap_matched(correct: list[int], misspelled: list[int], pool: torch.Tensor, count: int,
                    generator: torch.Generator) -> torch.Tensor:
    """(count, len(misspelled)) sentences that share exactly the misspelled sentence's common prefix
    and suffix tokens with the correct one, with its differing middle replaced by random tokens from
    pool: as much token overlap as the typo, and no spelling relation."""
    prefix = 0
    while prefix < min(len(correct), len(misspelled)) and correct[prefix] == misspelled[prefix]:
        prefix += 1
    suffix = 0
    while (suffix < min(len(correct), len(misspelled)) - prefix
           and correct[-1 - suffix] == misspelled[-1 - suffix]):
        suffix += 1
    middle = len(misspelled) - prefix - suffix
    random_middle = pool[torch.randint(len(pool), (count, middle), generator=generator)]
    # dtype given: an empty prefix or suffix (a typo in the first or last word) would be float otherwise
    head = torch.tensor(misspelled[:prefix], dtype=torch.long).expand(count, -1)
    tail = torch.tensor(misspelled[len(misspelled) - suffix :], dtype=torch.long).expand(count, -1)
    return torch.cat([head, random_middle, tail], dim=1)


@torch.no_grad()
def last_states_and_probs(model, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) residual state after the last layer at the last position, and (B, V) next-token
    distributions, for a batch of equal-length sentences."""
    last = model.resid_hook(model.config.n_layer - 1)
    logits, cache = model.run_with_cache(batch, [last])
    return cache[last][:, -1].float(), F.softmax(logits[:, -1].float(), dim=-1)


@torch.no_grad()
def typo_resilience(ctx: Context, report: Report) -> None:
    """Typo Resilience: for each [correct, misspelled, unrelated] sentence, how close the hidden
    state at the last position (after the last layer) and the next-token prediction of the
    misspelled sentence stay to the correct one's, against NULL_TYPOS overlap-matched sentences
    (the misspelled word's tokens replaced by random frequent tokens): staying close because most
    tokens are shared is not resilience to spelling."""
    model = ctx.model
    pool = ctx.frequent_tokens
    generator = ctx.generator(report.number)
    typo_cos, typo_js, null_cos, null_js, unrelated_cos, rows = [], [], [], [], [], []
    reference_pct = []  # per sentence: the reference's typo cosine percentile in its own null
    pairs = []  # (correct, misspelled) ids, for the random-init floor
    for n, (correct, misspelled, unrelated) in enumerate(ctx.cfg.typo_sentences):
        ids = [ctx.prompt(t, f"typo_sentences[{n}]")[0].cpu().tolist()
               for t in (correct, misspelled, unrelated)]
        matched = overlap_matched(ids[0], ids[1], pool, NULL_TYPOS, generator).to(ctx.device)
        state_c, prob_c = last_states_and_probs(model, torch.tensor([ids[0]], device=ctx.device))
        state_m, prob_m = last_states_and_probs(model, torch.tensor([ids[1]], device=ctx.device))
        state_u = last_states_and_probs(model, torch.tensor([ids[2]], device=ctx.device))[0]
        state_n, prob_n = last_states_and_probs(model, matched)
        typo_cos.append(F.cosine_similarity(state_c, state_m).item())
        typo_js.append(js_divergence(prob_c, prob_m).item())
        null_cos.append(F.cosine_similarity(state_c.expand_as(state_n), state_n).cpu())
        null_js.append(js_divergence(prob_c.expand_as(prob_n), prob_n).cpu())
        unrelated_cos.append(F.cosine_similarity(state_c, state_u).item())
        if ctx.reference is not None:  # the same sentences and matched null through the reference
            theirs = [last_states_and_probs(ctx.reference.model, batch)[0] for batch in
                      (torch.tensor([ids[0]], device=ctx.device), torch.tensor([ids[1]], device=ctx.device),
                       matched)]
            reference_pct.append(percentile(F.cosine_similarity(theirs[0], theirs[1]).item(),
                                            F.cosine_similarity(theirs[0].expand_as(theirs[2]),
                                                                theirs[2]).tolist()))
        pairs.append(ids[:2])
        rows.append([correct, misspelled, typo_cos[-1], null_cos[-1].mean().item(),
                     percentile(typo_cos[-1], null_cos[-1].tolist()), unrelated_cos[-1], typo_js[-1],
                     null_js[-1].mean().item()])
    state = lambda m, ids: last_states_and_probs(m, torch.tensor([ids], device=ctx.device))[0]
    floor_cos = [[F.cosine_similarity(state(control, correct), state(control, typo)).item()
                  for correct, typo in pairs] for control in ctx.floor_models()]
    null_cos_mean = torch.stack(null_cos).mean(0).tolist()  # draw j: every sentence's j-th matched control
    null_js_mean = torch.stack(null_js).mean(0).tolist()
    report.define(N_("state cosine"), _(
        "cosine between the residual states at the last position, after the last layer, of the correct "
        "sentence and of the other one, mean over sentences (95% bootstrap interval over sentences)."))
    report.define(N_("prediction JS"), _(
        "Jensen-Shannon divergence (nats, 0 to 0.693) between the next-token distributions after the correct "
        "sentence and after the other one."))
    report.define(N_("overlap-matched null"), _(
        "{count} sentences per typo sentence that keep its tokens shared with the correct sentence (common "
        "prefix and suffix) and replace the misspelled tokens by random frequent tokens; draw j averages "
        "every sentence's j-th. A model that only counts shared tokens is not distinguishable from "
        "it.").format(count=NULL_TYPOS))
    matched_null = N_("overlap-matched null ({count} draws)").format(count=NULL_TYPOS)
    report.metric(N_("state cosine (typo)"), float(np.mean(typo_cos)), null_cos_mean, matched_null,
                  higher_is_structure=True, ci=bootstrap_ci(typo_cos))
    report.metric(N_("prediction JS (typo)"), float(np.mean(typo_js)), null_js_mean, matched_null,
                  higher_is_structure=False, ci=bootstrap_ci(typo_js))
    if ctx.reference is not None:
        ours_pct = [row[4] for row in rows]
        report.define(N_("percentile (vs reference)"), _(
            "per sentence, the typo's state cosine as a percentile among its own model's overlap-matched "
            "sentences (the same token sequences fed to both models), this model against the trained "
            "reference: a paired sign-flip test over sentences (with n sentences p cannot go below 1/2^n)."))
        report.metric(N_("typo cosine percentile in its null (vs reference)"), float(np.mean(ours_pct)),
                      float(np.mean(reference_pct)), N_("reference model"), higher_is_structure=True,
                      p_value=paired_p(ours_pct, reference_pct, True), n=len(ours_pct), test="paired")
    report.metric(N_("state cosine (random-init floor)"), float(np.mean(typo_cos)),
                  [float(np.mean(f)) for f in floor_cos], N_("random-init models"), higher_is_structure=True)
    report.metric(N_("state cosine (unrelated sentence)"), float(np.mean(unrelated_cos)))
    report.table([_("correct"), _("misspelled"), _("cos typo"), _("cos matched (mean)"),
                  _("typo's percentile"), _("cos unrelated"), _("JS typo"), _("JS matched (mean)")], rows)

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (cos, null) in enumerate(zip(typo_cos, null_cos, strict=True)):
        ax.scatter(np.full(len(null), i), null.numpy(), color="C7", alpha=0.4, s=10)
        ax.scatter([i], [cos], color="C3", s=60, zorder=3)
    ax.set_xticks(range(len(rows)), [r[0][:20] for r in rows], fontsize=8)
    ax.set(ylabel=_("cosine of last-position states"),
           title=_("Typo (red) vs overlap-matched sentences (gray)"))
    report.figure(fig, "null")
