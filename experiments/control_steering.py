"""Group D, control and steering: change what the model says by editing signals or recipes.

10. Emotion Surgery: add a sentiment direction to the residual stream.
11. Concept Inception: find the strength at which an injected concept takes over the prediction.
12. Genetic Hijack: rewrite the recipes of negative words, measure, and restore the model exactly.
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
from experiments.common import (
    SAMPLES_PER_PROMPT,
    frequent_words,
    js_divergence,
    next_token_probs,
    residual_norms,
    sentiment_log_odds,
    steered_next_token_probs,
    steering_hook,
    token_id,
    token_ids,
)
from experiments.context import Context
from experiments.report import Report
from experiments.statistics import paired_p

NULL_DIRECTIONS = 100  # word-difference directions in the steering null
ALPHA_MULTIPLES = (0.0, 0.5, 1.0, 2.0, 4.0)  # the strength sweep, in units of cfg.steer_alpha
NULL_TOKENS = 20  # random tokens whose own-row inception is the null
SEARCH_GRID = 33  # strengths per search grid; two grids give precision alpha_max / 32^2
SAMPLE_TOP_K = 40
HIJACK_WINDOWS = 8  # validation windows for the perplexity before and after the hijack
NULL_EDITS = 50  # random-target edits in the hijack's null


def sentiment_ids(ctx: Context) -> tuple[list[int], list[int]]:
    return (token_ids(ctx.cfg.positive_words, ctx.tokenizer, "positive_words"),
            token_ids(ctx.cfg.negative_words, ctx.tokenizer, "negative_words"))


def split_held_out(words: list[int]) -> tuple[list[int], list[int]]:
    """(defining, held out): the words at even positions of the config's list define a direction or
    an edit, those at odd positions only measure it. Fixed by the config's order, before any model
    is seen, so no choice can fit the checkpoint."""
    return words[0::2], words[1::2]


def word_difference_directions(model, pool: list[int], sizes: tuple[int, int], count: int,
                               generator: torch.Generator) -> torch.Tensor:
    """(count, C) unit directions mean(E[A]) - mean(E[B]) for random disjoint sets A, B of the given
    sizes from `pool`: built like the sentiment direction, from words that share no sentiment."""
    E = model.vocab_matrix().detach().float()
    pool_t = torch.tensor(pool, device=E.device)
    directions = []
    for _draw in range(count):
        pick = pool_t[torch.randperm(len(pool), generator=generator)[: sum(sizes)].to(E.device)]
        directions.append(E[pick[: sizes[0]]].mean(0) - E[pick[sizes[0] :]].mean(0))
    return F.normalize(torch.stack(directions), dim=-1)


def sentiment_direction(model, positive: list[int], negative: list[int]) -> torch.Tensor:
    """Unit vector (C) from the mean negative word to the mean positive word, in the vocab matrix.
    On the reflow family this is (mean positive recipe - mean negative recipe) @ W_basis: a
    direction in signal space carried into the residual stream by the basis, and exactly an
    embedding difference, so "the same measure on E" is this measure."""
    E = model.vocab_matrix().detach().float()
    return F.normalize(E[positive].mean(0) - E[negative].mean(0), dim=0)


@torch.no_grad()
def steered_log_odds(model, prompts: list[torch.Tensor], norms: list[torch.Tensor], layer: int,
                     directions: torch.Tensor, positive: list[int], negative: list[int]) -> torch.Tensor:
    """(D,): for each of the D scaled directions (alpha * unit vector), the next token's
    positive-vs-negative log odds, averaged over prompts, with direction * (the prompt's mean residual
    norm after `layer`, from `norms`) added after `layer`."""
    values = [sentiment_log_odds(steered_next_token_probs(model, idx, layer, norm[layer] * directions),
                                 positive, negative)
              for idx, norm in zip(prompts, norms, strict=True)]
    return torch.stack(values).mean(0)


@torch.no_grad()
def samples(model, tokenizer: Tokenizer, idx: torch.Tensor, tokens: int, seed: int,
            hooks: dict | None = None) -> list[str]:
    """Continuations of each row of idx (temperature 1, top-k), with a fixed seed so runs compare."""
    generator = torch.Generator(device=idx.device).manual_seed(seed)
    with model.hooks(hooks or {}):
        out = model.generate(idx, tokens, temperature=1.0, top_k=SAMPLE_TOP_K, generator=generator,
                             valid_vocab_size=tokenizer.n_vocab)
    return [tokenizer.decode(row[idx.size(1):].tolist()) for row in out]


@torch.no_grad()
def held_out_shifts(model, prompts: list[torch.Tensor], directions: torch.Tensor, alphas: list[float],
                    held_out: tuple[list[int], list[int]]) -> torch.Tensor:
    """(L, A, D): shift of the held-out words' log odds from unsteered, for each layer, alpha and
    unit direction (D, C) added as alpha * n_L * d after layer L."""
    norms = [residual_norms(model, idx) for idx in prompts]
    scaled = torch.cat([torch.zeros_like(directions[:1])] + [a * directions for a in alphas])  # (1 + A D, C)
    out = []
    for L in range(model.config.n_layer):
        odds = steered_log_odds(model, prompts, norms, L, scaled, *held_out)
        out.append((odds[1:] - odds[0]).view(len(alphas), len(directions)))
    return torch.stack(out).cpu()


@torch.no_grad()
def emotion_surgery(ctx: Context, report: Report) -> None:
    """Emotion Surgery: a sentiment direction, mean defining-positive minus mean defining-negative
    word in the vocab matrix (= recipe difference @ W_basis on reflow), added to the residual stream
    after a layer; measured on the *held-out* sentiment words (the other half of each list), swept
    over layers and strengths, against NULL_DIRECTIONS directions built the same way from random
    frequent words with no sentiment."""
    label = ctx.tokenizer.label  # the model's token ids as text
    model, cfg = ctx.model, ctx.cfg
    positive, negative = sentiment_ids(ctx)
    (define_pos, held_pos), (define_neg, held_neg) = split_held_out(positive), split_held_out(negative)
    prompts = [ctx.prompt(p, f"steer_prompts[{i}]") for i, p in enumerate(cfg.steer_prompts)]
    alpha = cfg.steer_alpha
    alphas = [m * alpha for m in ALPHA_MULTIPLES]
    direction = sentiment_direction(model, define_pos, define_neg)
    pool = frequent_words(ctx, positive + negative)
    nulls = word_difference_directions(model, pool, (len(define_pos), len(define_neg)), NULL_DIRECTIONS,
                                       ctx.generator(report.number)).to(ctx.device)
    with tqdm(total=3, desc="emotion surgery", leave=False, disable=None) as bar:
        directions = torch.cat([direction[None], -direction[None], nulls])
        shifts = held_out_shifts(model, prompts, directions, alphas, (held_pos, held_neg))  # (L, A, 2 + N)
        bar.update()
        in_sample = held_out_shifts(model, prompts, direction[None], [alpha], (define_pos, define_neg))
        bar.update()
        floor = [held_out_shifts(c, prompts, sentiment_direction(c, define_pos, define_neg)[None], [alpha],
                                 (held_pos, held_neg))[:, 0, 0] for c in ctx.controls]
        bar.update()
    at = ALPHA_MULTIPLES.index(1.0)
    layers = range(model.config.n_layer)
    plus, minus, null = shifts[:, at, 0], shifts[:, at, 1], shifts[:, at, 2:]  # (L,), (L,), (L, N)
    best = int(plus.argmax())
    null_best = null.max(0).values.tolist()  # each null direction also gets its best layer
    floor_best = [f.max().item() for f in floor]

    report.define(N_("held-out words"), _(
        "positive_words and negative_words are split by position in the config (even: define the direction, "
        "odd: measure it), fixed before any checkpoint is evaluated; defining {defining}; measuring "
        "{measuring}.").format(defining=", ".join(label(t) for t in define_pos + define_neg),
                               measuring=", ".join(label(t) for t in held_pos + held_neg)))
    report.define(N_("sentiment log odds"), _(
        "log(P(next token in held-out positive words) / P(in held-out negative words)) after each steering "
        "prompt, averaged over cfg.steer_prompts."))
    report.define(N_("steering"), _(
        "h <- h + alpha * n_L * d after layer L, d the unit direction mean E[defining positive] - mean "
        "E[defining negative] (on reflow exactly (mean recipe difference) @ W_basis, so the same measure on "
        "E is this one), n_L the prompt's mean residual norm there; alpha = {alpha}, swept over "
        "{alphas}.").format(alpha=alpha, alphas=", ".join(f"{a:g}" for a in alphas)))
    report.define(N_("word-difference null"), _(
        "{count} directions mean E[A] - mean E[B] for random disjoint sets A, B of frequent non-sentiment "
        "words (sizes of the defining lists), each at its own best layer as the sentiment direction "
        "is.").format(count=NULL_DIRECTIONS))
    word_null = N_("word-difference null ({count} directions)").format(count=NULL_DIRECTIONS)
    report.metric(N_("shift on held-out words at +alpha (best layer, L{layer})").format(layer=best),
                  plus[best].item(), null_best, word_null, higher_is_structure=True)
    report.metric(N_("shift on held-out words at -alpha (L{layer})").format(layer=best), minus[best].item(),
                  null[best].tolist(), word_null, higher_is_structure=False)
    if ctx.reference is not None:  # the same procedure in the reference, each model at its own best layer
        held = (held_pos, held_neg)
        per_prompt = lambda m, d, L: [held_out_shifts(m, [idx], d[None], [alpha], held)[L, 0, 0].item()
                                      for idx in prompts]
        ref_model = ctx.reference.model
        ref_direction = sentiment_direction(ref_model, define_pos, define_neg)
        ref_best = int(held_out_shifts(ref_model, prompts, ref_direction[None], [alpha],
                                       (held_pos, held_neg))[:, 0, 0].argmax())
        ours, theirs = per_prompt(model, direction, best), per_prompt(ref_model, ref_direction, ref_best)
        report.define(N_("held-out shift (vs reference)"), _(
            "per steering prompt, the held-out shift at +alpha at each model's own best layer, this model "
            "against the trained reference steered the same way with its own direction: a paired sign-flip "
            "test over prompts (with n prompts p cannot go below 1/2^n)."))
        report.metric(N_("held-out shift at +alpha (vs reference)"), float(np.mean(ours)),
                      float(np.mean(theirs)), N_("reference model"), higher_is_structure=True,
                      p_value=paired_p(ours, theirs, True),
                      n=len(ours), test="paired")
    report.metric(N_("in-sample shift on the defining words (not judged)"), in_sample[best, 0, 0].item())
    report.define(N_("random-init floor"), _(
        "{count} random-init models, shown and not judged: each draw is a full sweep of layers, so 20 would "
        "multiply this experiment's time.").format(count=len(ctx.controls)))
    report.metric(N_("random-init floor: held-out shift (best layer)"), plus[best].item(), floor_best,
                  N_("random-init models"))
    report.metric(N_("unsteered held-out log odds"), steered_log_odds(
        model, prompts, [residual_norms(model, i) for i in prompts], 0, torch.zeros_like(direction)[None],
        held_pos, held_neg).item())
    # Where in depth steering still moves the prediction (the depth study's question; the paper: L0-L12
    # of 36 work, beyond L18 inert). After the last layer a direction reaches the readout directly.
    null_q95 = null.quantile(0.95, dim=1)  # (L,): the null's 95th percentile at each layer
    steerable = [L for L in layers if plus[L] > null_q95[L]]
    report.define(N_("steerable layers"), _(
        "the layers L after which +alpha steering shifts the held-out log odds more than the 95th percentile "
        "of the word-difference null at that same layer; as a fraction of depth: their count / n_layer. Not "
        "judged: it says where, not whether."))
    report.define(N_("best steering layer"), _(
        "(L + 1) / n_layer of the layer L with the largest held-out shift at +alpha (1: after the last "
        "layer, where the direction reaches the readout directly)."))
    report.metric(N_("steerable layers (fraction of depth)"), len(steerable) / model.config.n_layer)
    report.metric(N_("best steering layer (fraction of depth)"), (best + 1) / model.config.n_layer)
    report.table([_("layer"), _("held-out shift (+alpha)"), _("held-out shift (-alpha)"),
                  _("in-sample shift (+alpha)"), _("null 95th percentile (+alpha)")],
                 [[f"L{L}", plus[L].item(), minus[L].item(), in_sample[L, 0, 0].item(),
                   null_q95[L].item()] for L in layers],
                 title=_("Sweep over layers at alpha = {alpha}").format(alpha=alpha))
    curve = shifts[best, :, 0]
    band = shifts[best, :, 2:]
    report.table(["alpha", _("held-out shift"), _("null 5th percentile"), _("null 95th percentile")],
                 [[a, curve[i].item(), band[i].quantile(0.05).item(), band[i].quantile(0.95).item()]
                  for i, a in enumerate(alphas)], title=_("Strength sweep at L{layer}").format(layer=best))
    if model.has_recipes:
        recipe = model.effective_recipe()
        signal_direction = recipe[define_pos].mean(0) - recipe[define_neg].mean(0)
        top = signal_direction.abs().topk(min(8, signal_direction.numel())).indices.tolist()
        report.say(_("Signals weighing most in the sentiment direction (mean positive - mean negative "
                     "recipe): {signals}.").format(
            signals=", ".join(f"{s} ({signal_direction[s]:+.3f})" for s in top)))

    lines = []
    for i, idx in enumerate(prompts[:2]):
        # One batch of three rows: unsteered, +alpha, -alpha, each with its own steering vector.
        norms = residual_norms(model, idx)
        vectors = alpha * norms[best] * torch.stack([0 * direction, direction, -direction])[:, None, :]
        texts = samples(model, ctx.tokenizer, idx.expand(3, -1), cfg.audit_sample_tokens, cfg.seed,
                        {model.resid_hook(best): steering_hook(vectors)})
        for name, text in zip((_("unsteered"), "+alpha", "-alpha"), texts, strict=True):
            lines.append(f"[{name}] {cfg.steer_prompts[i]}{text}")
    report.say(_("Samples steered at layer L{layer} (one seed; illustration only):").format(layer=best)
               + "\n\n```\n" + "\n".join(lines) + "\n```")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    x = np.arange(len(layers))
    axes[0].bar(x - 0.2, plus.numpy(), width=0.4, label="+alpha")
    axes[0].bar(x + 0.2, minus.numpy(), width=0.4, label="-alpha")
    axes[0].fill_between(x, null.quantile(0.05, dim=1).numpy(), null.quantile(0.95, dim=1).numpy(),
                         color="gray", alpha=0.3, label=_("word-difference null, 5-95% (+alpha)"))
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xticks(x, [f"L{L}" for L in layers])
    axes[0].set(xlabel=_("layer steered"), ylabel=_("shift in held-out log odds"),
                title=_("Emotion surgery by layer"))
    axes[0].legend(fontsize=8)
    axes[1].plot(alphas, curve.numpy(), "o-", color="C3", label=_("sentiment direction"))
    axes[1].fill_between(alphas, band.quantile(0.05, dim=1).numpy(), band.quantile(0.95, dim=1).numpy(),
                         color="gray", alpha=0.3, label=_("word-difference null, 5-95%"))
    axes[1].set(xlabel=_("alpha (x mean residual norm)"), ylabel=_("shift in held-out log odds"),
                title=_("Strength sweep at L{layer}").format(layer=best))
    axes[1].legend(fontsize=8)
    report.figure(fig, "sweep")


@torch.no_grad()
def critical_alpha(model, idx: torch.Tensor, norm: float, layer: int, direction: torch.Tensor, target: int,
                   alpha_max: float) -> float | None:
    """Smallest alpha at which adding alpha * norm * direction after `layer` makes `target` the top
    next token, None if alpha_max is not enough. Searched on a grid of SEARCH_GRID strengths, then on
    a finer grid inside the first winning step: two batched forwards instead of a dozen sequential
    bisection steps, and it finds the first crossing without assuming there is only one."""
    low, high = 0.0, alpha_max
    for _refinement in range(2):
        alphas = torch.linspace(low, high, SEARCH_GRID, device=idx.device)
        probs = steered_next_token_probs(model, idx, layer, alphas[:, None] * norm * direction)
        wins = (probs.argmax(-1) == target).nonzero()
        if len(wins) == 0:
            return None
        first = wins[0, 0].item()
        if first == 0:
            return alphas[0].item()
        low, high = alphas[first - 1].item(), alphas[first].item()
    return high


def critical_alphas(model, idx: torch.Tensor, direction: torch.Tensor, target: int,
                    alpha_max: float) -> list[float | None]:
    """critical_alpha after each layer, each in units of that layer's mean residual norm."""
    norms = residual_norms(model, idx)
    return [critical_alpha(model, idx, norms[L].item(), L, direction, target, alpha_max)
            for L in range(model.config.n_layer)]


