"""Write a study's comparison: comparison.md, comparison.json, metric_*.png, val_loss_curves.png, index.html.

Like the audit reports, every file goes to a temporary name and is renamed over the target
(experiments/report.py), so a reader sees the previous comparison or the new one, never half.

What it holds: the arms and their seeds; the floors (unigram, bigram, trigram) and by how much each
arm's val loss clears each; one row per metric (its definition, each arm's mean ± sd over the seeds,
the random-init reference); the study's pre-registered primary metrics with the direction it expects;
then one Holm family over every primary cell of every comparison, each with its 95% interval, test,
verdict and leave-one-seed-out robustness; and every other cell as exploratory (studying/statistics.py).
"""

import html
import json
import math
import platform
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from experiments.audit_page import CSS
from experiments.report import atomic_path, write_atomic
from studying.floors import Floors
from studying.outcomes import VAL_LOSS, RunOutcome
from studying.statistics import RULE, Cell, Summary, decide

JSON_NAME, MARKDOWN_NAME, PAGE_NAME = "comparison.json", "comparison.md", "index.html"
CURVES_NAME = "val_loss_curves.png"
FLOOR_DEFINITION = (
    "count-based models of train.bin scored on the same val text as the runs (studying/floors.py): add-one "
    "unigram; bigram and trigram interpolated with it, weights tuned on held-out windows of train.bin. "
    "Margin = floor minus the arm's mean val loss (positive: the arm clears the floor by that much)."
)


@dataclass
class ComparisonInput:
    title: str
    arms: dict[str, list[RunOutcome]]  # arm -> its runs (one per seed)
    arm_descriptions: dict[str, str]  # arm -> what it is (its overrides)
    metrics: list[str]
    pairs: list[tuple[str, str]]
    notes: list[str]  # lines for the header: the command, the machine, ...
    # metric -> {pair: expected direction of pair[1] against pair[0]}: the pre-registered primaries
    primary: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    floors: Floors | None = None
    baselines: dict[tuple[str, str], str] = field(default_factory=dict)  # (arm, metric) -> what it equals


def fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def pair_name(a: str, b: str) -> str:
    return f"{a} vs {b}"


