"""Every key's limits or choices are refused at the door, by every entry point, before any work.

Each case runs the real script in a subprocess: exit status 2, one line on stderr that names the
key, the value and what is allowed, no traceback, and the run directory exactly as it was. The
cases run a few at a time, so the table costs seconds, not minutes.
"""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from train_fixtures import ONE_THREAD_ENV, REPO, run_args

SHAKESPEARE = "config/train_shakespeare_reflow.py"

# (overrides, what the line must name: the key, then the offending value as written back)
CASES = [
    (["--dtype=bogus"], "dtype", "'bogus'"),
    (["--device=gpu"], "device", "'gpu'"),
    (["--learning_rate=-1"], "learning_rate", "-1"),
    (["--beta1=1.5"], "beta1", "1.5"),
    (["--dropout=1.5"], "dropout", "1.5"),
    (["--n_head=0"], "n_head", "0"),
    (["--n_kv_head=-2"], "n_kv_head", "-2"),
    (["--n_signals=0"], "n_signals", "0"),
    ([f"--seed={2**63}"], "seed", str(2**63)),
    (["--seed=-1"], "seed", "-1"),
    (["--max_iters=-1"], "max_iters", "-1"),
    (["--temperature=-0.5"], "temperature", "-0.5"),
    (["--weight_decay=-0.1"], "weight_decay", "-0.1"),
    (["--out_dir="], "out_dir", "''"),
    (["--concept_alpha_max=-1"], "concept_alpha_max", "-1"),
    (["--top_k=0"], "top_k", "0"),
    (["--n_layer=0"], "n_layer", "0"),
    (["--n_embd=6", "--n_head=2"], "n_embd / n_head", "6 / 2"),  # odd head size under RoPE
    (["--on_nonfinite=ignore"], "on_nonfinite", "'ignore'"),
    (["--model=gpt3"], "model", "'gpt3'"),
    (["--num_samples=0"], "num_samples", "0"),
    (["--rope_theta=0"], "rope_theta", "0"),  # a ModelConfig-only key, checked like the others
    (["--batch_size=0"], "batch_size", "0"),
    (["--backend=bogus"], "backend", "'bogus'"),
    (["--hijack_strength=2"], "hijack_strength", "2"),
    (["--learning_rate=0.1", "--min_lr=1"], "min_lr", "1"),
    (["--init_from=resum"], "init_from", "'resum'"),
]
if not torch.cuda.is_available():
    CASES.append((["--device=cuda"], "device", "'cuda'"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refusal_problems(command: list[str], cwd: Path, key: str, value: str) -> str | None:
    """What is wrong with how `command` refused a bad value (None when it refused it properly)."""
    before = snapshot(cwd)
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=ONE_THREAD_ENV,
                            timeout=120)
    err = result.stderr
    if result.returncode != 2:
        return f"exit {result.returncode}: {err[-300:]}"
    if not err.startswith("error: ") or err.count("\n") != 1 or "Traceback" in err:
        return f"not one error line: {err!r}"
    if key not in err or value not in err or ("must" not in err and "needs" not in err):
        return f"does not name {key}, {value} and what is allowed: {err!r}"
    if snapshot(cwd) != before:
        return "changed files in the run directory"
    return None


def check_all(commands: dict[str, tuple[list[str], Path, str, str]]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = dict(zip(commands, pool.map(lambda c: refusal_problems(*c), commands.values()),
                            strict=True))
    failed = {case: problem for case, problem in problems.items() if problem}
    assert not failed, "\n".join(f"{case}: {problem}" for case, problem in failed.items())


@pytest.fixture
def workspace(tmp_path):
    """tmp_path holding a run directory with a checkpoint in it, which no refusal may touch."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(b"an earlier run's checkpoint")
    return tmp_path


def test_train_refuses_every_bad_value_before_any_work(workspace):
    base = [sys.executable, str(REPO / "train.py"), *run_args(workspace)]
    check_all({" ".join(args): ([*base, *args], workspace, key, value) for args, key, value in CASES})


def test_sample_refuses_the_same_values(workspace):
    base = [sys.executable, str(REPO / "sample.py"), f"--out_dir={workspace / 'run'}"]
    check_all({" ".join(args): ([*base, *args], workspace, key, value) for args, key, value in CASES})


def test_every_other_entry_point_goes_through_the_same_checks(workspace):
    config = str(REPO / SHAKESPEARE)
    scripts = {
        "experiment": [str(REPO / "experiment.py"), config, "--run", "all",
                       f"--out_dir={workspace / 'run'}"],
        "check with a config": [str(REPO / "check.py"), config],
        "check a checkpoint": [str(REPO / "check.py"), str(workspace / "run")],
        "bench": [str(REPO / "bench.py"), config],
    }
    picked = [CASES[0], CASES[3], CASES[14], CASES[17]]  # a choice, a bound, an experiment key, a pair
    check_all({f"{name} {' '.join(args)}": ([sys.executable, *script, *args], workspace, key, value)
               for name, script in scripts.items() for args, key, value in picked})
