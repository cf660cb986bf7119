"""The explorer: an interactive web app over a checkpoint (python explore.py CONFIG).

`state.py` loads the model and precomputes what every view reuses (`signal_stats.py`: per-signal
statistics, cached beside the checkpoint), `views.py` holds what each view computes (plain tensors and
numbers, testable without a browser), `render.py` turns those results into HTML with links (each token
written by the checkpoint's `core.tokenizer.Tokenizer`), `app.py` lays them out in Gradio tabs and opens
a view from a link or an address (`navigation.js`: the page's side of that), and `browser.py` drives the
running app in headless Chromium for the tests, the README's screenshots (`screenshots.py`) and the
latency benchmark (`latency.py`).
"""
