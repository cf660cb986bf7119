"""The explorer's computations on a tiny checkpoint, each checked against an independent computation,
and every bad input of issue 14 turned into one line (no browser here; see test_explorer_browser.py)."""

import html
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import summation_tolerance
from explorer_workspace import make_corpus_state, make_state
from train_fixtures import one_thread  # noqa: F401  (autouse: one torch thread)

import explore
from core.errors import UserError
from core.i18n import translator
from core.tokenizer import GPT2_VOCAB_SIZE, Tokenizer, encode
from experiments.control_steering import sentiment_direction
from experiments.related_work import selectivity_stats
from explorer import app, render, views
from explorer.model_interface import residual_states
from explorer.state import load_state
from models import MODELS

HE, HIM, SHE, HER = 339, 683, 673, 607  # ' he', ' him', ' she', ' her': in the tiny vocabulary (1024)


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return make_state(tmp_path_factory.mktemp("explorer"), "reflow")


@pytest.fixture(scope="module")
def gpt2_state(tmp_path_factory):
    return make_state(tmp_path_factory.mktemp("explorer_gpt2"), "gpt2")


def final_signals(state, idx):
    """Independent: the final hidden state (after ln_f) of every position, read along every signal."""
    h = state.model.ln_f(state.model.hidden_states(idx)[-1])
    return h @ state.model.basis.t()


# --- Token ------------------------------------------------------------------------------------
def test_token_card_recipe_and_neighbours(state):
    card = views.token_card(state, " he")
    row = state.model.recipe[HE].detach()
    assert card.token == HE and len(card.recipe) == views.RECIPE_SIGNALS
    assert [s for s, _ in card.recipe] == row.abs().topk(views.RECIPE_SIGNALS).indices.tolist()
    assert all(w == pytest.approx(row[s].item()) for s, w in card.recipe)  # signs kept
    vocab = state.vocabulary
    cosines = F.cosine_similarity(state.model.recipe[vocab].detach(), row[None], dim=-1)
    cosines[vocab == HE] = -2
    expected = cosines.topk(views.NEIGHBOURS)
    assert [t for t, _ in card.neighbours] == vocab[expected.indices].tolist()
    assert [c for _, c in card.neighbours] == pytest.approx(expected.values.tolist(), abs=1e-5)


def test_analogy_finds_the_constructed_answer(tmp_path):
    """With recipes built so that her = he - him + she exactly, a - b + c returns her first, cosine 1."""
    state = make_state(tmp_path, "reflow")
    with torch.no_grad():
        recipes = state.token_table
        recipes[[HE, HIM, SHE]] = torch.eye(3, recipes.size(1)) * 0.05
        recipes[HER] = F.normalize(recipes[HE], dim=0) - F.normalize(recipes[HIM], dim=0) + \
            F.normalize(recipes[SHE], dim=0)
        state.unit_rows = F.normalize(recipes[state.vocabulary], dim=-1)
    answers = views.analogy(state, " he", " him", " she")
    assert answers[0][0] == HER and answers[0][1] == pytest.approx(1.0, abs=1e-5)
    assert not {HE, HIM, SHE} & {t for t, _ in answers}


# --- Signal -----------------------------------------------------------------------------------
def test_signal_card_codebook_statistics_and_contexts(state):
    signal = 3
    card = views.signal_card(state, signal)
    column = state.model.recipe[state.vocabulary, signal].detach()
    k = views.CODEBOOK_TOKENS
    assert [t for t, _ in card.promotes] == state.vocabulary[column.topk(k).indices].tolist()
    assert [t for t, _ in card.suppresses] == state.vocabulary[(-column).topk(k).indices].tolist()
    # The precomputed statistics match experiment 14's definitions on an independent forward.
    stats = state.signal_stats
    windows = torch.from_numpy(stats.tokens.astype("int64")).view(-1, stats.window)
    activations = final_signals(state, windows).flatten(0, 1)
    firing, selectivity = selectivity_stats(activations)
    assert card.firing_rate == pytest.approx(firing[signal].item())
    assert card.selectivity == pytest.approx(selectivity[signal].item(), rel=1e-4)
    column_activations = activations[:, signal]
    values = [c.value for c in card.contexts]
    assert values[0] == pytest.approx(column_activations.max().item(), rel=1e-4)
    assert values == sorted(values, reverse=True) and len(card.contexts) == views.TOP_CONTEXTS
    texts = [tuple(c.tokens) for c in card.contexts]
    assert len(set(texts)) == len(texts)  # deduplicated
    tokens = torch.from_numpy(stats.tokens.astype("int64"))
    for context in card.contexts:  # every shaded token carries its own activation
        matches = [p for p in range(len(tokens) - len(context.tokens) + 1)
                   if tokens[p:p + len(context.tokens)].tolist() == context.tokens
                   and column_activations[p + context.active].item() == pytest.approx(context.value,
                                                                                       rel=1e-4)]
        assert matches, context
        shown = column_activations[matches[0]:matches[0] + len(context.tokens)].tolist()
        assert context.activations == pytest.approx(shown, rel=1e-4, abs=1e-5)
        assert context.tokens[context.active] == tokens[matches[0] + context.active].item()
    counts, edges = card.histogram
    assert sum(counts) == len(column_activations) and len(edges) == len(counts) + 1
    assert edges[0] == pytest.approx(column_activations.min().item(), rel=1e-4)
    first_bin = ((column_activations >= edges[0]) & (column_activations < edges[1])).sum().item()
    assert abs(counts[0] - first_bin) <= 1  # histc and this comparison may put an edge value apart


