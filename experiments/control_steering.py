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
from tqdm import tqdm

from core.tokenizer import decode
from experiments.common import (
    js_divergence,
    label,
    next_token_probs,
    random_directions,
    residual_norms,
    sentiment_log_odds,
    steered_next_token_probs,
    steering_hook,
    token_id,
    token_ids,
)
from experiments.context import Context
from experiments.report import Report

RANDOM_DRAWS = 8  # random directions averaged for the steering control
SEARCH_GRID = 33  # strengths per search grid; two grids give precision alpha_max / 32^2
SAMPLE_TOP_K = 40
HIJACK_WINDOWS = 8  # validation windows for the perplexity before and after the hijack
SAMPLES_PER_PROMPT = 4
CONTROL_EDITS = 3  # random-token edits for the hijack's control


def sentiment_ids(ctx: Context) -> tuple[list[int], list[int]]:
    return (token_ids(ctx.cfg.positive_words, ctx.vocab_size, "positive_words"),
            token_ids(ctx.cfg.negative_words, ctx.vocab_size, "negative_words"))


def sentiment_direction(model, positive: list[int], negative: list[int]) -> torch.Tensor:
    """Unit vector (C) from the mean negative word to the mean positive word, in the vocab matrix.
    On the reflow family this is (mean positive recipe - mean negative recipe) @ W_basis: a
    direction in signal space carried into the residual stream by the basis."""
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
def samples(model, idx: torch.Tensor, tokens: int, seed: int, hooks: dict | None = None) -> list[str]:
    """Continuations of each row of idx (temperature 1, top-k), with a fixed seed so runs compare."""
    generator = torch.Generator(device=idx.device).manual_seed(seed)
    with model.hooks(hooks or {}):
        out = model.generate(idx, tokens, temperature=1.0, top_k=SAMPLE_TOP_K, generator=generator)
    return [decode(row[idx.size(1):].tolist()) for row in out]


