// The explorer page's navigation (loaded by app.py into the page's <head>).
// A click on a link (render.link) puts the link's query in the address bar and in a hidden box whose
// submit opens the view on the server; a click on a view's own button writes that view's inputs into
// the address bar; Back reopens the previous view. Opening an address restores its view on load (app.py).
(() => {
  const fields = {token: {word: "#token-word"}, signal: {signal: "#signal-id"},
                  lens: {prompt: "#lens-prompt", target: "#lens-target", position: "#lens-position"}};
  const valueOf = (selector) => (document.querySelector(`${selector} textarea, ${selector} input`) || {}).value ?? "";
  let opened = 0;
  function open(query) {
    const box = document.querySelector("#explorer-nav textarea, #explorer-nav input");
    if (!box) return;
    box.value = `${query}&opened=${++opened}`;  // a new value each time, so the same link opens twice
    box.dispatchEvent(new Event("input", {bubbles: true}));
    box.dispatchEvent(new KeyboardEvent("keypress", {key: "Enter", bubbles: true}));
  }
  window.explorerRemember = (view) => {
    const params = new URLSearchParams({view});
    for (const [key, selector] of Object.entries(fields[view])) params.set(key, valueOf(selector));
    if (`?${params}` !== location.search) history.pushState(null, "", `?${params}`);
  };
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.explorer-link");
    if (link) {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;  // a new tab opens the URL
      event.preventDefault();
      const params = new URLSearchParams(link.getAttribute("href"));
      if (params.get("view") === "lens" && !params.get("prompt")) params.set("prompt", valueOf("#lens-prompt"));
      history.pushState(null, "", `?${params}`);
      open(`?${params}`);
      return;
    }
    const button = event.target.closest("#token-button, #signal-button, #lens-button");
    if (button) window.explorerRemember(button.id.split("-")[0]);
  }, true);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.isTrusted && event.target.closest("#token-word")) window.explorerRemember("token");
  }, true);
  window.addEventListener("popstate", () => { if (location.search) open(location.search); });
})();
