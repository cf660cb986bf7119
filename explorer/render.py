"""The explorer's results as the page shows them: HTML snippets, tables and charts.

No computation happens here; views.py computes, this file only formats. Every token and signal the
page shows is a link (`?view=token&token=ID`, `?view=signal&signal=S`, `?view=lens&...`): the page's
script (app.py) opens it in place, and the same URL opened in a new tab restores that view.
Charts are drawn in HTML, and each bar carries its value in an aria-label ("signal: s9; weight: 0.06"),
which screen readers and the browser tests read.
"""

import html
import math
from collections.abc import Callable
from urllib.parse import urlencode

from core.tokenizer import Tokenizer
from explorer.views import DEFINITIONS, Drivers, Flow, Lens, NextTokens, SignalCard, TokenCard

Translator = Callable[[str], str]  # core.i18n.translator(lang): the page's language

POSITIVE, NEGATIVE = "#2563eb", "#dc2626"  # blue for +, red for -, in bars, heatmaps and codebooks
ERROR_CHARS = 300  # a status line longer than this is cut: the user's input is echoed, never in full
LENS_FLOOR_DECADES = 5  # the lens colour scale runs from p = 1e-5 (white) to p = 1 (full blue)

CSS = """
.explorer-error { color: #b91c1c; font-weight: 600; }
.explorer-note { color: #374151; }
.explorer-scroll { overflow-x: auto; max-width: 100%; }
.explorer-scroll.explorer-end { direction: rtl; }  /* opens scrolled to its last column */
.explorer-end > div { direction: ltr; width: max-content; min-width: 100%; }  /* narrow: left-aligned */
table.explorer-grid { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 12px; }
table.explorer-grid td, table.explorer-grid th { border: 1px solid #e5e7eb; padding: 2px 5px;
  text-align: center; white-space: pre; }
a.explorer-link { color: inherit; text-decoration: underline dotted; cursor: pointer;
  padding: 0 !important; }  /* Gradio pads links 2px 8px: tokens of a text would drift apart */
.explorer-bars { font-family: ui-monospace, monospace; font-size: 12px; }
.explorer-bar-row { display: grid; grid-template-columns: 4em 1fr 1fr 5.5em; align-items: center;
  gap: 4px; height: 18px; text-decoration: none !important; }
.explorer-bar-row:hover { background: #f3f4f6; }
.explorer-bar { height: 12px; }
.explorer-histogram { display: flex; align-items: flex-end; gap: 1px; height: 90px;
  border-bottom: 1px solid #9ca3af; }
.explorer-histogram > div { flex: 1; background: #93c5fd; min-height: 1px; }
.explorer-context { font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap;
  margin: 2px 0; }
.explorer-context span.explorer-active { outline: 1.5px solid #111827; font-weight: 700; }
.explorer-legend-key { display: inline-block; width: 220px; vertical-align: middle; font-size: 11px; }
.explorer-legend { display: block; height: 10px; border: 1px solid #d1d5db;
  background: linear-gradient(to right, rgba(37, 99, 235, 0), rgba(37, 99, 235, 1)); }
.explorer-legend-ticks { display: flex; justify-content: space-between; }
.explorer-context a.explorer-link { text-decoration: none; }
.explorer-hidden { display: none !important; }
"""


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def view_url(view: str, **params) -> str:
    """The query string that opens a view (the page's script opens it in place; a new tab restores it)."""
    return "?" + urlencode({"view": view, **params})


def link(text: str, url: str, title: str = "") -> str:
    tip = f' title="{escape(title)}"' if title else ""
    return f'<a class="explorer-link" href="{escape(url)}"{tip}>{escape(text)}</a>'


def token_link(tokenizer: Tokenizer, token: int) -> str:
    return link(tokenizer.label(token), view_url("token", token=token), f"token {token}: open its recipe")


def signal_link(signal: int) -> str:
    return link(f"s{signal}", view_url("signal", signal=signal), f"signal {signal}: open its view")


# --- status lines ---------------------------------------------------------------------------------
def error(message: str) -> str:
    if len(message) > ERROR_CHARS:
        message = message[:ERROR_CHARS] + "… (cut)"
    return f'<div class="explorer-error">&#9888; {escape(message)}</div>'


def note(message: str) -> str:
    return f'<div class="explorer-note">{escape(message)}</div>' if message else ""


def definitions(_: Translator, *names: str) -> str:
    """Markdown list of the named definitions, for the foot of a tab, in the page's language (`_`)."""
    return "\n".join(f"- **{_(name)}**: {_(DEFINITIONS[name])}" for name in names)


