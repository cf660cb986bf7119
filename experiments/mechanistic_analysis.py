"""Group C, mechanistic analysis: how a prediction forms, layer by layer and signal by signal.

7. Layer Evolution: the logit lens at every layer.
8. Signal Flow: the residual stream read in signal space, per layer and position.
9. Causal Ablation: remove the signals that carry the target's logit and watch its probability.
"""

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
import torch.nn.functional as F

from core.tokenizer import decode
from experiments.common import label, lens_logits, token_id
from experiments.context import Context
from experiments.report import Report

TOP_SIGNALS = 16  # signals shown in the flow heatmaps and counted in the energy share
ABLATE_K = 10  # signals ablated, one at a time and cumulatively
RANDOM_DRAWS = 20  # random signal sets averaged for the ablation control
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
    names = layer_names(ctx.model)
    report.define("logit lens", "softmax(vocab_matrix @ ln_f(h_l)) for the residual stream h_l at the last "
                  "prompt position after layer l ('embed' = before any layer); after the last layer this "
                  "is the model's own prediction.")
    report.define("crystallization layer", "the first layer from which the target stays the top prediction "
                  "through the last layer (n/a if it never becomes top).")
    report.define("control", "the random-init model on the same prompts.")
    results, control_results, rows = [], [], []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for n, (prompt, target_word) in enumerate(ctx.cfg.target_prompts):
        idx = ctx.prompt(prompt, f"target_prompts[{n}]")
        target = token_id(target_word, ctx.vocab_size, f"target_prompts[{n}]")
        result = lens(ctx.model, idx, target)
        control_lenses = [lens(c, idx, target) for c in ctx.controls]
        control = control_lenses[0]
        results.append(result)
        control_results.append(control_lenses)
        crystal = crystallization_layer(result["rank"])
        rows.append([prompt, label(target), result["prob"][-1].item(), int(result["rank"][-1]),
                     names[crystal] if crystal is not None else "n/a", control["prob"][-1].item()])
        report.table(["layer", "target prob", "target rank", "top token"],
                     [[names[i], result["prob"][i].item(), int(result["rank"][i]), label(result["top"][i])]
                      for i in range(len(names))], title=f"{prompt!r} → {label(target)}")
        line = axes[0].plot(names, result["prob"].numpy(), "o-", label=f"{prompt[:28]!r}")[0]
        axes[0].plot(names, control["prob"].numpy(), ":", color=line.get_color())
        axes[1].plot(names, result["rank"].numpy(), "o-", color=line.get_color())
        axes[1].plot(names, control["rank"].numpy(), ":", color=line.get_color())
    report.table(["prompt", "target", "final prob", "final rank", "crystallizes at",
                  "final prob (random init)"], rows, title="Summary")
    # Per model: the mean over prompts; each random-init seed is one draw of the control.
    by_seed = [[prompt_controls[i] for prompt_controls in control_results] for i in range(len(ctx.controls))]
    mean_prob = lambda rs: float(np.mean([r["prob"][-1].item() for r in rs]))
    mean_rank = lambda rs: float(np.exp(np.mean([np.log(r["rank"][-1].item()) for r in rs])))
    top_share = lambda rs: float(np.mean([int(r["rank"][-1]) == 1 for r in rs]))
    report.metric("final target probability", mean_prob(results), [mean_prob(rs) for rs in by_seed],
                  "random-init models", higher_is_structure=True)
    report.metric("final target rank (geometric mean)", mean_rank(results), [mean_rank(rs) for rs in by_seed],
                  "random-init models", higher_is_structure=False)
    report.metric("targets predicted first", top_share(results), [top_share(rs) for rs in by_seed],
                  "random-init models", higher_is_structure=True)
    axes[0].set(xlabel="layer", ylabel="target probability", title="Logit lens (dotted: random init)")
    axes[0].legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[1].invert_yaxis()
    axes[1].set(xlabel="layer", ylabel="target rank (1 = top)", title="Target rank by layer")
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
    prompt = ctx.cfg.target_prompts[0][0]
    idx = ctx.prompt(prompt, "target_prompts[0]")
    flow = signal_readout(ctx.model, idx)
    control_flows = [signal_readout(c, idx) for c in ctx.controls]
    names = layer_names(ctx.model)
    k = min(TOP_SIGNALS, flow.size(-1))
    top = flow[-1, -1].abs().topk(k).indices  # strongest signals of the final readout
    report.define("signal activation", "a_s = ln_f(h) . basis_s: the residual stream read along signal s, "
                  "the quantity the output multiplies by each token's recipe weight r_vs.")
    report.define("energy share", f"fraction of sum_s a_s^2 (last position, after the last layer) held by "
                  f"the {k} strongest signals. Higher: the readout is concentrated in a few signals.")
    report.define("persistence", f"overlap (Jaccard) of the {k} strongest signals after each layer with "
                  "those after the last layer, averaged over layers: how early the final signals appear.")
    report.metric("energy share", energy_share(flow[-1, -1], k),
                  [energy_share(f[-1, -1], k) for f in control_flows], "random-init models",
                  higher_is_structure=True)

    def persistence(f):
        strongest = lambda a: set(a.abs().topk(k).indices.tolist())
        final = strongest(f[-1, -1])
        return float(np.mean([len(final & strongest(a)) / len(final | strongest(a)) for a in f[:-1, -1]]))

    report.metric("persistence", persistence(flow), [persistence(f) for f in control_flows],
                  "random-init models")
    recipe = ctx.model.effective_recipe().cpu()
    vocab = ctx.frequent_tokens
    rows = []
    for s in top.tolist():
        sign = 1.0 if flow[-1, -1, s] >= 0 else -1.0
        promoted = vocab[(sign * recipe[vocab, s]).topk(min(5, len(vocab))).indices]
        rows.append([s, flow[-1, -1, s].item(), ", ".join(label(t) for t in promoted.tolist())])
    report.table(["signal", "activation (last position, last layer)", "tokens it promotes here"], rows,
                 title=f"Strongest signals for {prompt!r}")

    tokens = [label(t) for t in idx[0].tolist()]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    sns.heatmap(flow[:, -1, top].numpy(), ax=axes[0], cmap="vlag", center=0, yticklabels=names,
                xticklabels=top.tolist())
    axes[0].set(xlabel="signal", ylabel="layer", title=f"Last position ({tokens[-1]!r}) across layers")
    sns.heatmap(flow[-1][:, top].numpy(), ax=axes[1], cmap="vlag", center=0, yticklabels=tokens,
                xticklabels=top.tolist())
    axes[1].set(xlabel="signal", ylabel="position", title="After the last layer, across positions")
    report.figure(fig, "heatmaps")


