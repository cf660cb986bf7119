"""The explorer in a real headless Chromium: one app on a tiny reflow checkpoint, shared by the tests,
driven with the same steps (explorer/browser.py) that take the README's screenshots.

What an answer draws can land a little after Gradio hides its progress indicator (charts and HTML
render asynchronously, later still on a loaded machine), so the tests wait for what they check:
Playwright's `expect`, which retries until it holds or times out, ExplorerPage.table, which waits for
its rows, or `eventually` for a chart's drawn values (read from its bars' aria-labels); never a one-off
count. Every token and signal is a link: the walk from view to view is by clicks, and each address the
walk leaves in the bar reopens its view.
"""

import re
import socket
import time

import pytest
from explorer_workspace import make_state
from train_fixtures import one_thread  # noqa: F401  (autouse: one torch thread)

from explorer import render, views
from explorer.browser import VIEWPORT, ExplorerPage, chromium, chromium_path, served

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


def drawn_bars(page, element_id: str, prefix: str, parse) -> list:
    """What a chart in the page draws, bar by bar, read from each bar's aria-label."""
    return [parse(label) for label in page.drawn_labels(element_id, prefix)]


def recipe_bar(label: str) -> tuple[int, float]:
    """'signal: s9; weight: 0.0605' -> (9, 0.0605); Vega writes its minus as U+2212."""
    signal, weight = re.fullmatch(r"signal: s(\d+); weight: (\S+)(; sign: .)?", label).group(1, 2)
    return int(signal), float(weight.replace("\u2212", "-"))


def histogram_bar(label: str) -> int:
    return int(label.rsplit(": ", 1)[1])


def eventually(read, expected, timeout_s: float = 30.0):
    """`read()` once it equals `expected` (an answer is drawn a little after it arrives), or its last
    value after `timeout_s`, for the assertion to show."""
    deadline = time.monotonic() + timeout_s
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def rounded_recipe(recipe) -> list[tuple[int, float]]:
    return [(s, round(w, 4)) for s, w in recipe]


def test_each_lookup_draws_its_own_token_s_recipe(explorer, page):
    """Three lookups in a row: the bars drawn are each token's own recipe, in its own order (Gradio's
    BarPlot, given data and a sort together, drew the previous token's bars in the new order)."""
    state = explorer[0]
    for word in (" he", " she", " the"):
        page.show_token(word)
        card = views.token_card(state, word)
        expect(page.locator("token-status")).to_contain_text(f"is token {card.token}")
        read = lambda: rounded_recipe(drawn_bars(page, "token-recipe", "signal: ", recipe_bar))  # noqa: E731
        assert eventually(read, rounded_recipe(card.recipe)) == rounded_recipe(card.recipe), word
        neighbours = page.page.locator("#neighbours-grid td:nth-child(2)")
        expect(neighbours).to_have_text([state.tokenizer.label(t) for t, _ in card.neighbours])


def test_each_signal_draws_its_own_histogram_and_contexts(explorer, page):
    state = explorer[0]
    for signal in (3, 11):
        page.show_signal(signal)
        card = views.signal_card(state, signal)
        expect(page.locator("signal-status")).to_contain_text(f"signal {signal}: firing rate")
        counts = card.histogram[0]
        assert eventually(lambda: drawn_bars(page, "signal-histogram", "activation ", histogram_bar),
                          counts) == counts
        peaks = [state.tokenizer.label(c.tokens[c.active]).replace("\\n", "⏎").replace("·", " ")
                 for c in card.contexts]
        expect(page.page.locator("#signal-contexts .explorer-active")).to_have_text(peaks)
        codebook = page.page.locator("#codebook-grid td:nth-child(1)")
        expect(codebook).to_have_text([state.tokenizer.label(t) for t, _ in card.promotes])


