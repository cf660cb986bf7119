"""What one experiment leaves behind: `NN_slug.md`, `NN_slug.json` and `NN_slug_*.png`.

Every file is written to a temporary name in the same folder and renamed over the target, so a
reader (or a crash, or Ctrl-C) sees the previous report or the new one, never half of one.

Metric names, control names, verdicts and definition keys are stored in English (studies and scripts
read them) and shown in the reader's language through core.i18n.translate; titles, definitions and
prose are written in the language of the run.

The JSON keeps one schema, read back by the audit page and by anyone scripting over reports:
    {"experiment", "slug", "title", "group", "model", "checkpoint", "iter_num", "created",
     "definitions": {metric: text}, "metrics": [{"name", "value", "control", "control_name",
     "against", "beats_control", "p_value", "p_holm", "ci", "n", "test", "verdict"}], "figures": [file names],
     "report": "NN_slug.md", "skipped": null or reason}

How a verdict is reached (experiments/statistics.py): a judged metric carries a one-sided p-value
from a stated test against its control (many null draws, or a paired test over items); the p-values
of one report are Holm-corrected together, and `beats_control` is true only where the corrected
p-value is below ALPHA. A control drawn fewer than MIN_NULL_DRAWS times, or a single control value
without a test, is shown as a floor with no verdict; a missing control is no verdict, not a win.
"""

import contextlib
import json
import math
import os
import statistics
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from core.atomic_write import replacing
from core.i18n import N_, _, translate
from experiments.statistics import ALPHA, MIN_NULL_DRAWS, empirical_p, holm