@torch.no_grad()
def emotion_surgery(ctx: Context, report: Report) -> None:
    """Emotion Surgery: a sentiment direction (mean positive minus mean negative word, in signal
    space mapped through W_basis; in embedding space on gpt2) added to the residual stream after a
    chosen layer. Measures the shift in positive vs negative next-token mass per layer, against
    random directions of the same strength, and shows steered samples."""
    model, cfg = ctx.model, ctx.cfg
    positive, negative = sentiment_ids(ctx)
    prompts = [ctx.prompt(p, f"steer_prompts[{i}]") for i, p in enumerate(cfg.steer_prompts)]
    norms = [residual_norms(model, idx) for idx in prompts]
    direction = sentiment_direction(model, positive, negative)
    alpha = cfg.steer_alpha
    randoms = random_directions(RANDOM_DRAWS, direction.numel(), ctx.generator(report.number)).to(ctx.device)
    # Per layer, one batch: unsteered, +d, -d, then the random directions at +alpha and at -alpha.
    directions = torch.cat([torch.zeros_like(direction)[None],
                            alpha * torch.cat([direction[None], -direction[None], randoms, -randoms])])
    layers = range(model.config.n_layer)
    log_odds = torch.stack([steered_log_odds(model, prompts, norms, L, directions, positive, negative)
                            for L in tqdm(layers, desc="emotion surgery: layers", leave=False, disable=None)])
    base = log_odds[0, 0].item()
    sweep = log_odds[:, 1:] - log_odds[:, :1]  # (L, 2 + 2 * RANDOM_DRAWS) shifts from unsteered
    shifts, reverse = sweep[:, 0].tolist(), sweep[:, 1].tolist()
    best = int(np.argmax(shifts))
    # The control gets the same choice of layer: each random direction's best shift over layers.
    random_best = sweep[:, 2 : 2 + RANDOM_DRAWS].max(0).values.tolist()
    random_reverse = sweep[best, 2 + RANDOM_DRAWS :].tolist()

    report.define("sentiment log odds", "log(P(next token in positive_words) / "
                  "P(next token in negative_words)) after a steering prompt, averaged over "
                  "cfg.steer_prompts.")
    report.define("steering", f"h <- h + alpha * n_L * d after layer L, d the unit sentiment direction, n_L "
                  f"the mean residual norm there on the prompt; alpha = {alpha}.")
    report.define("shift", "sentiment log odds with steering minus without (positive: more positive words).")
    report.define("control", f"random unit directions at the same strength (mean of {RANDOM_DRAWS}); "
                  "for +alpha each at its own best layer, as the sentiment direction is, for -alpha at "
                  "the sentiment direction's best layer.")
    report.metric(f"shift at +alpha (best layer, L{best})", shifts[best], random_best,
                  "random directions", higher_is_structure=True)
    report.metric(f"shift at -alpha (L{best})", reverse[best], random_reverse,
                  "random directions", higher_is_structure=False)
    report.metric("unsteered sentiment log odds", base)
    report.table(["layer", "shift (+alpha)", "shift (-alpha)"],
                 [[f"L{L}", shifts[L], reverse[L]] for L in layers], title="Sweep over layers")
    if model.has_recipes:
        recipe = model.effective_recipe()
        signal_direction = recipe[positive].mean(0) - recipe[negative].mean(0)
        top = signal_direction.abs().topk(min(8, signal_direction.numel())).indices.tolist()
        report.say("Signals weighing most in the sentiment direction (mean positive - mean negative recipe): "
                   + ", ".join(f"{s} ({signal_direction[s]:+.3f})" for s in top) + ".")

    lines = []
    for i, idx in enumerate(prompts[:2]):
        # One batch of three rows: unsteered, +alpha, -alpha, each with its own steering vector.
        vectors = alpha * norms[i][best] * torch.stack([0 * direction, direction, -direction])[:, None, :]
        texts = samples(model, idx.expand(3, -1), cfg.audit_sample_tokens, cfg.seed,
                        {model.resid_hook(best): steering_hook(vectors)})
        for name, text in zip(("unsteered", "+alpha", "-alpha"), texts, strict=True):
            lines.append(f"[{name}] {cfg.steer_prompts[i]}{text}")
    report.say(f"Samples steered at layer L{best}:\n\n```\n" + "\n".join(lines) + "\n```")

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(layers))
    ax.bar(x - 0.2, shifts, width=0.4, label="+alpha")
    ax.bar(x + 0.2, reverse, width=0.4, label="-alpha")
    ax.axhspan(min(random_best), max(random_best), color="gray", alpha=0.3,
               label="random directions (+alpha, best layer)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [f"L{L}" for L in layers])
    ax.set(xlabel="layer steered", ylabel="shift in sentiment log odds", title="Emotion surgery")
    ax.legend()
    report.figure(fig, "sweep")


@torch.no_grad()
def critical_alpha(model, idx: torch.Tensor, norm: float, layer: int, direction: torch.Tensor, target: int,
                   alpha_max: float) -> float | None:
    """Smallest alpha at which adding alpha * norm * direction after `layer` makes `target` the top
    next token, None if alpha_max is not enough. Searched on a grid of SEARCH_GRID strengths, then on
    a finer grid inside the first winning step: two batched forwards instead of a dozen sequential
    bisection steps, and it finds the first crossing without assuming there is only one."""
    low, high = 0.0, alpha_max
    for _ in range(2):
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


@torch.no_grad()
def concept_inception(ctx: Context, report: Report) -> None:
    """Concept Inception: inject a concept's direction (its vocab-matrix row, i.e. recipe @ W_basis)
    into the residual stream after each layer, and search for the critical strength alpha at
    which the concept becomes the top next-token prediction; a random direction is the control."""
    model, cfg = ctx.model, ctx.cfg
    idx = ctx.prompt(cfg.concept_prompt, "concept_prompt")
    E = model.vocab_matrix().detach().float()
    randoms = random_directions(len(cfg.concept_words), E.size(1), ctx.generator(report.number))
    randoms = randoms.to(ctx.device)
    layers = range(model.config.n_layer)
    own_row = lambda m, token: F.normalize(m.vocab_matrix().detach()[token].float(), dim=0)
    table, best, best_random, best_init = [], [], [], []
    for n, word in enumerate(tqdm(cfg.concept_words, desc="concept inception", leave=False, disable=None)):
        concept = token_id(word, ctx.vocab_size, "concept_words")
        found = critical_alphas(model, idx, own_row(model, concept), concept, cfg.concept_alpha_max)
        best.append(smallest(found))
        best_random.append(smallest(critical_alphas(model, idx, randoms[n], concept, cfg.concept_alpha_max)))
        best_init.append([smallest(critical_alphas(control, idx, own_row(control, concept), concept,
                                                   cfg.concept_alpha_max)) for control in ctx.controls])
        table.append([label(concept)] + found + [best_random[-1]])

    report.define("critical alpha", "smallest alpha at which h <- h + alpha * n_L * e_c/|e_c| after layer L "
                  "makes concept c the top next token after the prompt (n_L: mean residual norm there, e_c: "
                  f"c's vocab-matrix row); searched in [0, {cfg.concept_alpha_max}] on a grid refined "
                  f"once (precision {cfg.concept_alpha_max / (SEARCH_GRID - 1) ** 2:.3g}), n/a if not "
                  "reached. Lower: the concept is easier to incept.")
    report.define("control", "a random unit direction, also at its best layer: it should need more "
                  "strength, or never make the concept the top prediction.")
    incepted = lambda alphas: sum(a is not None for a in alphas) / len(alphas)
    report.metric("concepts incepted", incepted(best), incepted(best_random), "random direction",
                  higher_is_structure=True)
    report.metric("critical alpha (best layer, mean)", mean_reached(best), mean_reached(best_random),
                  "random direction", higher_is_structure=False)
    # With tied embeddings a token's own row raises its logit in any model, trained or not: how much
    # strength a random-init model needs shows what training added (described, no verdict).
    report.metric("critical alpha (vs random init)", mean_reached(best),
                  [mean_reached([seeds[i] for seeds in best_init]) for i in range(len(ctx.controls))],
                  "random-init models, concept's own row")
    report.table(["concept"] + [f"L{L}" for L in layers] + ["random direction (best layer)"], table,
                 title=f"Critical alpha after {cfg.concept_prompt!r}")

    fig, ax = plt.subplots(figsize=(7, 4))
    for row in table:
        values = [np.nan if a is None else a for a in row[1:-1]]
        ax.plot([f"L{L}" for L in layers], values, "o-", label=row[0])
    ax.set(xlabel="layer injected", ylabel="critical alpha", title="Concept inception (missing: not reached)",
           ylim=(0, cfg.concept_alpha_max))
    ax.legend(fontsize=8)
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
    measures = {"perplexity": math.exp(loss), "reading gap": float(np.mean(gaps)),
                "next-token sentiment log odds": float(np.mean(log_odds)),
                "positive words generated": None, "negative words generated": None, "sample": None}
    if not generate:  # sampling is most of this function's time
        return measures
    counts = {"positive words generated": 0, "negative words generated": 0}
    first_sample = ""
    for i, prompt in enumerate(cfg.steer_prompts):
        idx = ctx.prompt(prompt, f"steer_prompts[{i}]").expand(SAMPLES_PER_PROMPT, -1)
        generator = torch.Generator(device=idx.device).manual_seed(cfg.seed + i)
        out = model.generate(idx, cfg.audit_sample_tokens, temperature=1.0, top_k=SAMPLE_TOP_K,
                             generator=generator)[:, idx.size(1):]
        for kind, ids in (("positive", positive), ("negative", negative)):
            found = torch.isin(out, torch.tensor(ids, device=out.device))
            counts[f"{kind} words generated"] += int(found.sum())
        first_sample = first_sample or prompt + decode(out[0].tolist())
    return {**measures, **counts, "sample": first_sample}


@torch.no_grad()
def genetic_hijack(ctx: Context, report: Report) -> None:
    """Genetic Hijack: edit W_recipe globally, pulling each negative word's recipe toward the mean
    positive recipe (the embedding row on gpt2), measure how much closer the model then reads
    negative and positive words, the sentiment words it generates, and the held-out perplexity;
    then restore the model and check every weight is back bit for bit."""
    model, cfg = ctx.model, ctx.cfg
    positive, negative = sentiment_ids(ctx)
    windows = ctx.text_windows(max_windows=HIJACK_WINDOWS)
    table = model.token_table()
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    strength = cfg.hijack_strength

    def edited(rows: list[int], generate: bool) -> dict:
        """Measures with `rows` pulled toward the mean positive row; the table restored after."""
        original = table.data[rows].clone()
        try:
            table.data[rows] = (1 - strength) * original + strength * table.data[positive].mean(0)
            return hijack_measures(ctx, positive, negative, windows, generate)
        finally:
            table.data[rows] = original

    candidates = [t for t in ctx.frequent_tokens.tolist() if t not in set(positive) | set(negative)]
    generator = ctx.generator(report.number)
    pick = lambda: torch.randperm(len(candidates), generator=generator)[: len(negative)].tolist()
    control_rows = [[candidates[i] for i in pick()] for _ in range(CONTROL_EDITS)]
    with tqdm(total=2 + CONTROL_EDITS, desc="genetic hijack", leave=False, disable=None) as bar:
        before = hijack_measures(ctx, positive, negative, windows)
        bar.update()
        after = edited(negative, generate=True)
        bar.update()
        controls = []
        for rows in control_rows:  # no sampling: these rows hold no sentiment word to count
            controls.append(edited(rows, generate=False))
            bar.update()
    control = controls[0]
    restored = all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())
    if not restored:  # a bug, not a user error: put the weights back from the snapshot, loudly
        model.load_state_dict(snapshot)
        raise AssertionError("Genetic Hijack did not restore the weights exactly")

    where = "W_recipe" if model.has_recipes else "the embedding (gpt2 has no recipes)"
    report.define("edit", "for each negative word n, row_n <- (1 - s) row_n + s * mean(positive rows) "
                  f"in {where}, s = {strength}; the same rows feed the input embedding and the output "
                  "readout.")
    report.define("reading gap", "mean JS divergence between the next-token distributions after "
                  "'prompt + positive word' and 'prompt + negative word' (pairs in config order). The hijack "
                  "succeeds when the model reads negative words like positive ones: the gap shrinks.")
    report.define("gap reduction", "1 - reading gap after the edit / before.")
    report.define("control", f"the same edit applied to {len(negative)} random frequent tokens that are "
                  f"not sentiment words ({CONTROL_EDITS} draws; the table shows the first).")
    report.define("restored bit for bit", "after the edits every tensor of the state dict equals its "
                  "value before (torch.equal).")
    reduction = lambda m: 1 - m["reading gap"] / before["reading gap"]
    report.metric("gap reduction", reduction(after), [reduction(c) for c in controls], "random tokens edited",
                  higher_is_structure=True)
    perplexity_change = lambda m: m["perplexity"] / before["perplexity"] - 1
    report.metric("perplexity change", perplexity_change(after), [perplexity_change(c) for c in controls],
                  "random tokens edited")
    report.metric("restored bit for bit", restored)
    report.define("next-token sentiment log odds", "log(P(positive word) / P(negative word)) for the next "
                  "token after each steering prompt, averaged: the edit also changes how the hijacked words "
                  "are scored as outputs.")
    numbers = [key for key in before if key != "sample"]
    report.table(["measure", "before", "negative words hijacked", "control edit"],
                 [[key, before[key], after[key], control[key]] for key in numbers],
                 title=f"Words counted over {SAMPLES_PER_PROMPT} samples per steering prompt, "
                       f"{cfg.audit_sample_tokens} tokens each")
    runs = (("before", before), ("hijacked", after))
    report.say("First sample, same seed:\n\n```\n" + "\n".join(f"[{name}] {m['sample']}" for name, m in runs)
               + "\n```")
    report.say("Hijacked words: " + ", ".join(label(t) for t in negative) + "; first control draw: "
               + ", ".join(label(t) for t in control_rows[0]) + ".")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    names = ["before", "hijacked", "control"]
    for ax, key in zip(axes, ["reading gap", "perplexity", "next-token sentiment log odds"], strict=True):
        ax.bar(names, [before[key], after[key], control[key]], color=["C0", "C3", "C7"])
        ax.set(title=key)
    report.figure(fig, "effects")
