"""What each explorer view computes: plain tensors and numbers, no Gradio, so tests call them directly.

Every function takes the loaded `ExplorerState` and the raw values a user typed; a value that cannot
be used raises `UserError` with one line saying what to do, which the page shows in place of a result.
The definitions the page prints beside each number are in DEFINITIONS.
"""

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.errors import UserError
from core.i18n import N_
from experiments.common import lens_logits, residual_norms, steering_hook, token_id
from explorer.model_interface import final_hook_name, hooked, recording_hook, replacing_hook, residual_hook
from explorer.model_interface import residual_states as _residual_states
from explorer.state import ExplorerState, restore_weights, weights_unchanged
from models.transformer import sample_next

RECIPE_SIGNALS = 16  # bars in a token's recipe chart
NEIGHBOURS = 10
ANALOGY_ANSWERS = 10
CODEBOOK_TOKENS = 10  # tokens per sign in a signal's codebook
TOP_CONTEXTS = 8  # distinct top-activating contexts shown per signal
CONTEXT_CANDIDATES = 256  # top positions searched for distinct contexts
HISTOGRAM_BINS = 40
LENS_POSITIONS = 24  # the lens heatmap shows at most the last this many positions
FLOW_SIGNALS = 12  # signals in the flow heatmap
FLOW_CODEBOOK = 3  # tokens named beside each signal in the flow
DRIVER_SIGNALS = 8  # signals listed as driving a prediction
TOP_NEXT = 10  # next-token candidates shown before and after an intervention
ALPHA_LIMIT = 100.0  # |alpha| above this only saturates the residual stream
MAX_NEW_TOKENS = 500
MAX_TOP_K = 1000
MAX_WORD_CHARS = 100  # a longer 'word' is refused before tokenizing (and never echoed whole)

REMOVE_AT_READOUT = "remove signals at the readout"
REMOVE_FROM_RESIDUAL = "remove signals from the residual stream"
ADD_DIRECTION = "add a direction"
INTERVENTIONS = [REMOVE_AT_READOUT, REMOVE_FROM_RESIDUAL, ADD_DIRECTION]
CONCEPT = "concept word"
SENTIMENT = "sentiment (config's positive - negative words)"
SIGNAL_DIRECTION = "a signal's basis direction"
DIRECTIONS = [CONCEPT, SENTIMENT, SIGNAL_DIRECTION]

DEFINITIONS = {  # N_: the page shows them in its language (render.definitions)
    N_("recipe weight"): N_(
        "r_vs, entry s of token v's row of W_recipe: how much signal s goes into the token (bars: the "
        "largest |r_vs|, blue positive, red negative)."),
    N_("cosine"): N_(
        "cosine similarity between two tokens' rows in the token space (recipes, or the embedding on "
        "models without recipes); 1 = same direction."),
    N_("analogy"): N_(
        "3CosAdd: the tokens whose unit rows are closest (cosine) to unit(a) - unit(b) + unit(c), a, b "
        "and c themselves left out."),
    N_("codebook"): N_(
        "the tokens with the largest (+) and most negative (-) recipe weight r_vs in signal s's column: "
        "what the signal promotes and suppresses at the output."),
    N_("activation"): N_(
        "a_s = ln_f(h) . basis_s: the final hidden state at a position read along signal s."),
    N_("SAE activation"): N_(
        "a_s = latent s of the SAE's encode(h_L), h_L the residual stream after the SAE's layer L at a "
        "position (a TopK SAE keeps the k largest of ReLU(W_enc (h_L - b_dec) + b_enc), the rest 0); the "
        "signals here are the SAE's latents, not the model's recipes' signals."),
    N_("firing rate"): N_(
        "share of validation positions where |a_s| exceeds 0.5 x its peak |a_s| over the slice."),
    N_("selectivity"): N_(
        "peak |a_s| / mean |a_s| over the slice: how much stronger its best context is than its typical "
        "one."),
    N_("contexts"): N_(
        "the positions of the slice where a_s is largest, one per distinct text; every token shaded by "
        "a_s there (blue +, red -, full colour = the largest |a_s| shown), the peak token outlined."),
    N_("logit lens"): N_(
        "softmax(vocab_matrix @ ln_f(h_l)) for the residual stream h_l after layer l ('embed' = before "
        "any layer) at each position: the cell shows the top-1 token, its colour log10 of the target's "
        "probability (white at 1e-5 or below, blue at 1); hover for p and rank."),
    N_("signal flow"): N_(
        "a_s = ln_f(h_l) . basis_s after each layer at the chosen position, for the signals strongest "
        "after the last layer."),
    N_("drivers"): N_(
        "the signals with the largest a_s r_vs at the chosen position, v the predicted token: the "
        "predicted logit is the sum of a_s r_vs over all signals; 'ablate' opens Intervene with that "
        "signal removed at the readout."),
    N_("readout removal"): N_(
        "logits' = logits - sum over removed s of a_s r_vs: the output as if those signals were zero in "
        "the final hidden state (the weights are not touched)."),
    N_("residual removal"): N_(
        "after the chosen layer, at every position, the residual stream loses its component in the span "
        "of the removed signals' basis rows (orthogonal projection)."),
    N_("added direction"): N_(
        "h <- h + alpha x n_l x u after the chosen layer at every position (or at the chosen prompt "
        "positions only), u a unit vector (a concept word's vocab-matrix row, mean positive minus mean "
        "negative word, or a signal's basis row), n_l the mean residual-stream norm after that layer on "
        "this prompt."),
    N_("probability"): N_(
        "next-token probability after the prompt, before and after the intervention; rank 1 = the most "
        "probable token."),
    N_("KL"): N_(
        "KL(before || after) = sum_v p_before(v) log(p_before(v) / p_after(v)), in nats: how far the "
        "intervention moved the next-token distribution. Entropy: -sum_v p(v) log p(v), in nats."),
}


