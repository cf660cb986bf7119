"""How fast the explorer answers: start-up by stage, then every view (python explore.py CONFIG --benchmark).

Targets (issues 14 and 24, Shakespeare checkpoint, 2 CPU cores): start-up under 15 s; every interaction
that does not generate text drawn within 300 ms of the click. Each view is timed three ways: its
handler called directly (computation and formatting), a round trip through the running server with
gradio_client (HTTP and Gradio's protocol added), and click-to-drawn in headless Chromium (where it is
installed): from the click until the page shows the new answer, measured in the page with
performance.now() and one more animation frame, so layout and paint are in it. Each browser click
alternates between two inputs, so every click must redraw. Generation is reported per token. Run on a
quiet machine; the CPU is printed with the numbers.
"""

import json
import platform
import statistics
import time
from dataclasses import dataclass

import torch

from core.config import Config

REPEATS = 10  # timed calls per view, after one warm-up call
TARGET_MS = 300
STARTUP_TARGET_S = 15


def timed(call, repeats: int = REPEATS) -> tuple[float, float]:
    """(median, max) milliseconds of `call()` over `repeats` calls after one warm-up."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), max(times)


@dataclass
class BrowserCase:
    """One interaction for the browser: how to set it up, what to click, and when it is drawn."""
    name: str
    prepare: object  # (ExplorerPage, which: 0 or 1) -> None: fill in the inputs, not timed
    click: str  # CSS selector of what the user clicks
    drawn: object  # which: 0 or 1 -> JavaScript expression, true once that answer is drawn


# Click, then wait in the page (one check per animation frame) until the answer is drawn, then one
# more frame so it is painted: the milliseconds a user waits.
CLICK_TO_DRAWN_JS = """async ([selector, drawn]) => {
  const isDrawn = new Function(`return (${drawn});`);
  const start = performance.now();
  document.querySelector(selector).click();
  const frame = () => new Promise(resolve => requestAnimationFrame(resolve));
  while (!isDrawn()) {
    if (performance.now() - start > 60000) return -1;
    await frame();
  }
  await frame();
  return performance.now() - start;
}"""


def browser_latencies(url: str, cases: list[BrowserCase], repeats: int = REPEATS) -> dict[str, tuple]:
    """{case name: (median, max) click-to-drawn ms} in headless Chromium, after one warm-up per input."""
    from explorer.browser import ExplorerPage, chromium

    results = {}
    with chromium() as browser:
        page = ExplorerPage(browser, url)
        for case in cases:
            times = []
            for attempt in range(repeats + 2):
                which = attempt % 2
                case.prepare(page, which)
                ms = page.page.evaluate(CLICK_TO_DRAWN_JS, [case.click, case.drawn(which)])
                if ms < 0:
                    raise RuntimeError(f"{case.name}: the answer was not drawn within 60 s")
                if attempt >= 2:  # the first of each input warms up
                    times.append(ms)
            results[case.name] = (statistics.median(times), max(times))
        page.page.close()
    return results


def js_string(text: str) -> str:
    """A JavaScript string literal of `text`."""
    return json.dumps(text)


def browser_cases(state, cfg) -> list[BrowserCase]:
    """Token (two words), a recipe bar's link, Signal (two ids), Lens (two targets) and Intervene's
    summary (two signal sets), each checked by what the page draws for that input."""
    from explorer import render, views

    cards = {w: views.token_card(state, w) for w in cfg.probe_words}
    strongest = {w: card.recipe[0][0] if card.recipe else None for w, card in cards.items()}
    # Two words whose strongest signals differ, so that following a bar also changes the answer.
    words = next(([a, b] for a in cfg.probe_words for b in cfg.probe_words
                  if a != b and strongest[a] != strongest[b]), cfg.probe_words[:2])
    cards = [cards[w] for w in words]
    prompt, target = cfg.target_prompts[0]
    targets = [target, cfg.probe_words[0]]

    def fill(element_id, values):
        return lambda page, which: page.type(element_id, values[which])

    def token_drawn(which):
        card = cards[which]
        check = f"document.querySelector('#token-status')?.innerText.includes('is token {card.token}')"
        if card.recipe:
            s, w = card.recipe[0]
            first = js_string(f"signal: s{s}; weight: {w:.6g}")
            check += (" && document.querySelector('#token-recipe [aria-label]')?.getAttribute('aria-label')"
                      f" === {first}")
        return check

    def on_tab(name, then):
        def prepare(page, which):
            page.tab(name)
            then(page, which)
        return prepare

    cases = [BrowserCase(f"Token: {words[0]!r} / {words[1]!r}", on_tab("Token", fill("token-word", words)),
                         "#token-button", token_drawn)]
    if state.factorization is not None:
        signals = [card.recipe[0][0] for card in cards]
        books = [views.signal_card(state, s).promotes[0][0] for s in signals]

        def signal_drawn(which):
            status = f"signal {signals[which]}:"
            return (f"document.querySelector('#signal-status')?.innerText.includes('{status}') && "
                    "document.querySelector('#codebook-grid a')?.getAttribute('href') === "
                    f"{js_string(render.view_url('token', token=books[which]))}")

        def open_token_then_bar(page, which):
            page.tab("Token")
            page.type("token-word", words[which])
            page.press("token-button")
            page.wait_for_drawn(f"#token-recipe a[href='{render.view_url('signal', signal=signals[which])}']")

        cases.append(BrowserCase("Token -> Signal: click a recipe bar", open_token_then_bar,
                                 "#token-recipe a", signal_drawn))
        signal_tab = on_tab("Signal", fill("signal-id", signals))
        cases.append(BrowserCase(f"Signal: {signals[0]} / {signals[1]}", signal_tab, "#signal-button",
                                 signal_drawn))

    def lens_drawn(which):
        shown = state.tokenizer.label(views.parse_word(state, targets[which])).replace("·", " ")
        word = js_string(f"target {shown!r}")
        return f"document.querySelector('#lens-heatmap')?.innerText.includes({word})"

    def lens_prepare(page, which):
        page.tab("Lens")
        page.type("lens-prompt", prompt)
        page.type("lens-target", targets[which])

    cases.append(BrowserCase(f"Lens: {prompt!r}, target {targets[0]!r} / {targets[1]!r}", lens_prepare,
                             "#lens-button", lens_drawn))
    return cases


def first_yield(generator):
    """The first thing a streaming handler shows (the intervention's top-10 tables)."""
    return next(iter(generator))


def run_benchmark(cfg: Config, ckpt: str | None, sae: str | None = None) -> None:
    start = time.perf_counter()
    from explorer import app, views  # gradio's import is part of start-up
    from explorer.state import load_state
    import_s = time.perf_counter() - start
    state = load_state(cfg, ckpt, sae)
    start = time.perf_counter()
    page = app.build_app(state)
    _, url, _ = app.launch(page, block=False)
    serve_s = time.perf_counter() - start
    stages = {"import gradio and the explorer": import_s, **state.timings,
              "build page and start server": serve_s}
    total = sum(stages.values())
    print(f"## Explorer latency: {state.checkpoint} ({state.model_name}), "
          f"{torch.get_num_threads()} torch threads\n")
    print("| start-up stage | s |\n| --- | --- |")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"| **total** (target < {STARTUP_TARGET_S} s; Python and torch import not included) "
          f"| **{total:.2f}** |\n")

    word = cfg.probe_words[0]
    a, b, c = cfg.analogies[0][:3]
    prompt, target = cfg.target_prompts[0]
    idx = views.parse_prompt(state, prompt)
    signals = ""
    if state.factorization is not None:
        strongest = views.signal_flow(state, idx, views.residual_states(state, idx), -1).signals[:3]
        signals = " ".join(map(str, strongest))
    concept = cfg.concept_words[0]
    layer = state.n_layer // 2
    intervene = lambda kind: first_yield(app.run_intervention(  # noqa: E731
        state, prompt, kind, signals, layer, 1.0, views.CONCEPT, concept, 0, "", target, 1.0, 40, 20, 0))
    calls = {
        f"Token: {word!r}": (lambda: app.show_token(state, word), "/token", (word,)),
        f"Token: analogy {a!r} - {b!r} + {c!r}": (lambda: app.solve_analogy(state, a, b, c), "/analogy",
                                                  (a, b, c)),
        "Signal: 0": (lambda: app.show_signal(state, 0), "/signal", (0,)),
        f"Lens: {prompt!r}": (lambda: app.run_lens(state, prompt, target, -1), "/lens", (prompt, target, -1)),
    }
    kinds = views.INTERVENTIONS if state.factorization is not None else [views.ADD_DIRECTION]
    for kind in kinds:
        calls[f"Intervene: {kind} (top-10 only)"] = (lambda kind=kind: intervene(kind), None, None)

    from gradio_client import Client
    client = Client(url, verbose=False)
    print(f"| interaction | handler median ms | handler max ms | gradio_client round trip median ms "
          f"(target < {TARGET_MS}) |\n| --- | --- | --- | --- |")
    for name, (call, api, args) in calls.items():
        median, worst = timed(call)
        trip = "n/a"
        if api:
            trip = f"{timed(lambda api=api, args=args: client.predict(*args, api_name=api))[0]:.0f}"
        print(f"| {name} | {median:.0f} | {worst:.0f} | {trip} |")

    from explorer.browser import chromium_path
    if chromium_path() is None:
        print("\nClick-to-drawn in the browser: skipped (Chromium is not installed).")
    else:
        print(f"\n| interaction in headless Chromium | click-to-drawn median ms (target < {TARGET_MS}) "
              "| max ms |\n| --- | --- | --- |")
        for name, (median, worst) in browser_latencies(url, browser_cases(state, cfg)).items():
            print(f"| {name} | {median:.0f} | {worst:.0f} |")
        print(f"\nCPU: {cpu_name()}, {torch.get_num_threads()} torch threads.")

    tokens = 64
    start = time.perf_counter()
    for _ in views.generate_text(state, prompt, 0.8, 40, tokens, 0):
        pass
    per_token = 1000 * (time.perf_counter() - start) / tokens
    print(f"\nGenerate: {per_token:.1f} ms per token ({tokens} tokens after {prompt!r}, KV cache).")
    page.close()


def cpu_name() -> str:
    """The CPU's model name (lscpu's), for the record beside the numbers."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
