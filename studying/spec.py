"""A study: a plain-Python file naming arms, seeds, experiments, metrics and comparisons.

    name = "hard_sparsity"
    base_config = "config/train_shakespeare_reflow.py"   # every run starts from this training config
    settings = {"max_iters": 700}                        # overrides shared by every arm
    arms = {"reflow": {}, "reflow_topk": {"model": "reflow-topk", "topk": 16},
            "gpt2_new_svd": {"model": "gpt2-new", "posthoc": "svd"}}
    seeds = [1, 2, 3]                                    # training seeds, the same for every arm
    experiments = [1, 2, 5]                              # run on every run of every arm
    metrics = ["val loss", "1:top-pair cosine", "2:active fraction"]   # everything compared
    comparisons = [("reflow", "reflow_topk"), ("reflow", "gpt2_new_svd")]
    primary = {"1:top-pair cosine": "lower",                            # decided before it runs
               "val loss": {("reflow", "reflow_topk"): "higher", ("reflow", "gpt2_new_svd"): "differs"}}

A metric is one the study computes itself ("val loss", "crystallization depth"; studying/outcomes.py)
or "N:name", metric `name` of experiment N's report, or "N:name (gain over control)": that metric
minus its control in the same report (the no-offset baseline of analogy MRR, the random-init value of
selectivity). `primary` names at most 5 of the metrics, each with the direction the study expects of
the second arm of every comparison against the first ("higher", "lower" or "differs"), or a direction
per comparison; those cells are tested as one Holm family and get verdicts (studying/statistics.py),
every other metric is exploratory. Each (arm, seed) is trained as an ordinary run directory; arms
that differ only in keys the training never reads (`posthoc`, ...) share their runs and differ in
their reports.
"""

import dataclasses
import hashlib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Config, check_key, check_type, load_config, read_config_file
from core.errors import UserError
from core.i18n import N_
from experiments.registry import EXPERIMENTS
from studying.metric_names import example_names, reportable
from studying.statistics import DIRECTIONS, MAX_PRIMARY

ARM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
STUDY_METRICS = (N_("val loss"), N_("crystallization depth"))  # computed by the study (studying/outcomes.py)
GAIN = " (gain over control)"  # "N:name (gain over control)": the metric minus its report's control
NAME_BYTES = 255  # the longest file name Linux, macOS and Windows file systems all take
# Keys that only the experiments read: arms differing only in these share their trained runs.
EVALUATION_KEYS = ("posthoc", "posthoc_active_fraction", "floor_draws", "sae_reading", "sae_widths", "sae_k",
                   "sae_steps", "sae_train_tokens", "teacher_run")
# Every study run saves at each evaluation: the checkpoint is the run's last state (equal steps for every
# arm), and a killed run resumes from its last evaluation.
STUDY_TRAINING = {"always_save_checkpoint": True, "wandb_log": False}
SEED_KEYS = ("seed", "out_dir", "wandb_run_name", "init_from")  # differ between runs, not between arms


