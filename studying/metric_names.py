"""The metric names each experiment can report, read from its source, so that a study file naming a
metric no experiment reports is refused when it is loaded, not after every run has trained.

An experiment's names are the first arguments of its `report.metric(...)` calls: in the function the
registry names and in every function of the same module it calls. A literal is a name; an f-string is
a pattern (each `{...}` any text: "log-prob drop, {what}" accepts "log-prob drop, the top signal").
A module-level constant (KL = N_("KL ...")) stands for the value it is assigned.
An experiment that passes a name computed otherwise (a variable) is open: its names are checked only
against the reports once they exist (studying/outcomes.check_metrics_exist).
"""

import ast
import functools
import re
from pathlib import Path

from experiments.registry import EXPERIMENTS

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"


def name_pattern(node: ast.expr, constants: dict[str, ast.expr] | None = None) -> str | None:
    """A regex for the name an argument gives, or None when the source does not say it. A name marked
    for the catalog, N_("MRR"), is its literal; a catalog template filled by .format() is a pattern
    (each {field} any text), as an f-string is; a module constant in `constants` is its value's."""
    constants = constants or {}
    if isinstance(node, ast.Name) and node.id in constants:
        return name_pattern(constants[node.id])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "N_" and node.args:
        return name_pattern(node.args[0])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        template = name_pattern(node.func.value, constants)
        return None if template is None else re.sub(r"\\\{[^}]*\\\}", ".+", template)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            re.escape(part.value) if isinstance(part, ast.Constant) else ".+" for part in node.values
        )
    return None


def module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """{NAME: the expression assigned to it} for each module-level `NAME = ...` of one target."""
    assignments = [node for node in tree.body if isinstance(node, ast.Assign) and len(node.targets) == 1]
    return {node.targets[0].id: node.value for node in assignments if isinstance(node.targets[0], ast.Name)}


@functools.cache
def metric_patterns(number: int) -> tuple[str, ...] | None:
    """Regexes of every metric name experiment `number` can report; None when one is not literal."""
    module_name, function = EXPERIMENTS[number].code.rsplit(".", 1)
    tree = ast.parse((EXPERIMENTS_DIR / f"{module_name}.py").read_text(encoding="utf-8"))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    constants = module_constants(tree)
    patterns, seen, todo = [], set(), [function]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Name):
                todo.append(node.func.id)
            elif isinstance(node.func, ast.Attribute) and node.func.attr == "metric" and node.args:
                pattern = name_pattern(node.args[0], constants)
                if pattern is None:
                    return None
                patterns.append(pattern)
    return tuple(patterns)


def reportable(number: int, name: str) -> bool:
    """Whether experiment `number` can report a metric called `name` (True when its source cannot say)."""
    patterns = metric_patterns(number)
    return patterns is None or any(re.fullmatch(p, name) for p in patterns)


def example_names(number: int) -> list[str]:
    """The names experiment `number` reports, for an error message (patterns shown with '...')."""
    patterns = metric_patterns(number) or ()
    return sorted({re.sub(r"\\(.)", r"\1", p.replace(".+", "...")) for p in patterns})
