"""From runs to a comparison: a study's own runs, or any finished runs named on the command line.

    python study.py --runs out/a_seed1 out/a_seed2 out/b_seed1 out/b_seed2 [--out=DIR] [--lang=zh]
    python experiment.py --compare RUN RUN ...            (the same)

Runs given by hand are grouped into arms by their configs: runs whose training configs differ only
in the seed (and out_dir, run name) are seeds of one arm, named by the keys that set it apart. The
metrics are val loss and every number their audit reports hold; every pair of arms is compared. No
metric was named before these runs trained, so every one is exploratory: no verdicts.

A run counts once: the same folder (by resolved path), the same checkpoint (by its bytes) or two runs
of one arm at one seed are refused, since a copy would count as a second seed with no spread.
"""

import hashlib
import itertools
from pathlib import Path

from core.checkpoint import CHECKPOINT_NAME, load_checkpoint
from core.config import Config, from_dict, parse_args
from core.errors import UserError
from core.i18n import LANGUAGE_CHOICES, _, use_cjk_font, use_language
from experiments.context import reports_dir_name
from studying.comparison import ComparisonInput, write_comparison
from studying.floors import floors_of
from studying.outcomes import VAL_LOSS, check_metrics_exist, collect, read_report_metrics, val_windows
from studying.spec import GAIN, SEED_KEYS, Study, check_writable_folder

# Keys that differ between runs of one arm. lang only sets the language of messages and reports: a run
# trained under another locale is the same run.
RUN_KEYS = set(SEED_KEYS) | {"always_save_checkpoint", "wandb_log", "wandb_project", "eval_only", "lang"}
# Metrics that read the recipes only through cosines (nearest neighbours, cosine silhouette, 3CosAdd):
# the same for any rotation of signal space. A full-rank SVD's recipes U diag(sigma) = E V are such a
# rotation of the embedding E, so on these an SVD arm is its model's own embedding, not a factorization.
ROTATION_INVARIANT = (
    "1:top-pair cosine", "1:group agreement", "4:silhouette", "5:MRR", "5:answers ranked first"
)


def check_language(lang: str) -> str:
    """--lang as given, refused in one line unless 'auto', 'en' or 'zh'."""
    if lang not in LANGUAGE_CHOICES:
        choices = ", ".join(repr(c) for c in LANGUAGE_CHOICES[:-1]) + f" or {LANGUAGE_CHOICES[-1]!r}"
        raise UserError(f"--lang must be {choices}, got {lang!r}")
    return lang


def speak(lang: str) -> None:
    """Write the comparison (markdown, page, figures) in `lang` ('auto', 'en' or 'zh'), as --lang asks."""
    if use_language(check_language(lang)) == "zh":
        use_cjk_font()


def compare_study(study: Study, command: str) -> Path:
    """Collect every run of a finished study and write its comparison to study.results_dir."""
    arms, descriptions, configs = {}, {}, {}
    for arm in study.arms:
        runs = []
        for seed in study.seeds:
            cfg = study.run_config(arm, seed)
            runs.append(collect(study.run_dir(arm, seed), cfg, study.metrics))
        check_distinct_runs([r.run_dir for r in runs], arm)
        arms[arm], configs[arm] = runs, study.run_config(arm, study.seeds[0])
        overrides = study.arms[arm]
        descriptions[arm] = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or _("the base config")
    check_metrics_exist(study.metrics, [r for runs in arms.values() for r in runs])
    shared = ", ".join(f"{k}={v!r}" for k, v in study.settings.items())
    base = (_("base config: {path} with {settings}").format(path=study.base_config, settings=shared) if shared
            else _("base config: {path}").format(path=study.base_config))
    notes = [
        _("command: {command}").format(command=command),
        base,
        _("runs in {folder}").format(folder=study.runs_dir),
    ] + ([study.description] if study.description else [])
    primary = {m: {pair: study.direction(m, pair) for pair in study.comparisons} for m in study.primary}
    first = configs[next(iter(study.arms))]
    data = ComparisonInput(
        _("Study: {name}").format(name=study.name), arms, descriptions, study.metrics, study.comparisons,
        notes, primary,
        floors_of(first, val_windows(first)), rotation_baselines(configs, study.metrics),
    )
    return write_comparison(data, Path(study.results_dir))