@torch.no_grad()
def ablated_probs(recipe: torch.Tensor, signals: torch.Tensor, removed: list[int], target: int) -> float:
    """The target's probability when the readout skips the `removed` signals: logits =
    (a with a_s = 0 for removed s) @ W_recipe^T. This is the unembedding with those signals gone."""
    kept = signals.clone()
    kept[removed] = 0
    logits = kept @ recipe.t()
    return F.softmax(logits.float(), dim=-1)[target].item()


@torch.no_grad()
def causal_ablation(ctx: Context, report: Report) -> None:
    """Causal Ablation: for a prompt and target ("The capital of France is" -> " Paris"), the target's
    logit is sum_s a_s r_ts over signals; knock out the signals with the largest contributions
    a_s r_ts from the readout, one at a time and cumulatively, and compare with knocking out
    random signals. Each signal's codebook lists the tokens it promotes most."""
    model = ctx.model
    prompt, target_word = ctx.cfg.target_prompts[0]
    idx = ctx.prompt(prompt, "target_prompts[0]")
    target = token_id(target_word, ctx.vocab_size, "target_prompts[0]")
    logits, cache = model.run_with_cache(idx, ["hook_final"])
    # Small enough for the CPU: S activations and the (V, S) recipes.
    signals = model.signal_activations(cache["hook_final"][0, -1]).cpu()  # (S,)
    recipe = model.effective_recipe().cpu()
    readout = signals @ recipe.t()
    assert torch.allclose(readout, logits[0, -1].cpu(), atol=1e-3, rtol=1e-4), "readout != model output"
    contributions = signals * recipe[target]  # (S,): a_s r_ts, summing to the target's logit
    # The signals that carry the target: those adding to its logit, largest first.
    positive = int((contributions > 0).sum())
    k = min(ABLATE_K, positive)
    order = contributions.argsort(descending=True)[:k].tolist()
    if k == 0:
        report.skip(f"no signal adds to the logit of {target_word!r} after {prompt!r}; nothing to ablate")
        return
    clean = ablated_probs(recipe, signals, [], target)
    single = [ablated_probs(recipe, signals, [s], target) for s in order]
    cumulative = [ablated_probs(recipe, signals, order[: i + 1], target) for i in range(k)]
    generator = ctx.generator(report.number)
    random_curves = torch.tensor([
        [ablated_probs(recipe, signals, draw[: i + 1], target) for i in range(k)]
        for draw in (torch.randperm(signals.numel(), generator=generator)[:k].tolist()
                     for _ in range(RANDOM_DRAWS))
    ])  # (draws, k)
    random_mean = random_curves.mean(0)

    report.define("contribution", "c_s = a_s * r_ts: signal s's share of the target logit, with a_s the "
                  "final hidden state (after ln_f) read along signal s and r_ts the target's recipe weight.")
    report.define("ablation", "the readout with a_s set to 0 for the removed signals: "
                  "logits = a' @ W_recipe^T, so every token loses what those signals gave it.")
    report.define("probability drop", f"1 - p(target | top {k} signals removed) / p(target): 1 = the "
                  "prediction collapsed, 0 = no effect.")
    report.define("control", f"removing {k} random signals instead of the top-attributed ones "
                  f"(mean over {RANDOM_DRAWS} draws).")
    report.metric("clean target probability", clean)
    report.metric("probability after removing the top signal", single[0], random_curves[:, 0].tolist(),
                  "one random signal removed", higher_is_structure=False)
    report.metric("probability drop", 1 - cumulative[-1] / clean, (1 - random_curves[:, -1] / clean).tolist(),
                  f"{k} random signals removed", higher_is_structure=True)
    report.define("logit share", f"sum of the top {k} contributions / sum of all positive contributions.")
    report.metric("logit share", (contributions[order].sum() / contributions.clamp_min(0).sum()).item())

    vocab = ctx.frequent_tokens
    rows = []
    for rank, s in enumerate(order):
        sign = 1.0 if signals[s] >= 0 else -1.0
        codebook = vocab[(sign * recipe[vocab, s]).topk(min(CODEBOOK_TOKENS, len(vocab))).indices]
        rows.append([rank + 1, s, contributions[s].item(), single[rank], cumulative[rank],
                     ", ".join(label(t) for t in codebook.tolist())])
    report.table(["#", "signal", "contribution", "p(target), this one removed", "p(target), top 1..# removed",
                  "codebook: tokens it promotes here"], rows,
                 title=f"{prompt!r} → {label(target)} (clean p = {clean:.4g}, logit {readout[target]:.3f})")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    steps = np.arange(0, k + 1)
    axes[0].plot(steps, [clean] + cumulative, "o-", label="top-attributed signals")
    low, high = random_curves.quantile(0.1, dim=0), random_curves.quantile(0.9, dim=0)
    axes[0].plot(steps, [clean] + random_mean.tolist(), "s--",
                 label=f"random signals (mean of {RANDOM_DRAWS})")
    axes[0].fill_between(steps[1:], low.numpy(), high.numpy(), alpha=0.2, color="C1")
    axes[0].set(xlabel="signals removed (cumulative)", ylabel=f"p({decode([target])!r})",
                title="Cumulative ablation")
    axes[0].legend()
    axes[1].bar([str(s) for s in order], single)
    axes[1].axhline(clean, color="k", ls=":", label="clean")
    axes[1].set(xlabel="signal (by contribution)", ylabel="target probability", title="One signal removed")
    axes[1].legend()
    report.figure(fig, "curves")