def test_signal_on_my_text_and_the_list_of_all_signals(state):
    signal, tokens, activations = views.signal_on_text(state, 5, "I think that the man")
    idx = torch.tensor([encode("I think that the man")])
    assert signal == 5 and tokens == idx[0].tolist()
    assert activations == pytest.approx(final_signals(state, idx)[0, :, 5].tolist(), abs=1e-5)
    rows = views.signal_list(state)
    assert [s for s, *_ in rows] == list(range(state.factorization.n_signals))
    s, rate, sel, top = rows[7]
    assert rate == pytest.approx(state.signal_stats.firing_rate[7].item())
    column = state.model.recipe[state.vocabulary, 7].detach()
    assert top == state.vocabulary[column.argmax()].item()


def test_signal_statistics_are_cached_per_checkpoint(tmp_path):
    """A second start reads the statistics back (same numbers); a changed checkpoint computes them
    afresh; a damaged cache file is recomputed, not trusted."""
    from experiment_workspace import make_run

    from core.config import load_config
    config_file, cfg = make_run(tmp_path, "reflow")
    first = load_state(load_config(str(config_file)))
    assert any(k.startswith("signal statistics (cached in") for k in first.timings), first.timings
    second = load_state(load_config(str(config_file)))
    assert any(k.startswith("signal statistics (read from") for k in second.timings), second.timings
    assert torch.equal(first.signal_stats.activations, second.signal_stats.activations)
    cached, = (tmp_path / "reflow" / "explorer_cache").glob("signal_stats-*.pt")
    cached.write_bytes(b"not a torch file")
    third = load_state(load_config(str(config_file)))
    assert any(k.startswith("signal statistics (cached in") for k in third.timings)
    assert torch.equal(first.signal_stats.activations, third.signal_stats.activations)
    checkpoint = torch.load(first.checkpoint, weights_only=True)
    next(iter(v for k, v in checkpoint["model"].items() if k.endswith("basis")))[0, 0] += 1.0
    torch.save(checkpoint, first.checkpoint)
    changed = load_state(load_config(str(config_file)))
    assert any(k.startswith("signal statistics (cached in") for k in changed.timings)
    assert len(list((tmp_path / "reflow" / "explorer_cache").glob("signal_stats-*.pt"))) == 2
    # A cache folder that is a link is not written through: the statistics are computed and not kept.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(tmp_path / "reflow" / "explorer_cache")
    (tmp_path / "reflow" / "explorer_cache").symlink_to(elsewhere)
    linked = load_state(load_config(str(config_file)))
    assert any("is a link" in k for k in linked.timings) and list(elsewhere.iterdir()) == []


# --- Lens -------------------------------------------------------------------------------------
def test_lens_last_layer_is_the_model_output(state):
    idx = views.parse_prompt(state, "I think that the man said")
    states = views.residual_states(state, idx)
    lens = views.logit_lens(state, idx, states, " the")
    probs = F.softmax(state.model(idx)[0][0], dim=-1)  # (T, V)
    assert lens.layers == ["embed", "L0", "L1"] and lens.positions == list(range(idx.size(1)))
    assert lens.top_tokens[-1].tolist() == probs.argmax(-1).tolist()
    assert lens.target_probs[-1] == pytest.approx(probs[:, 262].tolist(), abs=1e-5)
    own = views.logit_lens(state, idx, states, "")  # no target: the model's own prediction
    assert own.target == probs[-1].argmax().item()


def test_lens_shows_only_the_last_positions_of_a_long_prompt(state):
    idx = torch.arange(100, 100 + views.LENS_POSITIONS + 5)[None]
    lens = views.logit_lens(state, idx, views.residual_states(state, idx), " the")
    assert lens.positions == list(range(5, views.LENS_POSITIONS + 5))


