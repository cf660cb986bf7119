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
from sklearn.metrics import silhouette_score

from experiments.common import (
    cosine_matrix,
    grouped_words,
    js_divergence,
    label,
    next_token_probs,
    token_ids,
    token_space,
)
from experiments.context import Context
from experiments.report import Report
from experiments.statistics import bootstrap_ci, paired_p

LABEL_SHUFFLES = 20  # shuffled-label silhouettes averaged for the control


@torch.no_grad()
def semantic_galaxy(ctx: Context, report: Report) -> None:
    """Semantic Galaxy: PCA of the recipes of labelled word groups, drawn as a scatter plot, and the
    silhouette score of the groups (cosine distance, in the full space, not the 2-D picture)."""
    table, space = token_space(ctx.model)
    control_tables = [token_space(control)[0] for control in ctx.controls]
    ids, groups = grouped_words(ctx)
    X, X_control = table[ids].numpy(), control_tables[0][ids].numpy()
    labels = np.array(groups)
    silhouette = silhouette_score(X, labels, metric="cosine")
    rng = np.random.default_rng(ctx.cfg.seed)
    shuffled = [silhouette_score(X, rng.permutation(labels), metric="cosine") for _ in range(LABEL_SHUFFLES)]
    report.define("silhouette", f"mean over words of (b - a) / max(a, b), a = mean cosine distance to its "
                  "own group, b = to the nearest other group, computed in "
                  f"{space}: 1 = tight separate groups, 0 = no grouping, < 0 = mixed up.")
    report.define("controls", f"the same words with their group labels shuffled ({LABEL_SHUFFLES} "
                  "shuffles), and the true labels on random-init models.")
    report.metric("silhouette", silhouette, shuffled, "shuffled labels", higher_is_structure=True)
    control_silhouettes = [silhouette_score(t[ids].numpy(), labels, metric="cosine") for t in control_tables]
    report.metric("silhouette (vs random init)", silhouette, control_silhouettes, "random-init models",
                  higher_is_structure=True)

    per_group = []
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        others = [i for i, g in enumerate(groups) if g != group]
        sims = cosine_matrix(table[ids][members], table[ids])
        within = sims[:, members][~torch.eye(len(members), dtype=torch.bool)].mean().item()
        per_group.append([group, len(members), within, sims[:, others].mean().item()])
    report.table(["group", "words", "mean cosine within", "mean cosine to other groups"], per_group,
                 title="Per group")

    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    palette = dict(zip(dict.fromkeys(groups), sns.color_palette("tab10", len(set(groups))), strict=False))
    panels = ((axes[0], X, f"trained ({space})"), (axes[1], X_control, "random init (control)"))
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
    table, space = token_space(ctx.model)
    analogies = [token_ids(words, ctx.vocab_size, "analogies") for words in ctx.cfg.analogies]
    vocab = ctx.vocabulary_with([t for quad in analogies for t in quad])
    found = analogy_ranks(table, vocab, analogies)
    only_c = analogy_ranks(table, vocab, analogies, only_c=True)
    controls = [analogy_ranks(token_space(c)[0], vocab, analogies) for c in ctx.controls]
    control = controls[0]
    reciprocal = lambda results: [1 / rank for rank, _ in results]
    mrr = lambda results: float(np.mean(reciprocal(results)))
    report.define("rank", f"position of d among {len(vocab)} candidates (the frequent training tokens "
                  f"and the analogy words, a, b, c excluded) by cosine to a - b + c in {space}; 1 is best.")
    report.define("MRR", "mean reciprocal rank over the analogies, with a 95% bootstrap interval over "
                  "analogies: 1 when every answer ranks first; random guessing gives about "
                  f"{np.log(len(vocab)) / len(vocab):.4f}.")
    report.define("only c", "the same search with c alone as the query: the offset a - b must add "
                  "something beyond c's own neighbourhood. Judged by a paired sign-flip test over analogies.")
    n = len(analogies)
    report.metric("MRR", mrr(found), mrr(only_c), "only c (no offset)", higher_is_structure=True,
                  p_value=paired_p(reciprocal(found), reciprocal(only_c), True), n=n, test="paired",
                  ci=bootstrap_ci(reciprocal(found)))
    if ctx.model.has_recipes:  # the same measure on the model's own E = R B: is recipe space better?
        own = analogy_ranks(ctx.model.vocab_matrix().detach().float().cpu(), vocab, analogies)
        report.metric("MRR (recipe space vs own E)", mrr(found), mrr(own), "the model's own E = R B",
                      higher_is_structure=True, p_value=paired_p(reciprocal(found), reciprocal(own), True),
                      n=n, test="paired")
    if ctx.reference is not None:
        theirs = analogy_ranks(token_space(ctx.reference.model)[0], vocab, analogies)
        report.metric("MRR (vs reference)", mrr(found), mrr(theirs), "reference model",
                      higher_is_structure=True, p_value=paired_p(reciprocal(found), reciprocal(theirs), True),
                      n=n, test="paired")
    report.metric("MRR (random-init floor)", mrr(found), [mrr(c) for c in controls], "random-init models")
    first = lambda results: float(np.mean([rank == 1 for rank, _ in results]))
    report.metric("answers ranked first", first(found), [first(c) for c in controls], "random-init models",
                  ci=bootstrap_ci([float(rank == 1) for rank, _ in found]))
    rows = []
    for quad, (rank, top), (rank_c, _), (rank_ctrl, _) in zip(analogies, found, only_c, control, strict=True):
        a, b, c, d = (label(t) for t in quad)
        rows.append([f"{a} - {b} + {c}", d, rank, ", ".join(label(t) for t in top), rank_c, rank_ctrl])
    report.table(["query", "expected", "rank", "top 3", "rank (only c)", "rank (random init)"], rows)

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    x = np.arange(len(rows))
    for offset, results, name in ((-0.25, found, "a - b + c"), (0, only_c, "only c"),
                                  (0.25, control, "random init")):
        ax.bar(x + offset, [r for r, _ in results], width=0.25, label=name)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{r[0]}\n→{r[1]}" for r in rows], fontsize=8)
    ax.set(ylabel="rank of expected answer (lower is better)", title="Semantic algebra")
    ax.legend()
    report.figure(fig, "ranks")


