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
from pathlib import Path
from urllib.parse import parse_qsl

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede the import below

import gradio as gr  # noqa: E402

from core.errors import UserError  # noqa: E402
from core.i18n import N_, error_line, translator  # noqa: E402
from explorer import render, views  # noqa: E402
from explorer.state import ExplorerState  # noqa: E402

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
MONO_FONTS = ["ui-monospace", "monospace"]
DEFAULT_PROMPT = "ROMEO:\nMy heart is"
DEFAULT_LENS_PROMPT = "To be, or not to"
# Views that answer from one forward or a table skip Gradio's queue, whose event stream added about
# 100 ms per click in the browser (tiny model, loaded 2-core machine: ~100 ms against ~200-350 ms).
# They still run concurrently, in the server's thread pool, and the state's lock serializes the
# model. Generate and Intervene stream their answers, which needs the queue.
UNQUEUED = {"queue": False}


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def problem_message(error: Exception, lang: str) -> str:
    """The status line for a failed call: the user's mistake in the page's language, anything else
    as one line."""
    if isinstance(error, UserError):
        return render.error(error_line(error, lang))
    print(f"explorer: unexpected {type(error).__name__}:", file=sys.stderr)
    traceback.print_exc()
    first_line = (str(error).splitlines() or [""])[0]
    return render.error(f"internal error ({type(error).__name__}: {first_line}); the server is still running")


def guarded(outputs: int):
    """Wrap a handler(state, ...) returning (status, *results): on an exception, show it in the
    state's language and clear the results."""
    def wrap(handler):
        @functools.wraps(handler)
        def run(*args):
            try:
                return handler(*args)
            except Exception as error:  # shown in the page, logged on the server
                return (problem_message(error, args[0].cfg.lang), *[None] * outputs)
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
                yield (problem_message(error, args[0].cfg.lang), *[None] * outputs)
        return run
    return wrap


def header(state: ExplorerState) -> str:
    _ = translator(state.cfg.lang)
    trained = _(", step {step}").format(step=state.iter_num) if state.iter_num is not None else ""
    title = _("reFlow explorer: {model}").format(model=state.model_name)
    return (f"## {title}\n`{state.checkpoint}`{trained}; "
            + _("{layers} layers, context {context}, vocabulary {vocabulary}. ").format(
                layers=state.n_layer, context=state.model.config.block_size, vocabulary=state.vocab_size)
            + _("Recipes and signals: {note}. ").format(note=state.factorization_note)
            + _("Every token and signal shown is a link; the address bar holds the view, to share or "
                "reopen."))


def build_app(state: ExplorerState) -> gr.Blocks:
    """The page, with every handler bound to `state`."""
    _ = translator(state.cfg.lang)
    title = _("reFlow explorer: {model}").format(model=state.model_name)
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(header(state))
        with gr.Tabs() as tabs:
            with gr.Tab(_("Generate"), id="generate"):
                generate_tab(state)
            with gr.Tab(_("Token"), id="token"):
                token = token_tab(state)
            with gr.Tab(_("Signal"), id="signal"):
                signal = signal_tab(state)
            with gr.Tab(_("Lens"), id="lens"):
                lens = lens_tab(state)
            with gr.Tab(_("Intervene"), id="intervene"):
                intervene = intervene_tab(state)
        navigation(state, app, tabs, {"token": token, "signal": signal, "lens": lens, "intervene": intervene})
    return app


# --- navigation: links and the address bar -------------------------------------------------------
# A click on a link (render.link) is caught by this script: it puts the link's query in the address bar
# and in a hidden box whose change opens the view on the server. A click on a view's own button
# writes that view's inputs into the address bar. Opening an address (a shared link, a reload, a
# link opened in a new tab) restores the view on load; Back reopens the previous one.
NAVIGATION_SCRIPT = f"<script>{(Path(__file__).parent / 'navigation.js').read_text()}</script>"


def open_view(state: ExplorerState, params: dict, lens_prompt: str | None) -> tuple[str | None, tuple]:
    """(view, values) for an address's parameters: the view's inputs as they would be typed, then its
    answer, in the order of the components navigation() lists for it; (None, ()) for no view."""
    view = params.get("view")
    if view == "token":
        by_id = params.get("token", "").isdigit()
        word = state.tokenizer.word(int(params["token"])) if by_id else params.get("word", "")
        return view, (word, *show_token(state, word))
    if view == "signal":
        return view, (params.get("signal", ""), *show_signal(state, params.get("signal", "")))
    if view == "lens":
        inputs = (params.get("prompt") or lens_prompt or DEFAULT_LENS_PROMPT, params.get("target", ""),
                  params.get("position", "-1"))
        return view, (*inputs, *run_lens(state, *inputs))
    if view == "intervene":  # signals removed at the readout: the top-10 at once, samples on Run
        inputs = (params.get("prompt", ""), views.REMOVE_AT_READOUT, params.get("signals", ""),
                  params.get("watch", ""))
        return view, (*inputs, *intervention_top(state, *inputs))
    return None, ()


