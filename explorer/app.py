"""The explorer's page: five Gradio tabs (Generate, Token, Signal, Lens, Intervene) over one loaded model.

Each handler calls views.py and formats with render.py. A `UserError` (bad input) becomes a message
in the tab's status line and empties its results; any other exception is logged on the server and
shown as one line, so the page never shows a stack trace and the server keeps serving.

Offline by construction: analytics are off (before gradio is imported), the fonts are the system's
(whatever web fonts a Gradio version's default theme names), there is no share link, and it binds
127.0.0.1.
"""

import functools
import os
import sys
import traceback

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede the import below

import gradio as gr  # noqa: E402

from core.errors import UserError  # noqa: E402
from explorer import render, views  # noqa: E402
from explorer.state import ExplorerState  # noqa: E402

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
MONO_FONTS = ["ui-monospace", "monospace"]
DEFAULT_PROMPT = "ROMEO:\nMy heart is"
# Views that answer from one forward or a table skip Gradio's queue, whose event stream added about
# 100 ms per click in the browser (tiny model, loaded 2-core machine: ~100 ms against ~200-350 ms).
# They still run concurrently, in the server's thread pool, and the state's lock serializes the
# model. Generate and Intervene stream their answers, which needs the queue.
UNQUEUED = {"queue": False}


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def problem_message(error: Exception) -> str:
    """The status line for a failed call: the user's mistake as it is, anything else as one line."""
    if isinstance(error, UserError):
        return render.error(str(error))
    print(f"explorer: unexpected {type(error).__name__}:", file=sys.stderr)
    traceback.print_exc()
    first_line = (str(error).splitlines() or [""])[0]
    return render.error(f"internal error ({type(error).__name__}: {first_line}); the server is still running")


def guarded(outputs: int):
    """Wrap a handler returning (status, *results): on an exception, show it and clear the results."""
    def wrap(handler):
        @functools.wraps(handler)
        def run(*args):
            try:
                return handler(*args)
            except Exception as error:  # shown in the page, logged on the server
                return (problem_message(error), *[None] * outputs)
        return run
    return wrap


def guarded_stream(outputs: int):
    """The same for handlers that yield (status, *results) several times (streaming)."""
    def wrap(handler):
        @functools.wraps(handler)
        def run(*args):
            try:
                yield from handler(*args)
            except Exception as error:
                yield (problem_message(error), *[None] * outputs)
        return run
    return wrap


def header(state: ExplorerState) -> str:
    trained = f", step {state.iter_num}" if state.iter_num is not None else ""
    return (f"## reFlow explorer: {state.model_name}\n`{state.checkpoint}`{trained}; "
            f"{state.n_layer} layers, context {state.model.config.block_size}, "
            f"vocabulary {state.vocab_size}. "
            f"Recipes and signals: {state.factorization_note}.")


def build_app(state: ExplorerState) -> gr.Blocks:
    """The page, with every handler bound to `state`."""
    with gr.Blocks(title=f"reFlow explorer: {state.model_name}", analytics_enabled=False) as app:
        gr.Markdown(header(state))
        with gr.Tab("Generate", id="generate"):
            generate_tab(state)
        with gr.Tab("Token", id="token"):
            token_tab(state)
        with gr.Tab("Signal", id="signal"):
            signal_tab(state)
        with gr.Tab("Lens", id="lens"):
            lens_tab(state)
        with gr.Tab("Intervene", id="intervene"):
            intervene_tab(state)
    return app


# --- handlers: what each button does, given the loaded state (the tabs below bind it) -------------
@guarded_stream(outputs=1)
def generate(state: ExplorerState, text, temperature, top_k, max_tokens, seed):
    for continuation in views.generate_text(state, text, temperature, top_k, max_tokens, seed):
        yield "", text + continuation


@guarded(outputs=2)
def show_token(state: ExplorerState, text):
    card = views.token_card(state, text)
    if state.factorization is None:
        card.note = "; ".join(filter(None, [card.note, f"no recipe chart: {state.factorization_note}"]))
    order = [f"s{s}" for s, _ in card.recipe]  # strongest first, not alphabetical
    plot = gr.BarPlot(render.recipe_bars(card), sort=order) if card.recipe else None
    tokenizer = state.tokenizer
    return render.token_status(tokenizer, card), plot, render.token_rows(tokenizer, card.neighbours)


@guarded(outputs=1)
def solve_analogy(state: ExplorerState, a, b, c):
    return "", render.token_rows(state.tokenizer, views.analogy(state, a, b, c))