def test_signal_flow_reads_every_layer_along_the_strongest_signals(state):
    idx = views.parse_prompt(state, "I think that the man said")
    states = views.residual_states(state, idx)
    flow = views.signal_flow(state, idx, states, 2)
    final = final_signals(state, idx)[0, 2]
    assert flow.position == 2 and flow.token == idx[0, 2].item()
    assert flow.signals == final.abs().topk(views.FLOW_SIGNALS).indices.tolist()
    assert flow.activations[-1] == pytest.approx(final[flow.signals].tolist(), abs=1e-5)
    assert views.signal_flow(state, idx, states, -1).position == idx.size(1) - 1


def test_drivers_are_the_signals_shares_of_the_predicted_logit(state):
    idx = views.parse_prompt(state, "I think that the man said")
    states = views.residual_states(state, idx)
    found = views.drivers(state, idx, states, 2)
    logits = state.model(idx)[0][0, 2]  # (V,) the model's own readout at position 2
    assert found.token == logits.argmax().item() and found.position == 2 and found.prompt == "I think that"
    shares = final_signals(state, idx)[0, 2] * state.model.recipe[found.token].detach()  # a_s r_vs
    # reflow's readout is W_recipe @ W_basis: the shares sum to the logit, up to float32 rounding of S terms
    tolerance = 16 * torch.finfo(torch.float32).eps * shares.abs().sum().item()
    assert found.logit == pytest.approx(logits[found.token].item(), abs=tolerance)
    assert [s for s, *_ in found.rows] == shares.topk(views.DRIVER_SIGNALS).indices.tolist()
    assert [c for *_, c in found.rows] == pytest.approx(shares.topk(views.DRIVER_SIGNALS).values.tolist(),
                                                      abs=1e-5)


# --- Intervene --------------------------------------------------------------------------------
def test_readout_removal_is_the_readout_without_those_signals(state):
    idx = views.parse_prompt(state, "I think that")
    removed = [1, 4, 9]
    intervention = views.build_intervention(state, idx, views.REMOVE_AT_READOUT, "9, 1 4")
    result = views.next_tokens(state, idx, intervention)
    signals = final_signals(state, idx)[0, -1]
    signals[removed] = 0
    expected = F.softmax(signals @ state.model.recipe.t(), dim=-1)
    assert result.after == pytest.approx(expected.tolist(), abs=1e-6)
    assert result.before == pytest.approx(F.softmax(state.model(idx)[0][0, -1], -1).tolist(), abs=1e-6)
    everything = ", ".join(map(str, range(state.factorization.n_signals)))
    remove_all = views.build_intervention(state, idx, views.REMOVE_AT_READOUT, everything)
    flat = views.next_tokens(state, idx, remove_all)
    assert flat.after == pytest.approx([1 / state.vocab_size] * state.vocab_size)  # no signal, no preference


def test_residual_removal_leaves_nothing_along_the_removed_signals(state):
    idx = views.parse_prompt(state, "I think that")
    intervention = views.build_intervention(state, idx, views.REMOVE_FROM_RESIDUAL, "2 5", layer_value=0)
    (name, hook), = intervention.hooks.items()
    assert name == "blocks.0.hook_resid_post"
    h = torch.randn(1, 4, state.model.config.n_embd)
    edited = hook(h)
    basis = state.model.basis[[2, 5]]
    assert (edited @ basis.t()).abs().max() < 1e-5
    other = torch.linalg.svd(basis, full_matrices=True).Vh[2:]  # directions orthogonal to both
    kept = (h @ other.t()).flatten().tolist()
    assert (edited @ other.t()).flatten().tolist() == pytest.approx(kept, abs=1e-5)
    assert not torch.equal(views.next_tokens(state, idx, intervention).after,
                           views.next_tokens(state, idx, intervention).before)


