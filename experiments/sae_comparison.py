"""Group E, from related work: native signals vs sparse autoencoders (issue 23).

15. Signals vs SAEs: at equal sparsity, do reflow's native signals explain and steer the model as well as
    a sparse autoencoder trained on the same activations?

At a middle layer and the last layer (the residual stream after the block), each reading codes every
token of the validation text with exactly sae_k non-zero coefficients and reconstructs the activation:
  - native signals (reflow family only): a = h W_basis^T, the hidden state read along each signal;
    the sae_k largest |a_s| are kept, and h is rebuilt through W_basis from them: the least-squares
    h_hat in the span of the kept signals' basis rows (KeptSignals), so with every signal kept
    (and S >= C) h_hat = h;
  - SVD directions: the right singular vectors of the (uncentred) training activations, read and
    rebuilt the same way (for an orthonormal basis, h_hat = sum of the kept (h . v_i) v_i);
  - SAEs: SAELens TopK SAEs with sae_k active latents at each of sae_widths, trained here for
    sae_steps steps on activations of the training text (sparse_autoencoders/).
The first two have no bias; an SAE has an encoder and a decoder bias.
Each reading's features are also edited in the forward pass, the same way for every reading
(experiments/feature_interventions.py): its top features mean-ablated at the layer, as a percentile among
as many random directions, and one feature per sentiment word (chosen on training activations) added at
the layer on held-out validation windows, against random features of the reading.
"""

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from core.errors import UserError
from core.i18n import N_, _, translate
from experiments.common import token_ids
from experiments.context import Context
from experiments.feature_interventions import (
    ablation_drops,
    features_tied_to_words,
    gradient_product,
    random_direction_drops,
    steering_rises,
)
from experiments.mechanistic_analysis import ABLATE_K, AblationText, ablation_text
from experiments.report import Report
from experiments.statistics import percentile
from sparse_autoencoders.metrics import (
    ce_loss_recovered,
    dead_and_dense,
    fraction_of_variance_explained,
    l0,
    latent_density,
    next_token_loss,
)
from sparse_autoencoders.saving import save_sae
from sparse_autoencoders.training import train_topk_sae

BATCH_WINDOWS = 16  # windows per forward when collecting activations
DECODE_TOKENS = 2048  # tokens decoded at once: (n, k, C) float64 kept directions, 4 MB at k = 14, C = 128
MIN_FIRINGS = 5  # a feature counts for selectivity once it is non-zero on this many tokens
NO_SAE_LENS = N_('SAELens is not installed (pip install -e ".[sae]")')
NATIVE, SVD = N_("native signals"), N_("SVD directions")
MIDDLE, LAST = N_("middle layer"), N_("last layer")
SAE_LEARNING_RATE = 1e-3  # a short budget learns more at 1e-3 than at 3e-4: FVE 0.92 vs 0.88 (512 latents,
# 300 steps, the last layer of a 4 x 128 reflow)
CHOSEN = N_("the chosen reading")  # the metric name under which a one-reading run (a study arm) reports it
# The edits' cost is their readouts (positions x vocabulary). A 4 x 128 reflow with GPT-2's table, 2 busy
# cores: 158 s of a 500 s run at 50 null draws and all of experiment 9's positions, 47 s at these settings.
ABLATION_NULL_DRAWS = 20  # random-direction draws per layer and feature count: MIN_NULL_DRAWS, fewest judged
STEER_CONTROLS = 20  # random features steered as the control, as many for the same reason
EDIT_POSITION_STRIDE = 2  # every other position experiment 9 scores: 12 per window of 64