@torch.no_grad()
def typo_resilience(ctx: Context, report: Report) -> None:
    """Typo Resilience: for each [correct, misspelled, unrelated] sentence, how close the hidden
    state at the last position (per layer) and the next-token prediction of the misspelled
    sentence stay to the correct one's, against the unrelated sentence as the control."""
    model = ctx.model
    layers = ["embed"] + [f"L{i}" for i in range(model.config.n_layer)]
    typo_cos, unrelated_cos, typo_js, unrelated_js, rows = [], [], [], [], []
    for n, triple in enumerate(ctx.cfg.typo_sentences):
        idx = [ctx.prompt(text, f"typo_sentences[{n}]") for text in triple]
        states = [torch.stack([h[0, -1] for h in model.hidden_states(i)]).cpu() for i in idx]  # (L+1, C)
        probs = [next_token_probs(model, i) for i in idx]
        typo_cos.append(F.cosine_similarity(states[0], states[1], dim=-1))
        unrelated_cos.append(F.cosine_similarity(states[0], states[2], dim=-1))
        typo_js.append(js_divergence(probs[0], probs[1]).item())
        unrelated_js.append(js_divergence(probs[0], probs[2]).item())
        rows.append([*triple, typo_cos[-1][-1].item(), unrelated_cos[-1][-1].item(), typo_js[-1],
                     unrelated_js[-1]])
    typo_cos, unrelated_cos = torch.stack(typo_cos).mean(0), torch.stack(unrelated_cos).mean(0)
    report.define("state cosine", "cosine between the hidden states at the last position of the correct "
                  "sentence and of the other sentence, after the last layer (the state the prediction "
                  "reads).")
    report.define("prediction JS", "Jensen-Shannon divergence (nats, 0 to 0.693) between the next-token "
                  "distributions after the correct sentence and after the other one.")
    report.define("control", "the unrelated sentence: a typo should stay closer to the correct sentence "
                  "than a different sentence does.")
    report.metric("state cosine (typo)", typo_cos[-1].item(), unrelated_cos[-1].item(), "unrelated sentence",
                  higher_is_structure=True)
    report.metric("prediction JS (typo)", float(np.mean(typo_js)), float(np.mean(unrelated_js)),
                  "unrelated sentence", higher_is_structure=False)
    report.table(["correct", "misspelled", "unrelated", "cos typo", "cos unrelated", "JS typo",
                  "JS unrelated"], rows)
    report.table(["layer"] + layers, [["cos typo"] + typo_cos.tolist(),
                                      ["cos unrelated"] + unrelated_cos.tolist()],
                 title="Mean state cosine by layer")

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(layers, typo_cos.numpy(), "o-", label="misspelled vs correct")
    ax.plot(layers, unrelated_cos.numpy(), "s--", label="unrelated vs correct (control)")
    ax.set(xlabel="layer", ylabel="cosine of last-position states", title="Typo resilience by layer")
    ax.legend()
    report.figure(fig, "by_layer")