def table(headers: list[str], rows: list[list[str]], element_id: str) -> str:
    """An HTML table; cells are HTML already (links), headers plain text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="explorer-grid" id="{element_id}"><tr>{head}</tr>{body}</table>'


# --- Token ------------------------------------------------------------------------------------
def recipe_bars(tokenizer: Tokenizer, card: TokenCard) -> str:
    """The recipe's strongest signals, strongest first, as horizontal bars around zero; each bar opens
    its signal."""
    if not card.recipe:
        return ""
    scale = max(abs(w) for _, w in card.recipe) or 1.0
    rows = []
    for signal, weight in card.recipe:
        width = f"{100 * abs(weight) / scale:.1f}%"
        negative = f'<div class="explorer-bar" style="width: {width}; margin-left: auto; background: ' \
                   f'{NEGATIVE}"></div>' if weight < 0 else "<div></div>"
        positive = f'<div class="explorer-bar" style="width: {width}; background: {POSITIVE}"></div>' \
            if weight >= 0 else "<div></div>"
        url = escape(view_url("signal", signal=signal))
        rows.append(f'<a class="explorer-link explorer-bar-row" href="{url}"'
                    f' aria-label="signal: s{signal}; weight: {weight:.6g}" title="open signal {signal}">'
                    f"<span>s{signal}</span>{negative}{positive}<span>{weight:+.4f}</span></a>")
    return (f'<div class="explorer-note">recipe of {escape(tokenizer.label(card.token))}: the '
            f"{len(card.recipe)} largest |weights| (red -, blue +); click a bar to open its signal</div>"
            f'<div class="explorer-bars">{"".join(rows)}</div>')


def token_status(tokenizer: Tokenizer, card: TokenCard, lens_target_url: str, _: Translator) -> str:
    """Which token the word is, anything to know about its row, and a link to the lens with it as target
    (`_`: the page's language)."""
    which = _("{word} is token {token}").format(word=repr(tokenizer.label(card.token)), token=card.token)
    said = "; ".join(filter(None, [which, card.note]))
    lens_link = link(_("see it as the logit lens target"), lens_target_url)
    return f'<div class="explorer-note">{escape(said)} &middot; {lens_link}</div>'


def token_rows(tokenizer: Tokenizer, pairs: list[tuple[int, float]], element_id: str) -> str:
    """(token, cosine) pairs as a ranked table whose tokens are links."""
    return table(["#", "token", "cosine"],
                 [[str(rank + 1), token_link(tokenizer, token), f"{value:.4f}"]
                  for rank, (token, value) in enumerate(pairs)],
                 element_id)


# --- Signal -----------------------------------------------------------------------------------
def codebook_rows(tokenizer: Tokenizer, card: SignalCard) -> str:
    rows = []
    for i in range(max(len(card.promotes), len(card.suppresses))):
        up = card.promotes[i] if i < len(card.promotes) else None
        down = card.suppresses[i] if i < len(card.suppresses) else None
        rows.append([token_link(tokenizer, up[0]) if up else "", f"{up[1]:.4f}" if up else "",
                     token_link(tokenizer, down[0]) if down else "", f"{down[1]:.4f}" if down else ""])
    return table(["promotes", "weight", "suppresses", "weight"], rows, "codebook-grid")


def signal_summary(card: SignalCard, stats_note: str, _: Translator) -> str:
    if card.firing_rate is None:
        return note(_("signal {signal}: {note}").format(signal=card.signal, note=stats_note))
    return note(_("signal {signal}: firing rate {rate}, selectivity {selectivity} ({note})").format(
        signal=card.signal, rate=f"{card.firing_rate:.2%}", selectivity=f"{card.selectivity:.1f}",
        note=stats_note))


def histogram_html(card: SignalCard) -> str:
    """The signal's activations over the validation slice, counted in equal-width bins (log-height
    bars would hide the tail's size, so heights are counts, and each bar says its range and count)."""
    if card.histogram is None:
        return ""
    counts, edges = card.histogram
    peak = max(counts) or 1
    bars = "".join(f'<div style="height: {100 * c / peak:.1f}%" aria-label="activation {lo:.3g} to {hi:.3g}: '
                   f'{c}" title="{lo:.3g} to {hi:.3g}: {c} positions"></div>'
                   for c, lo, hi in zip(counts, edges, edges[1:], strict=False))
    return (f'<div class="explorer-note">activation of s{card.signal} at {sum(counts):,} positions '
            f"({len(counts)} bins from {edges[0]:.3g} to {edges[-1]:.3g})</div>"
            f'<div class="explorer-histogram" id="signal-histogram-bars">{bars}</div>')


def shaded_tokens(tokenizer: Tokenizer, tokens: list[int], activations: list[float], scale: float,
                  active: int | None) -> str:
    """Tokens as text, each shaded by the signal's activation there (blue +, red -, relative to
    `scale`); the token at index `active` outlined; each token opens its own view."""
    pieces = []
    for i, (token, value) in enumerate(zip(tokens, activations, strict=True)):
        rgb = "37, 99, 235" if value >= 0 else "220, 38, 38"
        strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
        mark = ' class="explorer-active"' if i == active else ""
        text = escape(tokenizer.piece(token).replace("\n", "⏎"))
        pieces.append(f'<a class="explorer-link" href="{escape(view_url("token", token=token))}" '
                      f'title="{escape(tokenizer.label(token))}: a = {value:+.3f}"><span{mark} '
                      f'style="background: rgba({rgb}, {strength:.2f})">{text}</span></a>')
    return "".join(pieces)


def contexts_html(tokenizer: Tokenizer, card: SignalCard) -> str:
    """Each top-activating context (distinct texts only), every token shaded by the activation, the
    peak token outlined, and a link that opens the text up to it in the logit lens."""
    if not card.contexts:
        return ""
    scale = max(abs(c.value) for c in card.contexts)
    lines = []
    for context in card.contexts:
        prompt = tokenizer.decode(context.tokens[:context.active + 1])
        lens = link("lens", view_url("lens", prompt=prompt, target="", position=-1),
                    "open this text up to the peak token in the logit lens")
        shaded = shaded_tokens(tokenizer, context.tokens, context.activations, scale, context.active)
        lines.append(f'<div class="explorer-context">{context.value:+.3f} [{lens}]  {shaded}</div>')
    return "".join(lines)


def signal_list_rows(tokenizer: Tokenizer, rows: list[tuple[int, float, float, int | None]]) -> list[list]:
    """Rows of the sortable list of all signals: (signal, firing rate %, selectivity, top token)."""
    return [[s, round(100 * rate, 2), round(selectivity, 2), tokenizer.label(top) if top is not None else ""]
            for s, rate, selectivity, top in rows]


def probe_html(tokenizer: Tokenizer, tokens: list[int], activations: list[float], signal: int) -> str:
    scale = max((abs(a) for a in activations), default=0.0)
    peak = max(range(len(activations)), key=lambda i: activations[i]) if activations else None
    return (f'<div class="explorer-note">s{signal} on your text: peak {activations[peak]:+.3f} at '
            f"{escape(tokenizer.label(tokens[peak]))!s}</div>"
            f'<div class="explorer-context" id="signal-probe-text">'
            f"{shaded_tokens(tokenizer, tokens, activations, scale, peak)}</div>")


# --- Lens -------------------------------------------------------------------------------------
def lens_strength(p: float) -> float:
    """Colour strength of a probability on the lens's log scale: 0 at 10^-LENS_FLOOR_DECADES, 1 at 1."""
    return min(max(1 + math.log10(max(p, 1e-30)) / LENS_FLOOR_DECADES, 0.0), 1.0)


def lens_html(tokenizer: Tokenizer, lens: Lens, prompt_of) -> str:
    """Layers down, positions across; each cell the top-1 token, shaded by log10 of the target's
    probability; scrolled to the last position. `prompt_of(token)` is the lens URL with that target."""
    head = "".join(f"<th>{p}<br>{token_link(tokenizer, t)}</th>"
                   for p, t in zip(lens.positions, lens.tokens, strict=True))
    rows = []
    for i, name in enumerate(lens.layers):
        cells = []
        for j in range(len(lens.positions)):
            p, rank = lens.target_probs[i, j].item(), int(lens.target_ranks[i, j])
            strength = lens_strength(p)
            color = "#ffffff" if strength > 0.6 else "#111827"
            top = lens.top_tokens[i, j].item()
            title = (f"top-1 {tokenizer.label(top)} p = {lens.top_probs[i, j].item():.3f}; "
                     f"target p = {p:.2e}, rank {rank}")
            cells.append(f'<td style="background: rgba(37, 99, 235, {strength:.3f}); color: {color}" '
                         f'title="{escape(title)}" data-target-p="{p:.6g}" data-target-rank="{rank}">'
                         f"{link(tokenizer.label(top), prompt_of(top), title)}</td>")
        rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    final, final_rank = lens.target_probs[-1, -1].item(), int(lens.target_ranks[-1, -1])
    ticks = "".join(f"<span>{f'1e-{d}' if d else '1'}</span>" for d in range(LENS_FLOOR_DECADES, -1, -1))
    caption = (f"{escape(lens.target_note)}; at the last position after the last layer: p = {final:.4g}, "
               f"rank {final_rank}. Cell: top-1 token (click: make it the target); shade: the target's "
               f'probability on a log scale <span class="explorer-legend-key"><span class="explorer-legend" '
               f'id="lens-legend" title="white: p at or below 1e-{LENS_FLOOR_DECADES}; blue: p = 1"></span>'
               f'<span class="explorer-legend-ticks">{ticks}</span></span>')
    return (f'<div class="explorer-note">{caption}</div>'
            f'<div class="explorer-scroll explorer-end" id="lens-scroll"><div>'
            f'<table class="explorer-grid" id="lens-grid">'
            f"<tr><th>layer \\ position</th>{head}</tr>{''.join(rows)}</table></div></div>")


def flow_html(tokenizer: Tokenizer, flow: Flow, layers: list[str], _: Translator) -> str:
    """Signals across, layers down; each cell a_s, red negative, blue positive."""
    scale = max(flow.activations.abs().max().item(), 1e-12)
    head = "".join(f"<th>{signal_link(s)}<br>{' '.join(token_link(tokenizer, t) for t in book)}</th>"
                   for s, book in zip(flow.signals, flow.codebooks, strict=True))
    rows = []
    for i, name in enumerate(layers):
        cells = []
        for value in flow.activations[i].tolist():
            rgb = "37, 99, 235" if value >= 0 else "220, 38, 38"
            cells.append(f'<td style="background: rgba({rgb}, {abs(value) / scale:.3f})">{value:+.2f}</td>')
        rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    caption = escape(_("position {position} ({token}): the {count} signals strongest after the last layer, "
                       "with the tokens each promotes in the direction it points.").format(
        position=flow.position, token=tokenizer.label(flow.token), count=len(flow.signals)))
    return (f'<div class="explorer-note">{caption}</div><div class="explorer-scroll" id="flow-scroll">'
            f'<table class="explorer-grid" id="flow-grid">'
            f"<tr><th>layer \\ signal</th>{head}</tr>{''.join(rows)}</table></div>")


def drivers_html(tokenizer: Tokenizer, drivers: Drivers, ablate_url, _: Translator) -> str:
    """The signals driving the prediction at a position, each with a link that ablates it
    (`ablate_url(signal)`)."""
    rows = [[signal_link(s), f"{a:+.3f}", f"{r:+.4f}", f"{c:+.4f}", link("ablate", ablate_url(s))]
            for s, a, r, c in drivers.rows]
    caption = escape(_("what drives the prediction {token} after position {position}: its logit {logit} = "
                       "sum over signals of a_s r_vs; the largest shares").format(
        token=tokenizer.label(drivers.token), position=drivers.position, logit=f"{drivers.logit:+.3f}"))
    return (f'<div class="explorer-note">{caption}</div>'
            + table([_("signal"), "a_s", "r_vs", "a_s r_vs", ""], rows, "drivers-grid"))


# --- Intervene --------------------------------------------------------------------------------
def probability(p: float) -> str:
    """Four decimals, or two significant digits below 0.001 (so small is never shown as 0)."""
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def next_token_rows(tokenizer: Tokenizer, result: NextTokens, which: str) -> list[list]:
    return [[rank + 1, tokenizer.label(token), probability(before), probability(after)]
            for rank, (token, before, after) in enumerate(result.top(which))]


def intervention_summary(tokenizer: Tokenizer, result: NextTokens, watched: list[int], _: Translator) -> str:
    """KL, entropy change and each watched word's probability and rank before and after, as a table."""
    rows = [[token_link(tokenizer, t), probability(result.before[t].item()), str(result.rank(t, "before")),
             probability(result.after[t].item()), str(result.rank(t, "after"))] for t in watched]
    headers = [_("word"), _("p before"), _("rank before"), _("p after"), _("rank after")]
    words = table(headers, rows, "intervene-watched")
    before, after = result.entropy("before"), result.entropy("after")
    change = _("KL(before || after) = {kl} nats; entropy {before} → {after} nats ({change})").format(
        kl=f"{result.kl():.4f}", before=f"{before:.3f}", after=f"{after:.3f}",
        change=f"{after - before:+.3f}")
    return f'<div class="explorer-note" id="intervene-change">{escape(change)}</div>{words}'