def test_added_direction_is_alpha_times_the_mean_norm(state):
    idx = views.parse_prompt(state, "I think that")
    intervention = views.build_intervention(state, idx, views.ADD_DIRECTION, layer_value=1,
                                            concept_word=" he", alpha_value=2.0)
    hook = intervention.hooks["blocks.1.hook_resid_post"]
    norm = residual_states(state.model, idx)[2].norm(dim=-1).mean()
    unit = F.normalize(state.model.vocab_matrix()[HE], dim=0)
    h = torch.zeros(1, 3, state.model.config.n_embd)
    assert hook(h)[0, 0] == pytest.approx((2.0 * norm * unit).tolist(), abs=1e-5)
    zero = views.build_intervention(state, idx, views.ADD_DIRECTION, layer_value=1, concept_word=" he",
                                    alpha_value=0.0)
    result = views.next_tokens(state, idx, zero)
    assert torch.equal(result.before, result.after)
    sentiment = views.build_intervention(state, idx, views.ADD_DIRECTION, layer_value=0,
                                         direction=views.SENTIMENT, alpha_value=3.0)
    ids = lambda words: [encode(w)[0] for w in words]
    unit = sentiment_direction(state.model, ids(state.cfg.positive_words), ids(state.cfg.negative_words))
    norm = residual_states(state.model, idx)[1].norm(dim=-1).mean()
    added = sentiment.hooks["blocks.0.hook_resid_post"](torch.zeros(1, 1, state.model.config.n_embd))[0, 0]
    assert added.tolist() == pytest.approx((3.0 * norm * unit).tolist(), abs=1e-5)  # experiment 10's


def test_steering_along_a_signal_at_chosen_positions(state):
    """A signal's basis row added after layer 0 at prompt positions 0 and -1 only: the residual stream
    changes there and nowhere else, by alpha x n_0 x unit(basis_s); generated tokens are left alone."""
    idx = views.parse_prompt(state, "I think that the man")
    steer = views.build_intervention(state, idx, views.ADD_DIRECTION, layer_value=0, alpha_value=2.0,
                                     direction=views.SIGNAL_DIRECTION, steer_signal=5, positions_text="0, -1")
    assert "signal 5 direction" in steer.description and "positions [0, 4]" in steer.description
    hook = steer.hooks["blocks.0.hook_resid_post"]
    h = torch.zeros(1, 5, state.model.config.n_embd)
    added = hook(h)[0]
    norm = residual_states(state.model, idx)[1].norm(dim=-1).mean()
    expected = 2.0 * norm * F.normalize(state.model.basis[5].detach(), dim=0)
    for position in range(5):
        want = expected if position in (0, 4) else torch.zeros_like(expected)
        assert added[position].tolist() == pytest.approx(want.tolist(), abs=1e-5)
    one_new_token = torch.ones(1, 1, state.model.config.n_embd)  # a cached generation's later step
    assert torch.equal(hook(one_new_token), one_new_token)
    with pytest.raises(UserError, match="position: 9 is outside -5 to 4"):
        views.build_intervention(state, idx, views.ADD_DIRECTION, layer_value=0, alpha_value=1.0,
                                 direction=views.SIGNAL_DIRECTION, steer_signal=5, positions_text="9")
    result = views.next_tokens(state, idx, steer)
    assert not torch.equal(result.before, result.after)


def test_interventions_never_change_the_weights_and_a_change_is_caught(state):
    idx = views.parse_prompt(state, "I think that")
    before = [p.clone() for p in state.model.parameters()]
    for kind, extra in ((views.REMOVE_AT_READOUT, {}), (views.REMOVE_FROM_RESIDUAL, {}),
                        (views.ADD_DIRECTION, {"concept_word": " he", "alpha_value": 5.0})):
        intervention = views.build_intervention(state, idx, kind, "1 2 3", layer_value=0, **extra)
        views.next_tokens(state, idx, intervention)
        views.paired_samples(state, idx, intervention, tokens=4, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(state.model.parameters(), before, strict=True))
    with torch.no_grad():
        state.model.basis[0, 0] += 1.0  # what a buggy intervention would do
    with pytest.raises(views.WeightsChanged, match="restored"):
        views.check_weights(state)
    assert all(torch.equal(p, q) for p, q in zip(state.model.parameters(), before, strict=True))


def test_intervention_summary_kl_entropy_and_watched_ranks(state):
    idx = views.parse_prompt(state, "I think that")
    removal = views.build_intervention(state, idx, views.REMOVE_AT_READOUT, "1 4 9")
    result = views.next_tokens(state, idx, removal)
    p, q = result.before.double(), result.after.double()
    assert result.kl() == pytest.approx((p * (p / q).log()).sum().item(), rel=1e-9)
    assert result.entropy("after") == pytest.approx(-(q * q.log()).sum().item(), rel=1e-9)
    order = q.argsort(descending=True).tolist()
    assert result.rank(order[0], "after") == 1 and result.rank(order[5], "after") == 6
    summary = render.intervention_summary(state.tokenizer, result, [order[5]], translator('en'))
    assert f"{result.kl():.4f} nats" in summary and "<td>6</td>" in summary