def smallest(alphas: list[float | None]) -> float | None:
    return min((a for a in alphas if a is not None), default=None)


def mean_reached(alphas: list[float | None]) -> float | None:
    reached = [a for a in alphas if a is not None]
    return float(np.mean(reached)) if reached else None


def ranked_alphas(alphas: list[float | None], alpha_max: float) -> list[float]:
    """Critical alphas with 'never reached' as 2 x alpha_max: it ranks above every reached strength."""
    return [2 * alpha_max if a is None else a for a in alphas]


def easier_than_null(concepts: list[float | None], null: list[float | None], alpha_max: float) -> float:
    """One-sided Mann-Whitney U p-value that the concepts' critical alphas are lower than the null
    tokens' (unreached counted as larger than any reached alpha)."""
    return float(stats.mannwhitneyu(ranked_alphas(concepts, alpha_max), ranked_alphas(null, alpha_max),
                                    alternative="less").pvalue)


@torch.no_grad()
def concept_inception(ctx: Context, report: Report) -> None:
    """Concept Inception: inject a concept's direction (its vocab-matrix row, i.e. recipe @ W_basis)
    into the residual stream after each layer, and search for the critical strength alpha at
    which the concept becomes the top next-token prediction. The null is the same search for
    NULL_TOKENS random frequent tokens, each injected along its own row: with tied embeddings any
    token's row raises its own logit, so a concept is special only if it needs less strength."""
    label = ctx.tokenizer.label  # the model's token ids as text
    model, cfg = ctx.model, ctx.cfg
    idx = ctx.prompt(cfg.concept_prompt, "concept_prompt")
    layers = range(model.config.n_layer)
    own_row = lambda m, token: F.normalize(m.vocab_matrix().detach()[token].float(), dim=0)
    concepts = [token_id(word, ctx.tokenizer, "concept_words") for word in cfg.concept_words]
    pool = frequent_words(ctx, concepts + idx[0].tolist())
    pick = torch.randperm(len(pool), generator=ctx.generator(report.number))[:NULL_TOKENS].tolist()
    null_tokens = [pool[i] for i in pick]
    search = lambda m, token: critical_alphas(m, idx, own_row(m, token), token, cfg.concept_alpha_max)
    table, best, best_null, best_init = [], [], [], []
    with tqdm(total=len(concepts) * (1 + len(ctx.controls)) + len(null_tokens), desc="concept inception",
              leave=False, disable=None) as bar:
        for concept in concepts:
            found = search(model, concept)
            best.append(smallest(found))
            best_init.append([smallest(search(control, concept)) for control in ctx.controls])
            table.append([label(concept)] + found)
            bar.update(1 + len(ctx.controls))
        for token in null_tokens:
            best_null.append(smallest(search(model, token)))
            bar.update()

    ranked = lambda alphas: ranked_alphas(alphas, cfg.concept_alpha_max)
    inception_p = easier_than_null(best, best_null, cfg.concept_alpha_max)
    report.define(N_("critical alpha"), _(
        "smallest alpha at which h <- h + alpha * n_L * e_c/|e_c| after layer L makes token c the top next "
        "token after the prompt (n_L: mean residual norm there, e_c: c's vocab-matrix row); searched in [0, "
        "{alpha_max}] on a grid refined once (precision {precision}), at the best layer; n/a if not reached. "
        "Lower: easier to incept.").format(alpha_max=cfg.concept_alpha_max,
                                           precision=f"{cfg.concept_alpha_max / (SEARCH_GRID - 1) ** 2:.3g}"))
    report.define(N_("random-token null"), _(
        "the same search for {count} random frequent words (a space and letters; not the concepts, not in "
        "the prompt), each along its own row; compared with the concepts by a one-sided Mann-Whitney U test "
        "(unreached counted as larger than any reached alpha). The direction is the token's own row, so no "
        "held-out words are involved; the prompt and words are fixed in the config before "
        "evaluation.").format(count=len(null_tokens)))
    incepted = lambda alphas: sum(a is not None for a in alphas) / len(alphas)
    report.metric(N_("critical alpha (best layer, mean over concepts)"), mean_reached(best),
                  mean_reached(best_null),
                  N_("random-token null ({count} tokens)").format(count=len(null_tokens)),
                  higher_is_structure=False, p_value=inception_p, n=len(concepts),
                  test=N_("Mann-Whitney U vs null tokens"))
    report.metric(N_("concepts incepted"), incepted(best), incepted(best_null), N_("random tokens incepted"))
    if ctx.reference is not None:  # each concept along the reference's own row, in the reference
        theirs = [smallest(search(ctx.reference.model, concept)) for concept in concepts]
        report.define(N_("critical alpha (vs reference)"), _(
            "per concept, the critical alpha at the best layer in this model and in the trained reference "
            "(its own row; unreached counted as twice the searched maximum): a paired sign-flip test over "
            "concepts, lower is easier (with n concepts p cannot go below 1/2^n)."))
        report.metric(N_("critical alpha (vs reference)"), float(np.mean(ranked(best))),
                      float(np.mean(ranked(theirs))), N_("reference model"), higher_is_structure=False,
                      p_value=paired_p(ranked(best), ranked(theirs), False), n=len(concepts), test="paired")
    report.define(N_("random-init floor"), _(
        "{count} random-init models, shown and not judged: each draw is a search per concept and layer, so "
        "20 would multiply this experiment's time.").format(count=len(ctx.controls)))
    report.metric(N_("random-init floor: critical alpha"), mean_reached(best),
                  [mean_reached([seeds[i] for seeds in best_init]) for i in range(len(ctx.controls))],
                  N_("random-init models, concept's own row"))
    report.table([_("concept")] + [f"L{L}" for L in layers], table,
                 title=_("Critical alpha after {prompt}").format(prompt=repr(cfg.concept_prompt)))
    report.table([_("null token"), _("critical alpha (best layer)")],
                 [[label(t), a] for t, a in zip(null_tokens, best_null, strict=True)],
                 title=_("Random-token null"))

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for row in table:
        values = [np.nan if a is None else a for a in row[1:]]
        axes[0].plot([f"L{L}" for L in layers], values, "o-", label=row[0])
    axes[0].set(xlabel=_("layer injected"), ylabel=_("critical alpha"),
                title=_("Concept inception (missing: not reached)"), ylim=(0, cfg.concept_alpha_max))
    axes[0].legend(fontsize=8)
    axes[1].hist([a for a in best_null if a is not None], bins=15, color="C7", alpha=0.7,
                 label=_("random tokens (best layer)"))
    for a, row in zip(best, table, strict=True):
        if a is not None:
            axes[1].axvline(a, lw=2, label=row[0])
    axes[1].set(xlabel=_("critical alpha"), ylabel=_("tokens"),
                title=_("Concepts against the random-token null"))
    axes[1].legend(fontsize=8)
    report.figure(fig, "critical_alpha")