def rotation_baselines(configs: dict[str, Config], metrics: list[str]) -> dict[tuple[str, str], str]:
    """(arm, metric) -> what the arm's cell is, for full-rank SVD arms on ROTATION_INVARIANT metrics."""
    notes = {}
    for arm, cfg in configs.items():
        if cfg.posthoc == "svd" and cfg.n_signals >= cfg.n_embd:
            for metric in metrics:
                if metric.removesuffix(GAIN) in ROTATION_INVARIANT:
                    notes[(arm, metric)] = _(
                        "{arm} is {model}'s own embedding on this cosine metric (a full-rank SVD rotates it)"
                    ).format(arm=arm, model=cfg.model)
    return notes


def checkpoint_digest(run_dir: Path) -> str:
    with open(run_dir / CHECKPOINT_NAME, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_distinct_runs(run_dirs: list[Path], arm: str | None = None) -> None:
    """Refuse a run given twice, as one folder by two names or one checkpoint in two folders: a copy
    would count as another seed."""
    where = f" (arm {arm})" if arm else ""
    seen_paths, seen_digests = {}, {}
    for run_dir in run_dirs:
        path = run_dir.resolve()
        if path in seen_paths:
            raise UserError(f"{run_dir} and {seen_paths[path]} are the same run{where}; give each run once")
        seen_paths[path] = run_dir
        digest = checkpoint_digest(run_dir)
        if digest in seen_digests:
            raise UserError(
                f"{run_dir} and {seen_digests[digest]} hold the same checkpoint{where}; a copy is not "
                "another seed: give each run once"
            )
        seen_digests[digest] = run_dir


def check_one_run_per_seed(runs: list[tuple[Path, int]], arm: str) -> None:
    """Two runs of one arm at one seed would be one seed counted twice (or a pair broken)."""
    seen = {}
    for run_dir, seed in runs:
        if seed in seen:
            raise UserError(
                f"{run_dir} and {seen[seed]} of arm {arm} were both trained at seed {seed}; a seed counts "
                "once in an arm"
            )
        seen[seed] = run_dir


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


def compare_runs(run_dirs: list[Path], out: Path, command: str, lang: str = "auto") -> Path:
    """Group the runs into arms, compare every pair (all exploratory) and write it to `out` in `lang`."""
    for d in run_dirs:
        if not (d / CHECKPOINT_NAME).is_file():
            raise UserError(f"{d} is not a run directory (no {CHECKPOINT_NAME} in it)")
    check_writable_folder(str(out), "out")
    check_distinct_runs(run_dirs)
    speak(lang)
    arms = group_runs(run_dirs)
    for arm, runs in arms.items():
        check_one_run_per_seed([(d, cfg.seed) for d, cfg in runs], arm)
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
        arm: _("{count} runs: {runs}").format(count=len(runs), runs=", ".join(str(d) for d, _cfg in runs))
        for arm, runs in arms.items()
    }
    names = list(arms)
    pairs = list(itertools.combinations(names, 2)) if len(names) <= 4 else [(names[0], n) for n in names[1:]]
    first = next(iter(arms.values()))[0][1]
    configs = {arm: runs[0][1] for arm, runs in arms.items()}
    notes = [_("command: {command}").format(command=command),
             _("no metric was named before these runs trained: every one is exploratory")]
    data = ComparisonInput(
        _("Comparison of runs"), outcomes, descriptions, metrics, pairs, notes, {},
        floors_of(first, val_windows(first)), rotation_baselines(configs, metrics),
    )
    return write_comparison(data, out)


def compare_runs_main(argv: list[str]) -> None:
    """`--runs RUN RUN ... [--out=DIR] [--lang=zh]` (the part after --compare / --runs)."""
    out, runs, rest = Path("out/comparison"), [], []
    for arg in argv:
        (rest if arg.startswith("--") else runs).append(arg)
    _, overrides = parse_args(rest)
    for key in overrides:
        if key not in ("out", "lang"):
            raise UserError(f"unknown option --{key}; compare takes RUN RUN ..., --out=DIR and --lang=en|zh")
    lang = check_language(overrides.get("lang", "auto"))
    if not overrides.get("out", "x").strip():
        raise UserError("--out= is empty; give a folder, e.g. --out=out/my_comparison")
    out = Path(overrides.get("out", out))
    if len(runs) < 4:
        raise UserError("give at least 4 runs (2 arms x 2 seeds): --runs RUN RUN RUN RUN ...")
    page = compare_runs([Path(r) for r in runs], out, "compare " + " ".join(argv), lang)
    print(f"comparison written to {out}; open {page}")