class KeptSignals:
    """A linear reading kept to its k largest coefficients per token, and decoded through its directions.

    encode(h) = the k largest |(h - m) . d_i| of the directions d_i (rows of `directions`), zero
    elsewhere, m the `offset` (the training activations' mean; zero when None);
    decode(code) = m + the least-squares reconstruction from those readings: c D_K with
    (D_K D_K^T) c = a_K, D_K the kept directions. It is the projection of h - m onto their span: an
    orthonormal basis gives sum a_i d_i, and keeping every direction of a rank-C set gives h back.
    The offset plays the part of an SAE's decoder bias, so no reading wins by its constant alone.
    Computed in float64."""

    def __init__(self, directions: torch.Tensor, k: int, offset: torch.Tensor | None = None):
        self.directions, self.k = directions.detach().double().cpu(), min(k, directions.size(0))
        width = self.directions.size(1)
        self.offset = torch.zeros(width, dtype=torch.float64) if offset is None else offset.double().cpu()

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        readings = (h.double().cpu() - self.offset) @ self.directions.t()
        kept = readings.abs().topk(self.k, dim=-1).indices
        return torch.zeros_like(readings).scatter_(-1, kept, readings.gather(-1, kept))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        flat = code.flatten(0, -2)
        out = torch.empty(flat.size(0), self.directions.size(1), dtype=torch.float64)
        for start in range(0, flat.size(0), DECODE_TOKENS):
            chunk = flat[start:start + DECODE_TOKENS]
            kept = chunk.abs().topk(self.k, dim=-1).indices  # (n, k)
            D = self.directions[kept]  # (n, k, C)
            gram = D @ D.transpose(1, 2)  # (n, k, k)
            c = torch.linalg.pinv(gram, hermitian=True) @ chunk.gather(-1, kept).unsqueeze(-1)  # (n, k, 1)
            out[start:start + DECODE_TOKENS] = (c.transpose(1, 2) @ D).squeeze(1)
        return out.reshape(*code.shape[:-1], -1) + self.offset


def native_reading(basis: torch.Tensor, k: int, offset: torch.Tensor | None = None) -> KeptSignals:
    """Signals a = (h - offset) W_basis^T, the rows of W_basis as the directions."""
    return KeptSignals(basis, k, offset)


def svd_reading(activations: torch.Tensor, k: int) -> KeptSignals:
    """The right singular vectors of the centred activations (N, C), their mean as the offset: the
    orthonormal basis (PCA) fitted to them."""
    mean = activations.double().mean(0)
    return KeptSignals(torch.linalg.svd(activations.double() - mean, full_matrices=False).Vh, k, mean)


def feature_directions(reading) -> torch.Tensor:
    """(F, C) float32 unit directions of a reading's features: the rows it reads along (signals, SVD
    directions) or an SAE's decoder rows."""
    rows = reading.directions if isinstance(reading, KeptSignals) else reading.W_dec.detach()
    return F.normalize(rows.float().cpu(), dim=-1)


def feature_values(reading, h: torch.Tensor) -> torch.Tensor:
    """(n, F) each feature's value in residual units along its unit direction: for signals and SVD
    directions the kept reading (h - m) . d_i / |d_i|; for an SAE its latent, which SAELens's TopK SAE
    already scales by the decoder row's norm (rescale_acts_by_decoder_norm), decoding through the unit row."""
    if isinstance(reading, KeptSignals):
        return reading.encode(h) / reading.directions.norm(dim=-1)
    decoder = reading.W_dec.detach()
    latents = reading.encode(h.to(decoder.device, decoder.dtype)).detach()
    return latents if reading.cfg.rescale_acts_by_decoder_norm else latents * decoder.norm(dim=-1)