# --- reading what the user typed ----------------------------------------------------------------
def parse_word(state: ExplorerState, word: str | None, what: str = N_("word")) -> int:
    """The token id of a word that must be exactly one GPT-2 token in this model's vocabulary, or of
    `#ID` (a token id, for tokens that are not text on their own, like one byte of an emoji)."""
    if not word:
        raise UserError(N_("{what}: empty; type a word, e.g. ' king' (most words take a leading space)"),
                        what=what)
    if len(word) > MAX_WORD_CHARS:
        raise UserError(N_("{what}: {count:,} characters is far longer than one token; type one word"),
                        what=what, count=len(word))
    if re.fullmatch(r"#\d+", word):
        token = int(word[1:])
        if token >= state.tokenizer.n_vocab:
            raise UserError(N_("{what}: token {token} does not exist; this model's tokens are 0 to {last}"),
                            what=what, token=token, last=state.tokenizer.n_vocab - 1)
        return token
    return token_id(word, state.tokenizer, what)


def parse_prompt(state: ExplorerState, text: str | None) -> torch.Tensor:
    """A prompt as a (1, T) batch on the model's device; empty or too long is refused."""
    if not text:
        raise UserError(N_("the prompt is empty; type some text"))
    ids = state.tokenizer.encode(text, N_("the prompt"))  # a token the model lacks: one line naming it
    block = state.model.config.block_size
    if len(ids) > block:
        raise UserError(N_("the prompt is {count} tokens, longer than this model's context of {block}; "
                           "shorten it"), count=len(ids), block=block)
    return torch.tensor([ids], device=next(state.model.parameters()).device)