@torch.no_grad()
def hijack_measures(ctx: Context, positive: list[int], negative: list[int], windows: torch.Tensor,
                    generate: bool = True) -> dict:
    """Held-out perplexity; how differently the model reads a negative vs a positive word (JS of the
    next-token distributions after prompt + word); the positive-vs-negative log odds of the next token
    after each prompt; and, if `generate`, sentiment words in seeded samples and the first sample."""
    model, cfg = ctx.model, ctx.cfg
    # Two windows per forward keeps the (B, T, V) logits small; weights make it the mean over all.
    losses = [(model(w[:, :-1].contiguous(), targets=w[:, 1:].contiguous())[1].item(), len(w))
              for w in windows.split(2)]
    loss = sum(value * n for value, n in losses) / sum(n for _, n in losses)
    gaps, log_odds = [], []
    pairs = list(zip(positive, negative, strict=False))  # in config order; a longer list's extras unpaired
    for i, prompt in enumerate(cfg.steer_prompts):
        idx = ctx.prompt(prompt, f"steer_prompts[{i}]")[:, -(model.config.block_size - 1):]
        words = torch.tensor([p for p, _ in pairs] + [n for _, n in pairs], device=idx.device)[:, None]
        batch = torch.cat([idx.expand(len(words), -1), words], dim=1)  # (2P, T + 1)
        logits, _ = model(batch, last_only=True)
        probs = F.softmax(logits[:, -1].float(), dim=-1)
        gaps += js_divergence(probs[: len(pairs)], probs[len(pairs) :]).tolist()
        log_odds.append(sentiment_log_odds(next_token_probs(model, idx), positive, negative).item())
    measures = {N_("perplexity"): math.exp(loss), N_("reading gap"): float(np.mean(gaps)),
                N_("next-token sentiment log odds"): float(np.mean(log_odds)),
                N_("positive words generated"): None, N_("negative words generated"): None, "sample": None,
                "samples": None}
    if not generate:  # sampling is most of this function's time
        return measures
    counts = {"positive words generated": 0, "negative words generated": 0}
    all_samples = []
    for i, prompt in enumerate(cfg.steer_prompts):
        idx = ctx.prompt(prompt, f"steer_prompts[{i}]").expand(SAMPLES_PER_PROMPT, -1)
        generator = torch.Generator(device=idx.device).manual_seed(cfg.seed + i)
        out = model.generate(idx, cfg.audit_sample_tokens, temperature=1.0, top_k=SAMPLE_TOP_K,
                             generator=generator, valid_vocab_size=ctx.tokenizer.n_vocab
                             )[:, idx.size(1):]
        for kind, ids in (("positive", positive), ("negative", negative)):
            found = torch.isin(out, torch.tensor(ids, device=out.device))
            counts[f"{kind} words generated"] += int(found.sum())
        all_samples += [prompt + ctx.tokenizer.decode(row.tolist()) for row in out]
    return {**measures, **counts, "sample": all_samples[0], "samples": all_samples}


