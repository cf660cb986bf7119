"""What a person sees of a study: which run and experiment it is on, and an estimate of the time left.

    [train 2/9] reflow_topk seed 1: iter 120/700 | study: 2,140 of 6,300 steps, 11 of 45 experiments
                | ~38 min left

The estimate is this session's own pace: seconds per training step (from the runs' log lines) times
the steps left, plus seconds per experiment times the experiments left; before the first
measurement it says so instead of guessing.
"""

import re
import time

from studying.spec import Study

ITER_LINE = re.compile(r"^iter (\d+)/(\d+)")
EXPERIMENT_LINE = re.compile(r"^\s*(\d+)\. .+\(([\d.]+) s\)")


class Progress:
    def __init__(self, study: Study, max_iters: int, runs: list[tuple[str, int]] | None = None):
        self.study, self.max_iters = study, max_iters
        self.runs = study.runs() if runs is None else runs  # a shard's own runs, or all of them
        self.steps_left: dict[str, int] = {}  # by run name (arms sharing a run count it once)
        self.experiments_left: dict[tuple[str, int], int] = {}
        self.step_seconds: list[float] = []  # (seconds, steps) pace samples
        self.step_count = 0
        self.experiment_seconds = 0.0
        self.experiment_count = 0
        self.current, self.current_arm = "", ("", 0)
        self.experiment_start = time.time()
        self.last_step: tuple[float, int] | None = None
        self.started = time.time()

    def note_done(self, arm: str, seed: int, steps: int, missing: list[int] | None) -> None:
        self.steps_left[self.study.run_name(arm, seed)] = max(0, self.max_iters - steps)
        self.experiments_left[(arm, seed)] = len(self.study.experiments if missing is None else missing)

    def position(self, arm: str, seed: int) -> str:
        return f"{self.runs.index((arm, seed)) + 1}/{len(self.runs)}"

    def start_training(self, arm: str, seed: int, from_step: int) -> None:
        self.current_arm = (arm, seed)
        self.current = f"[train {self.position(arm, seed)}] {arm} seed {seed}"
        self.last_step = None
        self.run_start, self.run_from, self.run_paced = time.time(), from_step, self.step_count
        start = f"resuming at step {from_step}" if from_step else "from scratch"
        print(f"{self.current}: training {start} | {self.eta()}", flush=True)

    def training_line(self, line: str) -> None:
        match = ITER_LINE.match(line)
        if match:
            step, now = int(match[1]), time.time()
            if self.last_step is not None and step > self.last_step[1]:
                self.step_seconds.append(now - self.last_step[0])
                self.step_count += step - self.last_step[1]
            self.last_step = (now, step)
            name = self.current_run
            self.steps_left[name] = max(0, int(match[2]) - step)
            print(f"{self.current}: iter {step}/{match[2]} | {self.eta()}", flush=True)
        elif line.startswith(("step ", "stopped", "error", "non-finite")):
            print(f"{self.current}: {line}", flush=True)

    def end_training(self, arm: str, seed: int, steps: int | None) -> None:
        """A run too short to print log lines still gives a pace: its whole time over its steps."""
        if self.step_count == self.run_paced and steps and steps > self.run_from:
            self.step_seconds.append(time.time() - self.run_start)
            self.step_count += steps - self.run_from
        self.steps_left[self.study.run_name(arm, seed)] = 0

    @property
    def current_run(self) -> str:
        arm, seed = self.current_arm
        return self.study.run_name(arm, seed)

    def start_experiments(self, arm: str, seed: int, numbers: list[int]) -> None:
        self.current_arm = (arm, seed)
        self.current = f"[experiments {self.position(arm, seed)}] {arm} seed {seed}"
        self.experiment_start = time.time()
        print(f"{self.current}: running {', '.join(map(str, numbers))} | {self.eta()}", flush=True)

    def experiment_line(self, line: str) -> None:
        match = EXPERIMENT_LINE.match(line)
        if match:
            now = time.time()
            self.experiment_seconds += now - self.experiment_start
            self.experiment_count += 1
            self.experiment_start = now
            key = self.current_arm
            self.experiments_left[key] = max(0, self.experiments_left[key] - 1)
            print(f"{self.current}: {line.strip()} | {self.eta()}", flush=True)

    def end_experiments(self, arm: str, seed: int) -> None:
        self.experiments_left[(arm, seed)] = 0

    def eta(self) -> str:
        steps, experiments = sum(self.steps_left.values()), sum(self.experiments_left.values())
        total_steps = len(self.steps_left) * self.max_iters
        total_experiments = len(self.runs) * len(self.study.experiments)
        done = (
            f"study: {total_steps - steps:,} of {total_steps:,} steps, "
            f"{total_experiments - experiments} of {total_experiments} experiments"
        )
        unknown = (steps and not self.step_count) or (experiments and not self.experiment_count)
        if unknown:
            return f"{done} | time left: measuring"
        seconds = 0.0
        if steps:
            seconds += sum(self.step_seconds) / self.step_count * steps
        if experiments:
            seconds += self.experiment_seconds / self.experiment_count * experiments
        return f"{done} | ~{seconds / 60:.0f} min left"

    def finish(self, shard=None) -> None:
        sharded = shard is not None and shard.count > 1
        which = f"shard {shard}'s {len(self.runs)} runs" if sharded else "every run"
        print(
            f"study {self.study.name}: {which} trained and evaluated "
            f"({(time.time() - self.started) / 60:.1f} min this session)",
            flush=True,
        )