def test_the_list_of_signals_sorts_and_opens_one_and_the_probe_reads_my_text(explorer, page):
    state = explorer[0]
    page.tab("Signal")
    page.page.get_by_role("button", name="All signals").click()
    header = page.page.locator("#signal-list th[title=selectivity]")
    header.hover()  # the column's menu shows on hover
    header.get_by_role("button", name="Open cell menu").click(force=True)
    page.page.get_by_role("menuitem", name="Sort descending").click()
    most_selective = int(state.signal_stats.selectivity.argmax())
    rows = page.page.locator("#signal-list [role=row]:has([role=gridcell])")
    first_row = rows.first.locator("[role=gridcell]")
    expect(first_row.first).to_have_text(str(most_selective))
    page.follow(first_row.nth(3))  # a click on the row opens that signal
    expect(page.locator("signal-status")).to_contain_text(f"signal {most_selective}: firing rate")
    assert f"view=signal&signal={most_selective}" in page.page.url
    text = "I think that the man said"
    page.type("signal-probe-prompt", text)
    page.press("signal-probe-button")
    _, tokens, activations = views.signal_on_text(state, most_selective, text)
    shaded = page.page.locator("#signal-probe-text a")
    expect(shaded).to_have_count(len(tokens))
    expected = [f"{state.tokenizer.label(t)}: a = {a:+.3f}" for t, a in zip(tokens, activations, strict=True)]
    assert [shaded.nth(i).get_attribute("title") for i in range(len(tokens))] == expected


def test_token_signal_token_lens_by_clicks_and_the_address_reopens_each_view(explorer, page):
    state = explorer[0]
    page.tab("Lens")
    page.type("lens-prompt", "I think that the man said")  # the walk's lens reads this prompt
    page.show_token(" he")
    strongest = views.token_card(state, " he").recipe[0][0]
    page.follow(page.page.locator("#token-recipe a").first)  # the strongest bar
    expect(page.locator("signal-status")).to_contain_text(f"signal {strongest}: firing rate")
    expect(page.page.get_by_role("tab", name="Signal", exact=True)).to_have_attribute("aria-selected", "true")
    assert f"view=signal&signal={strongest}" in page.page.url
    he = views.parse_word(state, " he")
    promoted = next(t for t, _ in views.signal_card(state, strongest).promotes if t != he)
    page.follow(page.page.locator(f"#codebook-grid a[href='?view=token&token={promoted}']"))
    expect(page.locator("token-status")).to_contain_text(f"is token {promoted}")
    expect(page.page.locator("#token-word textarea")).to_have_value(state.tokenizer.word(promoted))
    token_url = page.page.url
    page.follow(page.locator("token-status").get_by_text("see it as the logit lens target"))
    expect(page.page.get_by_role("tab", name="Lens", exact=True)).to_have_attribute("aria-selected", "true")
    shown = state.tokenizer.label(promoted).replace('·', ' ')
    expect(page.locator("lens-heatmap")).to_contain_text(f"target {shown!r}")
    lens_url = page.page.url
    lens_caption = page.locator("lens-heatmap").locator(".explorer-note").inner_text().split(". Cell")[0]
    idx = views.parse_prompt(state, "I think that the man said")
    flow_signal = views.signal_flow(state, idx, views.residual_states(state, idx), -1).signals[0]
    page.follow(page.page.locator("#flow-grid th a").first)  # lens -> the strongest signal
    expect(page.locator("signal-status")).to_contain_text(f"signal {flow_signal}: firing rate")
    page.page.go_back()  # Back reopens the lens
    expect(page.page.get_by_role("tab", name="Lens", exact=True)).to_have_attribute("aria-selected", "true")
    for url, element, text in ((token_url, "token-status", f"is token {promoted}"),
                               (lens_url, "lens-heatmap", lens_caption)):
        reopened = ExplorerPage(explorer[2], url)  # a shared address opens the same view
        expect(reopened.locator(element)).to_contain_text(text)
        reopened.page.close()


@pytest.fixture
def narrow(page):
    """The page in a window narrower than the lens's 24 positions (a small laptop's, side by side)."""
    page.page.set_viewport_size({"width": 720, "height": VIEWPORT["height"]})
    yield page
    page.page.set_viewport_size(VIEWPORT)