def test_byte_tokens_show_their_bytes():
    """GPT-2 splits an emoji or a CJK character into byte tokens: each shows as its bytes, never '�'."""
    tokenizer = Tokenizer(GPT2_VOCAB_SIZE + 47)  # GPT-2's ids, padded as a 50304-row model pads them
    pieces = [tokenizer.label(t) for t in encode("🙂 猫")]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces).startswith("<0xF0>")  # 🙂 = F0 9F 99 82
    assert tokenizer.label(encode(" king")[0]) == "·king"
    assert tokenizer.label(50300) == "<pad 50300>"  # a padding row of the vocabulary
    assert tokenizer.word(encode("🙂")[0]) == f"#{encode('🙂')[0]}" and tokenizer.word(50300) == "#50300"
    assert tokenizer.word(encode(" king")[0]) == " king"


def test_a_corpus_vocabulary_s_tokens_are_shown_and_typed_through_its_tokenizer(tmp_path):
    """vocab='corpus': model id i stands for GPT-2 id gpt2_ids[i]; the token card, the lens header,
    the signal list and the words a link fills in all say the word the model id stands for."""
    state = make_corpus_state(tmp_path)
    tokenizer = state.tokenizer
    the = tokenizer.encode(" the")[0]
    as_gpt2 = Tokenizer(GPT2_VOCAB_SIZE)  # what the page showed when it took model ids for GPT-2's
    assert the != encode(" the")[0] and as_gpt2.label(the) != "·the"
    assert tokenizer.label(the) == "·the" and tokenizer.word(the) == " the"

    status, _, _ = app.show_token(state, " the")
    assert f"&#x27;·the&#x27; is token {the}" in status and "target=+the" in status  # the lens link's target
    assert f"{as_gpt2.label(the)!r} is token" not in html.unescape(status)

    prompt = "You shall find of the king 猫"
    _, heatmap, flow = app.run_lens(state, prompt, " the", -1)
    assert f'href="?view=token&amp;token={the}" title="token {the}: open its recipe">·the</a>' in heatmap
    cat = tokenizer.encode(" 猫")
    assert [tokenizer.label(t) for t in cat] == ["·<0xE7>", "<0x8C>", "<0xAB>"]  # 猫 = E7 8C AB
    assert all(f">{html.escape(tokenizer.label(t))}</a>" in heatmap for t in cat)
    assert tokenizer.word(cat[-1]) == f"#{cat[-1]}"  # a byte alone is typed by its model id
    assert "target &#x27; the&#x27;" in heatmap and "\ufffd" not in heatmap + flow

    top_tokens = [top for _, _, _, top in views.signal_list(state)]
    shown = [row[3] for row in app.all_signals(state)]
    assert shown == [tokenizer.label(t) for t in top_tokens]
    assert shown != [as_gpt2.label(t) for t in top_tokens]


# --- Generate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature, top_k", [(0.0, None), (1.0, 5), (0.8, None)])
def test_streamed_tokens_are_model_generate_s(state, temperature, top_k):
    """Same seed, same tokens as model.generate, also once the window slides past block_size (32)."""
    idx = torch.tensor([encode("I think that the man said that he would go to the")[:12] * 2])  # 24 tokens
    streamed = list(views.stream_tokens(state, idx, 20, temperature, top_k, seed=3))
    generator = torch.Generator().manual_seed(3)
    reference = state.model.generate(idx, 20, temperature=temperature, top_k=top_k, generator=generator)
    assert streamed == reference[0, idx.size(1):].tolist()