def navigation(state: ExplorerState, app: gr.Blocks, tabs, groups: dict[str, list]) -> None:
    """Links and addresses open a view: `groups` maps each view to its components (inputs, then
    outputs), which open_view fills; the others are left as they are."""
    nav = gr.Textbox(elem_id="explorer-nav", elem_classes=["explorer-hidden"], show_label=False,
                     container=False)
    outputs = [tabs] + [component for components in groups.values() for component in components]

    def respond(opener, *args):
        try:
            view, values = opener(*args)
        except Exception as error:  # a bad address never breaks the page
            print(f"explorer: could not open a view: {type(error).__name__}: {error}", file=sys.stderr)
            view = None
        if view is None:
            return (gr.skip(),) * len(outputs)
        filled = [values if name == view else [gr.skip()] * len(components)
                  for name, components in groups.items()]
        return (gr.Tabs(selected=view), *[value for group in filled for value in group])

    def from_link(query: str, lens_prompt: str):
        return respond(open_view, state, dict(parse_qsl(query.lstrip("?"))), lens_prompt)

    def from_address(request: gr.Request):
        return respond(open_view, state, dict(request.query_params), None)

    nav.submit(from_link, [nav, groups["lens"][0]], outputs, api_name=False, **UNQUEUED)
    app.load(from_address, None, outputs, api_name=False, **UNQUEUED)


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
    lens_url = render.view_url("lens", target=state.tokenizer.word(card.token))
    return (render.token_status(state.tokenizer, card, lens_url, translator(state.cfg.lang)),
            render.recipe_bars(state.tokenizer, card),
            render.token_rows(state.tokenizer, card.neighbours, "neighbours-grid"))


@guarded(outputs=1)
def solve_analogy(state: ExplorerState, a, b, c):
    return "", render.token_rows(state.tokenizer, views.analogy(state, a, b, c), "analogy-grid")


@guarded(outputs=3)
def show_signal(state: ExplorerState, value):
    card = views.signal_card(state, value)
    codebook = (render.codebook_rows(state.tokenizer, card) if state.reading.recipes is not None
                else render.note(f"no codebook: {state.factorization_note}"))
    return (render.signal_summary(card, state.signal_stats_note, translator(state.cfg.lang)),
            render.histogram_html(card), codebook,
            render.contexts_html(state.tokenizer, card))


@guarded(outputs=0)
def probe_signal(state: ExplorerState, value, text):
    signal, tokens, activations = views.signal_on_text(state, value, text)
    return (render.probe_html(state.tokenizer, tokens, activations, signal),)


@guarded(outputs=2)
def run_lens(state: ExplorerState, text, target_word, position_value):
    idx = views.parse_prompt(state, text)
    states = views.residual_states(state, idx)
    lens = views.logit_lens(state, idx, states, target_word)
    prompt_of = lambda token: render.view_url("lens", prompt=text, target=state.tokenizer.word(token),  # noqa: E731
                                              position=position_value)
    heatmap = render.lens_html(state.tokenizer, lens, prompt_of)
    if state.factorization is None:
        return render.note(f"signal flow unavailable: {state.factorization_note}"), heatmap, ""
    flow = views.signal_flow(state, idx, states, position_value)
    drivers = views.drivers(state, idx, states, position_value)
    ablate = lambda signal: render.view_url("intervene", prompt=drivers.prompt, signals=signal,  # noqa: E731
                                            watch=state.tokenizer.word(drivers.token))
    _ = translator(state.cfg.lang)
    return "", heatmap, (render.flow_html(state.tokenizer, flow, lens.layers, _)
                         + render.drivers_html(state.tokenizer, drivers, ablate, _))


def intervention_result(state: ExplorerState, idx, kind, signals_text, layer_value=None, alpha_value=None,
                        direction=views.CONCEPT, concept_word=None, steer_signal=None, positions_text=None,
                        watch_word=None) -> tuple:
    """(intervention, summary, top-10 before, top-10 after) for one intervention."""
    intervention = views.build_intervention(state, idx, kind, signals_text, layer_value, direction,
                                            concept_word, alpha_value, steer_signal, positions_text)
    watched = [views.parse_word(state, watch_word, N_("watched word"))] if watch_word else []
    if kind == views.ADD_DIRECTION and direction == views.CONCEPT:
        watched.append(views.parse_word(state, concept_word, N_("concept word")))
    result = views.next_tokens(state, idx, intervention)
    summary = render.intervention_summary(state.tokenizer, result, list(dict.fromkeys(watched)),
                                          translator(state.cfg.lang))
    tables = (render.next_token_rows(state.tokenizer, result, "before"),
              render.next_token_rows(state.tokenizer, result, "after"))
    return intervention, summary, *tables