@dataclass
class Study:
    name: str
    base_config: str
    arms: dict[str, dict]
    seeds: list[int]
    experiments: list[int]
    metrics: list[str]
    comparisons: list[tuple[str, str]]
    primary: dict = field(default_factory=dict)  # metric -> direction, or {comparison: direction}
    settings: dict = field(default_factory=dict)
    runs_dir: str = ""  # where the runs live; default out/studies/<name>
    results_dir: str = ""  # where the comparison is written; default results/<name>
    description: str = ""

    def arm_overrides(self, arm: str) -> dict:
        """The keys this arm sets over the base config: the shared settings, then the arm's own."""
        return {**self.settings, **self.arms[arm]}

    def training_overrides(self, arm: str) -> dict:
        return {k: v for k, v in self.arm_overrides(arm).items() if k not in EVALUATION_KEYS}

    def run_name(self, arm: str, seed: int) -> str:
        """A run's directory name: the arm's own training keys and the seed, e.g.
        'model=reflow-topk,topk=16_seed1' ('base_seed1' for the base config itself). A path value
        (distill_from=out/...) is written as its last part and a digest of the whole, so the run stays
        one folder, its name short, and two paths with one last part still two runs."""
        own = {k: v for k, v in self.arms[arm].items() if k not in EVALUATION_KEYS}
        keys = ",".join(f"{k}={path_label(v)}" for k, v in sorted(own.items())) or "base"
        return f"{keys}_seed{seed}"

    def run_dir(self, arm: str, seed: int) -> Path:
        return Path(self.runs_dir) / self.run_name(arm, seed)

    def run_config(self, arm: str, seed: int) -> Config:
        """The full config of one run (training and experiments): base file, settings, arm, seed."""
        overrides = {
            **self.arm_overrides(arm),
            **STUDY_TRAINING,
            "seed": seed,
            "out_dir": str(self.run_dir(arm, seed)),
            "wandb_run_name": self.run_name(arm, seed),
        }
        return load_config(self.base_config, {k: repr(v) for k, v in overrides.items()})

    def command_overrides(self, arm: str, seed: int, include_evaluation: bool) -> list[str]:
        """--key=value arguments that turn base_config into this run's config, for train.py
        (include_evaluation False) or experiment.py (True)."""
        overrides = self.arm_overrides(arm) if include_evaluation else self.training_overrides(arm)
        overrides = {
            **overrides,
            **STUDY_TRAINING,
            "seed": seed,
            "out_dir": str(self.run_dir(arm, seed)),
            "wandb_run_name": self.run_name(arm, seed),
        }
        return [f"--{k}={v!r}" if not isinstance(v, str) else f"--{k}={v}" for k, v in overrides.items()]

    def direction(self, metric: str, pair: tuple[str, str]) -> str | None:
        """What the study expects of pair[1] against pair[0] on `metric`; None: exploratory."""
        expected = self.primary.get(metric)
        return expected.get(pair) if isinstance(expected, dict) else expected

    def runs(self) -> list[tuple[str, int]]:
        """Every (arm, seed), seed-major, so an interrupted study has every arm at the first seeds."""
        return [(arm, seed) for seed in self.seeds for arm in self.arms]


def path_label(value) -> str:
    """`value` as it stands in a run's name: a path as 'last_part#digest', anything else as str()."""
    text = str(value)
    if "/" not in text:
        return text
    return f"{Path(text).name}#{hashlib.sha1(text.encode()).hexdigest()[:8]}"


REQUIRED = ("base_config", "arms", "seeds", "experiments", "metrics", "comparisons", "primary")


def load_study(path: str, overrides: dict[str, str] | None = None) -> Study:
    """Read a study file, apply `--runs_dir=...`/`--results_dir=...` overrides, and check every part
    of it, each mistake in one line, before anything is trained."""
    values = read_config_file(path)
    values.setdefault("name", Path(path).stem)
    fields = {f.name for f in dataclasses.fields(Study)}
    for key in values:
        if key not in fields:
            raise UserError(f"unknown study key {key!r} in {path}; a study sets {', '.join(sorted(fields))}")
    for key, value in (overrides or {}).items():
        if key not in ("runs_dir", "results_dir"):
            raise UserError(
                f"unknown study option --{key}; study.py takes --runs_dir=DIR, --results_dir=DIR, --lang"
            )
        if not value.strip():
            raise UserError(f"--{key}= is empty; give a folder, e.g. --{key}=out/my_study")
        values[key] = value
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise UserError(f"study {path} does not set {', '.join(missing)}; see studies/ for examples")
    check_shapes(values, path)
    values["comparisons"] = [tuple(pair) for pair in values["comparisons"]]
    study = Study(**values)
    study.runs_dir = study.runs_dir or f"out/studies/{study.name}"
    study.results_dir = study.results_dir or f"results/{study.name}"
    check_study(study, path)
    return study


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_list_of(value, kind) -> bool:
    return isinstance(value, list | tuple) and all(kind(v) for v in value)