def middle_and_last(n_layer: int) -> dict[str, int]:
    """{'middle layer': n_layer // 2 - 1, 'last layer': n_layer - 1} (one entry when they coincide)."""
    layers = {MIDDLE: max(n_layer // 2 - 1, 0), LAST: n_layer - 1}
    return layers if layers[MIDDLE] != layers[LAST] else {LAST: n_layer - 1}


@torch.no_grad()
def activations_at(model, windows: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    """{hook: (n * T, C) float32} for every position of windows (n, T), without the vocabulary readout."""
    chunks: dict[str, list] = {h: [] for h in hooks}
    for batch in windows.split(BATCH_WINDOWS):
        _, cache = model.run_with_cache(batch, hooks, stop_at_layer=model.config.n_layer)
        for h in hooks:
            chunks[h].append(cache[h].float().flatten(0, 1).cpu())
    return {h: torch.cat(c) for h, c in chunks.items()}


def single_token_selectivity(code: torch.Tensor, tokens: torch.Tensor) -> float | None:
    """Median over features non-zero on at least MIN_FIRINGS tokens of the share of a feature's |code|
    mass that lands on its one most-carrying current token id; None when no feature fires that often."""
    ids, compact = torch.unique(tokens, return_inverse=True)
    mass = torch.zeros(len(ids), code.size(1), dtype=torch.float64)
    mass.index_add_(0, compact, code.abs().double())
    fires = (code != 0).sum(0) >= MIN_FIRINGS
    if not fires.any():
        return None
    share = mass.max(0).values / mass.sum(0).clamp_min(1e-300)
    return share[fires].quantile(0.5).item()  # the midpoint of an even count, not its lower value


def training_windows(ctx: Context, T: int) -> tuple[torch.Tensor, str]:
    """(n, T) windows of the SAE training text: the first sae_train_tokens of train.bin beside val.bin, or,
    where there is none, the validation text after the tokens the experiment evaluates on; and that text
    described in the reader's language."""
    train = ctx.val_path.with_name("train.bin")
    if train.is_file():
        tokens = np.memmap(train, dtype=np.uint16, mode="r")[: ctx.cfg.sae_train_tokens]
        where = N_("the first {count} tokens of {path}")
    else:
        tokens = ctx.all_val_tokens[ctx.cfg.audit_tokens:][: ctx.cfg.sae_train_tokens]
        where = N_("{count} validation tokens after the evaluated ones (there is no {path})")
    n = len(tokens) // T
    if n * T < 256:  # one SAE batch; the error in English, as every error but the menu's
        raise UserError(f"experiment 15 trains its SAEs on {where.format(count=len(tokens), path=train)}: "
                        "fewer than 256 tokens; prepare "
                        f"train.bin (python data/{ctx.cfg.dataset}/prepare.py) or raise sae_train_tokens")
    ids = np.asarray(tokens[: n * T], dtype=np.int64)
    if train.is_file():  # GPT-2 ids on disk; the model's own through its tokenizer (vocab='corpus')
        ids = ctx.tokenizer.from_gpt2(ids, str(train), fix="it was prepared for another model")
    return torch.from_numpy(ids.reshape(n, T)).to(ctx.device), _(where).format(count=len(tokens), path=train)


@torch.no_grad()
def evaluate(model, reading, hook: str, x: torch.Tensor, windows: torch.Tensor, tokens: torch.Tensor,
             clean: float, ablated: float) -> dict:
    """L0, FVE, CE loss spliced and recovered, selectivity, dead and dense features of one reading."""
    code = reading.encode(x)  # (N, features)
    reconstruct = lambda h: reading.decode(reading.encode(h.float())).to(h.dtype)  # noqa: E731
    spliced = next_token_loss(model, windows, {hook: reconstruct})
    dead, dense = dead_and_dense(latent_density(code))
    return {"L0": l0(code), "FVE": fraction_of_variance_explained(x, reading.decode(code)),
            "CE with it": spliced, "CE recovered": ce_loss_recovered(clean, spliced, ablated),
            "selectivity": single_token_selectivity(code, tokens), "dead": dead, "dense": dense}


@dataclass
class SteeringWords:
    """The target words, as model ids, that follow at least MIN_FIRINGS training tokens (`ids`), those
    that do not (`rare`), and the next token of every training activation (-1 after a window's end)."""
    ids: torch.Tensor
    rare: list[int]
    next_tokens: torch.Tensor


def steering_words(ctx: Context, train_windows: torch.Tensor) -> SteeringWords:
    """The suite's sentiment words (positive_words, then negative_words), kept where they are frequent
    enough in the training text to tie a feature to them."""
    cfg = ctx.cfg
    words = list(dict.fromkeys(token_ids(cfg.positive_words, ctx.tokenizer, "positive_words")
                               + token_ids(cfg.negative_words, ctx.tokenizer, "negative_words")))
    next_tokens = torch.full_like(train_windows, -1)
    next_tokens[:, :-1] = train_windows[:, 1:]
    next_tokens = next_tokens.flatten().cpu()
    counts = {w: int((next_tokens == w).sum()) for w in words}
    return SteeringWords(torch.tensor([w for w in words if counts[w] >= MIN_FIRINGS], dtype=torch.long),
                         [w for w in words if counts[w] < MIN_FIRINGS], next_tokens)


@dataclass
class LayerEdits:
    """What ablating and steering every reading at one layer shares."""
    hook: str
    mean: torch.Tensor  # (C,) the training activations' mean, which mean ablation keeps
    product: torch.Tensor  # (C, C) gradient_product on the choosing half: estimated drops u^T M u
    scale: float  # the steering vectors' norm: steer_alpha x the mean residual norm at the layer
    nulls: dict  # feature count -> {k: random-direction drops}, shared by readings with as many features


def layer_edits(ctx: Context, text: AblationText, hook: str, trained: torch.Tensor,
                evaluated: torch.Tensor) -> LayerEdits:
    mean = trained.mean(0).to(ctx.device)
    next_tokens = text.choose[:, text.positions + 1]
    product = gradient_product(ctx.model, hook, text.choose, text.positions, next_tokens, mean)
    return LayerEdits(hook, mean, product, ctx.cfg.steer_alpha * evaluated.norm(dim=-1).mean().item(), {})


@torch.no_grad()
def intervene(ctx: Context, reading, edits: LayerEdits, text: AblationText, words: SteeringWords,
              trained: torch.Tensor, generator: torch.Generator) -> dict:
    """Causal ablation of the reading's top features against random directions, and steering with the one
    feature tied to each target word against random features of the reading (experiments/
    feature_interventions.py)."""
    model = ctx.model
    directions = feature_directions(reading).to(ctx.device)
    counts = sorted({1, min(ABLATE_K, len(directions))})
    next_token = lambda windows: windows[:, text.positions + 1]  # noqa: E731  the true next tokens
    out = {"ablation": ablation_drops(model, text, edits.hook, edits.mean, directions, edits.product, counts,
                                      next_token)}
    if len(directions) not in edits.nulls:
        edits.nulls[len(directions)] = random_direction_drops(
            model, text, edits.hook, edits.mean, edits.product, len(directions), counts, ABLATION_NULL_DRAWS,
            generator, next_token)
    out["ablation null"] = edits.nulls[len(directions)]
    out["steering"], out["steering null"] = None, None
    if len(words.ids):
        feature, sign, _count = features_tied_to_words(lambda h: feature_values(reading, h), trained,
                                                       words.next_tokens, words.ids)
        random = torch.randint(len(directions), (STEER_CONTROLS,), generator=generator)
        random_sign = torch.randint(2, (STEER_CONTROLS,), generator=generator) * 2.0 - 1
        vectors = edits.scale * torch.cat([sign[:, None].float() * directions.cpu()[feature],
                                           random_sign[:, None] * directions.cpu()[random]])
        rises = steering_rises(model, edits.hook, text.measure, text.positions, vectors.to(ctx.device),
                               words.ids.to(ctx.device))  # (W + STEER_CONTROLS, W)
        out["steering"] = rises[: len(words.ids)].diagonal().mean().item()
        out["steering null"] = rises[len(words.ids):].mean(1).tolist()
    return out


def readings_to_compute(ctx: Context) -> list[str]:
    """The readings this run computes: every one, or the one sae_reading names (a study arm)."""
    cfg = ctx.cfg
    saes = [N_("SAE {width} latents").format(width=width) for width in cfg.sae_widths]
    names = {"native": [NATIVE], "svd": [SVD], "sae": saes}
    if cfg.sae_reading != "all":
        return names[cfg.sae_reading]
    return [NATIVE, SVD] + names["sae"]


@torch.no_grad()
def signals_vs_saes(ctx: Context, report: Report) -> None:
    """Signals vs SAEs: native signals, SVD directions and TopK SAEs, each at L0 = sae_k per token, at a
    middle and the last layer: fraction of variance explained, CE loss recovered when spliced in, and
    single-token selectivity of their features, on the validation text; the causal ablation percentile
    of their top features, and the log-prob rise when one feature per word steers held-out text."""
    cfg, model = ctx.cfg, ctx.model
    T = model.config.block_size
    tokens = ctx.audit_text.astype(np.int64)
    n = len(tokens) // (T + 1)
    if n < 1:
        raise UserError(f"experiment 15 needs audit_tokens of at least block_size + 1 ({T + 1}), "
                        f"got {len(tokens)}")
    windows = torch.from_numpy(tokens[: n * (T + 1)].reshape(n, T + 1)).to(ctx.device)  # inputs + target
    current = windows[:, :-1].flatten().cpu()
    layers = middle_and_last(model.config.n_layer)
    hooks = {where: model.resid_hook(layer) for where, layer in layers.items()}
    evaluated = activations_at(model, windows[:, :-1], list(hooks.values()))
    wanted = readings_to_compute(ctx)
    # Every reading is fitted on train.bin activations: the SAEs and SVD directions themselves, and
    # for native signals the mean they are read around (an SAE's decoder bias starts there too).
    train_windows, train_text = training_windows(ctx, T)
    trained = activations_at(model, train_windows, list(hooks.values()))
    nine = ablation_text(ctx)  # experiment 9's windows: choose on one half, ablate and steer on the other
    text = AblationText(nine.choose, nine.measure, nine.positions[::EDIT_POSITION_STRIDE])
    words = steering_words(ctx, train_windows)
    generator = ctx.generator(report.number)  # random directions and features, drawn in reading order
    define(ctx, report, n * T, train_text)
    define_edits(ctx, report, text, words)

    clean = next_token_loss(model, windows)
    results: dict[tuple[str, str], dict] = {}
    not_computed: dict[str, str] = {}
    for where, hook in hooks.items():
        ablated = next_token_loss(model, windows, {hook: torch.zeros_like})
        edits = layer_edits(ctx, text, hook, trained[hook], evaluated[hook])
        for name in wanted:
            if name == NATIVE and not model.has_recipes:
                not_computed[name] = _("{model} has no W_basis: native signals do not apply").format(
                    model=ctx.model_name)
                continue
            if name == NATIVE:
                reading = native_reading(model.basis, cfg.sae_k, offset=trained[hook].mean(0))
            elif name == SVD:
                reading = svd_reading(trained[hook], cfg.sae_k)
            else:
                try:
                    width = int(name.split()[1])
                    with torch.enable_grad():  # this function reads under no_grad; training needs it
                        reading = train_topk_sae(trained[hook], width=width, k=cfg.sae_k, steps=cfg.sae_steps,
                                                 seed=cfg.seed, lr=SAE_LEARNING_RATE)
                    # Kept for the explorer (explore.py --posthoc=sae:FOLDER): reports/saes/last_layer_512/
                    save_sae(reading, ctx.reports_dir / "saes" / f"{where.replace(' ', '_')}_{width}", hook,
                             ctx.checkpoint)
                except UserError as error:
                    if "SAELens" not in str(error):
                        raise
                    not_computed[name] = _(NO_SAE_LENS)
                    continue
            results[name, where] = evaluate(model, reading, hook, evaluated[hook], windows, current, clean,
                                            ablated)
            results[name, where]["CE zero-ablated"] = ablated
            results[name, where].update(intervene(ctx, reading, edits, text, words, trained[hook], generator))
    record(ctx, report, results, layers, clean, not_computed)


def define(ctx: Context, report: Report, positions: int, train_text: str | None) -> None:
    cfg = ctx.cfg
    report.define(N_("readings"), _(
        "each codes every token with sae_k = {k} non-zero coefficients. Native signals: a = (h - m) "
        "W_basis^T, m the mean training activation, the sae_k largest |a_s| kept, h rebuilt as m + the "
        "least-squares fit in the span of the kept signals' basis rows given their readings (the projection "
        "of h - m on that span; exact when every signal is kept and W_basis has rank C). SVD directions: the "
        "right singular vectors of the centred training activations (PCA), read and rebuilt the same way "
        "around their mean. SAE N latents: a SAELens TopK SAE of N latents, k = sae_k, decoder bias started "
        "at the mean, trained {steps} steps of 256 activations at learning rate {lr} (seed {seed}). So every "
        "reading has the mean as its constant (the SAE learns its own from there) and they differ only in "
        "their directions and codes.").format(k=cfg.sae_k, steps=cfg.sae_steps, lr=SAE_LEARNING_RATE,
                                              seed=cfg.seed))
    report.define(N_("activations"), _(
        "the residual stream after the block (blocks.L.hook_resid_post) at {positions} positions of the "
        "validation text (its first audit_tokens, in windows of block_size + 1 tokens: inputs and "
        "next-token targets).").format(positions=positions)
        + (_(" SVD directions and SAEs are fitted on {text}.").format(text=train_text) if train_text else ""))
    report.define("L0", _("mean number of non-zero coefficients per token (sae_k by construction; fewer "
                          "where a coefficient is exactly 0)."))
    report.define(N_("fraction of variance explained"), _(
        "1 - E||h - h_hat||^2 / (E||h||^2 - ||E h||^2) over the evaluated tokens (SAELens' explained "
        "variance): 1 for a perfect reconstruction, 0 for the mean activation."))
    report.define(N_("CE loss recovered"), _(
        "(CE_zero - CE_spliced) / (CE_zero - CE_clean): the next-token loss with the reconstruction spliced "
        "in at the layer, against the clean loss and the loss with that activation set to zero (SAELens' "
        "ce_loss_score). 1: the splice costs nothing."))
    report.define(N_("single-token selectivity"), _(
        "per feature (signal, direction, latent) non-zero on at least {count} evaluated tokens: the share of "
        "its |coefficient| mass that falls on its single most-carrying current token id; the median over "
        "such features. 1: each feature is a one-token detector.").format(count=MIN_FIRINGS))
    report.define(N_("dead and dense"), _(
        "features non-zero on no evaluated token, and on more than 10% of them."))
    report.define(N_("SVD floor"), _(
        "the SVD directions' value at the same layer and L0: a basis fitted to the activations' variance and "
        "nothing else, shown beside each other reading, not judged."))


def define_edits(ctx: Context, report: Report, text: AblationText, words: SteeringWords) -> None:
    listed = lambda ids: ", ".join(ctx.tokenizer.label(t) for t in ids)  # noqa: E731
    scored = text.positions.numel()
    report.define(N_("causal ablation"), _(
        "each feature's unit direction u (a signal's or SVD direction's row, an SAE's decoder row) "
        "mean-ablated at the layer, h <- h - ((h - m) . u) u at every position, m the mean training "
        "activation. On {choose} validation windows (experiment 9's choosing half) every feature's drop in "
        "log p(true next token) is estimated to first order, u^T M u with M = mean over the {scored} scored "
        "positions of each window of sum_t (h_t - m) g_t^T, g_t the gradient of those log-probs at the "
        "layer; the top 1 and top {k} features are then ablated together on the {measure} other "
        "windows.").format(
        choose=text.choose.size(0), scored=scored, k=ABLATE_K, measure=text.measure.size(0)))
    report.define(N_("ablation log-prob drop"), _(
        "mean over the measured positions of log p(true next token) clean minus ablated. Higher: the chosen "
        "features carry more of the prediction."))
    report.define(N_("random-direction null"), _(
        "the same choice and ablation over F uniformly random unit directions, F the reading's number of "
        "features, drawn {draws} times, so a wider dictionary is judged against as many candidates. The "
        "causal ablation percentile is the reading's drop among these draws (100: above every "
        "draw).").format(draws=ABLATION_NULL_DRAWS))
    report.define(N_("steering words"), _(
        "positive_words and negative_words that follow at least {count} training tokens: {words}{rare}. "
        "For each, the feature whose mean value (in residual units along its direction) on training tokens "
        "followed by the word exceeds its mean on all training tokens by most in size, chosen on train "
        "activations only.").format(
        count=MIN_FIRINGS, words=listed(words.ids.tolist()) or "-",
        rare=_(" (too rare: {words})").format(words=listed(words.rare)) if words.rare else ""))
    report.define(N_("steering log-prob rise"), _(
        "the chosen feature's unit direction, with the sign of its rise, times steer_alpha = {alpha} x the "
        "mean residual norm at the layer (experiment 10's unit), added at the layer at every position of "
        "the {windows} held-out validation windows; the mean over words and the {scored} scored positions "
        "per window of log p(word) steered minus clean. Control: {controls} random features of the same "
        "reading with random signs at the same norm, each scored on every word.").format(
        alpha=ctx.cfg.steer_alpha, windows=text.measure.size(0), scored=scored, controls=STEER_CONTROLS))


def record(ctx: Context, report: Report, results: dict, layers: dict, clean: float,
           not_computed: dict) -> None:
    """Metrics for every reading and layer (and under CHOSEN for a one-reading run), a table, a figure."""
    report.metric(N_("CE loss, clean"), clean)
    svd_floor, random_directions = N_("SVD floor (same layer and L0)"), N_("random directions")
    random_features = N_("random features of the reading ({count})").format(count=STEER_CONTROLS)
    for (name, where), r in results.items():
        floor = results.get((SVD, where)) if name != SVD else None
        for reading in [name] if ctx.cfg.sae_reading == "all" else [name, CHOSEN]:
            own = reading == name  # controls stand beside the reading's own name; CHOSEN repeats its value
            vs_svd = {key: (floor[key], svd_floor) for key in ("FVE", "CE recovered") if floor and own}
            report.metric(N_("fraction of variance explained, {reading}, {layer}").format(reading=reading,
                                                                                      layer=where),
                          r["FVE"], *vs_svd.get("FVE", ()))
            report.metric(N_("CE loss recovered, {reading}, {layer}").format(reading=reading, layer=where),
                          r["CE recovered"], *vs_svd.get("CE recovered", ()))
            if r["selectivity"] is not None:
                report.metric(N_("single-token selectivity, {reading}, {layer}").format(reading=reading,
                                                                                    layer=where),
                              r["selectivity"])
            for k, drop in r["ablation"].items():
                null = r["ablation null"][k]
                what = N_("top feature") if k == 1 else N_("top {count} features").format(count=k)
                report.metric(N_("ablation log-prob drop, {what}, {reading}, {layer}").format(
                    what=what, reading=reading, layer=where), drop,
                    *((null, random_directions, True) if own else ()))
                report.metric(N_("causal ablation percentile, {what}, {reading}, {layer}").format(
                    what=what, reading=reading, layer=where), percentile(drop, null))
            if r["steering"] is not None:
                report.metric(N_("steering log-prob rise, {reading}, {layer}").format(reading=reading,
                                                                                  layer=where),
                              r["steering"], *((r["steering null"], random_features, True) if own else ()))
    for name, why in not_computed.items():
        report.say(_("**{reading}: not computed** ({why}); no metric of it is reported.").format(
            reading=translate(name), why=why))
    report.table([_("reading"), _("layer"), "L0", _("FVE"), _("CE with it"), _("CE zero-ablated"),
                  _("CE recovered"), _("selectivity"), _("dead"), _("dense"),
                  _("ablation drop (top feature)"), _("ablation percentile"), _("steering rise"),
                  _("random-feature rise")],
                 [[translate(name), _(where), r["L0"], r["FVE"], r["CE with it"], r["CE zero-ablated"],
                   r["CE recovered"], r["selectivity"], r["dead"], r["dense"], r["ablation"][1],
                   percentile(r["ablation"][1], r["ablation null"][1]), r["steering"],
                   np.mean(r["steering null"]) if r["steering null"] else None]
                  for (name, where), r in results.items()],
                 title=_("Readings at L0 = {k} (clean CE {clean})").format(k=ctx.cfg.sae_k,
                                                                           clean=f"{clean:.4f}"))
    report.say(_("Each reading keeps the same number of coefficients per token, so FVE and CE recovered "
                 "compare how much of the activation, and of the model's loss, that many features carry. "
                 "Across seeds and models, studies/sae_vs_signals.py tests the differences."))
    shown = {"FVE": lambda r: r["FVE"], "CE recovered": lambda r: r["CE recovered"],
             "ablation percentile": lambda r: percentile(r["ablation"][1], r["ablation null"][1]),
             "steering rise": lambda r: np.nan if r["steering"] is None else r["steering"]}
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 3.8))
    names = list(dict.fromkeys(name for name, _reading in results))
    for ax, (key, value_of) in zip(axes, shown.items(), strict=True):
        for i, where in enumerate(layers):
            values = [value_of(results[name, where]) if (name, where) in results else np.nan
                      for name in names]
            ax.bar(np.arange(len(names)) + 0.4 * i, values, width=0.4, label=_(where))
        ax.set_xticks(np.arange(len(names)) + 0.2, [translate(name) for name in names], rotation=20,
                      fontsize=8)
        ax.set(title=_("{measure} at L0 = {k}").format(measure=_(key), k=ctx.cfg.sae_k))
    axes[0].legend(fontsize=8)
    report.figure(fig, "readings")