def as_number(value) -> float | None:
    """A box's value as a finite float, or None when it is empty, NaN, infinite or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def shown(value) -> str:
    """What the user typed, for an error line: short, whatever they typed."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def parse_int(value, what: str, low: int, high: int) -> int:
    """A whole number in [low, high] from a number box (which may hold None, NaN or a float)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError(N_("{what}: the box is empty; give a whole number from {low} to {high}"),
                        what=what, low=low, high=high)
    number = as_number(value)
    if number is None:
        raise UserError(N_("{what}: {value} is not a number; give a whole number from {low} to {high}"),
                        what=what, value=shown(value), low=low, high=high)
    if number != int(number):
        raise UserError(N_("{what}: {number:g} is not a whole number; give one from {low} to {high}"),
                        what=what, number=number, low=low, high=high)
    if not low <= number <= high:
        raise UserError(N_("{what}: {number:g} is outside {low} to {high}"),
                        what=what, number=number, low=low, high=high)
    return int(number)


# A numbered thing (signals, layers): its name in a line, and the line when it does not exist.
SIGNAL = (N_("signal"), N_("signal {number:g} does not exist; this model has signals 0 to {last}"))
LAYER = (N_("layer"), N_("layer {number:g} does not exist; this model has layers 0 to {last}"))


def parse_index(value, thing: tuple[str, str], count: int) -> int:
    """One of `count` numbered things (SIGNAL, LAYER), or a line saying which exist."""
    noun, missing = thing
    number = as_number(value)
    if number is not None and number == int(number) and not 0 <= number < count:
        raise UserError(missing, number=number, last=count - 1)
    return parse_int(value, noun, 0, count - 1)


def parse_signal(state: ExplorerState, value) -> int:
    return parse_index(value, SIGNAL, state.reading.n_signals)


def parse_signals(state: ExplorerState, text: str | None) -> list[int]:
    """Signal ids from text like '3, 17 42'."""
    n = state.factorization.n_signals
    words = (text or "").replace(",", " ").split()
    if not words:
        raise UserError(N_("no signals given; type signal ids from 0 to {last}, e.g. 3, 17, 42"), last=n - 1)
    return sorted({parse_signal(state, word) for word in words})


def parse_layer(state: ExplorerState, value) -> int:
    return parse_index(value, LAYER, state.n_layer)


def parse_alpha(value) -> float:
    alpha = as_number(value)
    if alpha is None:
        raise UserError(N_("alpha must be a finite number from -{limit:g} to {limit:g}"), limit=ALPHA_LIMIT)
    if abs(alpha) > ALPHA_LIMIT:
        raise UserError(N_("alpha {alpha:g} is too large; use -{limit:g} to {limit:g} (in units of the "
                           "residual stream's mean norm: 1 adds a vector as long as the stream itself)"),
                        alpha=alpha, limit=ALPHA_LIMIT)
    return alpha


def parse_temperature(value) -> float:
    temperature = as_number(value)
    if temperature is None or not 0 <= temperature <= 10:
        raise UserError(N_("temperature: give a number from 0 (greedy) to 10"))
    return temperature


def needs_factorization(state: ExplorerState, view: str) -> None:
    if state.factorization is None:
        raise UserError(N_("{view} is unavailable: {why}"), view=view, why=state.factorization_note)


def needs_reading(state: ExplorerState, view: str) -> None:
    """The Signal view reads signals: a factorization's, or an SAE's latents (explorer/reading.py)."""
    if state.reading is None:
        raise UserError(N_("{view} is unavailable: {why}"), view=view, why=state.factorization_note)


# --- Token ------------------------------------------------------------------------------------
@dataclass
class TokenCard:
    token: int
    recipe: list[tuple[int, float]]  # (signal, weight), largest |weight| first; empty without recipes
    neighbours: list[tuple[int, float]]  # (token, cosine)
    note: str  # anything the reader should know about this token's row


def token_card(state: ExplorerState, word: str) -> TokenCard:
    """A word's recipe (its strongest signals, with signs) and its nearest tokens by cosine."""
    token = parse_word(state, word)
    recipe = []
    if state.factorization is not None:
        row = state.factorization.recipes[token].cpu()
        top = row.abs().topk(min(RECIPE_SIGNALS, row.numel())).indices
        recipe = [(s, row[s].item()) for s in top.tolist() if row[s] != 0]  # reflow-topk rows are sparse
    note = ""
    if token not in set(state.vocabulary.tolist()):
        note = (f"{state.tokenizer.label(token)!r} is not among the {len(state.vocabulary):,} most frequent "
                "tokens of the training text: its row saw little or no training")
    return TokenCard(token, recipe, nearest(state, state.token_table[token], exclude=[token]), note)


def nearest(state: ExplorerState, vector: torch.Tensor, exclude: list[int],
            count: int = NEIGHBOURS) -> list[tuple[int, float]]:
    """The `count` searchable tokens whose rows have the largest cosine with `vector`."""
    cosines = state.unit_rows @ F.normalize(vector.float(), dim=-1)
    excluded = torch.isin(state.vocabulary, torch.tensor(exclude))
    cosines = cosines.masked_fill(excluded, -float("inf"))
    top = cosines.topk(min(count, int((~excluded).sum())))
    return [(state.vocabulary[i].item(), c) for i, c in zip(top.indices.tolist(), top.values.tolist(),
                                                             strict=True)]