def check_shapes(values: dict, path: str) -> None:
    """Every field of a study file has the type it must have (a Python file can hold anything)."""

    def refuse(key: str, wanted: str) -> None:
        raise UserError(f"{path}: {key} must be {wanted}, got {values[key]!r}")

    for key in ("name", "base_config", "runs_dir", "results_dir", "description"):
        if key in values and not isinstance(values[key], str):
            refuse(key, "a string")
    if not isinstance(values["arms"], dict) or not values["arms"]:
        refuse("arms", "a dict of arm name -> overrides, e.g. {'reflow': {}}")
    if not isinstance(values.get("settings", {}), dict):
        refuse("settings", "a dict of config overrides shared by every arm")
    for arm, overrides in {"settings": values.get("settings", {}), **values["arms"]}.items():
        if not isinstance(arm, str) or not ARM_NAME.match(arm):
            raise UserError(f"{path}: arm name {arm!r} must be a string of letters, digits, '_', '.', '-'")
        if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
            raise UserError(f"{path}: arm {arm!r} must be a dict of config key -> value, got {overrides!r}")
    if not is_list_of(values["seeds"], is_int):
        refuse("seeds", "a list of integers, e.g. [1, 2, 3, 4, 5, 6]")
    if not is_list_of(values["experiments"], is_int):
        refuse("experiments", "a list of experiment numbers, e.g. [1, 5]")
    if not is_list_of(values["metrics"], lambda m: isinstance(m, str)):
        refuse("metrics", 'a list of metric names, e.g. ["val loss", "1:top-pair cosine"]')
    def is_pair(p) -> bool:
        return is_list_of(p, lambda a: isinstance(a, str)) and len(p) == 2

    if not is_list_of(values["comparisons"], is_pair):
        refuse("comparisons", 'a list of pairs of arm names, e.g. [("reflow", "reflow_topk")]')
    if not isinstance(values["primary"], dict) or not all(isinstance(m, str) for m in values["primary"]):
        refuse("primary", 'a dict of metric -> expected direction, e.g. {"val loss": "higher"}')


def check_study(study: Study, path: str) -> None:
    if not ARM_NAME.match(study.name):
        raise UserError(f"{path}: name {study.name!r} may use only letters, digits, '_', '.', '-'")
    if not Path(study.base_config).is_file():
        raise UserError(f"{path}: base_config {study.base_config} not found")
    hints = typing.get_type_hints(Config)
    for arm, overrides in {"settings": study.settings, **study.arms}.items():
        for key, value in overrides.items():
            if key in SEED_KEYS:
                raise UserError(f"{path}: arm {arm!r} sets {key!r}, which the study sets per run")
            check_key(key, hints, source=path)
            check_type(key, value, hints[key], source=path)
    if len(study.seeds) < 2 or len(set(study.seeds)) != len(study.seeds):
        raise UserError(
            f"{path}: seeds must be at least 2 distinct integers (the shipped studies use 6), "
            f"got {study.seeds}"
        )
    if len(set(study.experiments)) != len(study.experiments):
        raise UserError(f"{path}: experiments lists one twice: {study.experiments}")
    for n in study.experiments:
        if n not in EXPERIMENTS:
            raise UserError(
                f"{path}: unknown experiment {n}; the experiments are numbered 1 to {max(EXPERIMENTS)}"
            )
    check_metrics(study, path)
    for pair in study.comparisons:
        if any(a not in study.arms for a in pair) or pair[0] == pair[1]:
            raise UserError(f"{path}: comparison {pair!r} must name two different arms of {list(study.arms)}")
    if not study.comparisons:
        raise UserError(f"{path}: comparisons is empty; name at least one pair of arms to compare")
    if len(set(study.comparisons)) != len(study.comparisons):
        raise UserError(f"{path}: a comparison is listed twice in {study.comparisons}")
    check_primary(study, path)
    for arm in study.arms:
        check_run_name(study, arm, path)
    for arm, seed in study.runs():  # every run's full config must load (values in range, models known)
        steps = study.run_config(arm, seed).max_iters
        if steps < 1:
            raise UserError(f"{path}: arm {arm!r} trains max_iters={steps} steps; a study needs at least 1")
    check_writable_folder(study.runs_dir, "runs_dir")
    check_writable_folder(study.results_dir, "results_dir")


