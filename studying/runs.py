"""Carry a study out: train every run not finished, run the experiments not yet reported, resumably.

Each run is trained by `python train.py BASE_CONFIG --key=value ...` and its experiments run by
`python experiment.py BASE_CONFIG --run N ... --ckpt RUN` in a subprocess, so a study run is an
ordinary run directory, and a crash in one run leaves the study process and the other runs alone.

What is done is read from the files themselves, so a study killed at any moment continues:
  - a run is finished when its checkpoint's iter_num reaches max_iters (not retrained);
  - a run with a checkpoint short of that resumes with --init_from=resume (exactly: batches and
    dropout are functions of (seed, step)); without one it starts from scratch;
  - an experiment is done when its report JSON exists for the checkpoint's iter_num (reused).
Each start and end is appended to RUNS_DIR/study_log.jsonl.

A study can be split over several processes, one per GPU (`--shard=I/N`): the runs are dealt out
round-robin, each process trains and evaluates its own, and a run that reads another shard's run (a
teacher, a shared basis) waits until that one is trained. The comparison is written by whichever
process finds every run done.
"""

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.checkpoint import CHECKPOINT_NAME, load_checkpoint
from core.errors import UserError
from experiments.context import reports_dir_name
from experiments.registry import EXPERIMENTS
from studying.progress import Progress
from studying.spec import EVALUATION_KEYS, SEED_KEYS, Study

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_NAME = "study_log.jsonl"
TRAINING_READS = ("distill_from", "init_basis_from", "init_recipes_from")  # keys naming another run
EXPERIMENTS_READ = (*TRAINING_READS, "teacher_run")  # experiment 16's teacher
WAIT_SECONDS = 30  # how often a shard looks again at a run another shard is training
# Config keys of sampling and the experiments never change a trained model.
EXPERIMENT_PREFIX = ("probe_", "word_", "analog", "typo_", "target_", "positive_", "negative_", "steer_",
                     "concept_", "hijack_", "audit_", "start", "num_samples", "max_new_tokens", "temperature",
                     "top_k", "chat", "use_cache")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): the runs whose position among the study's runs is
    index - 1 modulo count."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> "Shard":
        parts = str(text).split("/")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            index, count = (int(p) for p in parts)
            if 1 <= index <= count:
                return cls(index, count)
        raise UserError(f"shard must be I/N with 1 <= I <= N, e.g. --shard=2/4 (the second of four "
                        f"processes); got {text!r}")

    def owns(self, study: Study) -> set[str]:
        """The run names this shard trains and evaluates."""
        names = list(dict.fromkeys(study.run_name(arm, seed) for arm, seed in study.runs()))
        return {name for i, name in enumerate(names) if i % self.count == self.index - 1}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def trained_steps(run_dir: Path) -> int | None:
    """The step of the run's checkpoint, or None when it has none."""
    if not (run_dir / CHECKPOINT_NAME).is_file():
        return None
    return int(load_checkpoint(run_dir).get("iter_num", 0))


def check_same_training(study: Study, arm: str, seed: int) -> None:
    """A run directory trained with other settings than the study now asks for is refused, not mixed in."""
    run_dir = study.run_dir(arm, seed)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        return
    saved = load_checkpoint(run_dir).get("config", {})
    wanted = study.run_config(arm, seed).to_dict()
    # lang sets only the language of messages: a run trained under another locale is the same run.
    ignored = set(EVALUATION_KEYS) | set(SEED_KEYS) - {"seed"} | {"always_save_checkpoint", "wandb_log",
                                                                 "lang"}
    differences = [
        f"{k} {saved[k]!r} vs {v!r}"
        for k, v in wanted.items()
        if k in saved and k not in ignored and saved[k] != v and not k.startswith(EXPERIMENT_PREFIX)
    ]
    if differences:
        raise UserError(
            f"{run_dir} was trained with other settings than the study asks (run vs study: "
            f"{'; '.join(differences[:4])}); delete it, or give --runs_dir=ANOTHER"
        )


def missing_experiments(study: Study, arm: str, seed: int, steps: int) -> list[int]:
    """The study's experiments with no report for this checkpoint step yet."""
    folder = study.run_dir(arm, seed) / reports_dir_name(study.run_config(arm, seed))
    missing = []
    for n in study.experiments:
        path = folder / f"{n:02d}_{EXPERIMENTS[n].slug}.json"
        try:
            done = json.loads(path.read_text(encoding="utf-8")).get("iter_num") == steps
        except (OSError, ValueError):
            done = False
        if not done:
            missing.append(n)
    return missing


def runs_read_by(study: Study, arm: str, seed: int, keys=EXPERIMENTS_READ) -> list[tuple[str, int]]:
    """The study's other runs that this run reads through `keys` (a teacher, a basis), named by
    their folder or their checkpoint."""
    config = study.run_config(arm, seed)
    paths = {Path(value).resolve() for value in (getattr(config, key) for key in keys) if value}
    own = study.run_name(arm, seed)
    read = {}
    for other_arm, other_seed in study.runs():
        run_dir = study.run_dir(other_arm, other_seed).resolve()
        name = study.run_name(other_arm, other_seed)
        if name != own and paths & {run_dir, run_dir / CHECKPOINT_NAME}:
            read.setdefault(name, (other_arm, other_seed))
    return list(read.values())