def metric_rows(data: ComparisonInput) -> list[dict]:
    """Per metric: its definition, each arm's values by seed and summary, the random-init references."""
    metrics = []
    for metric in data.metrics:
        per_arm, references, definition = {}, {}, ""
        for arm, runs in data.arms.items():
            measured = [r for r in runs if metric in r.values]
            s = Summary([r.values[metric] for r in measured])
            low, high = s.interval()
            per_arm[arm] = {
                "values": s.values,
                "seeds": [r.seed for r in measured],
                "runs": [str(r.run_dir) for r in measured],
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
        role = "primary" if metric in data.primary else "exploratory"
        metrics.append({"name": metric, "role": role, "definition": definition, "arms": per_arm,
                        "random_init": references})
    return metrics


def floor_margins(data: ComparisonInput) -> dict | None:
    """Each floor, and each arm's mean val loss with its margin to each floor (floor - loss)."""
    if data.floors is None:
        return None
    floors = data.floors.as_dict()
    arms = {}
    for arm, runs in data.arms.items():
        losses = [r.values[VAL_LOSS] for r in runs if VAL_LOSS in r.values]
        if losses:
            mean = sum(losses) / len(losses)
            arms[arm] = {"val loss": mean, "margins": {name: value - mean for name, value in floors.items()},
                         "worst seed margins": {name: value - max(losses) for name, value in floors.items()}}
    return {"definition": FLOOR_DEFINITION, "floors": floors,
            "weights": {"bigram": data.floors.bigram_weights, "trigram": data.floors.trigram_weights},
            "arms": arms}


def build(data: ComparisonInput) -> dict:
    """Every number of the comparison, as the JSON holds it."""
    seeds = {arm: sorted(r.seed for r in runs) for arm, runs in data.arms.items()}
    cells = []
    for a, b in data.pairs:
        paired = seeds[a] == seeds[b]
        for metric in data.metrics:
            values_a = {r.seed: r.values[metric] for r in data.arms[a] if metric in r.values}
            values_b = {r.seed: r.values[metric] for r in data.arms[b] if metric in r.values}
            direction = data.primary.get(metric, {}).get((a, b))
            cells.append(Cell(a, b, metric, values_a, values_b, paired, direction))
    results = iter(decide(cells))
    comparisons = []
    for a, b in data.pairs:
        rows = []
        for metric in data.metrics:
            d = next(results)
            baseline = " ".join(data.baselines.get((arm, metric), "") for arm in (a, b)).strip()
            rows.append({
                "metric": d.metric,
                "role": "primary" if d.primary else "exploratory",
                "expected": d.direction,
                "test": d.test,
                "n": list(d.n),
                "difference": d.difference,
                "ci95": [d.low, d.high],
                "p": d.p,
                "p_sign_flip": d.p_permutation,
                "p_holm": d.p_holm,
                "smallest_detectable": d.smallest_detectable,
                "detected": d.detected,
                "verdict": d.verdict,
                "fragile": d.fragile,
                "fragile_because": d.fragile_because,
                "baseline": baseline,
            })
        comparisons.append({"a": a, "b": b, "paired": seeds[a] == seeds[b], "results": rows})
    return {
        "title": data.title,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "notes": data.notes,
        "rule": RULE,
        "arms": data.arm_descriptions,
        "seeds": seeds,
        "primary": {
            m: {pair_name(*pair): d for pair, d in by_pair.items()} for m, by_pair in data.primary.items()
        },
        "floors": floor_margins(data),
        "baselines": [f"{arm} on {metric}: {text}" for (arm, metric), text in data.baselines.items()],
        "metrics": metric_rows(data),
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


def random_init_text(metric: dict) -> str:
    return ", ".join(f"{arm} {fmt(v)}" for arm, v in metric["random_init"].items() if v is not None) or "—"


def interval(r: dict) -> str:
    return f"{fmt(r['difference'])} [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]"


def test_text(r: dict) -> str:
    if not r["test"]:
        return "—"
    if r["test"] == "paired t":
        return f"paired t, n = {r['n'][0]} seeds"
    return f"{r['test']}, n = {r['n'][0]} vs {r['n'][1]}"


def robustness(r: dict) -> str:
    if r["fragile"]:
        return "fragile: " + "; ".join(r["fragile_because"])
    return "robust to leaving out any one seed"


def tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The comparison's tables as (title, header, rows) of text: the markdown and the page draw the same."""
    arms = list(result["arms"])
    out = [("Metrics (mean ± sd over training seeds)", ["metric", "role", *arms, "random init"],
            [[m["name"], m["role"], *(cell(m["arms"][a]) for a in arms), random_init_text(m)]
             for m in result["metrics"]])]
    if result["floors"]:
        f = result["floors"]
        names = list(f["floors"])
        out.append(("Floors (nats on the val text) and each arm's margin (floor − mean val loss)",
                    ["", *names],
                    [["floor", *(fmt(f["floors"][n]) for n in names)]]
                    + [[f"{arm} (val loss {fmt(v['val loss'])})", *(f"{v['margins'][n]:+.3g}" for n in names)]
                       for arm, v in f["arms"].items()]))
    primaries = [(c, r) for c in result["comparisons"] for r in c["results"] if r["role"] == "primary"]
    out.append(("Primary metrics: one Holm family",
                ["comparison", "metric", "expected (b vs a)", "difference b − a [95% CI]", "test", "p",
                 "p (sign-flip)", "p (Holm)", "verdict", "robustness"],
                [[pair_name(c["a"], c["b"]), r["metric"], r["expected"], interval(r), test_text(r),
                  fmt(r["p"]), fmt(r["p_sign_flip"]), fmt(r["p_holm"]),
                  r["verdict"] + (f" ({r['baseline']})" if r["baseline"] else ""), robustness(r)]
                 for c, r in primaries]))
    for c in result["comparisons"]:
        rows = [[r["metric"], interval(r), test_text(r), fmt(r["p"]), fmt(r["smallest_detectable"]),
                 r["baseline"] or ""] for r in c["results"] if r["role"] == "exploratory"]
        if rows:
            out.append((f"Exploratory: {pair_name(c['a'], c['b'])} (unadjusted, no verdict)",
                        ["metric", "difference b − a [95% CI]", "test", "p (unadjusted)",
                         "smallest detectable (alpha 0.05)", "baseline"], rows))
    return out


def markdown(result: dict) -> str:
    out = [f"# {result['title']}", "", f"Written {result['created']} · machine: {result['machine']}", ""]
    out += [f"- {note}" for note in result["notes"]] + [""]
    out += ["## Arms", ""] + [
        f"- **{arm}**: {text} (seeds {result['seeds'][arm]})" for arm, text in result["arms"].items()
    ] + [""]
    out += ["## Primary metrics (named in the study file before it ran)", ""] + [
        f"- **{m}**: " + ", ".join(f"{pair} {d}" for pair, d in by_pair.items())
        for m, by_pair in result["primary"].items()
    ] + ["", f"**Rule.** {result['rule']}", ""]
    if result["floors"]:
        out += [f"**Floors.** {result['floors']['definition']}", ""]
    out += [f"- {line}" for line in result["baselines"]] + ([""] if result["baselines"] else [])
    for title, header, rows in tables(result):
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    out += ["## Definitions", ""] + [
        f"- **{m['name']}**: {m['definition'] or '(see the report)'}" for m in result["metrics"]
    ]
    out += ["", "## Figures", ""] + [f"![{f}]({f})" for f in result["figures"]] + [""]
    return "\n".join(out)


def page(result: dict) -> str:
    """The comparison as one self-contained page in the audit page's style."""
    e = html.escape
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
        + "".join(f"<li><b>{e(a)}</b>: {e(t)} (seeds {e(str(result['seeds'][a]))})</li>"
                  for a, t in result["arms"].items())
        + "</ul></section>",
        "<section><h2>Primary metrics</h2><ul>"
        + "".join(f"<li><b>{e(m)}</b>: {e(', '.join(f'{p} {d}' for p, d in by_pair.items()))}</li>"
                  for m, by_pair in result["primary"].items())
        + f"</ul><p class='meta'>{e(result['rule'])}</p>"
        + (f"<p class='meta'>{e(result['floors']['definition'])}</p>" if result["floors"] else "")
        + "".join(f"<p class='meta'>{e(line)}</p>" for line in result["baselines"])
        + "</section>",
    ]
    for title, header, rows in tables(result):
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        parts.append(f"<section><h2>{e(title)}</h2><table><tr>{head}</tr>{body}</table></section>")
    definitions = "".join(f"<li><b>{e(m['name'])}</b>: {e(m['definition'])}</li>" for m in result["metrics"])
    images = "".join(
        f'<a href="{e(f)}"><img src="{e(f)}" alt="{e(f)}" loading="lazy"></a>' for f in result["figures"]
    )
    parts += [
        f"<section><h2>Definitions</h2><ul>{definitions}</ul></section>",
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
