"""The audit page: `audit_reports/index.html`, one self-contained file over every report that exists.

Rebuilt from the JSON reports after every run, so it shows each experiment that has run, whenever
it ran. It needs no server and no network: CSS is inline, figures are referenced by relative path
(they sit beside it), and it links only to files that exist.
"""

import html
from pathlib import Path

from core.errors import UserError
from core.i18n import _, current_language, pgettext, translate
from core.run_files import read_report
from experiments.report import format_cell, metric_columns, write_atomic

PAGE_NAME = "index.html"

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232a;
       background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 0 0 6px; }
.meta { color: #5b6570; font-size: 13px; } code { font-size: 12.5px; background: #eef0f3; padding: 1px 4px;
       border-radius: 3px; word-break: break-all; }
section { background: #fff; border: 1px solid #dfe3e8; border-radius: 8px; padding: 18px 22px;
          margin: 18px 0; }
table { border-collapse: collapse; margin: 10px 0; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e6e9ed; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
.yes { color: #137333; font-weight: 600; } .no { color: #b3261e; font-weight: 600; } .none { color: #8a939c; }
.some { color: #8a5a00; font-weight: 600; }
.skipped { color: #8a5a00; background: #fff6e0; padding: 8px 12px; border-radius: 6px; }
.figures img { max-width: 100%; border: 1px solid #e6e9ed; border-radius: 4px; margin: 8px 0; }
details { margin: 8px 0; } summary { cursor: pointer; color: #3b4a5a; }
a { color: #1a5fb4; }
"""


def load_reports(folder: Path) -> tuple[list[dict], list[str]]:
    """Every readable NN_slug.json in folder, by experiment number; and the names of unreadable ones."""
    reports, broken = [], []
    for path in sorted(folder.glob("[0-9][0-9]_*.json")):
        try:
            report = read_report(path)
        except UserError:
            broken.append(path.name)
            continue
        reports.append(report)
    return sorted(reports, key=lambda r: r["experiment"]), broken


def verdict_cell(beats) -> str:
    if beats is None:
        return '<span class="none">—</span>'
    return f'<span class="{"yes" if beats else "no"}">{format_cell(beats)}</span>'


def link_if_exists(folder: Path, name: str | None, text: str) -> str:
    if name and (folder / name).is_file():
        return f'<a href="{html.escape(name)}">{html.escape(text)}</a>'
    return ""


def tally(report: dict) -> str:
    """The summary cell: how many judged metrics beat their control, and what each one beat."""
    if report.get("skipped"):
        return '<span class="none">' + _("skipped") + "</span>"
    judged = [m for m in report.get("metrics", []) if m.get("beats_control") is not None]
    if not judged:
        return '<span class="none">' + _("no test (descriptive)") + "</span>"
    won = [m for m in judged if m["beats_control"]]
    kind = "yes" if len(won) == len(judged) else "no" if not won else "some"
    beaten = sorted({translate(str(m.get("against") or m.get("control_name"))) for m in won})
    detail = _(": beats {controls}").format(controls=html.escape(_(", ").join(beaten))) if beaten \
        else _(": beats no control")
    # A trained reference is what a reader should look at (issue 13 §5): its verdicts said on their own.
    versus = [m for m in judged if "reference" in str(m.get("against") or "")]
    if versus:
        detail += _("; vs reference: ") + html.escape(_("; ").join(
            f"{translate(m['name'])}: {translate(m['verdict'])}" for m in versus))
    return f'<span class="{kind}">' + _("{won} of {judged}").format(won=len(won), judged=len(judged)) + \
        f"</span>{detail}"


def p_cell(m: dict) -> str:
    if m.get("p_value") is None:
        return "—"
    return (f"{m['p_value']:.3g} ({m.get('p_holm') or m['p_value']:.3g}), {translate(str(m.get('test')))}, "
            f"n = {m.get('n')}")


def ci_cell(m: dict) -> str:
    ci = m.get("ci")
    return "—" if not ci or None in ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def render_section(folder: Path, r: dict) -> str:
    e = html.escape
    number = int(r["experiment"])
    parts = [f'<section id="exp-{number}">', f"<h2>{number}. {e(r['title'])}</h2>",
             '<div class="meta">' + _("{group} · model {model} · checkpoint {checkpoint} (iter {iter_num}) · "
                                      "run {created}").format(
                 group=e(str(r.get("group", ""))), model=f"<code>{e(str(r.get('model')))}</code>",
                 checkpoint=f"<code>{e(str(r.get('checkpoint')))}</code>", iter_num=e(str(r.get("iter_num"))),
                 created=e(str(r.get("created")))) + "</div>"]
    links = [link_if_exists(folder, r.get("report"), _("full report (markdown)")),
             link_if_exists(folder, f"{Path(r.get('report') or 'x').stem}.json", _("numbers (JSON)"))]
    links = [link for link in links if link]
    if links:
        parts.append(f'<p>{" · ".join(links)}</p>')
    if r.get("skipped"):
        parts.append('<p class="skipped">' + _("Skipped: {reason}").format(reason=e(r["skipped"])) +
                     "</p></section>")
        return "\n".join(parts)
    rows = "".join(
        f"<tr><td>{e(translate(m['name']))}</td><td class='num'>{e(format_cell(m.get('value')))}</td>"
        f"<td class='num'>{e(ci_cell(m))}</td>"
        f"<td>{e(translate(m.get('control_name') or '—'))}</td>"
        f"<td class='num'>{e(format_cell(m.get('control')))}</td>"
        f"<td class='num'>{e(p_cell(m))}</td>"
        f"<td>{verdict_cell(m.get('beats_control'))} {e(translate(m.get('verdict') or ''))}</td></tr>"
        for m in r.get("metrics", []))
    header = "".join(f"<th>{e(name)}</th>" for name in metric_columns())
    parts.append(f"<table><tr>{header}</tr>{rows}</table>")
    definitions = "".join(f"<li><b>{e(translate(k))}</b>: {e(v)}</li>"
                          for k, v in r.get("definitions", {}).items())
    if definitions:
        parts.append("<details><summary>" + _("Definitions") + f"</summary><ul>{definitions}</ul></details>")
    figures = [f for f in r.get("figures", []) if (folder / f).is_file()]
    if figures:
        images = "".join(f'<a href="{e(f)}"><img src="{e(f)}" alt="{e(f)}" loading="lazy"></a>'
                         for f in figures)
        parts.append(f'<div class="figures">{images}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def render(folder: Path, reports: list[dict], broken: list[str]) -> str:
    e = html.escape
    checkpoints = sorted({f"{r.get('model')} · {r.get('checkpoint')} (iter {r.get('iter_num')})"
                          for r in reports})
    summary_rows = "".join(
        f"<tr><td class='num'>{r['experiment']}</td>"
        f"<td><a href='#exp-{int(r['experiment'])}'>{e(r['title'])}</a></td>"
        f"<td>{e(str(r.get('group', '')))}</td><td>{tally(r)}</td><td>{e(str(r.get('created')))}</td></tr>"
        for r in reports)
    lang = {"zh": "zh-CN"}.get(current_language(), current_language())
    head = ["<!DOCTYPE html>", f'<html lang="{lang}"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>" + _("reFlow audit") + "</title>", f"<style>{CSS}</style></head><body><main>",
            "<h1>" + _("reFlow interpretability audit") + "</h1>",
            '<div class="meta">' + "<br>".join(f"<code>{e(c)}</code>" for c in checkpoints) + "</div>"]
    if not reports:
        head.append("<p>" + _("No experiment has run yet: {command}").format(
            command="<code>python experiment.py CONFIG --run all</code>") + "</p>")
    else:
        columns = [_("experiment"), pgettext("experiment group", "group"), _("verdicts (what was beaten)"),
                   _("run")]
        head.append("<section><h2>" + _("Experiments") + "</h2><p class='meta'>" + e(_(
            "Each judged metric is tested against a null that can fail (rotated signal bases, shuffled "
            "labels, random word directions, random tokens, overlap-matched sentences, a trained "
            "reference); a metric beats it only when its Holm-corrected p-value is below 0.05. Random "
            "init is a floor, shown and never judged. The last column names what was beaten.")) + "</p>"
            "<table><tr><th>#</th>" + "".join(f"<th>{c}</th>" for c in columns) +
            f"</tr>{summary_rows}</table></section>")
    if broken:
        head.append("<p class='skipped'>" + _("Unreadable report files left out: {files}").format(
            files=e(", ".join(broken))) + "</p>")
    body = [render_section(folder, r) for r in reports]
    return "\n".join(head + body + ["</main></body></html>"]) + "\n"


def write_audit_page(folder: Path) -> Path:
    """Rebuild folder/index.html from the JSON reports in folder."""
    reports, broken = load_reports(folder)
    path = folder / PAGE_NAME
    write_atomic(path, render(folder, reports, broken))
    return path
