"""Write a study's comparison: comparison.md, comparison.json, metric_*.png, val_loss_curves.png, index.html.

Like the audit reports, every file goes to a temporary name and is renamed over the target
(experiments/report.py), so a reader sees the previous comparison or the new one, never half.

What it holds: the arms and their seeds; the floors (unigram, bigram, trigram) and by how much each
arm's val loss clears each; one row per metric (its definition, each arm's mean ± sd over the seeds,
the random-init reference); the study's pre-registered primary metrics with the direction it expects;
then one Holm family over every primary cell of every comparison, each with its 95% interval, test,
verdict and leave-one-seed-out robustness; and every other cell as exploratory (studying/statistics.py).

Language (core.i18n): comparison.json keeps English what tools read (metric names, roles, directions,
tests, verdicts, floor names: the same words whatever the language); its prose (title, notes, the floor
definition, baselines) is in the language of the run. comparison.md, index.html and the figures show
everything in that language, the identifiers through translate().
"""

import html
import json
import math
import platform
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.i18n import N_, _, current_language, translate
from experiments.audit_page import CSS
from experiments.report import atomic_path, write_atomic
from studying.floors import Floors
from studying.outcomes import VAL_LOSS, RunOutcome
from studying.spec import GAIN
from studying.statistics import RULE, Cell, Summary, decide