@guarded(outputs=2)
def show_signal(state: ExplorerState, value):
    card = views.signal_card(state, value)
    return (render.signal_summary(card, state.signal_stats_note), render.codebook_rows(state.tokenizer, card),
            render.contexts_html(card))


@guarded(outputs=2)
def run_lens(state: ExplorerState, text, target_word, position_value):
    idx = views.parse_prompt(state, text)
    states = views.residual_states(state, idx)
    lens = views.logit_lens(state, idx, states, target_word)
    if state.factorization is None:
        unavailable = render.note(f"signal flow unavailable: {state.factorization_note}")
        return unavailable, render.lens_html(state.tokenizer, lens), ""
    flow = views.signal_flow(state, idx, states, position_value)
    return "", render.lens_html(state.tokenizer, lens), \
        render.flow_html(state.tokenizer, flow, lens.layers)


@guarded_stream(outputs=4)
def run_intervention(state: ExplorerState, text, kind, signals_text, layer_value, alpha_value, direction,
                     concept_word, tokens_value, seed_value):
    """First the top-10 before and after (fast), then the two samples (generation)."""
    idx = views.parse_prompt(state, text)
    count = views.parse_int(tokens_value, "sample tokens", 1, views.MAX_NEW_TOKENS)
    seed = views.parse_int(seed_value, "seed", 0, 2**31 - 1)
    intervention = views.build_intervention(state, idx, kind, signals_text, layer_value, direction,
                                            concept_word, alpha_value)
    result = views.next_tokens(state, idx, intervention)
    tables = (render.next_token_rows(state.tokenizer, result, "before"),
              render.next_token_rows(state.tokenizer, result, "after"))
    yield render.note(f"{result.description}; drawing samples..."), *tables, "", ""
    plain_text, steered_text = views.paired_samples(state, idx, intervention, count, seed)
    yield render.note(f"{result.description}; weights unchanged (checked)"), *tables, plain_text, steered_text


# --- the tabs -------------------------------------------------------------------------------------
def generate_tab(state: ExplorerState) -> None:
    prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt", lines=3, elem_id="generate-prompt")
    with gr.Row():
        temperature = gr.Number(0.8, label="temperature (0 = greedy)", elem_id="generate-temperature")
        top_k = gr.Number(40, label="top-k (0 = all tokens)", elem_id="generate-top-k")
        max_tokens = gr.Number(100, label=f"max new tokens (1 to {views.MAX_NEW_TOKENS})",
                               elem_id="generate-max-tokens")
        seed = gr.Number(0, label="seed", elem_id="generate-seed")
    button = gr.Button("Generate", variant="primary", elem_id="generate-button")
    status = gr.HTML(elem_id="generate-status")
    output = gr.Textbox(label="prompt + continuation (tokens appear as they are drawn, KV cache)", lines=8,
                        elem_id="generate-output")
    button.click(functools.partial(generate, state), [prompt, temperature, top_k, max_tokens, seed],
                 [status, output], api_name="generate")


def token_tab(state: ExplorerState) -> None:
    with gr.Row():
        word = gr.Textbox(" king", label="word (one GPT-2 token; most words take a leading space)",
                          elem_id="token-word")
        button = gr.Button("Show token", variant="primary", elem_id="token-button")
    status = gr.HTML(elem_id="token-status")
    with gr.Row():
        bars = gr.BarPlot(x="signal", y="weight", color="sign",
                          color_map={"+": render.POSITIVE, "-": render.NEGATIVE},
                          label=f"recipe: the {views.RECIPE_SIGNALS} largest |weights|",
                          elem_id="token-recipe")
        neighbours = gr.Dataframe(headers=["#", "token", "cosine"], interactive=False,
                                  label=f"nearest tokens ({state.token_space})", elem_id="token-neighbours")
    gr.Markdown(f"**Analogy**: a - b + c, searched in {state.token_space}")
    with gr.Row():
        a = gr.Textbox(" king", label="a", elem_id="analogy-a")
        b = gr.Textbox(" man", label="b", elem_id="analogy-b")
        c = gr.Textbox(" woman", label="c", elem_id="analogy-c")
        solve = gr.Button("Solve", elem_id="analogy-button")
    analogy_status = gr.HTML(elem_id="analogy-status")
    answers = gr.Dataframe(headers=["#", "token", "cosine"], label="answers", elem_id="analogy-answers",
                           interactive=False)
    gr.Markdown(render.definitions("recipe weight", "cosine", "analogy") +
                f"\n\nSearches run over the {len(state.vocabulary):,} most frequent tokens of the training "
                "text.")
    show = functools.partial(show_token, state)
    button.click(show, word, [status, bars, neighbours], api_name="token", **UNQUEUED)
    word.submit(show, word, [status, bars, neighbours], api_name=False, **UNQUEUED)
    solve.click(functools.partial(solve_analogy, state), [a, b, c], [analogy_status, answers],
                api_name="analogy", **UNQUEUED)


