"""What one experiment leaves behind: `NN_slug.md`, `NN_slug.json` and `NN_slug_*.png`.

Every file is written to a temporary name in the same folder and renamed over the target, so a
reader (or a crash, or Ctrl-C) sees the previous report or the new one, never half of one.

The JSON keeps one schema, read back by the audit page and by anyone scripting over reports:
    {"experiment", "slug", "title", "group", "model", "checkpoint", "iter_num", "created",
     "definitions": {metric: text}, "metrics": [{"name", "value", "control", "control_name",
     "beats_control"}], "figures": [file names], "report": "NN_slug.md", "skipped": null or reason}
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

# A control given as several draws is beaten only by a value beyond its mean +- this many sd.
CLEAR_BY = 2.0


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally, rename it over `path`.
    If the block raises, the temporary file is removed and `path` keeps its old content."""
    with replacing(path, path.with_name(f".{path.name}.{os.getpid()}.tmp")) as tmp:  # disk full: one line
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
    """Whether value shows more structure than control, by more than margin. None when the metric
    is descriptive (no direction means more structure) or a number is missing; a value reached where
    the control never was (control None, e.g. a search that found no critical strength) beats it."""
    if higher_is_structure is None or value is None:
        return None
    if control is None:
        return True
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
               higher_is_structure: bool | None = None) -> None:
        """Record a number beside its control. higher_is_structure says which way counts as
        structure (True: higher, False: lower, None: descriptive, no verdict).

        `control` may be a list of values from independent draws (random-init seeds, label shuffles,
        random directions): their mean is the control, their spread is named beside it, and the
        value must clear the mean by CLEAR_BY standard deviations to count as beating it."""
        margin = 0.0
        if isinstance(control, (list, tuple)):
            draws = [d for d in (finite_or_none(c) for c in control) if d is not None]
            control = statistics.fmean(draws) if draws else None
            if len(draws) > 1:
                spread = statistics.stdev(draws)
                margin = CLEAR_BY * spread
                control_name = f"{control_name} (mean of {len(draws)}, sd {spread:.3g})"
        value, control = finite_or_none(value), finite_or_none(control)
        self.metrics.append({
            "name": name, "value": value, "control": control, "control_name": control_name,
            "beats_control": beats(value, control, higher_is_structure, margin) if control_name else None,
        })

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
        judged = [m for m in self.metrics if m["beats_control"] is not None]
        if not judged:
            return "No metric here claims structure; the numbers are descriptive, shown beside controls."
        won = [m["name"] for m in judged if m["beats_control"]]
        lost = [m["name"] for m in judged if not m["beats_control"]]
        text = f"Structure beats the control on {len(won)} of {len(judged)} metrics"
        if lost:
            text += f"; it does not on: {', '.join(lost)}"
        return text + "."

    def to_json(self, created: str) -> dict:
        return {
            "experiment": self.number, "slug": self.slug, "title": self.title, "group": self.group,
            "model": self.model, "checkpoint": self.checkpoint, "iter_num": self.iter_num,
            "created": created, "definitions": self.definitions, "metrics": self.metrics,
            "figures": self.figures, "report": f"{self.stem}.md", "skipped": self.skipped,
        }

    def to_markdown(self, created: str) -> str:
        head = [f"# {self.number}. {self.title}", "",
                f"Group {self.group} · model `{self.model}` · checkpoint `{self.checkpoint}` "
                f"(iter {self.iter_num}) · {created}", ""]
        if self.skipped:
            return "\n".join(head + [f"**Skipped:** {self.skipped}", ""])
        out = head + [f"**Verdict:** {self.verdict()}", "", "## Definitions", ""]
        out += [f"- **{name}**: {text}" for name, text in self.definitions.items()]
        out += ["", "## Metrics", "", "| metric | value | control | control value | beats control |",
                "| --- | --- | --- | --- | --- |"]
        for m in self.metrics:
            verdict = {True: "yes", False: "no", None: "—"}[m["beats_control"]]
            out.append(f"| {m['name']} | {format_cell(m['value'])} | {m['control_name'] or '—'} | "
                       f"{format_cell(m['control'])} | {verdict} |")
        if any("(mean of" in (m["control_name"] or "") for m in self.metrics):
            out += ["", f"A control drawn several times shows the mean of its draws; beating it means "
                        f"clearing that mean by {CLEAR_BY:g} standard deviations of the draws."]
        out += ["", "## Results", ""]
        for section in self.sections:
            out += [section, ""]
        if self.figures:
            out += ["## Figures", ""] + [f"![{f}]({f})" for f in self.figures] + [""]
        return "\n".join(out)

    def write(self) -> Path:
        """Write the markdown, then the JSON (the audit page reads the JSON), each atomically."""
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_atomic(self.folder / f"{self.stem}.md", self.to_markdown(created))
        json_path = self.folder / f"{self.stem}.json"
        write_atomic(json_path, json.dumps(self.to_json(created), indent=2, ensure_ascii=False) + "\n")
        return json_path


def format_cell(value) -> str:
    """Numbers to 4 significant digits, None as 'n/a', text escaped for a markdown table."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", "\\n")
