"""A study: a plain-Python file naming arms, seeds, experiments, metrics and comparisons.

    name = "hard_sparsity"
    base_config = "config/train_shakespeare_reflow.py"   # every run starts from this training config
    settings = {"max_iters": 700}                        # overrides shared by every arm
    arms = {"reflow": {}, "reflow_topk": {"model": "reflow-topk", "topk": 16},
            "gpt2_new_svd": {"model": "gpt2-new", "posthoc": "svd"}}
    seeds = [1, 2, 3]                                    # training seeds, the same for every arm
    experiments = [1, 2, 5]                              # run on every run of every arm
    metrics = ["val loss", "1:top-pair cosine", "2:active fraction"]
    comparisons = [("reflow", "reflow_topk"), ("reflow", "gpt2_new_svd")]

A metric is one the study computes itself ("val loss", "crystallization depth"; studying/outcomes.py)
or "N:name", metric `name` of experiment N's report. Each (arm, seed) is trained as an ordinary run
directory; arms that differ only in keys the training never reads (`posthoc`, ...) share their runs
and differ in their reports.
"""

import dataclasses
import hashlib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Config, check_key, check_type, load_config, read_config_file
from core.errors import UserError
from experiments.registry import EXPERIMENTS

ARM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
STUDY_METRICS = ("val loss", "crystallization depth")  # computed by the study (studying/outcomes.py)
# Keys that only the experiments read: arms differing only in these share their trained runs.
EVALUATION_KEYS = ("posthoc", "posthoc_active_fraction", "floor_draws")
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

    def runs(self) -> list[tuple[str, int]]:
        """Every (arm, seed), seed-major, so an interrupted study has every arm at the first seeds."""
        return [(arm, seed) for seed in self.seeds for arm in self.arms]


def path_label(value) -> str:
    """`value` as it stands in a run's name: a path as 'last_part#digest', anything else as str()."""
    text = str(value)
    if "/" not in text:
        return text
    return f"{Path(text).name}#{hashlib.sha1(text.encode()).hexdigest()[:8]}"


REQUIRED = ("base_config", "arms", "seeds", "experiments", "metrics", "comparisons")


def load_study(path: str, overrides: dict[str, str] | None = None) -> Study:
    """Read a study file, apply `--runs_dir=...`/`--results_dir=...` overrides, and check every part
    of it, each mistake in one line."""
    values = read_config_file(path)
    values.setdefault("name", Path(path).stem)
    fields = {f.name for f in dataclasses.fields(Study)}
    for key in values:
        if key not in fields:
            raise UserError(f"unknown study key {key!r} in {path}; a study sets {', '.join(sorted(fields))}")
    for key, value in (overrides or {}).items():
        if key not in ("runs_dir", "results_dir"):
            raise UserError(
                f"unknown study option --{key}; study.py takes --runs_dir=DIR and --results_dir=DIR"
            )
        values[key] = value
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise UserError(f"study {path} does not set {', '.join(missing)}; see studies/ for examples")
    values["comparisons"] = [tuple(pair) for pair in values["comparisons"]]
    study = Study(**values)
    study.runs_dir = study.runs_dir or f"out/studies/{study.name}"
    study.results_dir = study.results_dir or f"results/{study.name}"
    check_study(study, path)
    return study


def check_study(study: Study, path: str) -> None:
    if not Path(study.base_config).is_file():
        raise UserError(f"{path}: base_config {study.base_config} not found")
    if not study.arms or not isinstance(study.arms, dict):
        raise UserError(f"{path}: arms must be a dict of arm name -> overrides, e.g. {{'reflow': {{}}}}")
    hints = typing.get_type_hints(Config)
    for arm, overrides in {"settings": study.settings, **study.arms}.items():
        if not ARM_NAME.match(arm):
            raise UserError(f"{path}: arm name {arm!r} may use only letters, digits, '_', '.', '-'")
        if not isinstance(overrides, dict):
            raise UserError(f"{path}: arm {arm!r} must be a dict of config overrides, got {overrides!r}")
        for key, value in overrides.items():
            if key in SEED_KEYS:
                raise UserError(f"{path}: arm {arm!r} sets {key!r}, which the study sets per run")
            check_key(key, hints, source=path)
            check_type(key, value, hints[key], source=path)
    if len(study.seeds) < 2 or len(set(study.seeds)) != len(study.seeds):
        raise UserError(
            f"{path}: seeds must be at least 2 distinct integers (3 or more for a claim), got {study.seeds}"
        )
    for n in study.experiments:
        if n not in EXPERIMENTS:
            raise UserError(
                f"{path}: unknown experiment {n}; the experiments are numbered 1 to {max(EXPERIMENTS)}"
            )
    for metric in study.metrics:
        number, sep, _ = metric.partition(":")
        if metric in STUDY_METRICS:
            continue
        if not sep or not number.strip().isdigit() or int(number) not in study.experiments:
            raise UserError(
                f"{path}: metric {metric!r} must be one of {', '.join(STUDY_METRICS)} or "
                f"'N:metric name' with N one of the study's experiments {study.experiments}"
            )
    for pair in study.comparisons:
        if len(pair) != 2 or any(a not in study.arms for a in pair) or pair[0] == pair[1]:
            raise UserError(f"{path}: comparison {pair!r} must name two different arms of {list(study.arms)}")
    for arm in study.arms:  # the full config of each arm must load (values in range, models known)
        study.run_config(arm, study.seeds[0])