def analogy(state: ExplorerState, a: str, b: str, c: str) -> list[tuple[int, float]]:
    """a - b + c (3CosAdd on unit rows): the answers ranked by cosine."""
    ids = [parse_word(state, w, what) for w, what in ((a, "a"), (b, "b"), (c, "c"))]
    unit = F.normalize(state.token_table[ids], dim=-1)
    return nearest(state, unit[0] - unit[1] + unit[2], exclude=ids, count=ANALOGY_ANSWERS)


# --- Signal -----------------------------------------------------------------------------------
@dataclass
class Context:
    value: float  # the signal's activation at the context's peak token
    tokens: list[int]  # the tokens shown
    activations: list[float]  # the signal's activation at each of them
    active: int  # index of the peak token within `tokens`


@dataclass
class SignalCard:
    signal: int
    promotes: list[tuple[int, float]]  # (token, recipe weight), largest first; empty for an SAE latent
    suppresses: list[tuple[int, float]]  # (token, recipe weight), most negative first
    firing_rate: float | None
    selectivity: float | None
    contexts: list[Context]  # top-activating, distinct texts, strongest first
    histogram: tuple[list[int], list[float]] | None  # (counts, bin edges) of its activations


def signal_card(state: ExplorerState, value) -> SignalCard:
    """A signal's codebook over the searchable vocabulary (none for an SAE latent), and its precomputed
    validation statistics."""
    needs_reading(state, N_("the Signal view"))
    signal = parse_signal(state, value)
    promotes, suppresses = [], []
    if state.reading.recipes is not None:
        column = state.reading.recipes[state.vocabulary, signal].cpu()
        k = min(CODEBOOK_TOKENS, column.numel())
        up, down = column.topk(k), (-column).topk(k)
        # Only weights of the right sign: reflow-topk's recipes are >= 0 and mostly exactly 0.
        token = lambda i: (state.vocabulary[i].item(), column[i].item())
        promotes = [token(i) for i in up.indices.tolist() if column[i] > 0]
        suppresses = [token(i) for i in down.indices.tolist() if column[i] < 0]
    stats = state.signal_stats
    if stats is None:
        return SignalCard(signal, promotes, suppresses, None, None, [], None)
    activations = stats.activations[:, signal]
    counts = torch.histc(activations, bins=HISTOGRAM_BINS, min=activations.min().item(),
                         max=activations.max().item())
    edges = torch.linspace(activations.min().item(), activations.max().item(), HISTOGRAM_BINS + 1)
    return SignalCard(signal, promotes, suppresses, stats.firing_rate[signal].item(),
                      stats.selectivity[signal].item(), top_contexts(state, signal),
                      ([int(c) for c in counts.tolist()], edges.tolist()))


def top_contexts(state: ExplorerState, signal: int) -> list[Context]:
    """The positions where the signal is largest, skipping any whose shown text repeats one already
    kept (overlapping windows and repeated lines give the same context many times)."""
    stats = state.signal_stats
    activations = stats.activations[:, signal]
    candidates = activations.topk(min(CONTEXT_CANDIDATES, len(activations)))
    kept, seen = [], set()
    for value, position in zip(candidates.values.tolist(), candidates.indices.tolist(), strict=True):
        start, end = stats.context_span(position)
        tokens = stats.tokens[start:end].tolist()
        if tuple(tokens) in seen:
            continue
        seen.add(tuple(tokens))
        kept.append(Context(value, tokens, activations[start:end].tolist(), position - start))
        if len(kept) == TOP_CONTEXTS:
            break
    return kept


@torch.no_grad()
def signal_on_text(state: ExplorerState, value, text: str | None) -> tuple[int, list[int], list[float]]:
    """(signal, tokens, its activation at each token) of a text the user typed."""
    needs_reading(state, N_("the Signal view"))
    signal = parse_signal(state, value)
    idx = parse_prompt(state, text)
    activations = state.reading.read(state.model, residual_states(state, idx))  # (T, S)
    return signal, idx[0].tolist(), activations[:, signal].tolist()


