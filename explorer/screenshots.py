"""The README's screenshots of the explorer, taken with the browser tests' own steps (explorer/browser.py).

    python -m explorer.screenshots config/train_shakespeare_reflow.py [--ckpt PATH] [--out docs]

Writes, in OUT:
- explorer_token.png: the Token view after a second lookup (the config's second probe word, looked up
  after the first: the case where a chart must redraw), with an analogy;
- explorer_signal.png: the Signal view opened by clicking that token's strongest recipe bar;
- explorer_lens.png: the Lens on the config's first target prompt;
- explorer_intervene.png: the config's first concept word added at the middle layer.
"""

import argparse
import sys
from pathlib import Path

from core.config import load_config
from core.errors import UserError, exit_on_user_error
from explorer import views
from explorer.browser import ExplorerPage, chromium, chromium_path, served
from explorer.state import load_state

CONCEPT_ALPHA = 0.5
SAMPLE_TOKENS = 40
FILES = ("explorer_token.png", "explorer_signal.png", "explorer_lens.png", "explorer_intervene.png")


@exit_on_user_error
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m explorer.screenshots")
    parser.add_argument("config")
    parser.add_argument("--ckpt")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    if chromium_path() is None:
        raise UserError("Chromium is not installed; apt-get install -y chromium")
    cfg = load_config(args.config)
    state = load_state(cfg, args.ckpt)
    out = Path(args.out)
    token_png, signal_png, lens_png, intervene_png = (out / name for name in FILES)
    with served(state) as url, chromium() as browser:
        page = ExplorerPage(browser, url)
        page.show_token(cfg.probe_words[0])
        page.show_token(cfg.probe_words[1])  # the second lookup: its own bars must be drawn
        a, b, c = cfg.analogies[0][:3]
        page.type("analogy-a", a)
        page.type("analogy-b", b)
        page.type("analogy-c", c)
        page.press("analogy-button")
        page.wait_for_drawn("#token-recipe [aria-label]")
        page.wait_for_drawn("#analogy-grid td")
        page.screenshot(token_png)
        page.follow(page.page.locator("#token-recipe a").first)
        page.wait_for_drawn("#signal-contexts .explorer-active")
        page.screenshot(signal_png)
        prompt, target = cfg.target_prompts[0]
        page.run_lens(prompt, target)
        page.wait_for_drawn("#lens-grid")
        page.screenshot(lens_png)
        page.intervene(prompt, views.ADD_DIRECTION, layer=state.n_layer // 2, alpha=CONCEPT_ALPHA,
                       direction=views.CONCEPT, concept=cfg.concept_words[0], watch=target,
                       tokens=SAMPLE_TOKENS, seed=0)
        page.wait_for_drawn("#intervene-after [role=gridcell]")
        page.screenshot(intervene_png)
        if page.external_requests():
            raise UserError(f"the page made requests outside this machine: {page.external_requests()}")
    print("wrote " + ", ".join(str(out / name) for name in FILES))


if __name__ == "__main__":
    main(sys.argv[1:])
