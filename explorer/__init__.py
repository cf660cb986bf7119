"""The explorer: an interactive web app over a checkpoint (python explore.py CONFIG).

`state.py` loads the model and precomputes what every view reuses, `views.py` holds what each view
computes (plain tensors and numbers, testable without a browser), `render.py` turns those results
into HTML and tables, `app.py` lays them out in Gradio tabs, and `browser.py` drives the running app
in headless Chromium for the tests and the README's screenshots.
"""