def signal_list(state: ExplorerState) -> list[tuple[int, float, float, int | None]]:
    """Every signal: (id, firing rate, selectivity, the searchable token its recipe column favours most,
    None for an SAE latent)."""
    needs_reading(state, N_("the signal list"))
    stats = state.signal_stats
    if stats is None:
        raise UserError(N_("no signal list: {why}"), why=state.signal_stats_note)
    recipes = state.reading.recipes
    tops = recipes[state.vocabulary].argmax(dim=0).cpu().tolist() if recipes is not None else None  # (S,)
    return [(s, stats.firing_rate[s].item(), stats.selectivity[s].item(),
             state.vocabulary[tops[s]].item() if tops is not None else None)
            for s in range(state.reading.n_signals)]


# --- Lens -------------------------------------------------------------------------------------
@dataclass
class Lens:
    layers: list[str]  # 'embed', 'L0', ...
    positions: list[int]  # the prompt positions shown (the last LENS_POSITIONS)
    tokens: list[int]  # the prompt token at each shown position
    top_tokens: torch.Tensor  # (L+1, P) top-1 token per layer and position
    top_probs: torch.Tensor  # (L+1, P)
    target: int
    target_probs: torch.Tensor  # (L+1, P)
    target_ranks: torch.Tensor  # (L+1, P) 1 = the target is the top-1 token
    target_note: str


@dataclass
class Flow:
    position: int
    token: int
    signals: list[int]
    activations: torch.Tensor  # (L+1, k)
    codebooks: list[list[int]]  # per signal, the tokens it promotes in the direction of its activation


@dataclass
class Drivers:
    position: int
    token: int  # the model's prediction after that position (its top-1 next token)
    prompt: str  # the text up to and including that position
    rows: list[tuple[int, float, float, float]]  # (signal, a_s, r_vs, a_s r_vs), largest contribution first
    logit: float  # sum over every signal of a_s r_vs: the prediction's logit through the factorization


@torch.no_grad()
def drivers(state: ExplorerState, idx: torch.Tensor, states: torch.Tensor, position_value) -> Drivers:
    """Which signals drive the prediction at a position: the readout's logit for the predicted token v
    is sum_s a_s r_vs (exactly on reflow, whose readout is W_recipe @ W_basis; through the post-hoc
    factorization otherwise), so each signal's share is its a_s r_vs."""
    needs_factorization(state, N_("the signals driving a prediction"))
    T = idx.size(1)
    position = parse_int(position_value, N_("position"), -T, T - 1) % T
    fac = state.factorization
    h = state.model.ln_f(states[-1, position])  # (C,) after the last layer
    token = lens_logits(state.model, states[-1, position]).argmax().item()
    activations = fac.signal_activations(h).float()  # (S,)
    weights = fac.recipes[token].float()  # (S,)
    contributions = activations * weights
    top = contributions.topk(min(DRIVER_SIGNALS, contributions.numel())).indices.tolist()
    rows = [(s, activations[s].item(), weights[s].item(), contributions[s].item()) for s in top]
    text = state.tokenizer.decode(idx[0, :position + 1].tolist())
    return Drivers(position, token, text, rows, contributions.sum().item())


def residual_states(state: ExplorerState, idx: torch.Tensor) -> torch.Tensor:
    """(L+1, T, C) residual stream of a (1, T) prompt; the lock keeps other requests' hooks out."""
    with state.lock:
        return _residual_states(state.model, idx)[:, 0]


