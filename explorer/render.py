"""The explorer's results as the page shows them: HTML snippets, tables (lists of rows) and chart data.

No computation happens here; views.py computes, this file only formats.
"""

import html

import pandas as pd

from core.tokenizer import Tokenizer
from explorer.views import DEFINITIONS, Flow, Lens, NextTokens, SignalCard, TokenCard

POSITIVE, NEGATIVE = "#2563eb", "#dc2626"  # blue for +, red for -, in bars, heatmaps and codebooks

CSS = """
.explorer-error { color: #b91c1c; font-weight: 600; }
.explorer-note { color: #374151; }
.explorer-scroll { overflow-x: auto; }
table.explorer-grid { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 12px; }
table.explorer-grid td, table.explorer-grid th { border: 1px solid #e5e7eb; padding: 2px 5px;
  text-align: center; white-space: pre; }
.explorer-context { font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap;
  margin: 2px 0; }
.explorer-context mark { background: #fde68a; font-weight: 700; }
"""


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def error(message: str) -> str:
    return f'<div class="explorer-error">&#9888; {escape(message)}</div>'


def note(message: str) -> str:
    return f'<div class="explorer-note">{escape(message)}</div>' if message else ""


def definitions(*names: str) -> str:
    """Markdown list of the named definitions, for the foot of a tab."""
    return "\n".join(f"- **{name}**: {DEFINITIONS[name]}" for name in names)


# --- Token ------------------------------------------------------------------------------------
def recipe_bars(card: TokenCard) -> pd.DataFrame | None:
    """The recipe's strongest signals, as rows for a bar chart (signal, weight, sign)."""
    if not card.recipe:
        return None
    return pd.DataFrame({"signal": [f"s{s}" for s, _ in card.recipe],
                         "weight": [w for _, w in card.recipe],
                         "sign": ["+" if w >= 0 else "-" for _, w in card.recipe]})


def token_status(tokenizer: Tokenizer, card: TokenCard) -> str:
    """Which token the word is, and anything to know about its row."""
    number = f"token {card.token}"
    if tokenizer.remapped:  # the model's id is not GPT-2's: show both
        number += f" (GPT-2 token {int(tokenizer.to_gpt2([card.token])[0])})"
    return note("; ".join(filter(None, [f"{tokenizer.decode([card.token])!r} is {number}", card.note])))


def token_rows(tokenizer: Tokenizer, pairs: list[tuple[int, float]]) -> list[list]:
    return [[rank + 1, tokenizer.label(token), round(value, 4)] for rank, (token, value) in enumerate(pairs)]


# --- Signal -----------------------------------------------------------------------------------
def codebook_rows(tokenizer: Tokenizer, card: SignalCard) -> list[list]:
    label, rows = tokenizer.label, []
    for i in range(max(len(card.promotes), len(card.suppresses))):
        up = card.promotes[i] if i < len(card.promotes) else None
        down = card.suppresses[i] if i < len(card.suppresses) else None
        rows.append([label(up[0]) if up else "", round(up[1], 4) if up else "",
                     label(down[0]) if down else "", round(down[1], 4) if down else ""])
    return rows


def signal_summary(card: SignalCard, stats_note: str) -> str:
    if card.firing_rate is None:
        return note(f"signal {card.signal}: {stats_note}")
    return note(f"signal {card.signal}: firing rate {card.firing_rate:.2%}, "
                f"selectivity {card.selectivity:.1f} ({stats_note})")


def contexts_html(card: SignalCard) -> str:
    """Each top-activating context with the activating token highlighted."""
    if not card.contexts:
        return ""
    lines = [f'<div class="explorer-context">{value:+.3f}  {escape(left)}<mark>{escape(token)}</mark>'
             f"{escape(right)}</div>" for value, left, token, right in card.contexts]
    return "".join(lines).replace("\n", "⏎")


# --- Lens -------------------------------------------------------------------------------------
def lens_html(tokenizer: Tokenizer, lens: Lens) -> str:
    """Layers down, positions across; each cell the top-1 token, shaded by the target's probability."""
    label = tokenizer.label
    head = "".join(f"<th>{p}<br>{escape(label(t))}</th>"
                   for p, t in zip(lens.positions, lens.tokens, strict=True))
    rows = []
    for i, name in enumerate(lens.layers):
        cells = []
        for j in range(len(lens.positions)):
            p = lens.target_probs[i, j].item()
            color = "#ffffff" if p > 0.5 else "#111827"
            title = f"top-1 p = {lens.top_probs[i, j].item():.3f}; target p = {p:.3f}"
            cells.append(f'<td style="background: rgba(37, 99, 235, {p:.3f}); color: {color}" '
                         f'title="{escape(title)}">{escape(label(lens.top_tokens[i, j].item()))}</td>')
        rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    final = lens.target_probs[-1, -1].item()
    caption = (f"{escape(lens.target_note)}; its probability at the last position after the last layer: "
               f"{final:.4f}. Cell: top-1 token; shade: target probability (white 0, blue 1).")
    return (f'<div class="explorer-note">{caption}</div><div class="explorer-scroll">'
            f'<table class="explorer-grid" id="lens-grid">'
            f"<tr><th>layer \\ position</th>{head}</tr>{''.join(rows)}</table></div>")


def flow_html(tokenizer: Tokenizer, flow: Flow, layers: list[str]) -> str:
    """Signals across, layers down; each cell a_s, red negative, blue positive."""
    label = tokenizer.label
    scale = max(flow.activations.abs().max().item(), 1e-12)
    head = "".join(f"<th>s{s}<br>{escape(' '.join(label(t) for t in book))}</th>"
                   for s, book in zip(flow.signals, flow.codebooks, strict=True))
    rows = []
    for i, name in enumerate(layers):
        cells = []
        for value in flow.activations[i].tolist():
            rgb = "37, 99, 235" if value >= 0 else "220, 38, 38"
            cells.append(f'<td style="background: rgba({rgb}, {abs(value) / scale:.3f})">{value:+.2f}</td>')
        rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    caption = (f"position {flow.position} ({escape(label(flow.token))}): the {len(flow.signals)} signals "
               "strongest after the last layer, with the tokens each promotes in the direction it points.")
    return (f'<div class="explorer-note">{caption}</div><div class="explorer-scroll">'
            f'<table class="explorer-grid" id="flow-grid">'
            f"<tr><th>layer \\ signal</th>{head}</tr>{''.join(rows)}</table></div>")


# --- Intervene --------------------------------------------------------------------------------
def probability(p: float) -> str:
    """Four decimals, or two significant digits below 0.001 (so small is never shown as 0)."""
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def next_token_rows(tokenizer: Tokenizer, result: NextTokens, which: str) -> list[list]:
    return [[rank + 1, tokenizer.label(token), probability(before), probability(after)]
            for rank, (token, before, after) in enumerate(result.top(which))]
