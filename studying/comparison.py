"""Write a study's comparison: comparison.md, comparison.json, metric_*.png, val_loss_curves.png, index.html.

Like the audit reports, every file goes to a temporary name and is renamed over the target
(experiments/report.py), so a reader sees the previous comparison or the new one, never half.

The table: rows = metrics (with their definitions), columns = arms, each cell mean ± sd over the
seeds (n), and the random-init reference of each arm. Then, per named pair of arms, the difference
of means, its 95% interval and the Holm-corrected Welch test (studying/statistics.py).
"""

import html
import json
import math
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from experiments.audit_page import CSS
from experiments.report import atomic_path, write_atomic
from studying.outcomes import RunOutcome
from studying.statistics import RULE, Summary, compare_arms

JSON_NAME, MARKDOWN_NAME, PAGE_NAME = "comparison.json", "comparison.md", "index.html"
CURVES_NAME = "val_loss_curves.png"


@dataclass
class ComparisonInput:
    title: str
    arms: dict[str, list[RunOutcome]]  # arm -> its runs (one per seed)
    arm_descriptions: dict[str, str]  # arm -> what it is (its overrides)
    metrics: list[str]
    pairs: list[tuple[str, str]]
    notes: list[str]  # lines for the header: the command, the machine, ...


def fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def build(data: ComparisonInput) -> dict:
    """Every number of the comparison, as the JSON holds it."""
    metrics = []
    for metric in data.metrics:
        per_arm, references, definition = {}, {}, ""
        for arm, runs in data.arms.items():
            values = [r.values[metric] for r in runs if metric in r.values]
            s = Summary(values)
            low, high = s.interval()
            per_arm[arm] = {
                "values": values,
                "runs": [str(r.run_dir) for r in runs if metric in r.values],
                "mean": s.mean,
                "sd": s.sd,
                "n": s.n,
                "ci95": [low, high],
            }
            refs = [r.random_init[metric] for r in runs if metric in r.random_init]
            references[arm] = Summary(refs).mean if refs else None
            definition = definition or next(
                (r.definitions[metric] for r in runs if metric in r.definitions), ""
            )
        metrics.append({"name": metric, "definition": definition, "arms": per_arm, "random_init": references})
    comparisons = []
    for a, b in data.pairs:
        values_a = {m["name"]: m["arms"][a]["values"] for m in metrics}
        values_b = {m["name"]: m["arms"][b]["values"] for m in metrics}
        results = compare_arms(values_a, values_b)
        comparisons.append(
            {
                "a": a,
                "b": b,
                "results": [
                    {
                        "metric": d.metric,
                        "difference": d.difference,
                        "ci95": [d.low, d.high],
                        "p": d.p,
                        "p_holm": d.p_holm,
                        "detected": d.detected,
                        "n": [d.n_a, d.n_b],
                        "verdict": d.verdict(a, b),
                    }
                    for d in results
                ],
            }
        )
    return {
        "title": data.title,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "notes": data.notes,
        "rule": RULE,
        "arms": data.arm_descriptions,
        "metrics": metrics,
        "comparisons": comparisons,
        "figures": figure_names(data),
    }


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"


def figure_names(data: ComparisonInput) -> list[str]:
    return [f"metric_{slug(m)}.png" for m in data.metrics] + [CURVES_NAME]


def to_json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_safe(v) for v in value]
    return value


def cell(summary: dict) -> str:
    if not summary["n"]:
        return "n/a (n = 0)"
    sd = f" ± {summary['sd']:.3g}" if summary["n"] > 1 else ""
    return f"{summary['mean']:.4g}{sd} (n = {summary['n']})"