@torch.no_grad()
def logit_lens(state: ExplorerState, idx: torch.Tensor, states: torch.Tensor,
               target_word: str | None) -> Lens:
    """The logit lens over the last LENS_POSITIONS positions of a prompt, whose residual states are
    `states` (L+1, T, C); the target defaults to the model's own top prediction at the last position."""
    typed = parse_word(state, target_word, N_("target")) if target_word else None
    T = idx.size(1)
    positions = list(range(max(0, T - LENS_POSITIONS), T))
    # From the logits, without a (L+1, P, V) softmax: top-1 by argmax, probabilities via logsumexp,
    # the target's rank by counting larger logits (about half the time of the softmax route).
    logits = lens_logits(state.model, states[:, positions]).float()  # (L+1, P, V)
    log_total = logits.logsumexp(dim=-1)
    top_logits, top_tokens = logits.max(dim=-1)
    if typed is not None:
        target, note = typed, f"target {state.tokenizer.piece(typed)!r} (typed)"
    else:
        target = top_tokens[-1, -1].item()
        note = f"no target typed: the model's own next-token prediction {state.tokenizer.piece(target)!r}"
    names = ["embed"] + [f"L{i}" for i in range(state.n_layer)]
    target_logits = logits[..., target]
    ranks = 1 + (logits > target_logits[..., None]).sum(dim=-1)
    top_probs, target_probs = (top_logits - log_total).exp(), (target_logits - log_total).exp()
    return Lens(names, positions, idx[0, positions].tolist(), top_tokens.cpu(), top_probs.cpu(), target,
                target_probs.cpu(), ranks.cpu(), note)


@torch.no_grad()
def signal_flow(state: ExplorerState, idx: torch.Tensor, states: torch.Tensor, position_value) -> Flow:
    """The signals strongest after the last layer at a position, read after every layer."""
    needs_factorization(state, N_("the signal flow"))
    T = idx.size(1)
    position = parse_int(position_value, N_("position"), -T, T - 1) % T
    fac = state.factorization
    activations = fac.signal_activations(state.model.ln_f(states[:, position])).cpu()  # (L+1, S)
    k = min(FLOW_SIGNALS, activations.size(-1))
    signals = activations[-1].abs().topk(k).indices.tolist()
    codebooks = []
    for s in signals:
        sign = 1.0 if activations[-1, s] >= 0 else -1.0
        column = sign * fac.recipes[state.vocabulary, s].cpu()
        codebooks.append(state.vocabulary[column.topk(min(FLOW_CODEBOOK, column.numel())).indices].tolist())
    return Flow(position, idx[0, position].item(), signals, activations[:, signals], codebooks)


# --- Intervene ----------------------------------------------------------------------------------
@dataclass
class Intervention:
    hooks: dict  # hook name -> hook function, in place while the model runs
    readout_edit: Callable | None  # (final hidden state (B, C), logits (B, V)) -> edited logits
    description: str


@torch.no_grad()
def build_intervention(state: ExplorerState, idx: torch.Tensor, kind: str, signals_text: str | None = None,
                       layer_value=None, direction: str = CONCEPT, concept_word: str | None = None,
                       alpha_value=None, steer_signal=None,
                       positions_text: str | None = None) -> Intervention:
    """The hooks (and readout edit) that carry out one intervention on this prompt. None of them
    writes to a weight: they edit activations as they pass."""
    model = state.model
    if kind == REMOVE_AT_READOUT:
        needs_factorization(state, N_("removing signals"))
        fac, signals = state.factorization, parse_signals(state, signals_text)
        recipes = fac.recipes[:, signals]  # (V, k)
        basis = fac.basis[signals]  # (k, C)

        def remove_at_readout(h, logits):
            return logits - (h @ basis.t()) @ recipes.t()

        return Intervention({}, remove_at_readout, f"signals {signals} removed at the readout")
    if kind == REMOVE_FROM_RESIDUAL:
        needs_factorization(state, N_("removing signals"))
        signals, layer = parse_signals(state, signals_text), parse_layer(state, layer_value)
        rows = state.factorization.basis[signals]  # (k, C)
        projector = rows.t() @ torch.linalg.pinv(rows @ rows.t()) @ rows  # (C, C) onto their span
        return Intervention({residual_hook(model, layer): replacing_hook(lambda h: h - h @ projector)}, None,
                            f"signals {signals} removed from the residual stream after layer {layer}")
    if kind == ADD_DIRECTION:
        layer, alpha = parse_layer(state, layer_value), parse_alpha(alpha_value)
        if direction == SENTIMENT:
            positive = [parse_word(state, w, "positive_words") for w in state.cfg.positive_words]
            negative = [parse_word(state, w, "negative_words") for w in state.cfg.negative_words]
            E = state.vocab_matrix.float()  # experiment 10's direction, from the precomputed matrix
            unit, name = F.normalize(E[positive].mean(0) - E[negative].mean(0), dim=0), "sentiment"
        elif direction == SIGNAL_DIRECTION:
            needs_factorization(state, N_("steering along a signal"))
            signal = parse_signal(state, steer_signal)
            unit, name = F.normalize(state.factorization.basis[signal].float(), dim=0), f"signal {signal}"
        else:
            token = parse_word(state, concept_word, N_("concept word"))
            unit = F.normalize(state.vocab_matrix[token].float(), dim=0)
            name = f"concept {state.tokenizer.piece(token)!r}"
        with state.lock:
            norm = residual_norms(model, idx)[layer]
        vector = alpha * norm * unit
        positions = parse_positions(positions_text, idx.size(1))
        if positions is None:
            hook, where = steering_hook(vector), "at every position"
        else:
            hook, where = positions_hook(vector, positions, idx.size(1)), f"at prompt positions {positions}"
        return Intervention({residual_hook(model, layer): hook}, None,
                            f"{name} direction added after layer {layer} {where} with alpha {alpha:g} "
                            f"(|vector| = {vector.norm():.3g})")
    raise UserError(N_("unknown intervention {kind}; choose one of: {choices}"), kind=repr(kind),
                    choices=", ".join(INTERVENTIONS))


