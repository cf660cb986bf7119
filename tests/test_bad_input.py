"""Bad input at every entry point, one table (issue 16, classes 5 to 10 and bench's limits): each
case exits with status 2 and one line on stderr that names the key or the file, with no traceback,
and leaves the working folder exactly as it was (nothing written, nothing deleted).

Most cases call the script's `main` in this process (a traceback would surface here as an
exception other than SystemExit); the wandb cases run as subprocesses, with a HOME of their own.
Stop signals (class 4) need real processes and time: tests/test_stop_signals.py.
"""

import contextlib
import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from test_foreign_checkpoints import write_nanogpt_checkpoint
from train_fixtures import ONE_THREAD_ENV, REPO, run_args, run_config, write_dataset

import bench
import check
import experiment
import export_hf
import sample
import train

CONFIG = str(REPO / "config" / "train_shakespeare_reflow.py")


def load_script(path: Path):
    """A script whose folder name is not a module name (data/sft-lima/prepare.py)."""
    spec = importlib.util.spec_from_file_location(path.parent.name.replace("-", "_") + "_prepare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lima_prepare = load_script(REPO / "data" / "sft-lima" / "prepare.py")


@contextlib.contextmanager
def file_size_limit(size: int):
    """Writes past `size` bytes fail with EFBIG, as on a full disk (SIGXFSZ ignored, so the write
    returns the error instead of killing the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@dataclass
class Case:
    name: str
    main: object  # the entry point's main(argv), or a script path run as a subprocess
    args: list[str]  # "{work}" stands for the working folder
    names: str  # the key or file the error line must name
    file_limit: int | None = None  # bytes: a full disk
    env: dict = field(default_factory=dict)  # subprocess cases: the environment's changes


def tiny(out="run", **overrides) -> list[str]:
    """A tiny train.py run in {work}: the same keys as the tests' tiny runs."""
    return [a.replace("/WORK", "{work}") for a in run_args(Path("/WORK"), out, **overrides)]


NO_WANDB_LOGIN = {"WANDB_MODE": None, "WANDB_API_KEY": None, "NETRC": None, "HOME": "{home}"}

CASES = [
    # 5. data files
    Case("odd-byte-length", train.main, tiny(dataset="odd"), "odd/train.bin"),
    Case("token-id-past-vocab", train.main, tiny(dataset="big_id"), "big_id/val.bin"),
    Case("mask-length-differs", train.main, tiny(dataset="short_mask"), "short_mask/train_mask.bin"),
    Case("mask-trains-nothing", train.main, tiny(dataset="empty_mask"), "empty_mask/train_mask.bin"),
    Case("missing-val-bin", train.main, tiny(dataset="no_val"), "no_val/val.bin"),
    Case("val-bin-is-a-folder", train.main, tiny(dataset="val_folder"), "val_folder/val.bin"),
    Case("lima-not-utf8", lima_prepare.main, ["--input={work}/latin1.jsonl", "--out_dir={work}/lima"],
         "latin1.jsonl line 1: not UTF-8"),
    # 3. (LIMA part) nonsense that would be accepted: bins with nothing to train on
    Case("lima-no-assistant-turn", lima_prepare.main,
         ["--input={work}/prompts.jsonl", "--out_dir={work}/lima"], "prompts.jsonl"),
    # 6. checkpoints not written by us
    Case("unknown-model-args-key", check.main, ["{work}/unknown_key"], "flux_capacitor"),
    Case("unknown-key-sample", sample.main, ["--out_dir={work}/unknown_key", "--device=cpu"],
         "unknown_key/ckpt.pt"),
    Case("nanogpt-unknown-key", export_hf.main, ["{work}/nano_unknown", "{work}/hf"], "dropout_schedule"),
    Case("model-args-wrong-type", check.main, ["{work}/wrong_type"], "n_layer"),
    Case("pickled-code", check.main, ["{work}/pickled"], "pickled/ckpt.pt"),
    Case("text-file-checkpoint", sample.main, ["--out_dir={work}/text", "--device=cpu"], "text/ckpt.pt"),
    Case("truncated-checkpoint", export_hf.main, ["{work}/truncated", "{work}/hf"], "truncated/ckpt.pt"),
    Case("folder-named-ckpt-pt", check.main, ["{work}/folder_ckpt"], "folder_ckpt/ckpt.pt"),
    # 7. a full disk during a save
    Case("disk-full-at-save", train.main, tiny(init_from="resume", max_iters=4, eval_interval=2),
         "run/ckpt.pt", file_limit=100_000),
    # 8. wandb without a login
    Case("wandb-not-logged-in", "train.py", tiny(wandb_log=True), "WANDB_MODE=offline", env=NO_WANDB_LOGIN),
    Case("wandb-experiment", "experiment.py", [CONFIG, "--ckpt={work}/run", "--run", "1", "--wandb_log=True"],
         "wandb login", env=NO_WANDB_LOGIN),
    Case("wandb-bad-mode", train.main, tiny(wandb_log=True), "WANDB_MODE", env={"WANDB_MODE": "bogus"}),
    # 9. writers: a destination under a file
    Case("export-under-a-file", export_hf.main, ["{work}/run", "{work}/notes.txt/hf"], "notes.txt"),
    Case("train-out-dir-under-a-file", train.main, tiny("notes.txt/run"), "notes.txt/run"),
    Case("lima-out-dir-under-a-file", lima_prepare.main,
         ["--input={work}/conversations.jsonl", "--out_dir={work}/notes.txt/lima"], "notes.txt/lima"),
    Case("reports-folder-is-a-file", experiment.main, [CONFIG, "--ckpt={work}/reports_file", "--run", "1"],
         "audit_reports"),
    Case("export-bad-dtype", export_hf.main, ["{work}/run", "{work}/hf", "--dtype=bogus"], "--dtype"),
    Case("lima-bad-val-fraction", lima_prepare.main,
         ["--input={work}/conversations.jsonl", "--val_fraction=x"], "--val_fraction"),
    # 10. bench's own keys
    Case("bench-rounds-0", bench.main, [CONFIG, "--rounds=0"], "--rounds"),
    Case("bench-steps-0", bench.main, [CONFIG, "--steps=0"], "--steps"),
    Case("bench-threads-negative", bench.main, [CONFIG, "--threads=-1"], "--threads"),
    Case("bench-warmup-negative", bench.main, [CONFIG, "--warmup=-1"], "--warmup"),
    Case("bench-sample-tokens-negative", bench.main, [CONFIG, "--sample_tokens=-5"], "--sample_tokens"),
    # issue 25. Non-finite weights reach no script: each refuses the checkpoint, naming the weight
    Case("nan-weights-sample", sample.main, ["--out_dir={work}/nan_weights", "--device=cpu"], "holds NaN"),
    Case("nan-weights-check", check.main, ["{work}/nan_weights"], "weight blocks.0.attn.c_proj.weight"),
    Case("nan-weights-bench", bench.main, [CONFIG, "--init_from={work}/nan_weights", "--device=cpu"],
         "nan_weights/ckpt.pt"),
    # issue 25. Checkpoint fields besides the model, and run files, checked in core/run_files.py
    Case("negative-iter-num", train.main, tiny("neg_iter", init_from="resume"), "iter_num"),
    Case("best-val-loss-text", check.main, ["{work}/loss_text"], "best_val_loss"),
    Case("optimizer-state-wrong-shape", train.main, tiny("bad_optimizer", init_from="resume"),
         "optimizer state 0 exp_avg"),
    Case("saved-config-wrong-type", sample.main, ["--out_dir={work}/bad_config", "--device=cpu"],
         "bad_config/ckpt.pt's saved config"),
    Case("val-history-not-steps", train.main, tiny("bad_history", init_from="resume", max_iters=4),
         "bad_history/val_history.json"),
    Case("model-args-beside-weights", check.main, ["{work}/wide_args"], "model_args"),
    # issue 25. Sizes within each key's limits that no memory holds: the planner refuses them first
    Case("batch-of-ten-million", train.main, tiny("absurd", batch_size=10**7), "lower batch_size"),
    Case("width-of-2-to-the-20", train.main, tiny("absurd", n_embd=2**20), "weights"),
    Case("vocab-of-a-billion", train.main, tiny("absurd", vocab_size=10**9), "logits and loss"),
    Case("hundred-million-samples", sample.main, ["--out_dir={work}/run", "--num_samples=100000000",
                                                  "--device=cpu"], "num_samples"),
    Case("closing-sample-of-10-to-the-12-tokens", train.main, tiny("absurd", max_new_tokens=10**12),
         "max_new_tokens"),
    Case("experiment-samples-of-10-to-the-12-tokens", experiment.main,
         [CONFIG, "--ckpt={work}/run", "--run", "10", "--audit_sample_tokens=1000000000000"],
         "audit_sample_tokens"),
    Case("bench-batch-of-ten-million", bench.main, [CONFIG, "--batch_size=10000000", "--device=cpu"],
         "batch_size"),
    # issue 25. Flags and files outside the config loader
    Case("bench-hundred-million-samples", bench.main, [CONFIG, "--num_samples=100000000", "--device=cpu"],
         "num_samples"),
    Case("bench-threads-100000", bench.main, [CONFIG, "--threads=100000"], "--threads"),
    Case("gpu-report-bogus-device", bench.main, ["--gpu_report", "--device=bogus"], "device"),
    Case("gpu-report-absent-gpu", bench.main, ["--gpu_report", "--device=cuda:63"], "device"),
    Case("export-into-the-current-folder", export_hf.main, ["{work}/run", "."], "current folder"),
    Case("config-calls-exit", sample.main, ["{work}/exits.py"], "exits.py called exit(0)"),
    Case("lima-nested-too-deeply", lima_prepare.main, ["--input={work}/deep.jsonl", "--out_dir={work}/lima"],
         "deep.jsonl line 1"),
    Case("lima-5000-digit-number", lima_prepare.main,
         ["--input={work}/digits.jsonl", "--out_dir={work}/lima"], "digits.jsonl line 1"),
]


def make_workspace(work: Path) -> None:
    """One good run and dataset, and beside them one bad thing per case."""
    folder = write_dataset(work / "data")
    train.train(run_config(work, max_iters=2, eval_interval=2))
    checkpoint = torch.load(work / "run" / "ckpt.pt", weights_only=True)

    def dataset(name: str) -> Path:
        return write_dataset(work / "data", name=name)

    (dataset("odd") / "train.bin").write_bytes((folder / "train.bin").read_bytes() + b"\0")
    ids = np.fromfile(folder / "val.bin", dtype=np.uint16)
    ids[123] = 40000
    ids.tofile(dataset("big_id") / "val.bin")
    np.ones(10, dtype=np.uint8).tofile(dataset("short_mask") / "train_mask.bin")
    np.zeros(4000, dtype=np.uint8).tofile(dataset("empty_mask") / "train_mask.bin")
    (dataset("no_val") / "val.bin").unlink()
    (dataset("val_folder") / "val.bin").unlink()
    (work / "data" / "val_folder" / "val.bin").mkdir()

    (work / "latin1.jsonl").write_bytes(b'{"conversations": ["caf\xe9?", "oui"]}\n')
    (work / "prompts.jsonl").write_text('{"conversations": ["hello"]}\n{"conversations": ["hi"]}\n')
    (work / "conversations.jsonl").write_text('{"conversations": ["a", "b"]}\n'
                                              '{"conversations": ["c", "d"]}\n')
    (work / "notes.txt").write_text("a file, where a folder is expected\n")

    def checkpoint_folder(name: str) -> Path:
        (work / name).mkdir()
        return work / name / "ckpt.pt"

    torch.save({**checkpoint, "model_args": {**checkpoint["model_args"], "flux_capacitor": 3}},
               checkpoint_folder("unknown_key"))
    torch.save({**checkpoint, "model_args": {**checkpoint["model_args"], "n_layer": "two"}},
               checkpoint_folder("wrong_type"))
    torch.save({**checkpoint, "extra": WritesAFile(str(work / "payload_ran"))}, checkpoint_folder("pickled"))
    checkpoint_folder("text").write_text("not a checkpoint\n")
    data = (work / "run" / "ckpt.pt").read_bytes()
    checkpoint_folder("truncated").write_bytes(data[: len(data) // 2])
    checkpoint_folder("folder_ckpt").mkdir()
    write_nanogpt_checkpoint(work / "nano_unknown", bias=True, compiled=False)
    nano = torch.load(work / "nano_unknown" / "ckpt.pt", weights_only=True)
    nano["model_args"]["dropout_schedule"] = "cosine"
    torch.save(nano, work / "nano_unknown" / "ckpt.pt")
    checkpoint_folder("reports_file").write_bytes(data)
    (work / "reports_file" / "audit_reports").write_text("a file where the reports folder goes\n")

    nan_weights, projection = {**checkpoint["model"]}, "blocks.0.attn.c_proj.weight"
    nan_weights[projection] = torch.full_like(nan_weights[projection], torch.nan)  # a diverged run
    torch.save({**checkpoint, "model": nan_weights}, checkpoint_folder("nan_weights"))
    torch.save({**checkpoint, "iter_num": -5}, checkpoint_folder("neg_iter"))
    torch.save({**checkpoint, "best_val_loss": "low"}, checkpoint_folder("loss_text"))
    optimizer = {**checkpoint["optimizer"], "state": {**checkpoint["optimizer"]["state"]}}
    optimizer["state"][0] = {**optimizer["state"][0], "exp_avg": torch.zeros(3, 3)}
    torch.save({**checkpoint, "optimizer": optimizer}, checkpoint_folder("bad_optimizer"))
    torch.save({**checkpoint, "config": {**checkpoint["config"], "learning_rate": "fast"}},
               checkpoint_folder("bad_config"))
    shutil.copytree(work / "run", work / "bad_history")  # its lock file too: a resume opens it
    (work / "bad_history" / "val_history.json").write_text('{"two": {"val": 5.0}}')
    torch.save({**checkpoint, "model_args": {**checkpoint["model_args"], "n_embd": 2**16}},
               checkpoint_folder("wide_args"))
    (work / "exits.py").write_text("import sys\nsys.exit(0)\n")
    (work / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (work / "digits.jsonl").write_text('{"conversations": [' + "9" * 5000 + "]}\n")


class WritesAFile:
    """A pickled call: what an unsafe checkpoint carries (tests/test_checkpoint_safety.py)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    (root / "home").mkdir()  # HOME for the wandb cases: no ~/.netrc, no wandb settings
    make_workspace(root / "work")
    return root


def snapshot(folder: Path) -> dict:
    """Every path under `folder`, with each file's size and modification time (a folder's own
    time changes when a probe or temp file comes and goes, so only its existence counts)."""
    return {str(p.relative_to(folder)): "folder" if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def run_case(case: Case, root: Path, capsys) -> tuple[int, str]:
    work, home = root / "work", root / "home"
    args = [a.format(work=work) for a in case.args]
    if isinstance(case.main, str):
        env = {**ONE_THREAD_ENV}
        for key, value in case.env.items():
            env.pop(key, None) if value is None else env.__setitem__(key, value.format(home=home))
        result = subprocess.run([sys.executable, str(REPO / case.main), *args], env=env, cwd=work,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        return result.returncode, result.stderr
    limit = file_size_limit(case.file_limit) if case.file_limit else contextlib.nullcontext()
    saved_env = {key: os.environ.get(key) for key in case.env}
    os.environ.update(case.env)
    try:
        with limit, pytest.raises(SystemExit) as exit_info:
            case.main(args)
    finally:
        for key, value in saved_env.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, workspace, capsys):
    before = snapshot(workspace / "work")
    code, stderr = run_case(case, workspace, capsys)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    assert case.names in lines[0], lines[0]
    assert "weights_only" not in lines[0]  # never the advice to load a file that runs code
    assert snapshot(workspace / "work") == before  # nothing written, nothing deleted, no temp file left


def test_a_full_disk_keeps_the_previous_report(tmp_path):
    """Reports (experiments/report.py) are written through the same guard as checkpoints."""
    from core.errors import UserError
    from experiments.report import write_atomic

    report = tmp_path / "01_report.md"
    report.write_text("the previous report\n")
    with file_size_limit(1000), pytest.raises(UserError, match=r"could not write .*01_report.md \(File too"):
        write_atomic(report, "x" * 5000)
    assert report.read_text() == "the previous report\n"
    assert [p.name for p in tmp_path.iterdir()] == [report.name]  # the temporary file is gone


def test_export_never_deletes_a_folder_it_did_not_create(workspace, tmp_path):
    """hf_export once cleared `<out>.partial` before writing there; a user's folder of that name stays."""
    partial = tmp_path / "hf.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("keep me\n")
    export_hf.main([str(workspace / "work" / "run"), str(tmp_path / "hf")])
    assert (partial / "mine.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "hf.partial"]
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def test_a_report_of_the_wrong_shape_is_named_not_a_crash(tmp_path):
    """An NN_slug.json whose metrics is not a list: read_report names the file and field, and the
    audit page lists it as unreadable instead of failing on it."""
    from core.errors import UserError
    from core.run_files import read_report
    from experiments.audit_page import load_reports

    report = tmp_path / "01_recipe_atlas.json"
    report.write_text('{"experiment": 1, "title": "Recipe atlas", "metrics": 3, "figures": []}')
    with pytest.raises(UserError, match=r"01_recipe_atlas.json: metrics must be a list, got 3; run the"):
        read_report(report)
    assert load_reports(tmp_path) == ([], ["01_recipe_atlas.json"])