@guarded(outputs=3)
def intervention_top(state: ExplorerState, text, kind, signals_text, watch_word):
    """A removal's summary and top-10s without samples (what an 'ablate' link opens)."""
    intervention, *shown = intervention_result(state, views.parse_prompt(state, text), kind, signals_text,
                                               watch_word=watch_word)
    return render.note(f"{intervention.description}; press Run intervention for samples"), *shown


@guarded_stream(outputs=5)
def run_intervention(state: ExplorerState, text, kind, signals_text, layer_value, alpha_value, direction,
                     concept_word, steer_signal, positions_text, watch_word, temperature_value, top_k_value,
                     tokens_value, seed_value):
    """First the summary and the top-10 before and after (fast), then the two samples (generation)."""
    idx = views.parse_prompt(state, text)
    temperature = views.parse_temperature(temperature_value)
    top_k = views.parse_int(top_k_value, N_("top-k"), 0, views.MAX_TOP_K) or None
    count = views.parse_int(tokens_value, N_("sample tokens"), 1, views.MAX_NEW_TOKENS)
    seed = views.parse_int(seed_value, N_("seed"), 0, 2**31 - 1)
    intervention, *shown = intervention_result(state, idx, kind, signals_text, layer_value, alpha_value,
                                               direction, concept_word, steer_signal, positions_text,
                                               watch_word)
    yield render.note(f"{intervention.description}; drawing samples..."), *shown, "", ""
    plain_text, steered_text = views.paired_samples(state, idx, intervention, count, seed, temperature, top_k)
    yield (render.note(f"{intervention.description}; weights unchanged (checked)"), *shown, plain_text,
           steered_text)


def intervention_fields(kind: str, direction: str) -> tuple:
    """Which of the Intervene tab's boxes apply: (signals, layer, alpha, direction, concept word, signal to
    steer along, positions)."""
    adds = kind == views.ADD_DIRECTION
    return (gr.update(visible=not adds), gr.update(visible=kind != views.REMOVE_AT_READOUT),
            gr.update(visible=adds), gr.update(visible=adds),
            gr.update(visible=adds and direction == views.CONCEPT),
            gr.update(visible=adds and direction == views.SIGNAL_DIRECTION), gr.update(visible=adds))


# --- the tabs -------------------------------------------------------------------------------------
def generate_tab(state: ExplorerState) -> None:
    _ = translator(state.cfg.lang)
    prompt = gr.Textbox(DEFAULT_PROMPT, label=_("prompt"), lines=3, elem_id="generate-prompt")
    with gr.Row():
        temperature = gr.Number(0.8, label=_("temperature (0 = greedy)"), elem_id="generate-temperature")
        top_k = gr.Number(40, label=_("top-k (0 = all tokens)"), elem_id="generate-top-k")
        max_tokens = gr.Number(100, elem_id="generate-max-tokens",
                               label=_("max new tokens (1 to {count})").format(count=views.MAX_NEW_TOKENS))
        seed = gr.Number(0, label=_("seed"), elem_id="generate-seed")
    button = gr.Button(_("Generate"), variant="primary", elem_id="generate-button")
    status = gr.HTML(elem_id="generate-status")
    output = gr.Textbox(label=_("prompt + continuation (tokens appear as they are drawn, KV cache)"), lines=8,
                        elem_id="generate-output")
    button.click(functools.partial(generate, state), [prompt, temperature, top_k, max_tokens, seed],
                 [status, output], api_name="generate")


