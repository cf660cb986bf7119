"""The explorer in a real headless Chromium: one app on a tiny reflow checkpoint, shared by the tests,
driven with the same steps (explorer/browser.py) that take the README's screenshots.

What an answer draws can land a little after Gradio hides its progress indicator (charts and HTML
render asynchronously, later still on a loaded machine), so the tests wait for what they check:
Playwright's `expect`, which retries until it holds or times out, or ExplorerPage.table, which waits
for its rows; never a one-off count.
"""

import re
import socket

import pytest
from explorer_workspace import make_state
from train_fixtures import one_thread  # noqa: F401  (autouse: one torch thread)

from explorer import views
from explorer.browser import ExplorerPage, chromium, chromium_path, served

pytest.importorskip("playwright", reason="pip install playwright (the dev extra) to drive Chromium")
from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=30_000)  # generous for a loaded 2-core machine; a pass returns at once
if chromium_path() is None:
    pytest.skip("Chromium is not installed (/usr/bin/chromium); apt-get install -y chromium",
                allow_module_level=True)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(scope="module")
def outgoing_connections():
    """Every address this process connects a socket to while the app runs (the server side of
    'no analytics'): the browser's own requests are recorded by ExplorerPage."""
    seen, original = [], socket.socket.connect

    def recording_connect(sock, address):
        seen.append(address)
        return original(sock, address)

    socket.socket.connect = recording_connect
    yield seen
    socket.socket.connect = original


@pytest.fixture(scope="module")
def explorer(tmp_path_factory, outgoing_connections):
    """(state, url, browser): the app served once for the whole module, and one Chromium."""
    state = make_state(tmp_path_factory.mktemp("explorer_browser"), "reflow")
    with served(state) as url, chromium() as browser:
        yield state, url, browser


@pytest.fixture(scope="module")
def page(explorer):
    state, url, browser = explorer
    return ExplorerPage(browser, url)


def test_token_shows_its_recipe_and_neighbours(explorer, page):
    state = explorer[0]
    page.show_token(" he")
    expected = views.token_card(state, " he").neighbours
    rows = page.table("token-neighbours", views.NEIGHBOURS)
    assert [row[1] for row in rows] == [state.tokenizer.label(t) for t, _ in expected]
    assert float(rows[0][2]) == pytest.approx(expected[0][1], abs=1e-4)
    expect(page.page.locator("#token-recipe canvas, #token-recipe svg").first).to_be_attached()  # the bars


def test_signal_shows_its_top_contexts_highlighted(explorer, page):
    state = explorer[0]
    page.show_signal(3)
    card = views.signal_card(state, 3)
    expect(page.locator("signal-status")).to_contain_text("firing rate")
    highlighted = [token for _, _, token, _ in card.contexts]
    expect(page.page.locator("#signal-contexts mark")).to_have_text(highlighted)
    page.table("signal-codebook", views.CODEBOOK_TOKENS)


def test_lens_draws_a_layer_by_position_heatmap(page):
    page.run_lens("I think that the man", " the")
    expect(page.locator("lens-status")).to_have_text("")  # else the failure shows what the page said
    grid = page.page.locator("#lens-grid tr")
    expect(grid).to_have_count(1 + 3)  # header, embed, L0, L1
    expect(grid.nth(1).locator("td")).to_have_count(5)  # one cell per prompt token
    expect(page.page.locator("#flow-grid tr")).to_have_count(1 + 3)


def test_intervention_changes_the_top_10(explorer, page):
    state = explorer[0]
    idx = views.parse_prompt(state, "I think that")
    strongest = views.signal_flow(state, idx, views.residual_states(state, idx), -1).signals[:4]
    page.intervene("I think that", views.REMOVE_AT_READOUT, signals=" ".join(map(str, strongest)), tokens=8)
    expect(page.locator("intervene-status")).to_contain_text("weights unchanged (checked)")
    before = page.table("intervene-before", views.TOP_NEXT)
    page.table("intervene-after", views.TOP_NEXT)
    assert [row[2] for row in before] != [row[3] for row in before]  # p before vs p after differ
    expect(page.page.locator("#intervene-steered textarea")).not_to_have_value("")


def test_bad_input_shows_a_message_and_the_server_keeps_serving(page):
    page.show_signal(99)
    expect(page.locator("signal-status")).to_contain_text(
        "signal 99 does not exist; this model has signals 0 to 15")
    expect(page.page.locator("#signal-contexts mark")).to_have_count(0)
    page.run_lens(" the" * 40)
    expect(page.locator("lens-status")).to_contain_text("longer than this model's context of 32")
    page.intervene("I think", views.ADD_DIRECTION, layer=0, alpha=1e9)
    expect(page.locator("intervene-status")).to_contain_text("too large")
    assert "Traceback" not in page.page.content()
    page.show_signal(2)  # still serving
    expect(page.locator("signal-status")).to_contain_text("firing rate")


def test_two_tabs_at_once(explorer):
    _, url, browser = explorer
    first, second = ExplorerPage(browser, url), ExplorerPage(browser, url)
    for tab in (first, second):
        tab.tab("Generate")
        tab.type("generate-prompt", "I think that")
        tab.type("generate-max-tokens", 40)
    first.click("generate-button")  # both running at once
    second.press("generate-button")
    first.wait_until_answered()
    for tab in (first, second):  # each tab has its prompt continued
        continued = re.compile(r"^I think that.+", re.S)
        expect(tab.page.locator("#generate-output textarea")).to_have_value(continued)
    first.page.close()
    second.page.close()


def test_nothing_leaves_the_machine(page, outgoing_connections):
    """Run last in this module: after every tab was used, no request left 127.0.0.1, from the
    page (assets, fonts, analytics) or from the server."""
    assert page.external_requests() == []
    assert len(page.requests) > 10  # the page did load its assets, locally
    remote = [address for address in outgoing_connections
              if not (isinstance(address, tuple) and address[0] in LOOPBACK) and not isinstance(address, str)]
    assert remote == []