def check_metrics(study: Study, path: str) -> None:
    """Every metric is the study's own or one a listed experiment can report (read from its source)."""
    if not study.metrics or len(set(study.metrics)) != len(study.metrics):
        raise UserError(f"{path}: metrics must be a non-empty list without repeats, got {study.metrics}")
    for metric in study.metrics:
        if metric in STUDY_METRICS:
            continue
        number, sep, name = metric.removesuffix(GAIN).partition(":")
        if not sep or not number.strip().isdigit() or int(number) not in study.experiments:
            raise UserError(
                f"{path}: metric {metric!r} must be one of {', '.join(STUDY_METRICS)} or "
                f"'N:metric name' with N one of the study's experiments {study.experiments}"
            )
        if not reportable(int(number), name.strip()):
            raise UserError(
                f"{path}: experiment {int(number)} reports no metric {name.strip()!r}; it reports "
                f"{'; '.join(example_names(int(number)))}"
            )


def check_primary(study: Study, path: str) -> None:
    """1 to MAX_PRIMARY primary metrics, each one of the metrics, each with a direction (one for
    every comparison, or one per comparison)."""
    if not 1 <= len(study.primary) <= MAX_PRIMARY:
        raise UserError(
            f"{path}: primary must name 1 to {MAX_PRIMARY} of the metrics (the claims the study tests), "
            f"got {len(study.primary)}"
        )
    for metric, expected in study.primary.items():
        if metric not in study.metrics:
            raise UserError(f"{path}: primary metric {metric!r} is not one of the metrics {study.metrics}")
        if isinstance(expected, dict):
            if set(expected) != set(study.comparisons):
                raise UserError(
                    f"{path}: primary[{metric!r}] must give a direction for each comparison "
                    f"{study.comparisons} and no other, got {list(expected)}"
                )
        directions = expected.values() if isinstance(expected, dict) else [expected]
        for direction in directions:
            if direction not in DIRECTIONS:
                raise UserError(
                    f"{path}: primary[{metric!r}] direction {direction!r} must be one of "
                    f"{', '.join(DIRECTIONS)}"
                )


def check_run_name(study: Study, arm: str, path: str) -> None:
    """An arm's values become a folder name: no separator, no '..', not too long."""
    name = study.run_name(arm, max(study.seeds, key=lambda s: len(str(s))))
    values = [part.partition("=")[2] for part in name.rpartition("_seed")[0].split(",")]
    if any(c in name for c in "/\\\0") or any(v.startswith("..") for v in values):
        raise UserError(
            f"{path}: arm {arm!r} would train in the folder {name!r}: its values name the run's folder, "
            "so they may not hold '/' or '\\' or start with '..'"
        )
    if len(name.encode()) > NAME_BYTES:
        raise UserError(
            f"{path}: arm {arm!r} would train in a folder name of {len(name.encode())} bytes (the limit is "
            f"{NAME_BYTES}); shorten its values"
        )


def check_writable_folder(folder: str, option: str) -> None:
    """A folder the study writes to is checked before any run trains: not a file, and the folder or
    its nearest existing parent writable. Nothing is created here."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise UserError(f"{option} {folder} is a file, not a folder; give another with --{option}=DIR")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"{option} {folder} cannot be made: {existing} is a file; give another with --{option}=DIR"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {folder} is not writable ({existing}); give another with --{option}=DIR")