def test_lens_log_scale_legend_last_position_and_an_ablate_link(explorer, narrow):
    state, page = explorer[0], narrow
    prompt = " the man said that he would" * 4  # 28 tokens: the last 24 are wider than the window
    page.run_lens(prompt, " the")
    expect(page.locator("lens-status")).to_have_text("")
    idx = views.parse_prompt(state, prompt)
    lens = views.logit_lens(state, idx, views.residual_states(state, idx), " the")
    cells = page.page.locator("#lens-grid tr").nth(len(lens.layers)).locator("td")  # the last layer
    expect(cells).to_have_count(len(lens.positions))
    expect(cells.last).to_have_attribute("data-target-rank", str(int(lens.target_ranks[-1, -1])))
    expect(page.locator("lens-legend")).to_be_visible()
    scroll = page.locator("lens-scroll")
    assert scroll.evaluate("e => e.scrollWidth > e.clientWidth")  # wider than the page: it scrolls
    header = page.page.locator("#lens-grid tr").first.locator("th")
    box, first, last = scroll.bounding_box(), header.nth(1).bounding_box(), header.last.bounding_box()
    assert box["x"] <= last["x"] and last["x"] + last["width"] <= box["x"] + box["width"] + 1  # last shown
    assert first["x"] < box["x"]  # the first positions are scrolled off to the left
    final = page.page.locator("#flow-grid tr").first.locator("th").last
    final.scroll_into_view_if_needed()  # every flow column can be reached
    expect(final).to_be_in_viewport()
    drivers = views.drivers(state, idx, views.residual_states(state, idx), -1)
    page.follow(page.page.locator("#drivers-grid").get_by_role("link", name="ablate").first)  # -> Intervene
    intervene_tab = page.page.get_by_role("tab", name="Intervene", exact=True)
    expect(intervene_tab).to_have_attribute("aria-selected", "true")
    strongest = drivers.rows[0][0]
    expect(page.page.locator("#intervene-signals textarea")).to_have_value(str(strongest))
    assert "view=intervene" in page.page.url and f"signals={strongest}" in page.page.url
    removal = views.build_intervention(state, idx, views.REMOVE_AT_READOUT, str(strongest))
    result = views.next_tokens(state, idx, removal)
    predicted = page.page.locator("#intervene-watched tr").nth(1).locator("td")
    token = drivers.token  # the prediction, top-1 before; removing its strongest share lowers it
    label, before = state.tokenizer.label(token), render.probability(result.before[token].item())
    expect(predicted).to_have_text([label, before, "1", render.probability(result.after[token].item()),
                                    str(result.rank(token, "after"))])


def test_intervention_shows_only_its_fields_and_the_change_it_made(explorer, page):
    state = explorer[0]
    idx = views.parse_prompt(state, "I think that")
    strongest = views.signal_flow(state, idx, views.residual_states(state, idx), -1).signals[:4]
    page.intervene("I think that", views.REMOVE_AT_READOUT, signals=" ".join(map(str, strongest)), tokens=8,
                   watch=" the")
    expect(page.locator("intervene-alpha")).to_be_hidden()
    expect(page.locator("intervene-layer")).to_be_hidden()
    expect(page.locator("intervene-status")).to_contain_text("weights unchanged (checked)")
    result = views.next_tokens(state, idx, views.build_intervention(state, idx, views.REMOVE_AT_READOUT,
                                                                    " ".join(map(str, strongest))))
    expect(page.locator("intervene-change")).to_contain_text(f"KL(before || after) = {result.kl():.4f} nats")
    the = views.parse_word(state, " the")
    expect(page.page.locator("#intervene-watched tr").nth(1).locator("td")).to_have_text(
        ["·the", render.probability(result.before[the].item()), str(result.rank(the, "before")),
         render.probability(result.after[the].item()), str(result.rank(the, "after"))])
    before = page.table("intervene-before", views.TOP_NEXT)
    assert [row[2] for row in before] != [row[3] for row in before]  # p before vs p after differ
    expect(page.page.locator("#intervene-steered textarea")).not_to_have_value("")
    page.choose("intervene-kind", views.ADD_DIRECTION)
    expect(page.locator("intervene-signals")).to_be_hidden()
    expect(page.locator("intervene-alpha")).to_be_visible()
    expect(page.locator("intervene-temperature")).to_be_visible()
    expect(page.locator("intervene-steer-signal")).to_be_hidden()  # for a signal's direction only
    page.intervene("I think that", views.ADD_DIRECTION, layer=0, alpha=2.0, direction=views.SIGNAL_DIRECTION,
                   steer_signal=5, positions="0 -1", tokens=4)
    expect(page.locator("intervene-concept")).to_be_hidden()
    expect(page.locator("intervene-status")).to_contain_text(
        "signal 5 direction added after layer 0 at prompt positions [0, 2] with alpha 2")
    steered = views.next_tokens(state, idx, views.build_intervention(
        state, idx, views.ADD_DIRECTION, layer_value=0, alpha_value=2.0, direction=views.SIGNAL_DIRECTION,
        steer_signal=5, positions_text="0 -1"))
    expect(page.locator("intervene-change")).to_contain_text(f"KL(before || after) = {steered.kl():.4f} nats")