def token_tab(state: ExplorerState) -> dict:
    _ = translator(state.cfg.lang)
    with gr.Row():
        word = gr.Textbox(" king", elem_id="token-word",
                          label=_("word (one GPT-2 token, most with a leading space; or #ID, a token id)"))
        button = gr.Button(_("Show token"), variant="primary", elem_id="token-button")
    status = gr.HTML(elem_id="token-status")
    with gr.Row():
        bars = gr.HTML(elem_id="token-recipe",
                       label=_("recipe: the {count} largest |weights|").format(count=views.RECIPE_SIGNALS))
        neighbours = gr.HTML(elem_id="token-neighbours",
                             label=_("nearest tokens ({space})").format(space=state.token_space))
    gr.Markdown(_("**Analogy**: a - b + c, searched in {space}").format(space=state.token_space))
    with gr.Row():
        a = gr.Textbox(" king", label="a", elem_id="analogy-a")
        b = gr.Textbox(" man", label="b", elem_id="analogy-b")
        c = gr.Textbox(" woman", label="c", elem_id="analogy-c")
        solve = gr.Button(_("Solve"), elem_id="analogy-button")
    analogy_status = gr.HTML(elem_id="analogy-status")
    answers = gr.HTML(elem_id="analogy-answers")
    gr.Markdown(render.definitions(_, "recipe weight", "cosine", "analogy") + "\n\n" +
                _("Neighbours: the nearest of the {count} most frequent tokens of the training text, in "
                  "{space}.").format(count=f"{len(state.vocabulary):,}", space=state.token_space))
    show = functools.partial(show_token, state)
    button.click(show, word, [status, bars, neighbours], api_name="token", **UNQUEUED)
    word.submit(show, word, [status, bars, neighbours], api_name=False, **UNQUEUED)
    solve.click(functools.partial(solve_analogy, state), [a, b, c], [analogy_status, answers],
                api_name="analogy", **UNQUEUED)
    return [word, status, bars, neighbours]


def signal_tab(state: ExplorerState) -> dict:
    _ = translator(state.cfg.lang)
    with gr.Row():
        signal = gr.Number(0, label=_("signal id"), elem_id="signal-id")
        button = gr.Button(_("Show signal"), variant="primary", elem_id="signal-button")
    status = gr.HTML(elem_id="signal-status")
    with gr.Row():
        histogram = gr.HTML(elem_id="signal-histogram")
        codebook = gr.HTML(elem_id="signal-codebook")
    gr.Markdown(_("**Top-activating contexts** (activation, a link to the text in the lens, the text shaded "
                  "by the signal)"))
    contexts = gr.HTML(elem_id="signal-contexts")
    with gr.Row():
        probe_text = gr.Textbox("To be, or not to be, that is the question", elem_id="signal-probe-prompt",
                                label=_("test the signal on your text"))
        probe_button = gr.Button(_("Test"), elem_id="signal-probe-button")
    probe = gr.HTML(elem_id="signal-probe")
    with gr.Accordion(_("All signals (click a header to sort, a row to open it)"), open=False):
        signal_table = gr.Dataframe(headers=["signal", "firing rate %", "selectivity", "top token"],
                                    value=lambda: all_signals(state), interactive=False, max_height=400,
                                    elem_id="signal-list")
    has_codebook = state.reading is None or state.reading.recipes is not None  # an SAE latent has none
    activation = state.reading.definition if state.reading is not None else "activation"
    gr.Markdown(render.definitions(_, *["codebook"] * has_codebook, activation, "firing rate", "selectivity",
                                   "contexts"))
    outputs = [status, histogram, codebook, contexts]
    show = functools.partial(show_signal, state)
    button.click(show, signal, outputs, api_name="signal", **UNQUEUED)
    probe_button.click(functools.partial(probe_signal, state), [signal, probe_text], [probe],
                       api_name="probe", **UNQUEUED)

    def open_row(event: gr.SelectData):
        chosen = event.row_value[0]
        return chosen, *show(chosen)

    signal_table.select(open_row, None, [signal, *outputs], api_name=False, **UNQUEUED).then(
        None, None, None, js="() => window.explorerRemember('signal')")
    return [signal, *outputs]


def all_signals(state: ExplorerState) -> list[list]:
    try:
        return render.signal_list_rows(state.tokenizer, views.signal_list(state))
    except UserError:
        return []


def lens_tab(state: ExplorerState) -> dict:
    _ = translator(state.cfg.lang)
    prompt = gr.Textbox(DEFAULT_LENS_PROMPT, label=_("prompt"), lines=2, elem_id="lens-prompt")
    with gr.Row():
        target = gr.Textbox(" be", elem_id="lens-target",
                            label=_("target token (empty: the model's own prediction; or #ID, a token id)"))
        position = gr.Number(-1, label=_("signal-flow position (-1 = last)"), elem_id="lens-position")
        button = gr.Button(_("Run lens"), variant="primary", elem_id="lens-button")
    status = gr.HTML(elem_id="lens-status")
    heatmap = gr.HTML(elem_id="lens-heatmap")
    flow = gr.HTML(elem_id="lens-flow")
    gr.Markdown(render.definitions(_, "logit lens", "signal flow", "drivers") + "\n\n" +
                _("The heatmap shows at most the last {count} positions.").format(count=views.LENS_POSITIONS))
    button.click(functools.partial(run_lens, state), [prompt, target, position], [status, heatmap, flow],
                 api_name="lens", **UNQUEUED)
    return [prompt, target, position, status, heatmap, flow]