@torch.no_grad()
def reading_gap(ctx: Context, positive: list[int], negative: list[int]) -> float:
    """Mean JS divergence between the next-token distributions after 'prompt + positive word' and
    'prompt + negative word', pairs in list order, over the steering prompts."""
    return float(np.mean(reading_gaps(ctx, positive, negative)))


@torch.no_grad()
def reading_gaps(ctx: Context, positive: list[int], negative: list[int], model=None) -> np.ndarray:
    """(pairs,) reading gap of each (positive, negative) pair in list order, mean over the steering
    prompts, in `model` (ctx.model if not given)."""
    model, gaps = model or ctx.model, []
    pairs = list(zip(positive, negative, strict=False))
    for i, prompt in enumerate(ctx.cfg.steer_prompts):
        idx = ctx.prompt(prompt, f"steer_prompts[{i}]")[:, -(model.config.block_size - 1):]
        words = torch.tensor([p for p, _ in pairs] + [n for _, n in pairs], device=idx.device)[:, None]
        logits, _ = model(torch.cat([idx.expand(len(words), -1), words], dim=1), last_only=True)
        probs = F.softmax(logits[:, -1].float(), dim=-1)
        gaps.append(js_divergence(probs[: len(pairs)], probs[len(pairs) :]).cpu().numpy())
    return np.mean(gaps, axis=0)