def test_bad_input_shows_a_message_and_the_server_keeps_serving(page):
    page.show_signal(99)
    expect(page.locator("signal-status")).to_contain_text(
        "signal 99 does not exist; this model has signals 0 to 15")
    expect(page.page.locator("#signal-contexts .explorer-active")).to_have_count(0)
    page.show_signal(3.5)
    expect(page.locator("signal-status")).to_contain_text("signal: 3.5 is not a whole number")
    page.show_signal("")
    expect(page.locator("signal-status")).to_contain_text("signal: the box is empty")
    page.show_token("w" * 5000)
    expect(page.locator("token-status")).to_contain_text("5,000 characters is far longer than one token")
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


def test_lang_zh_serves_a_chinese_page(explorer, tmp_path):
    """lang='zh' (python explore.py CONFIG --lang=zh): the tabs, buttons, status and error lines are
    drawn in Chinese, also after a second lookup; the English page (the other tests) is unchanged."""
    state = make_state(tmp_path, "reflow", lang="zh")
    with served(state) as url:
        page = ExplorerPage(explorer[2], url)
        expect(page.page.get_by_role("tab", name="词元", exact=True)).to_be_visible()
        expect(page.page.get_by_role("tab", name="Token", exact=True)).to_have_count(0)
        page.tab("词元")
        expect(page.locator("token-button")).to_have_text("显示词元")
        for word in (" he", " she"):  # the second answer must replace the first
            page.type("token-word", word)
            page.press("token-button")
            token = views.parse_word(state, word)
            expect(page.locator("token-status")).to_contain_text(
                f"{state.tokenizer.label(token)!r} 是第 {token} 号词元 · 在 logit 透镜中作为目标查看")
        page.type("token-word", "kingdomship")  # a mistake reads in Chinese, what was typed as typed
        page.press("token-button")
        expect(page.locator("token-status")).to_contain_text(
            "词：'kingdomship' 是 3 个 GPT-2 词元（'king' + 'doms' + 'hip'），而不是一个；请用单个词元的词；"
            "试试 ' kingdomship'")
        page.tab("信号")
        page.type("signal-id", 1)
        page.press("signal-button")
        expect(page.locator("signal-status")).to_contain_text("信号 1：激活频率")
        page.tab("透镜")
        page.type("lens-prompt", "I think that the man said")
        page.type("lens-target", "")
        page.press("lens-button")
        expect(page.locator("lens-flow")).to_contain_text("之后驱动预测")
        assert page.errors == []
        page.page.close()


def test_nothing_leaves_the_machine(page, outgoing_connections):
    """Run last in this module: after every tab was used, no request left 127.0.0.1, from the
    page (assets, fonts, analytics) or from the server."""
    assert page.external_requests() == []
    assert len(page.requests) > 10  # the page did load its assets, locally
    assert page.errors == []  # and its script (links, addresses) never threw
    remote = [address for address in outgoing_connections
              if not (isinstance(address, tuple) and address[0] in LOOPBACK) and not isinstance(address, str)]
    assert remote == []