def test_generate_text_grows_one_token_at_a_time(state):
    texts = list(views.generate_text(state, "I think that", 0.0, 0, 5, 0))
    assert len(texts) == 5 and all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda s: views.token_card(s, " hello world"), "2 GPT-2 tokens"),
    (lambda s: views.token_card(s, " love"), "outside this model's vocabulary"),
    (lambda s: views.token_card(s, ""), "empty"),
    (lambda s: views.parse_prompt(s, ""), "the prompt is empty"),
    (lambda s: views.parse_prompt(s, " the" * 40), "longer than this model's context of 32"),
    (lambda s: views.signal_card(s, 16), "signal 16 does not exist; this model has signals 0 to 15"),
    (lambda s: views.signal_card(s, -1), "does not exist"),
    (lambda s: views.signal_card(s, None), "signal: the box is empty; give a whole number from 0 to 15"),
    (lambda s: views.signal_card(s, ""), "signal: the box is empty"),
    (lambda s: views.signal_card(s, 2.5), "signal: 2.5 is not a whole number; give one from 0 to 15"),
    (lambda s: views.signal_card(s, 3.5), "signal: 3.5 is not a whole number"),
    (lambda s: views.parse_layer(s, 2), "layer 2 does not exist; this model has layers 0 to 1"),
    (lambda s: views.parse_layer(s, 0.5), "0.5 is not a whole number"),
    (lambda s: views.parse_layer(s, float("nan")), "is not a number"),
    (lambda s: views.token_card(s, "x" * 5000), "5,000 characters is far longer than one token"),
    (lambda s: views.token_card(s, "#60000"), "token 60000 does not exist"),
    (lambda s: views.parse_alpha(1e9), "too large"),
    (lambda s: views.parse_alpha(float("nan")), "finite number"),
    (lambda s: views.parse_signals(s, "1, x"), "signal: 'x' is not a number"),
    (lambda s: views.parse_signals(s, "1 16.5"), "signal: 16.5 is not a whole number"),
    (lambda s: views.parse_signals(s, "1 " + "9" * 5000), "signal: '99999"),
    (lambda s: views.parse_signals(s, ""), "no signals given"),
    (lambda s: list(views.generate_text(s, "I", 0.5, 0, 10_000, 0)), "max tokens"),
    (lambda s: list(views.generate_text(s, "I", math.inf, 0, 5, 0)), "temperature"),
])
def test_bad_input_is_one_line(state, call, message):
    with pytest.raises(UserError, match=message) as error:
        call(state)
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_handlers_show_errors_in_the_page_and_clear_results(state, monkeypatch):
    status, *outputs = app.show_signal(state, 99)
    assert "does not exist" in status and "explorer-error" in status and outputs == [None] * 3
    status, *_ = app.run_lens(state, "I think that", " the", 7)
    assert "position: 7 is outside -3 to 2" in status, status
    *_, (status, *outputs) = app.run_intervention(state, "I think", views.ADD_DIRECTION, "", 0, 1e9,
                                                  views.CONCEPT, " he", 0, "", "", 1.0, 40, 5, 0)
    assert "too large" in status and outputs == [None] * 5
    status, *_ = app.show_token(state, "y" * 5000)  # a huge input is never echoed whole
    assert "far longer than one token" in status and len(status) < 300
    monkeypatch.setattr(views, "token_card", lambda *_: 1 / 0)  # an unexpected failure: one line, no trace
    status, plot, rows = app.show_token(state, " he")
    assert "internal error (ZeroDivisionError" in status and "Traceback" not in status
    assert plot is None and rows is None


# --- every architecture -------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_architecture_answers_every_tab(tmp_path, model_name):
    state = make_state(tmp_path, model_name)
    has_recipes = state.model.has_recipes
    status, plot, rows = app.show_token(state, " he")
    assert rows.count("<tr>") == 1 + views.NEIGHBOURS and bool(plot) == has_recipes, status
    status, *_ = app.show_signal(state, 1)
    assert ("firing rate" in status) == has_recipes and ("unavailable" in status) != has_recipes
    status, heatmap, flow = app.run_lens(state, "I think that", " the", -1)
    assert "lens-grid" in heatmap and ("flow-grid" in flow) == has_recipes
    if model_name == "reflow-topk":  # sparse, non-negative recipes: no zero bars, nothing suppressed
        assert len(views.token_card(state, " he").recipe) == state.cfg.topk
        card = views.signal_card(state, 1)
        assert card.suppresses == [] and all(w > 0 for _, w in card.promotes)
    *_, (status, _, before, after, plain, steered) = app.run_intervention(
        state, "I think that", views.ADD_DIRECTION, "", 1, 2.0, views.CONCEPT, " he", 0, "", " the",
        1.0, 40, 4, 0)
    assert "weights unchanged (checked)" in status and before != after and plain != steered
    assert "".join(views.generate_text(state, "I think", 1.0, 5, 3, 0))


# --- models without recipes -------------------------------------------------------------------
def test_gpt2_explains_what_is_unavailable(gpt2_state):
    state = gpt2_state
    assert state.factorization is None and "no recipes" in state.factorization_note
    card = views.token_card(state, " he")  # neighbours still work, in embedding space
    assert state.token_space == "embedding space" and card.recipe == []
    assert len(card.neighbours) == views.NEIGHBOURS
    status, *_ = app.show_signal(state, 0)
    assert "Signal view is unavailable" in status and "no recipes" in status
    status, heatmap, flow = app.run_lens(state, "I think that", " the", -1)
    assert "signal flow unavailable" in status and "lens-grid" in heatmap and flow == ""
    idx = views.parse_prompt(state, "I think that")
    with pytest.raises(UserError, match="removing signals is unavailable"):
        views.build_intervention(state, idx, views.REMOVE_AT_READOUT, "1")
    steered = views.build_intervention(state, idx, views.ADD_DIRECTION, layer_value=0, concept_word=" he",
                                       alpha_value=1.0)
    result = views.next_tokens(state, idx, steered)
    assert not torch.equal(result.before, result.after)