def markdown(result: dict) -> str:
    arms = list(result["arms"])
    out = [f"# {result['title']}", "", f"Written {result['created']} · machine: {result['machine']}", ""]
    out += [f"- {note}" for note in result["notes"]] + [""]
    out += ["## Arms", ""] + [f"- **{arm}**: {text}" for arm, text in result["arms"].items()] + [""]
    out += [
        "## Metrics (mean ± sd over training seeds)",
        "",
        "| metric | " + " | ".join(arms) + " | random init |",
        "|" + " --- |" * (len(arms) + 2),
    ]
    for m in result["metrics"]:
        refs = ", ".join(f"{arm} {fmt(v)}" for arm, v in m["random_init"].items() if v is not None) or "—"
        out.append(f"| {m['name']} | " + " | ".join(cell(m["arms"][a]) for a in arms) + f" | {refs} |")
    out += ["", "## Definitions", ""] + [
        f"- **{m['name']}**: {m['definition'] or '(see the report)'}" for m in result["metrics"]
    ]
    out += ["", "## Comparisons", "", f"**Rule.** {result['rule']}", ""]
    for c in result["comparisons"]:
        out += [
            f"### {c['a']} vs {c['b']}",
            "",
            "| metric | difference (b - a) | 95% CI | p (Welch) | p (Holm) | verdict |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in c["results"]:
            out.append(
                f"| {r['metric']} | {fmt(r['difference'])} | [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}] | "
                f"{fmt(r['p'])} | {fmt(r['p_holm'])} | {r['verdict']} |"
            )
        out.append("")
    out += ["## Figures", ""] + [f"![{f}]({f})" for f in result["figures"]] + [""]
    return "\n".join(out)


def random_init_text(metric: dict) -> str:
    return ", ".join(f"{arm} {fmt(v)}" for arm, v in metric["random_init"].items() if v is not None) or "—"


def page(result: dict) -> str:
    """The comparison as one self-contained page in the audit page's style."""
    e = html.escape
    arms = list(result["arms"])
    head = "".join(f"<th>{e(a)}</th>" for a in arms)
    rows = "".join(
        f"<tr><td><b>{e(m['name'])}</b><div class='meta'>{e(m['definition'])}</div></td>"
        + "".join(f"<td class='num'>{e(cell(m['arms'][a]))}</td>" for a in arms)
        + f"<td class='num'>{e(random_init_text(m))}"
        "</td></tr>"
        for m in result["metrics"]
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(result['title'])}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{e(result['title'])}</h1>",
        f"<div class='meta'>{e(result['created'])} · {e(result['machine'])}<br>"
        + "<br>".join(e(n) for n in result["notes"])
        + "</div>",
        "<section><h2>Arms</h2><ul>"
        + "".join(f"<li><b>{e(a)}</b>: {e(t)}</li>" for a, t in result["arms"].items())
        + "</ul></section>",
        "<section><h2>Metrics</h2><p class='meta'>mean ± sd over training seeds (n)</p>"
        f"<table><tr><th>metric</th>{head}<th>random init</th></tr>{rows}</table></section>",
        f"<section><h2>Comparisons</h2><p class='meta'>{e(result['rule'])}</p>",
    ]
    for c in result["comparisons"]:
        body = "".join(
            f"<tr><td>{e(r['metric'])}</td><td class='num'>{fmt(r['difference'])}</td>"
            f"<td class='num'>[{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]</td>"
            f"<td class='num'>{fmt(r['p'])}</td>"
            f"<td class='num'>{fmt(r['p_holm'])}</td>"
            f"<td class='{'yes' if r['detected'] else 'none'}'>{e(r['verdict'])}</td></tr>"
            for r in c["results"]
        )
        parts.append(
            f"<h3>{e(c['a'])} vs {e(c['b'])}</h3><table><tr><th>metric</th><th>difference (b - a)</th>"
            f"<th>95% CI</th><th>p (Welch)</th><th>p (Holm)</th><th>verdict</th></tr>{body}</table>"
        )
    images = "".join(
        f'<a href="{e(f)}"><img src="{e(f)}" alt="{e(f)}" loading="lazy"></a>' for f in result["figures"]
    )
    parts += [
        "</section>",
        f"<section class='figures'><h2>Figures</h2>{images}</section>",
        f"<p class='meta'><a href='{MARKDOWN_NAME}'>markdown</a> · "
        f"<a href='{JSON_NAME}'>numbers (JSON)</a></p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def draw_figures(data: ComparisonInput, result: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(data.arms)
    for m, name in zip(result["metrics"], figure_names(data), strict=False):
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(arms), 3.6))
        for i, arm in enumerate(arms):
            s = m["arms"][arm]
            ax.scatter([i] * s["n"], s["values"], color=f"C{i}", alpha=0.7, zorder=3)
            if s["n"] > 1:
                low, high = s["ci95"]
                ax.errorbar(
                    [i + 0.15],
                    [s["mean"]],
                    yerr=[[s["mean"] - low], [high - s["mean"]]],
                    fmt="_",
                    color="k",
                    capsize=5,
                    markersize=14,
                    zorder=4,
                )
            ref = m["random_init"].get(arm)
            if ref is not None:
                ax.scatter([i], [ref], marker="x", color="gray", zorder=2)
        ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
        ax.set_title(f"{m['name']}\nseeds (dots), mean and 95% interval (bar), random init (x)", fontsize=9)
        save_figure(fig, folder / name)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (arm, runs) in enumerate(data.arms.items()):
        for j, run in enumerate(runs):
            steps = sorted(run.history)
            ax.plot(
                steps,
                [run.history[s] for s in steps],
                color=f"C{i}",
                alpha=0.7,
                marker=".",
                label=arm if j == 0 else None,
            )
    ax.set(xlabel="step", ylabel="val loss (training's evaluations)", title="Validation loss of every run")
    ax.legend()
    save_figure(fig, folder / CURVES_NAME)


def write_comparison(data: ComparisonInput, folder: Path) -> Path:
    """Compute and write everything; returns the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    result = to_json_safe(build(data))
    draw_figures(data, result, folder)
    write_atomic(folder / MARKDOWN_NAME, markdown(result))
    write_atomic(folder / JSON_NAME, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    write_atomic(folder / PAGE_NAME, page(result))
    return folder / PAGE_NAME
