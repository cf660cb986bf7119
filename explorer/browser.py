"""Drive the running explorer in headless Chromium (Playwright): the browser tests and the README's
screenshots use these same steps.

Chromium is Debian's (`apt-get install chromium`), started through Playwright's `executable_path`:
`playwright install` would download a browser build, which fails offline.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
LOCAL_PREFIXES = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")
VIEWPORT = {"width": 1280, "height": 900}
CALL_TIMEOUT_MS = 60_000  # one button's answer, generous for a loaded 2-core machine
CLICK_REACHES_SERVER_MS = 10_000  # a click's request leaves at once; this long without one, it was lost
CLICK_ATTEMPTS = 3
FILL_ATTEMPTS = 3
TWO_FRAMES = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


def is_event_call(request) -> bool:
    """A button's call to the app: /run/ (unqueued events) or /queue/join (queued ones)."""
    return "/gradio_api/run/" in request.url or "/gradio_api/queue/join" in request.url


def chromium_path() -> str | None:
    """Debian's Chromium, or None where it is not installed."""
    return next((path for path in CHROMIUM_PATHS if Path(path).exists()), None)


@contextlib.contextmanager
def served(state, port: int | None = None) -> Iterator[str]:
    """The explorer for `state`, served on 127.0.0.1 in this process; yields its URL."""
    from explorer.app import build_app, launch

    app = build_app(state)
    _, url, _ = launch(app, port=port, block=False)
    try:
        yield url
    finally:
        app.close()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Playwright Browser)."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("Chromium is not installed; apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