TESTS = (N_("null draws"), N_("paired"))  # the names of the tests a metric may state, for the catalog


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally, rename it over `path`.
    If the block raises, the temporary file is removed and `path` keeps its old content."""
    with replacing(path) as tmp:  # disk full: one line
        yield tmp


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def finite_or_none(value):
    """JSON has no NaN or infinity: such values (and missing ones) become null."""
    if value is None or isinstance(value, (bool, int)):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def beats(value, control, higher_is_structure: bool | None, margin: float = 0.0) -> bool | None:
    """Whether value shows more structure than control, by more than margin: a plain comparison, used
    only where a test says so. None when the metric is descriptive (no direction means more
    structure) or a number is missing: a missing control is no verdict, never a win."""
    if higher_is_structure is None or value is None or control is None:
        return None
    return value > control + margin if higher_is_structure else value < control - margin


class Report:
    """Collects one experiment's definitions, metrics, prose, tables and figures, then writes them."""

    def __init__(self, number: int, slug: str, title: str, group: str, *, folder: Path, model: str,
                 checkpoint: str, iter_num: int | None):
        self.number, self.slug, self.title, self.group = number, slug, title, group
        self.folder, self.model, self.checkpoint, self.iter_num = folder, model, checkpoint, iter_num
        self.stem = f"{number:02d}_{slug}"
        self.definitions: dict[str, str] = {}
        self.metrics: list[dict] = []
        self.figures: list[str] = []
        self.sections: list[str] = []
        self.skipped: str | None = None

    # --- filling it -------------------------------------------------------------------------
    def define(self, name: str, text: str) -> None:
        self.definitions[name] = text

    def metric(self, name: str, value, control=None, control_name: str | None = None,
               higher_is_structure: bool | None = None, *, p_value: float | None = None,
               ci: tuple[float, float] | None = None, n: int | None = None, test: str | None = None) -> None:
        """Record a number beside its control. higher_is_structure says which way counts as
        structure (True: higher, False: lower, None: descriptive, no verdict).

        `control` may be a list of values from independent draws of a null (random bases, label
        shuffles, random directions, random-init seeds): their mean is shown as the control; with at
        least MIN_NULL_DRAWS draws the one-sided empirical p-value of value among them is the test.
        A paired or exact test computed by the experiment comes as `p_value` (with `n` items and a
        `test` name). `ci` is a 95% interval of value (bootstrap over items). Without a test the
        control is a floor: shown, not judged."""
        draws, against = None, control_name
        if isinstance(control, (list, tuple)):
            draws = [d for d in (finite_or_none(c) for c in control) if d is not None]
            control = statistics.fmean(draws) if draws else None
            if len(draws) > 1:
                control_name = N_("{control} (mean of {count}, sd {sd})").format(
                    control=control_name, count=len(draws), sd=f"{statistics.stdev(draws):.3g}")
        value, control = finite_or_none(value), finite_or_none(control)
        if (p_value is None and draws is not None and len(draws) >= MIN_NULL_DRAWS
                and higher_is_structure is not None and value is not None):
            p_value, n, test = empirical_p(value, draws, higher_is_structure), len(draws), TESTS[0]
        judged = higher_is_structure is not None and p_value is not None and value is not None
        if judged and control is None and draws is None:
            judged = False  # a missing control is no verdict
        self.metrics.append({
            "name": name, "value": value, "control": control, "control_name": control_name,
            "against": against if judged else None, "beats_control": None,
            "p_value": finite_or_none(p_value) if judged else None, "p_holm": None,
            "ci": [finite_or_none(c) for c in ci] if ci else None, "n": n if judged else None,
            "test": test if judged else None,
            "verdict": None if judged or higher_is_structure is None or control_name is None or value is None
            else N_("floor only ({count} draws, no test): no verdict").format(count=len(draws))
            if draws is not None else N_("floor only (one value, no test): no verdict"),
        })

    def judge(self) -> None:
        """Holm-correct the p-values of every judged metric, and set each one's verdict. Run once the
        report is complete (by verdict(), to_json() and to_markdown()): the family is the whole report."""
        judged = [m for m in self.metrics if m["p_value"] is not None]
        for m, adjusted in zip(judged, holm([m["p_value"] for m in judged]), strict=True):
            m["p_holm"] = adjusted
            m["beats_control"] = adjusted < ALPHA
            m["verdict"] = (N_("beats {control}").format(control=m["against"]) if m["beats_control"] else
                            N_("not distinguishable from {control} at n = {n}").format(control=m["against"],
                                                                                        n=m["n"]))

    def say(self, markdown: str) -> None:
        self.sections.append(markdown.strip())

    def table(self, header: list[str], rows: list[list], title: str | None = None) -> None:
        lines = [f"**{title}**", ""] if title else []
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(format_cell(c) for c in row) + " |" for row in rows]
        self.sections.append("\n".join(lines))

    def figure(self, fig, name: str) -> None:
        """Save a matplotlib figure as NN_slug_name.png (atomically) and close it."""
        import matplotlib.pyplot as plt  # here, not at the top: input errors should not wait for it

        file = f"{self.stem}_{name}.png"
        with atomic_path(self.folder / file) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(file)

    def skip(self, reason: str) -> None:
        self.skipped = reason

    # --- writing it -------------------------------------------------------------------------
    def verdict(self) -> str:
        self.judge()
        judged = [m for m in self.metrics if m["beats_control"] is not None]
        if not judged:
            return _("No metric here is judged by a test; the numbers are descriptive, shown beside "
                     "controls.")
        won = [f"{translate(m['name'])} ({translate(m['verdict'])})" for m in judged if m["beats_control"]]
        lost = [translate(m["name"]) for m in judged if not m["beats_control"]]
        text = _("{won} of {judged} judged metrics beat their control after Holm's correction").format(
            won=len(won), judged=len(judged))
        if won:
            text += _(": ") + _("; ").join(won)
        if lost:
            text += _(". Not distinguishable from their control: {metrics}").format(
                metrics=_(", ").join(lost))
        return text + _(".")

    def to_json(self, created: str) -> dict:
        self.judge()
        return {
            "experiment": self.number, "slug": self.slug, "title": self.title, "group": self.group,
            "model": self.model, "checkpoint": self.checkpoint, "iter_num": self.iter_num,
            "created": created, "definitions": self.definitions, "metrics": self.metrics,
            "figures": self.figures, "report": f"{self.stem}.md", "skipped": self.skipped,
        }

    def to_markdown(self, created: str) -> str:
        self.judge()
        head = [f"# {self.number}. {self.title}", "",
                _("Group {group} · model `{model}` · checkpoint `{checkpoint}` (iter {iter_num}) · {created}")
                .format(group=self.group, model=self.model, checkpoint=self.checkpoint,
                        iter_num=self.iter_num, created=created), ""]
        if self.skipped:
            return "\n".join(head + [_("**Skipped:** {reason}").format(reason=self.skipped), ""])
        out = head + [_("**Verdict:** {verdict}").format(verdict=self.verdict()), "", _("## Definitions"), ""]
        out += [f"- **{translate(name)}**: {text}" for name, text in self.definitions.items()]
        out += ["", _("## Metrics"), "", "| " + " | ".join(metric_columns()) + " |",
                "|" + " --- |" * len(metric_columns())]
        for m in self.metrics:
            out.append(f"| {format_cell(translate(m['name']))} | {format_cell(m['value'])} | "
                       f"{format_ci(m['ci'])} | "
                       f"{format_cell(translate(m['control_name'] or '—'))} | {format_cell(m['control'])} | "
                       f"{format_p(m)} | {format_cell(translate(m['verdict'] or '—'))} |")
        out += ["", how_verdicts_are_reached()]
        out += ["", _("## Results"), ""]
        for section in self.sections:
            out += [section, ""]
        if self.figures:
            out += [_("## Figures"), ""] + [f"![{f}]({f})" for f in self.figures] + [""]
        return "\n".join(out)

    def write(self) -> Path:
        """Write the markdown, then the JSON (the audit page reads the JSON), each atomically."""
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_atomic(self.folder / f"{self.stem}.md", self.to_markdown(created))
        json_path = self.folder / f"{self.stem}.json"
        write_atomic(json_path, json.dumps(self.to_json(created), indent=2, ensure_ascii=False) + "\n")
        return json_path


def metric_columns() -> list[str]:
    """The header of a metrics table (the report's and the audit page's)."""
    return [_("metric"), _("value"), _("95% CI"), _("control"), _("control value"), _("p (Holm)"),
            _("verdict")]


def how_verdicts_are_reached() -> str:
    return _("Verdicts: a judged metric beats its control when its one-sided p-value, Holm-corrected "
             "across this report's judged metrics, is below {alpha}. Tests: 'null draws' = (1 + null draws "
             "at least as extreme) / (1 + draws), needing at least {draws} draws; 'paired' = sign-flip "
             "permutation test over items; controls with fewer draws are floors, shown without a "
             "verdict.").format(
        alpha=f"{ALPHA:g}", draws=MIN_NULL_DRAWS)


def format_ci(ci) -> str:
    return "—" if not ci or None in ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def format_p(m: dict) -> str:
    if m["p_value"] is None:
        return "—"
    return f"{m['p_value']:.3g} ({m['p_holm']:.3g}), {translate(m['test'])}, n = {m['n']}"


def format_cell(value) -> str:
    """Numbers to 4 significant digits, None as 'n/a', text escaped for a markdown table."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", "\\n")