def parse_positions(text: str | None, length: int) -> list[int] | None:
    """Prompt positions from text like '0 3 -1' (negative counts from the end), or None for every one."""
    words = (text or "").replace(",", " ").split()
    if not words:
        return None
    return sorted({parse_int(word, N_("position"), -length, length - 1) % length for word in words})


def positions_hook(vector: torch.Tensor, positions: list[int], length: int):
    """A hook adding `vector` at the given positions of the prompt's forward (length tokens, whole or
    as the prefill of a generation); later tokens, which a cached generation feeds one at a time, are
    left alone."""
    def add(h, *_, **__):
        if h.size(1) != length:
            return h
        mask = torch.zeros(length, 1, dtype=h.dtype, device=h.device)
        mask[positions] = 1
        return h + mask * vector.to(h.dtype)
    return add


@torch.no_grad()
def next_token_logits(state: ExplorerState, idx: torch.Tensor,
                      intervention: Intervention | None) -> torch.Tensor:
    """(V,) logits for the token after a (1, T) prompt, with the intervention in place."""
    hooks, final = dict(intervention.hooks) if intervention else {}, {}
    if intervention and intervention.readout_edit:
        hooks[final_hook_name()] = recording_hook(final, "h")
    with state.lock, hooked(state.model, hooks):
        logits = state.model(idx, last_only=True)[0][:, -1]
    if intervention and intervention.readout_edit:
        logits = intervention.readout_edit(final["h"][:, -1], logits)
    return logits[0].float()


@dataclass
class NextTokens:
    before: torch.Tensor  # (V,) probabilities without the intervention
    after: torch.Tensor  # (V,) with it
    description: str

    def top(self, which: str, k: int = TOP_NEXT) -> list[tuple[int, float, float]]:
        """(token, p before, p after) for the top k of `which` ('before' or 'after')."""
        probs = self.before if which == "before" else self.after
        return [(t, self.before[t].item(), self.after[t].item()) for t in probs.topk(k).indices.tolist()]

    def rank(self, token: int, which: str) -> int:
        """1 + how many tokens are more probable than `token` ('before' or 'after')."""
        probs = self.before if which == "before" else self.after
        return 1 + int((probs > probs[token]).sum())

    def kl(self) -> float:
        """KL(before || after) in nats: sum_v p_before(v) log(p_before(v) / p_after(v))."""
        return F.kl_div(self.after.double().log(), self.before.double(), reduction="sum").item()

    def entropy(self, which: str) -> float:
        """-sum_v p(v) log p(v) in nats."""
        probs = (self.before if which == "before" else self.after).double()
        return -(probs * probs.clamp_min(1e-300).log()).sum().item()


def next_tokens(state: ExplorerState, idx: torch.Tensor, intervention: Intervention) -> NextTokens:
    before = F.softmax(next_token_logits(state, idx, None), dim=-1)
    after = F.softmax(next_token_logits(state, idx, intervention), dim=-1)
    check_weights(state)
    return NextTokens(before.cpu(), after.cpu(), intervention.description)