def signal_tab(state: ExplorerState) -> None:
    with gr.Row():
        signal = gr.Number(0, label="signal id", elem_id="signal-id")
        button = gr.Button("Show signal", variant="primary", elem_id="signal-button")
    status = gr.HTML(elem_id="signal-status")
    codebook = gr.Dataframe(headers=["promotes", "weight", "suppresses", "weight"],
                            label="codebook: tokens with the largest recipe weights in this signal's column",
                            elem_id="signal-codebook", interactive=False)
    gr.Markdown("**Top-activating contexts** (activation, then the text with the token highlighted)")
    contexts = gr.HTML(elem_id="signal-contexts")
    gr.Markdown(render.definitions("codebook", "activation", "firing rate", "selectivity"))
    button.click(functools.partial(show_signal, state), signal, [status, codebook, contexts],
                 api_name="signal", **UNQUEUED)


def lens_tab(state: ExplorerState) -> None:
    prompt = gr.Textbox("To be, or not to", label="prompt", lines=2, elem_id="lens-prompt")
    with gr.Row():
        target = gr.Textbox(" be", label="target token (empty: the model's own prediction)",
                            elem_id="lens-target")
        position = gr.Number(-1, label="signal-flow position (-1 = last)", elem_id="lens-position")
        button = gr.Button("Run lens", variant="primary", elem_id="lens-button")
    status = gr.HTML(elem_id="lens-status")
    heatmap = gr.HTML(elem_id="lens-heatmap")
    flow = gr.HTML(elem_id="lens-flow")
    gr.Markdown(render.definitions("logit lens", "signal flow") +
                f"\n\nThe heatmap shows at most the last {views.LENS_POSITIONS} positions.")
    button.click(functools.partial(run_lens, state), [prompt, target, position], [status, heatmap, flow],
                 api_name="lens", **UNQUEUED)


def intervene_tab(state: ExplorerState) -> None:
    prompt = gr.Textbox("To be, or not to", label="prompt", lines=2, elem_id="intervene-prompt")
    kinds = views.INTERVENTIONS if state.factorization else [views.ADD_DIRECTION]
    kind = gr.Radio(kinds, value=kinds[0], label="intervention", elem_id="intervene-kind")
    with gr.Row():
        signals = gr.Textbox("", label="signals to remove (ids, e.g. 3, 17, 42)", elem_id="intervene-signals")
        layer = gr.Number(state.n_layer // 2, label=f"layer (0 to {state.n_layer - 1})",
                          elem_id="intervene-layer")
        alpha = gr.Number(1.0, label=f"alpha (|alpha| <= {views.ALPHA_LIMIT:g})", elem_id="intervene-alpha")
    with gr.Row():
        direction = gr.Radio(views.DIRECTIONS, value=views.CONCEPT, label="direction to add",
                             elem_id="intervene-direction")
        concept = gr.Textbox(" love", label="concept word", elem_id="intervene-concept")
        tokens = gr.Number(30, label="sample tokens", elem_id="intervene-tokens")
        seed = gr.Number(0, label="seed", elem_id="intervene-seed")
    button = gr.Button("Run intervention", variant="primary", elem_id="intervene-button")
    status = gr.HTML(elem_id="intervene-status")
    headers = ["#", "token", "p before", "p after"]
    with gr.Row():
        before = gr.Dataframe(headers=headers, label="top-10 before", elem_id="intervene-before",
                              interactive=False)
        after = gr.Dataframe(headers=headers, label="top-10 after", elem_id="intervene-after",
                             interactive=False)
    with gr.Row():
        plain = gr.Textbox(label="sample without the intervention", lines=5, elem_id="intervene-plain")
        steered = gr.Textbox(label="sample with it (same seed)", lines=5, elem_id="intervene-steered")
    missing = "" if state.factorization else f"\n\nSignal removal is unavailable: {state.factorization_note}."
    gr.Markdown(render.definitions("readout removal", "residual removal", "added direction", "probability")
                + missing)
    button.click(functools.partial(run_intervention, state),
                 [prompt, kind, signals, layer, alpha, direction, concept, tokens, seed],
                 [status, before, after, plain, steered], api_name="intervene")


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve the page (no share link); returns Gradio's (server app, local URL, share URL)."""
    app.queue(default_concurrency_limit=4)  # two tabs at once; the model lock serializes forwards
    return app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                      quiet=True, theme=theme(), css=render.CSS, ssr_mode=False, footer_links=[])