def test_posthoc_svd_turns_the_recipe_views_on_for_gpt2(tmp_path):
    """gpt2 read through a truncated SVD of its embedding (--posthoc=svd): the recipe and signal views
    come on, and the recipes times the basis give back the embedding."""
    state = make_state(tmp_path, "gpt2", posthoc="svd")
    assert "truncated SVD" in state.factorization_note and state.signal_stats is not None
    E = state.model.vocab_matrix().detach()
    torch.testing.assert_close(state.factorization.recipes @ state.factorization.basis, E,
                               atol=1e-4, rtol=1e-4)
    assert len(views.token_card(state, " he").recipe) == views.RECIPE_SIGNALS
    assert views.signal_card(state, 0).contexts
    idx = views.parse_prompt(state, "I think that")
    removal = views.build_intervention(state, idx, views.REMOVE_AT_READOUT, "0 1")
    result = views.next_tokens(state, idx, removal)
    assert not torch.equal(result.before, result.after)


# --- an SAE as the reading (explore.py --posthoc=sae:PATH) ---------------------------------------
def saved_topk_sae(folder, d_in, layer, width=24, k=3):
    """A SAELens TopK SAE with random weights and biases (a reading only encodes: no training needed),
    saved where --posthoc=sae: reads it; (the SAE, its folder)."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    from sparse_autoencoders.saving import save_sae
    torch.manual_seed(1)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=width, k=k)).eval()
    with torch.no_grad():
        for bias in (sae.b_enc, sae.b_dec):
            bias.normal_(0, 0.1)
    return sae, save_sae(sae, folder, f"blocks.{layer}.hook_resid_post", "ckpt.pt")


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_an_sae_reading_s_signals_are_its_latents_on_its_layer(tmp_path, model_name):
    """With an SAE on the residual stream after layer 0 as the reading, a signal's activation on typed
    text and over the statistics' slice is the SAE's encode of that hook's activation (read here through
    run_with_cache, not the explorer's path); the views that need recipes say why they are off."""
    pytest.importorskip("sae_lens", reason='SAELens is an optional extra: pip install -e ".[sae]"')
    from experiment_workspace import make_run

    from core.config import load_config
    config_file, cfg = make_run(tmp_path, model_name)
    sae, folder = saved_topk_sae(tmp_path / "saes" / "middle_layer_24", cfg.n_embd, layer=0)
    state = load_state(load_config(str(config_file)), sae=str(folder))
    hook = "blocks.0.hook_resid_post"
    assert state.factorization is None and state.reading.n_signals == 24 and hook in state.factorization_note
    idx = torch.tensor([encode("I think that the man")])
    with torch.no_grad():
        expected = sae.encode(state.model.run_with_cache(idx, names_filter=hook)[1][hook])[0]  # (T, 24)
    signal = expected.abs().sum(0).argmax().item()  # a latent that fires on this text
    _, tokens, activations = views.signal_on_text(state, signal, "I think that the man")
    assert tokens == idx[0].tolist()
    torch.testing.assert_close(torch.tensor(activations), expected[:, signal],
                               **summation_tolerance(expected, cfg.n_embd))
    stats = state.signal_stats
    windows = torch.from_numpy(stats.tokens.astype("int64")).view(-1, stats.window)
    with torch.no_grad():
        over_slice = sae.encode(state.model.run_with_cache(windows, names_filter=hook)[1][hook]).flatten(0, 1)
    torch.testing.assert_close(stats.activations, over_slice, **summation_tolerance(over_slice, cfg.n_embd))
    busiest = int((over_slice != 0).sum(0).argmax())
    card = views.signal_card(state, busiest)
    assert card.promotes == card.suppresses == [] and sum(card.histogram[0]) == stats.positions
    assert card.contexts[0].value == pytest.approx(over_slice[:, busiest].max().item(), rel=1e-5)
    status, histogram, codebook, contexts = app.show_signal(state, busiest)
    assert "firing rate" in status and "signal-histogram-bars" in histogram and "explorer-link" in contexts
    assert "no codebook" in codebook and "an SAE latent has no recipe" in codebook
    assert views.signal_list(state)[busiest][3] is None
    status, bars, rows = app.show_token(state, " he")
    assert "no recipe chart" in status and bars == "" and rows.count("<tr>") == 1 + views.NEIGHBOURS
    status, heatmap, flow = app.run_lens(state, "I think that", " the", -1)
    assert "signal flow unavailable" in status and "lens-grid" in heatmap and flow == ""
    app.build_app(state).close()  # the page builds with an SAE reading (its Signal tab's definitions differ)