def is_trained(study: Study, arm: str, seed: int) -> bool:
    steps = trained_steps(study.run_dir(arm, seed))
    return steps is not None and steps >= study.run_config(arm, seed).max_iters


def wait_until_trained(study: Study, runs: list[tuple[str, int]]) -> None:
    """Return once every one of `runs` (another shard's) is trained to its max_iters: a run's final
    checkpoint is renamed into place whole, so a half-trained teacher is never read."""
    for arm, seed in runs:
        if not is_trained(study, arm, seed):
            print(f"waiting for {study.run_name(arm, seed)} (another shard trains it)", flush=True)
            while not is_trained(study, arm, seed):
                time.sleep(WAIT_SECONDS)


def study_done(study: Study) -> bool:
    """Every run trained and every experiment reported."""
    for arm, seed in study.runs():
        if not is_trained(study, arm, seed):
            return False
        if missing_experiments(study, arm, seed, trained_steps(study.run_dir(arm, seed))):
            return False
    return True


def log_event(study: Study, **event) -> None:
    path = Path(study.runs_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")


def run_study(study: Study, shard: Shard = Shard()) -> bool:
    """Train and evaluate every (arm, seed) of the study, or of its shard, that is not done yet.
    Returns whether the whole study is done (always, unsharded)."""
    for arm, seed in study.runs():
        check_same_training(study, arm, seed)
    owned = shard.owns(study)
    mine = [(arm, seed) for arm, seed in study.runs() if study.run_name(arm, seed) in owned]
    max_iters = study.run_config(next(iter(study.arms)), study.seeds[0]).max_iters
    progress = Progress(study, max_iters, mine)
    for arm, seed in mine:
        steps = trained_steps(study.run_dir(arm, seed))
        progress.note_done(
            arm, seed, steps or 0, missing_experiments(study, arm, seed, steps) if steps is not None else None
        )
    # Only another shard's runs are waited for: this shard's own come in the study's order.
    def others_read(arm, seed, keys):
        return [run for run in runs_read_by(study, arm, seed, keys) if study.run_name(*run) not in owned]

    trained = set()
    for arm, seed in mine:
        run_dir = study.run_dir(arm, seed)
        target = study.run_config(arm, seed).max_iters
        key = study.run_name(arm, seed)  # arms sharing training share the run
        steps = trained_steps(run_dir)
        if key not in trained and (steps is None or steps < target):
            wait_until_trained(study, others_read(arm, seed, TRAINING_READS))
            resume = steps is not None
            command = [
                sys.executable,
                "train.py",
                study.base_config,
                *study.command_overrides(arm, seed, include_evaluation=False),
                f"--init_from={'resume' if resume else 'scratch'}",
            ]
            log_event(study, event="train", run=key, from_step=steps or 0)
            progress.start_training(arm, seed, steps or 0)
            run_child(
                command,
                run_dir / "train.log",
                progress.training_line,
                lambda pid, key=key: log_event(study, event="child", run=key, pid=pid),
            )
            steps = trained_steps(run_dir)
            log_event(study, event="trained", run=key, steps=steps)
            progress.end_training(arm, seed, steps)
        trained.add(key)
        missing = missing_experiments(study, arm, seed, steps)
        if missing:
            wait_until_trained(study, others_read(arm, seed, EXPERIMENTS_READ))
            command = [
                sys.executable,
                "experiment.py",
                study.base_config,
                "--run",
                *map(str, missing),
                "--ckpt",
                str(run_dir / CHECKPOINT_NAME),
                *study.command_overrides(arm, seed, include_evaluation=True),
            ]
            log_event(study, event="experiments", run=key, arm=arm, experiments=missing)
            progress.start_experiments(arm, seed, missing)
            run_child(
                command,
                run_dir / "experiments.log",
                progress.experiment_line,
                lambda pid, key=key: log_event(study, event="child", run=key, pid=pid),
            )
            progress.end_experiments(arm, seed)
    progress.finish(shard)
    return shard.count == 1 or study_done(study)


def die_with_parent() -> None:
    """In the child, on Linux: receive SIGTERM (train.py then saves) if the study process dies, even
    by SIGKILL, instead of training on unwatched."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not Linux: the child outlives a killed study, as any process would
        pass


def run_child(command: list[str], log_path: Path, on_line, on_start=lambda pid: None) -> None:
    """Run a script from the repository root, its output appended to log_path and each line shown to
    on_line. Ctrl-C or SIGTERM reaches the child as SIGTERM (train.py then saves its checkpoint) and
    stops the study once the child has ended. Not as SIGINT: a study started with `&` from a script
    inherits SIGINT ignored, its children too, and they would train on."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        # Its own session: a Ctrl-C at the terminal reaches only the study, which passes on exactly one
        # (a second would make train.py quit without saving).
        child = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        on_start(child.pid)
        stopped = []

        def stop(*_):
            stopped.append(True)
            child.send_signal(signal.SIGTERM)

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            for line in child.stdout:
                log.write(line)
                on_line(line.rstrip("\n"))
            code = child.wait()
        except KeyboardInterrupt:
            stop()
            child.wait()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    if stopped or code == 130 or code in (-signal.SIGINT, -signal.SIGTERM):
        raise KeyboardInterrupt
    if code != 0:
        tail = log_path.read_text(encoding="utf-8").strip().splitlines()[-1:] or [""]
        raise UserError(f"{command[1]} failed (exit {code}): {tail[0]}; the full output is in {log_path}")
