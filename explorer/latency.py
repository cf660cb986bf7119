"""How fast the explorer answers: start-up by stage, then every view (python explore.py CONFIG --benchmark).

Targets (issue 14, Shakespeare checkpoint, 2 CPU cores): start-up under 15 s; every interaction that
does not generate text answers within 300 ms. Each view is timed twice: its handler called directly
(computation and formatting), and a round trip through the running server with gradio_client (HTTP
and Gradio's protocol added; a browser also draws the answer). Generation is reported per token.
Run on a quiet machine.
"""

import statistics
import time

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


def first_yield(generator):
    """The first thing a streaming handler shows (the intervention's top-10 tables)."""
    return next(iter(generator))


def run_benchmark(cfg: Config, ckpt: str | None) -> None:
    start = time.perf_counter()
    from explorer import app, views  # gradio's import is part of start-up
    from explorer.state import load_state
    import_s = time.perf_counter() - start
    state = load_state(cfg, ckpt)
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
    intervene = lambda kind: first_yield(app.run_intervention(state, prompt, kind, signals, layer, 1.0,  # noqa: E731
                                                              views.CONCEPT, concept, 20, 0))
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

    tokens = 64
    start = time.perf_counter()
    for _ in views.generate_text(state, prompt, 0.8, 40, tokens, 0):
        pass
    per_token = 1000 * (time.perf_counter() - start) / tokens
    print(f"\nGenerate: {per_token:.1f} ms per token ({tokens} tokens after {prompt!r}, KV cache).")
    page.close()