def test_a_bad_sae_folder_is_one_line_and_exit_2(tmp_path, capsys):
    pytest.importorskip("sae_lens", reason='SAELens is an optional extra: pip install -e ".[sae]"')
    import json

    from experiment_workspace import make_run
    config_file, _ = make_run(tmp_path, "reflow")  # 2 layers, 32 wide
    _, wide = saved_topk_sae(tmp_path / "wide", 48, layer=0)
    _, deep = saved_topk_sae(tmp_path / "deep", 32, layer=2)
    _, foreign = saved_topk_sae(tmp_path / "foreign", 32, layer=0)
    config = json.loads((foreign / "cfg.json").read_text())
    config["metadata"]["hook_name"] = "blocks.0.hook_mlp_out"
    (foreign / "cfg.json").write_text(json.dumps(config))
    _, damaged = saved_topk_sae(tmp_path / "damaged", 32, layer=0)
    (damaged / "sae_weights.safetensors").write_bytes(b"not safetensors")
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "cfg.json").write_text("{")
    (tmp_path / "garbage" / "sae_weights.safetensors").write_bytes(b"")
    cases = {
        "sae:": "--posthoc=sae: names no folder",
        f"sae:{tmp_path / 'missing'}": "not a folder",
        f"sae:{tmp_path / 'empty'}": "is not a saved SAE: it has no cfg.json or sae_weights.safetensors",
        f"sae:{tmp_path / 'garbage'}": "is not readable JSON",
        f"sae:{foreign}": "reads 'blocks.0.hook_mlp_out', not the residual stream after a layer",
        f"sae:{damaged}": "SAELens cannot open the SAE",
        f"sae:{wide}": "reads 48-wide activations, but this model's residual stream is 32 wide",
        f"sae:{deep}": "reads blocks.2.hook_resid_post, but this model has layers 0 to 1",
        "bogus": "posthoc",  # not sae:...: the config key, checked as before
    }
    for value, message in cases.items():
        with pytest.raises(SystemExit) as exit_:
            explore.main([str(config_file), f"--posthoc={value}"])
        error = capsys.readouterr().err
        assert exit_.value.code == 2 and message in error and len(error.strip().splitlines()) == 1, error


# --- the command --------------------------------------------------------------------------------
def test_explore_refuses_a_checkpoint_of_another_model(tmp_path, capsys):
    from experiment_workspace import make_run
    config_file, _ = make_run(tmp_path, "reflow")
    _, gpt2 = make_run(tmp_path, "gpt2")
    with pytest.raises(SystemExit) as exit_:
        explore.main([str(config_file), "--ckpt", gpt2.out_dir])
    assert exit_.value.code == 2
    assert "is a gpt2 model but the config describes a reflow" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        explore.main([])
    assert "usage: python explore.py CONFIG" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_explore_refuses_a_port_out_of_range(tmp_path, capsys, port):
    from experiment_workspace import make_run
    config_file, _ = make_run(tmp_path, "reflow")
    with pytest.raises(SystemExit) as exit_:
        explore.main([str(config_file), f"--port={port}"])
    assert exit_.value.code == 2
    assert f"--port {port} is not a TCP port; give one from 1 to 65535" in capsys.readouterr().err


def test_missing_validation_text_is_said_not_fatal(tmp_path):
    from experiment_workspace import make_run
    config_file, cfg = make_run(tmp_path, "reflow")
    (tmp_path / "data" / "toy" / "val.bin").unlink()
    from core.config import load_config
    state = load_state(load_config(str(config_file)))
    assert state.signal_stats is None and "no validation text" in state.signal_stats_note
    assert views.signal_card(state, 0).contexts == []


def test_a_context_stays_within_the_window_the_model_saw(state):
    stats = state.signal_stats
    start = stats.window  # the first position of the second window
    assert stats.context_span(start)[0] == start
    assert stats.context_span(start + 3)[0] == start
    assert stats.context_span(start - 1)[1] == start  # the end of the first window


def test_explore_command_serves_the_page_and_stops_on_ctrl_c(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    from experiment_workspace import REPO, make_run
    config_file, _ = make_run(tmp_path, "reflow")
    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(REPO / "explore.py"), str(config_file), "--port", str(port)]
    # A child of a non-interactive shell may start with Ctrl-C ignored; restore what a terminal gives.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line or process.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200 and b"<html" in response.read()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