class ExplorerPage:
    """One browser tab on the explorer, with the steps a user takes, and every request it made."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport=VIEWPORT)
        self.requests: list[str] = []
        self.errors: list[str] = []  # uncaught exceptions in the page's JavaScript
        self.last_call = None  # the request the last click sent
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)
        self.page.get_by_role("tab").first.wait_for()  # the tabs are drawn (named in the page's language)

    def external_requests(self) -> list[str]:
        """Requests that left this machine (anything but 127.0.0.1 and inline data)."""
        return [url for url in self.requests if not url.startswith(LOCAL_PREFIXES)]

    # --- filling in and clicking ---------------------------------------------------------------
    def locator(self, element_id: str):
        return self.page.locator(f"#{element_id}")

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()

    def type(self, element_id: str, text) -> None:
        """Fill a textbox or number field. Gradio can reset a field of a tab just opened to its first
        value once, right after the fill (1 in ~10 on a loaded machine, and the click then sends the
        old text): fill again until the value holds past the next two drawn frames."""
        box = self.locator(element_id).locator("textarea, input").first
        for _ in range(FILL_ATTEMPTS):
            box.fill(str(text))
            self.page.evaluate(TWO_FRAMES)
            if box.input_value() == str(text):
                return
        raise RuntimeError(f"#{element_id} did not keep the text {text!r}, {FILL_ATTEMPTS} times")

    def choose(self, element_id: str, option: str) -> None:
        self.locator(element_id).get_by_text(option, exact=True).click()

    def press(self, button_id: str) -> None:
        """Click a button and wait until every output has its answer."""
        self.click(button_id)
        self.wait_until_answered()

    def click(self, button_id: str) -> None:
        """Click a button and check that the click reached the server. A click that sent nothing (a
        layout still settling can take one) is tried again rather than waited on in silence."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for _ in range(CLICK_ATTEMPTS):
            try:
                with self.page.expect_request(is_event_call, timeout=CLICK_REACHES_SERVER_MS) as sent:
                    self.locator(button_id).click()
                self.last_call = sent.value
                return
            except PlaywrightTimeout:
                continue
        raise RuntimeError(f"clicking #{button_id} sent no request to the server, {CLICK_ATTEMPTS} times")

    def follow(self, link) -> None:
        """Click a link in an answer (a Playwright Locator) and wait until the view it opens answers."""
        with self.page.expect_request(is_event_call, timeout=CLICK_REACHES_SERVER_MS) as sent:
            link.click()
        self.last_call = sent.value
        self.wait_until_answered()

    def wait_until_answered(self) -> None:
        """Wait for the last click's call to be answered (an unqueued view's answer is in the response;
        a queued one's streams after it, while Gradio shows its progress indicator), then until no
        output shows that indicator."""
        if self.last_call is not None:
            self.last_call.response()  # blocks until the server has answered the call
            self.last_call = None
        busy = "[data-testid=status-tracker]:not(.hide)"
        self.page.wait_for_function(f"() => !document.querySelector('{busy}')", timeout=CALL_TIMEOUT_MS)

    def text(self, element_id: str) -> str:
        return self.locator(element_id).inner_text()

    def table(self, element_id: str, rows: int) -> list[list[str]]:
        """The body rows of a Dataframe output as cell texts, once it shows `rows` rows: a table
        can be drawn a little after Gradio reports the answer."""
        from playwright.sync_api import expect

        body = self.locator(element_id).locator("[role=row]:has([role=gridcell])")
        expect(body).to_have_count(rows, timeout=CALL_TIMEOUT_MS)
        return [[cell.strip() for cell in body.nth(i).locator("[role=gridcell]").all_inner_texts()]
                for i in range(rows)]

    def drawn_labels(self, element_id: str, prefix: str) -> list[str]:
        """The aria-labels starting with `prefix` inside an element, in page order: what a chart drew,
        bar by bar ("signal: s9; weight: 0.0605")."""
        return self.page.evaluate(
            "([id, prefix]) => [...document.querySelectorAll(`#${id} [aria-label]`)]"
            ".map(e => e.getAttribute('aria-label')).filter(label => label.startsWith(prefix))",
            [element_id, prefix])

    def wait_for_drawn(self, selector: str) -> None:
        """Wait until an answer's chart or table is in the page (before a screenshot)."""
        self.page.locator(selector).first.wait_for(timeout=CALL_TIMEOUT_MS)

    # --- the tabs' actions ---------------------------------------------------------------------
    def show_token(self, word: str) -> None:
        self.tab("Token")
        self.type("token-word", word)
        self.press("token-button")

    def show_signal(self, signal) -> None:
        self.tab("Signal")
        self.type("signal-id", signal)
        self.press("signal-button")

    def run_lens(self, prompt: str, target: str = "", position=-1) -> None:
        self.tab("Lens")
        self.type("lens-prompt", prompt)
        self.type("lens-target", target)
        self.type("lens-position", position)
        self.press("lens-button")

    def intervene(self, prompt: str, kind: str, signals: str = "", layer=0, alpha=1.0,
                  direction: str | None = None, concept: str = " love", watch: str = "", tokens=20, seed=0,
                  temperature=1.0, top_k=40, steer_signal=0, positions: str = "") -> None:
        """Fill in the Intervene tab and run it; only the boxes that apply to `kind` are shown, and
        filled (views.INTERVENTIONS)."""
        from explorer.views import ADD_DIRECTION, CONCEPT, REMOVE_AT_READOUT, SIGNAL_DIRECTION

        self.tab("Intervene")
        self.type("intervene-prompt", prompt)
        self.choose("intervene-kind", kind)
        if kind != ADD_DIRECTION:
            self.type("intervene-signals", signals)
        if kind != REMOVE_AT_READOUT:
            self.type("intervene-layer", layer)
        if kind == ADD_DIRECTION:
            self.type("intervene-alpha", alpha)
            direction = direction or CONCEPT
            self.choose("intervene-direction", direction)
            if direction == CONCEPT:  # the concept box shows for a concept direction only
                self.type("intervene-concept", concept)
            if direction == SIGNAL_DIRECTION:
                self.type("intervene-steer-signal", steer_signal)
            self.type("intervene-positions", positions)
        self.type("intervene-watch", watch)
        self.type("intervene-temperature", temperature)
        self.type("intervene-top-k", top_k)
        self.type("intervene-tokens", tokens)
        self.type("intervene-seed", seed)
        self.press("intervene-button")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