def with_rows_pulled(table: torch.Tensor, rows: list[int], toward: list[int], strength: float, measure):
    """measure() with table's `rows` pulled toward the mean of its `toward` rows,
    row <- (1 - strength) row + strength mean; the rows are restored after, also on error."""
    original = table.data[rows].clone()
    try:
        table.data[rows] = (1 - strength) * original + strength * table.data[toward].mean(0)
        return measure()
    finally:
        table.data[rows] = original


@torch.no_grad()
def genetic_hijack(ctx: Context, report: Report) -> None:
    """Genetic Hijack: edit W_recipe globally, pulling each held-out negative word's recipe toward the
    mean recipe of the defining positive words (the embedding row on gpt2), and measure how much
    closer the model then reads those negative words and the held-out positive words; the null pulls
    the same rows, as far, toward the mean of random frequent non-sentiment words. Also the
    held-out perplexity, same-seed samples, and a bit-for-bit restore check."""
    label = ctx.tokenizer.label  # the model's token ids as text
    model, cfg = ctx.model, ctx.cfg
    positive, negative = sentiment_ids(ctx)
    (define_pos, held_pos), (_defining, held_neg) = split_held_out(positive), split_held_out(negative)
    windows = ctx.text_windows(max_windows=HIJACK_WINDOWS)
    table = model.token_table()
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    strength = cfg.hijack_strength

    edited = lambda toward, measure: with_rows_pulled(table, held_neg, toward, strength, measure)

    pool = frequent_words(ctx, positive + negative)
    generator = ctx.generator(report.number)
    null_sets = [[pool[i] for i in torch.randperm(len(pool), generator=generator)[: len(define_pos)].tolist()]
                 for _ in range(NULL_EDITS)]
    gap = lambda: reading_gap(ctx, held_pos, held_neg)
    with tqdm(total=2 + NULL_EDITS, desc="genetic hijack", leave=False, disable=None) as bar:
        before = hijack_measures(ctx, positive, negative, windows)
        gap_before = gap()
        bar.update()
        after = edited(define_pos,
                       lambda: {**hijack_measures(ctx, positive, negative, windows), "gap": gap()})
        bar.update()
        null_gaps = []
        for rows in null_sets:
            null_gaps.append(edited(rows, gap))
            bar.update()
    restored = all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())
    if not restored:  # a bug, not a user error: put the weights back from the snapshot, loudly
        model.load_state_dict(snapshot)
        raise AssertionError("Genetic Hijack did not restore the weights exactly")

    where = "W_recipe" if model.has_recipes else _("the embedding (gpt2 has no recipes)")
    report.define(N_("held-out words"), _(
        "the sentiment lists split by position in the config (even: defining, odd: held out), fixed before "
        "evaluation. Edited: the held-out negative words {edited}; target: the mean of the defining positive "
        "words {target}; measured against the held-out positive words {measured}, which no edit "
        "touches.").format(edited=", ".join(label(t) for t in held_neg),
                           target=", ".join(label(t) for t in define_pos),
                           measured=", ".join(label(t) for t in held_pos)))
    report.define(N_("edit"), _(
        "for each held-out negative word n, row_n <- (1 - s) row_n + s * mean(target rows) in {where}, s = "
        "{strength}; the same rows feed the input embedding and the output readout.").format(
        where=where, strength=strength))
    report.define(N_("reading gap"), _(
        "mean JS divergence between the next-token distributions after 'prompt + held-out positive word' and "
        "'prompt + held-out negative word' (pairs in config order)."))
    report.define(N_("gap reduction"), _(
        "1 - reading gap after the edit / before: the hijack succeeds when the edited negative words are "
        "read like the held-out positive ones."))
    report.define(N_("random-target null"), _(
        "the same rows pulled as far toward the mean of {count} random sets of frequent non-sentiment words "
        "(size of the defining list): moving a row toward any average shrinks gaps somewhat, so the "
        "sentiment target must do more.").format(count=NULL_EDITS))
    report.define(N_("restored bit for bit"), _(
        "after the edits every tensor of the state dict equals its value before (torch.equal)."))
    reduction = lambda g: 1 - g / gap_before
    report.metric(N_("gap reduction (held-out words)"), reduction(after["gap"]),
                  [reduction(g) for g in null_gaps],
                  N_("random-target null ({count} edits)").format(count=NULL_EDITS), higher_is_structure=True)
    if reduction(after["gap"]) <= 0:  # beating the null is then no hijack: say so beside the verdict
        report.say(_("The edit did not shrink the reading gap on held-out words (reduction {reduction}); it "
                     "only changed it less than random targets do ({null} on average).").format(
            reduction=f"{reduction(after['gap']):+.3f}",
            null=f"{np.mean([reduction(g) for g in null_gaps]):+.3f}"))
    if ctx.reference is not None:  # the same edit of the same rows in the reference's own table
        def pair_reductions(m):
            before_pairs = reading_gaps(ctx, held_pos, held_neg, m)
            after_pairs = with_rows_pulled(m.token_table(), held_neg, define_pos, strength,
                                           lambda: reading_gaps(ctx, held_pos, held_neg, m))
            return 1 - after_pairs / before_pairs
        ours, theirs = pair_reductions(model), pair_reductions(ctx.reference.model)
        report.define(N_("gap reduction (vs reference)"), _(
            "per held-out (positive, negative) pair, the gap reduction of the edit in this model and of the "
            "same edit in the trained reference's own table: a paired sign-flip test over pairs (with n "
            "pairs p cannot go below 1/2^n)."))
        report.metric(N_("gap reduction (vs reference)"), float(ours.mean()), float(theirs.mean()),
                      N_("reference model"), higher_is_structure=True, p_value=paired_p(ours, theirs, True),
                      n=len(ours), test="paired")
    report.metric(N_("perplexity change"), after["perplexity"] / before["perplexity"] - 1)
    report.metric(N_("restored bit for bit"), restored)
    changed = sum(a != b for a, b in zip(before["samples"], after["samples"], strict=True))
    report.metric(N_("same-seed samples that changed"), changed / len(before["samples"]))
    report.define(N_("same-seed samples that changed"), _(
        "share of the {count} samples (seeded alike before and after) whose text differs: 0 means the edit "
        "changed no sampled token, so the samples shown below say nothing about it.").format(
        count=len(before["samples"])))
    report.define(N_("next-token sentiment log odds"), _(
        "log(P(positive word) / P(negative word)) for the next token after each steering prompt, averaged: "
        "the edit also changes how the hijacked words are scored as outputs."))
    numbers = [key for key in before if key not in ("sample", "samples")]
    report.table([_("measure"), _("before"), _("held-out negatives hijacked")],
                 [[_(key), before[key], after[key]] for key in numbers],
                 title=_("Words counted over {samples} samples per steering prompt, {tokens} tokens "
                         "each").format(samples=SAMPLES_PER_PROMPT, tokens=cfg.audit_sample_tokens))
    runs = ((_("before"), before), (_("hijacked"), after))
    report.say(_("First sample, same seed ({changed} of {count} samples changed):").format(
        changed=changed, count=len(before["samples"]))
        + "\n\n```\n" + "\n".join(f"[{name}] {m['sample']}" for name, m in runs) + "\n```")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].hist([reduction(g) for g in null_gaps], bins=20, color="C7", alpha=0.7, label=_("random targets"))
    axes[0].axvline(reduction(after["gap"]), color="C3", lw=2, label=_("defining positive words"))
    axes[0].set(xlabel=_("gap reduction (held-out words)"), ylabel=_("edits"), title=_("Against the null"))
    axes[0].legend(fontsize=8)
    for ax, key in zip(axes[1:], ["perplexity", "next-token sentiment log odds"], strict=True):
        ax.bar([_("before"), _("hijacked")], [before[key], after[key]], color=["C0", "C3"])
        ax.set(title=_(key))
    report.figure(fig, "effects")
