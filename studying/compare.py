"""From runs to a comparison: a study's own runs, or any finished runs named on the command line.

    python study.py --runs out/a_seed1 out/a_seed2 out/b_seed1 out/b_seed2 [--out DIR]
    python experiment.py --compare RUN RUN ...            (the same)

Runs given by hand are grouped into arms by their configs: runs whose training configs differ only
in the seed (and out_dir, run name) are seeds of one arm, named by the keys that set it apart. The
metrics are val loss and every number their audit reports hold; every pair of arms is compared.
"""

import itertools
from pathlib import Path

from core.checkpoint import load_checkpoint
from core.config import Config, from_dict, parse_args
from core.errors import UserError
from experiments.context import reports_dir_name
from studying.comparison import ComparisonInput, write_comparison
from studying.outcomes import VAL_LOSS, bigram_loss, check_metrics_exist, collect, read_report_metrics
from studying.spec import SEED_KEYS, Study

RUN_KEYS = set(SEED_KEYS) | {"always_save_checkpoint", "wandb_log", "wandb_project", "eval_only"}


def compare_study(study: Study, command: str) -> Path:
    """Collect every run of a finished study and write its comparison to study.results_dir."""
    arms, descriptions = {}, {}
    for arm in study.arms:
        runs = []
        for seed in study.seeds:
            cfg = study.run_config(arm, seed)
            runs.append(collect(study.run_dir(arm, seed), cfg, study.metrics))
        arms[arm] = runs
        overrides = study.arms[arm]
        descriptions[arm] = (
            ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "the base config"
        ) + f"; seeds {study.seeds}"
    check_metrics_exist(study.metrics, [r for runs in arms.values() for r in runs])
    shared = ", ".join(f"{k}={v!r}" for k, v in study.settings.items())
    notes = [
        f"command: {command}",
        f"base config: {study.base_config}" + (f" with {shared}" if shared else ""),
        f"runs in {study.runs_dir}",
    ] + ([study.description] if study.description else [])
    notes += floor_notes(study.run_config(next(iter(study.arms)), study.seeds[0]), arms)
    data = ComparisonInput(
        f"Study: {study.name}", arms, descriptions, study.metrics, study.comparisons, notes
    )
    return write_comparison(data, Path(study.results_dir))


def floor_notes(cfg: Config, arms: dict) -> list[str]:
    """Whether each arm learned more than a bigram model: an arm that did not has little to compare."""
    floor = bigram_loss(cfg)
    if floor is None:
        return []
    lines = [f"bigram floor: {floor:.4g} nats on the same val text (train.bin counts, interpolated with "
             "unigrams at the weight that suits the text best)"]
    for arm, runs in arms.items():
        losses = [r.values[VAL_LOSS] for r in runs if VAL_LOSS in r.values]
        if losses:
            mean = sum(losses) / len(losses)
            verdict = "clears it" if mean < floor else "does NOT clear it: its other metrics say little"
            lines.append(f"{arm}: mean val loss {mean:.4g}, {verdict}")
    return lines


def run_config(run_dir: Path) -> Config:
    checkpoint = load_checkpoint(run_dir)
    if "config" not in checkpoint:
        raise UserError(f"{run_dir} holds a checkpoint without its config; compare runs trained by train.py")
    return from_dict(checkpoint["config"])


def group_runs(run_dirs: list[Path]) -> dict[str, list[tuple[Path, Config]]]:
    """Arms: runs with the same config apart from RUN_KEYS, named by what distinguishes them."""
    configs = [(d, run_config(d)) for d in run_dirs]
    keyed = {}
    for run_dir, cfg in configs:
        key = tuple(sorted((k, repr(v)) for k, v in cfg.to_dict().items() if k not in RUN_KEYS))
        keyed.setdefault(key, []).append((run_dir, cfg))
    varying = {k for key in keyed for k, v in key if any(dict(other).get(k) != v for other in keyed)}
    arms = {}
    for key, runs in keyed.items():
        name = ",".join(f"{k}={eval_repr(v)}" for k, v in key if k in varying) or "runs"
        arms[name] = runs
    return arms


def eval_repr(text: str) -> str:
    return text.strip("'\"")


def report_metrics(run_dir: Path, cfg: Config) -> list[str]:
    """Every numeric metric "N:name" in a run's reports."""
    from experiments.registry import EXPERIMENTS

    names = []
    for n in EXPERIMENTS:
        report = read_report_metrics(run_dir / reports_dir_name(cfg), n)
        if report and not report.get("skipped"):
            names += [
                f"{n}:{m['name']}"
                for m in report.get("metrics", [])
                if isinstance(m.get("value"), (int, float)) and not isinstance(m.get("value"), bool)
            ]
    return names


def compare_runs(run_dirs: list[Path], out: Path, command: str) -> Path:
    for d in run_dirs:
        if not d.is_dir():
            raise UserError(f"{d} is not a run directory")
    arms = group_runs(run_dirs)
    if len(arms) < 2:
        raise UserError(
            f"the {len(run_dirs)} runs share one config (one arm); give runs of at least two arms"
        )
    metrics = [VAL_LOSS]
    for runs in arms.values():
        for run_dir, cfg in runs:
            metrics += [m for m in report_metrics(run_dir, cfg) if m not in metrics]
    outcomes = {arm: [collect(d, cfg, metrics) for d, cfg in runs] for arm, runs in arms.items()}
    check_metrics_exist(metrics, [o for runs in outcomes.values() for o in runs])
    descriptions = {
        arm: f"{len(runs)} runs: " + ", ".join(str(d) for d, _ in runs) for arm, runs in arms.items()
    }
    names = list(arms)
    pairs = list(itertools.combinations(names, 2)) if len(names) <= 4 else [(names[0], n) for n in names[1:]]
    data = ComparisonInput(
        "Comparison of runs", outcomes, descriptions, metrics, pairs, [f"command: {command}"]
    )
    return write_comparison(data, out)


def compare_runs_main(argv: list[str]) -> None:
    """`--runs RUN RUN ... [--out DIR]` (the part after --compare / --runs)."""
    out, runs, rest = Path("out/comparison"), [], []
    for arg in argv:
        (rest if arg.startswith("--") else runs).append(arg)
    _, overrides = parse_args(rest)
    for key in overrides:
        if key != "out":
            raise UserError(f"unknown option --{key}; compare takes RUN RUN ... and --out=DIR")
    out = Path(overrides.get("out", out))
    if len(runs) < 4:
        raise UserError("give at least 4 runs (2 arms x 2 seeds): --runs RUN RUN RUN RUN ...")
    page = compare_runs([Path(r) for r in runs], out, "compare " + " ".join(argv))
    print(f"comparison written to {out}; open {page}")