JSON_NAME, MARKDOWN_NAME, PAGE_NAME = "comparison.json", "comparison.md", "index.html"
CURVES_NAME = "val_loss_curves.png"
PRIMARY, EXPLORATORY = N_("primary"), N_("exploratory")  # a metric's role, as the JSON names it
FLOOR_DEFINITION = N_(
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
        role = PRIMARY if metric in data.primary else EXPLORATORY
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
    return {"definition": _(FLOOR_DEFINITION), "floors": floors,
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
                "role": PRIMARY if d.primary else EXPLORATORY,
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
        "baselines": [_("{arm} on {metric}: {note}").format(arm=arm, metric=shown_metric(metric), note=text)
                      for (arm, metric), text in data.baselines.items()],
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


# The floors' names, as comparison.json keys them (studying/floors.py); marked here for the catalog.
FLOOR_NAMES = (N_("unigram"), N_("bigram"), N_("trigram"))


def shown_metric(name: str) -> str:
    """A metric's name ("N:name", maybe with GAIN) in the reader's language; the number stays."""
    gain = name.endswith(GAIN)
    number, sep, rest = name.removesuffix(GAIN).rpartition(":")
    return number + sep + translate(rest) + (_(" (gain over control)") if gain else "")


def shown_pair(pair: str) -> str:
    """"a vs b" (pair_name) in the reader's language; arm names are the study's own."""
    a, _vs, b = pair.partition(" vs ")
    return _("{a} vs {b}").format(a=a, b=b)


def cell(summary: dict) -> str:
    if not summary["n"]:
        return _("n/a (n = 0)")
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
        return _("paired t-test, n = {count} seeds").format(count=r["n"][0])
    return _("Welch t-test, n = {count_a} vs {count_b}").format(count_a=r["n"][0], count_b=r["n"][1])


def robustness(r: dict) -> str:
    if r["fragile"]:
        return _("fragile: {reasons}").format(reasons="; ".join(translate(b) for b in r["fragile_because"]))
    return _("robust to leaving out any one seed")


def tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The comparison's tables as (title, header, rows) of text in the reader's language: the markdown
    and the page draw the same."""
    arms = list(result["arms"])
    out = [(_("Metrics (mean ± sd over training seeds)"), [_("metric"), _("role"), *arms, _("random init")],
            [[shown_metric(m["name"]), translate(m["role"]), *(cell(m["arms"][a]) for a in arms),
              random_init_text(m)]
             for m in result["metrics"]])]
    if result["floors"]:
        f = result["floors"]
        names = list(f["floors"])
        out.append((_("Floors (nats on the val text) and each arm's margin (floor − mean val loss)"),
                    ["", *(translate(n) for n in names)],
                    [[_("floor"), *(fmt(f["floors"][n]) for n in names)]]
                    + [[_("{arm} (val loss {loss})").format(arm=arm, loss=fmt(v["val loss"])),
                        *(f"{v['margins'][n]:+.3g}" for n in names)]
                       for arm, v in f["arms"].items()]))
    primaries = [(c, r) for c in result["comparisons"] for r in c["results"] if r["role"] == PRIMARY]
    out.append((_("Primary metrics: one Holm family"),
                [_("comparison"), _("metric"), _("expected (b vs a)"), _("difference b − a [95% CI]"),
                 _("test"), "p", _("p (sign-flip)"), _("p (Holm)"), _("verdict"), _("robustness")],
                [[shown_pair(pair_name(c["a"], c["b"])), shown_metric(r["metric"]), translate(r["expected"]),
                  interval(r), test_text(r), fmt(r["p"]), fmt(r["p_sign_flip"]), fmt(r["p_holm"]),
                  translate(r["verdict"]) + (f" ({r['baseline']})" if r["baseline"] else ""), robustness(r)]
                 for c, r in primaries]))
    for c in result["comparisons"]:
        rows = [[shown_metric(r["metric"]), interval(r), test_text(r), fmt(r["p"]),
                 fmt(r["smallest_detectable"]), r["baseline"] or ""]
                for r in c["results"] if r["role"] == EXPLORATORY]
        if rows:
            out.append((_("Exploratory: {comparison} (unadjusted, no verdict)").format(
                            comparison=shown_pair(pair_name(c["a"], c["b"]))),
                        [_("metric"), _("difference b − a [95% CI]"), _("test"), _("p (unadjusted)"),
                         _("smallest detectable (alpha 0.05)"), _("baseline")], rows))
    return out


def primary_lines(result: dict) -> list[tuple[str, str]]:
    """(metric, what the study expects in each comparison), in the reader's language."""
    return [(shown_metric(m), _(", ").join(f"{shown_pair(pair)} {translate(d)}"
                                           for pair, d in by_pair.items()))
            for m, by_pair in result["primary"].items()]


def markdown(result: dict) -> str:
    out = [f"# {result['title']}", "",
           _("Written {time} · machine: {machine}").format(time=result["created"], machine=result["machine"]),
           ""]
    out += [f"- {note}" for note in result["notes"]] + [""]
    out += [_("## Arms"), ""] + [
        _("- **{arm}**: {description} (seeds {seeds})").format(
            arm=arm, description=text, seeds=result["seeds"][arm])
        for arm, text in result["arms"].items()
    ] + [""]
    out += [_("## Primary metrics (named in the study file before it ran)"), ""] + [
        f"- **{m}**: {expected}" for m, expected in primary_lines(result)
    ] + ["", _("**Rule.** {rule}").format(rule=translate(result["rule"])), ""]
    if result["floors"]:
        out += [_("**Floors.** {definition}").format(definition=result["floors"]["definition"]), ""]
    out += [f"- {line}" for line in result["baselines"]] + ([""] if result["baselines"] else [])
    for title, header, rows in tables(result):
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    see_report = _("(see the report)")
    out += [_("## Definitions"), ""] + [
        f"- **{shown_metric(m['name'])}**: {m['definition'] or see_report}" for m in result["metrics"]
    ]
    out += ["", _("## Figures"), ""] + [f"![{f}]({f})" for f in result["figures"]] + [""]
    return "\n".join(out)


def page(result: dict) -> str:
    """The comparison as one self-contained page in the audit page's style, in the reader's language."""
    e = html.escape
    lang = "zh-CN" if current_language() == "zh" else "en"
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(result['title'])}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{e(result['title'])}</h1>",
        f"<div class='meta'>{e(result['created'])} · {e(result['machine'])}<br>"
        + "<br>".join(e(n) for n in result["notes"])
        + "</div>",
        "<section><h2>" + e(_("Arms")) + "</h2><ul>"
        + "".join("<li><b>{arm}</b>: {text}</li>".format(
            arm=e(a), text=e(_("{description} (seeds {seeds})").format(description=t, seeds=seeds)))
            for a, t in result["arms"].items() for seeds in [result["seeds"][a]])
        + "</ul></section>",
        "<section><h2>" + e(_("Primary metrics")) + "</h2><ul>"
        + "".join(f"<li><b>{e(m)}</b>: {e(expected)}</li>" for m, expected in primary_lines(result))
        + f"</ul><p class='meta'>{e(translate(result['rule']))}</p>"
        + (f"<p class='meta'>{e(result['floors']['definition'])}</p>" if result["floors"] else "")
        + "".join(f"<p class='meta'>{e(line)}</p>" for line in result["baselines"])
        + "</section>",
    ]
    for title, header, rows in tables(result):
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        parts.append(f"<section><h2>{e(title)}</h2><table><tr>{head}</tr>{body}</table></section>")
    definitions = "".join(f"<li><b>{e(shown_metric(m['name']))}</b>: {e(m['definition'])}</li>"
                          for m in result["metrics"])
    images = "".join(
        f'<a href="{e(f)}"><img src="{e(f)}" alt="{e(f)}" loading="lazy"></a>' for f in result["figures"]
    )
    parts += [
        "<section><h2>" + e(_("Definitions")) + f"</h2><ul>{definitions}</ul></section>",
        "<section class='figures'><h2>" + e(_("Figures")) + f"</h2>{images}</section>",
        f"<p class='meta'><a href='{MARKDOWN_NAME}'>" + e(_("markdown")) + "</a> · "
        f"<a href='{JSON_NAME}'>" + e(_("numbers (JSON)")) + "</a></p>",
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
        ax.set_title(shown_metric(m["name"]) + "\n"
                     + _("seeds (dots), mean and 95% interval (bar), random init (x)"), fontsize=9)
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
    ax.set(xlabel=_("step"), ylabel=_("val loss (training's evaluations)"),
           title=_("Validation loss of every run"))
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