def intervene_tab(state: ExplorerState) -> list:
    _ = translator(state.cfg.lang)
    prompt = gr.Textbox(DEFAULT_LENS_PROMPT, label=_("prompt"), lines=2, elem_id="intervene-prompt")
    kinds = views.INTERVENTIONS if state.factorization else [views.ADD_DIRECTION]
    kind = gr.Radio(kinds, value=kinds[0], label=_("intervention"), elem_id="intervene-kind")
    visible = [update["visible"] for update in intervention_fields(kinds[0], views.CONCEPT)]
    with gr.Row():
        signals = gr.Textbox("", label=_("signals to remove (ids, e.g. 3, 17, 42)"),
                             elem_id="intervene-signals", visible=visible[0])
        layer = gr.Number(state.n_layer // 2, label=_("layer (0 to {last})").format(last=state.n_layer - 1),
                          elem_id="intervene-layer", visible=visible[1])
        alpha = gr.Number(1.0, label=_("alpha (|alpha| <= {limit})").format(limit=f"{views.ALPHA_LIMIT:g}"),
                          elem_id="intervene-alpha", visible=visible[2])
    with gr.Row():
        directions = views.DIRECTIONS if state.factorization else [views.CONCEPT, views.SENTIMENT]
        direction = gr.Radio(directions, value=views.CONCEPT, label=_("direction to add"),
                             elem_id="intervene-direction", visible=visible[3])
        concept = gr.Textbox(" love", label=_("concept word"), elem_id="intervene-concept",
                             visible=visible[4])
        steer_signal = gr.Number(0, label=_("signal to steer along"), elem_id="intervene-steer-signal",
                                 visible=visible[5])
        positions = gr.Textbox("", label=_("prompt positions (e.g. 0 3 -1; empty: every position)"),
                               elem_id="intervene-positions", visible=visible[6])
        watch = gr.Textbox(" be", label=_("watched word (probability and rank before and after)"),
                           elem_id="intervene-watch")
    with gr.Row():
        temperature = gr.Number(1.0, label=_("sample temperature (0 = greedy)"),
                                elem_id="intervene-temperature")
        top_k = gr.Number(40, label=_("sample top-k (0 = all)"), elem_id="intervene-top-k")
        tokens = gr.Number(30, label=_("sample tokens"), elem_id="intervene-tokens")
        seed = gr.Number(0, label=_("seed"), elem_id="intervene-seed")
    button = gr.Button(_("Run intervention"), variant="primary", elem_id="intervene-button")
    status = gr.HTML(elem_id="intervene-status")
    summary = gr.HTML(elem_id="intervene-summary")
    headers = ["#", "token", "p before", "p after"]
    with gr.Row():
        before = gr.Dataframe(headers=headers, label=_("top-10 before"), elem_id="intervene-before",
                              interactive=False)
        after = gr.Dataframe(headers=headers, label=_("top-10 after"), elem_id="intervene-after",
                             interactive=False)
    with gr.Row():
        plain = gr.Textbox(label=_("sample without the intervention"), lines=5, elem_id="intervene-plain")
        steered = gr.Textbox(label=_("sample with it (same seed)"), lines=5, elem_id="intervene-steered")
    missing = "" if state.factorization else "\n\n" + _("Signal removal is unavailable: {note}.").format(
        note=state.factorization_note)
    gr.Markdown(render.definitions(_, "readout removal", "residual removal", "added direction", "probability",
                                   "KL") + missing)
    fields = [signals, layer, alpha, direction, concept, steer_signal, positions]
    kind.change(intervention_fields, [kind, direction], fields, api_name=False, **UNQUEUED)
    direction.change(intervention_fields, [kind, direction], fields, api_name=False, **UNQUEUED)
    button.click(functools.partial(run_intervention, state),
                 [prompt, kind, signals, layer, alpha, direction, concept, steer_signal, positions, watch,
                  temperature, top_k, tokens, seed],
                 [status, summary, before, after, plain, steered], api_name="intervene")
    return [prompt, kind, signals, watch, status, summary, before, after]


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve the page (no share link); returns Gradio's (server app, local URL, share URL)."""
    app.queue(default_concurrency_limit=4)  # two tabs at once; the model lock serializes forwards
    return app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                      quiet=True, theme=theme(), css=render.CSS, head=NAVIGATION_SCRIPT, ssr_mode=False,
                      footer_links=[])