class WeightsChanged(RuntimeError):
    """The loaded weights differ from what was loaded: a bug, never the user's doing."""


def check_weights(state: ExplorerState) -> None:
    """After every intervention: if any weight differs from the copy taken at loading (interventions
    must only edit activations), put the loaded weights back and say so."""
    with state.lock:
        if weights_unchanged(state):
            return
        restore_weights(state)
    raise WeightsChanged("the weights changed during this call (a bug in the explorer); they have been "
                         "restored to the loaded checkpoint, and this result is void")


# --- Generate -----------------------------------------------------------------------------------
@torch.no_grad()
def stream_tokens(state: ExplorerState, idx: torch.Tensor, max_new_tokens: int, temperature: float,
                  top_k: int | None, seed: int, intervention: Intervention | None = None) -> Iterator[int]:
    """New token ids one at a time, with a key/value cache, exactly as model.generate draws them
    (same seed, same tokens); with an intervention, its hooks and readout edit act at every step.
    The lock is taken per step, so a long generation does not hold up the other tabs."""
    model = state.model
    block = model.config.block_size
    generator = torch.Generator(device=idx.device).manual_seed(seed)
    hooks, final = dict(intervention.hooks) if intervention else {}, {}
    edit = intervention.readout_edit if intervention else None
    if edit:
        hooks[final_hook_name()] = recording_hook(final, "h")
    caches = None
    shared = model.shared_vocab_weights()  # once per call, as in model.generate: reflow-topk's costs a step
    for _ in range(max_new_tokens):
        with state.lock, hooked(model, hooks):
            if idx.size(1) > block:  # the window slides: cached keys no longer hold, recompute
                logits, _ = model(idx[:, -block:], last_only=True, shared_vocab_weights=shared)
            elif caches is None:  # prefill: the whole prompt at once
                caches = model.new_caches(1)
                logits, _ = model(idx, caches=caches, last_only=True, shared_vocab_weights=shared)
            else:  # decode: only the newest token
                start = caches[0].length
                logits, _ = model(idx[:, start:], start_pos=start, caches=caches, last_only=True,
                                  shared_vocab_weights=shared)
        logits = logits[:, -1]
        if edit:
            logits = edit(final["h"][:, -1], logits)
        token = sample_next(logits, temperature, top_k, generator, valid_vocab_size=state.tokenizer.n_vocab)
        idx = torch.cat((idx, token), dim=1)
        yield token.item()


def generation_settings(state: ExplorerState, temperature, top_k, max_tokens, seed) -> tuple:
    """(temperature, top_k or None, max new tokens, seed) from the Generate tab's boxes."""
    top_k = parse_int(top_k, N_("top-k"), 0, MAX_TOP_K)
    return (parse_temperature(temperature), top_k or None,
            parse_int(max_tokens, N_("max tokens"), 1, MAX_NEW_TOKENS),
            parse_int(seed, N_("seed"), 0, 2**31 - 1))


def generate_text(state: ExplorerState, prompt: str, temperature, top_k, max_tokens, seed) -> Iterator[str]:
    """The prompt's continuation, growing one token at a time (the Generate tab streams it)."""
    idx = parse_prompt(state, prompt)
    temperature, top_k, max_tokens, seed = generation_settings(state, temperature, top_k, max_tokens, seed)
    new: list[int] = []
    for token in stream_tokens(state, idx, max_tokens, temperature, top_k, seed):
        new.append(token)
        yield state.tokenizer.decode(new)


def paired_samples(state: ExplorerState, idx: torch.Tensor, intervention: Intervention, tokens: int,
                   seed: int, temperature: float = 1.0, top_k: int | None = 40) -> tuple[str, str]:
    """(unsteered, steered) continuations drawn with the same seed, so only the intervention differs."""
    decode = state.tokenizer.decode
    plain = decode(list(stream_tokens(state, idx, tokens, temperature, top_k, seed)))
    steered = decode(list(stream_tokens(state, idx, tokens, temperature, top_k, seed, intervention)))
    check_weights(state)
    return plain, steered
