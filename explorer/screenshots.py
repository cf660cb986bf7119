"""The README's screenshots of the explorer, taken with the browser tests' own steps (explorer/browser.py).

    python -m explorer.screenshots config/train_shakespeare_reflow.py [--ckpt PATH] [--out docs]

Writes OUT/explorer_token.png (the Token view of the config's first probe word, with an analogy) and
OUT/explorer_intervene.png (the config's first concept word added at the middle layer).
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
    with served(state) as url, chromium() as browser:
        page = ExplorerPage(browser, url)
        page.show_token(cfg.probe_words[0])
        a, b, c = cfg.analogies[0][:3]
        page.type("analogy-a", a)
        page.type("analogy-b", b)
        page.type("analogy-c", c)
        page.press("analogy-button")
        page.wait_for_drawn("#token-recipe canvas, #token-recipe svg")
        page.wait_for_drawn("#analogy-answers [role=gridcell]")
        page.screenshot(out / "explorer_token.png")
        page.intervene(cfg.target_prompts[0][0], views.ADD_DIRECTION, layer=state.n_layer // 2,
                       alpha=CONCEPT_ALPHA, direction=views.CONCEPT, concept=cfg.concept_words[0],
                       tokens=SAMPLE_TOKENS, seed=0)
        page.wait_for_drawn("#intervene-after [role=gridcell]")
        page.screenshot(out / "explorer_intervene.png")
        if page.external_requests():
            raise UserError(f"the page made requests outside this machine: {page.external_requests()}")
    print(f"wrote {out / 'explorer_token.png'} and {out / 'explorer_intervene.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
