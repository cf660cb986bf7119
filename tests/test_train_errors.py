"""Bad input to train.py: one line on stderr, exit status 2, no traceback, nothing overwritten."""

import subprocess

import pytest
from train_fixtures import (  # noqa: F401  (one_thread: an autouse fixture)
    ONE_THREAD_ENV,
    one_thread,
    run_args,
    run_config,
    train_command,
    write_dataset,
)

import train
from core.errors import UserError
from training.distributed import Distributed


def fails(capsys, args: list[str]) -> str:
    """Run train.py's main in-process; return its one-line error."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


@pytest.fixture
def trained(tmp_path):
    """A dataset and a finished tiny reflow run in tmp_path/run."""
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, max_iters=2, eval_interval=2, log_interval=100))
    return tmp_path / "run" / "ckpt.pt"


def test_missing_data_names_the_prepare_command(tmp_path):
    # Through the command line once: the whole process prints one line and exits 2.
    result = subprocess.run(train_command(*run_args(tmp_path, dataset="openwebtext")), cwd=tmp_path,
                            capture_output=True, text=True, env=ONE_THREAD_ENV, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: no train data at {tmp_path}/data/openwebtext/train.bin; "
                             "prepare it with: python data/openwebtext/prepare.py\n")
    assert not (tmp_path / "run").exists()


def test_out_dir_that_cannot_be_written(tmp_path, capsys):
    write_dataset(tmp_path / "data")
    (tmp_path / "a_file").write_text("not a directory")
    err = fails(capsys, run_args(tmp_path, out="a_file/run"))
    assert err.startswith(f"error: cannot write to out_dir {tmp_path}/a_file/run (")
    assert "choose another with --out_dir=" in err
    assert (tmp_path / "a_file").read_text() == "not a directory"


def test_resume_without_a_checkpoint(tmp_path, capsys):
    write_dataset(tmp_path / "data")
    err = fails(capsys, run_args(tmp_path, init_from="resume"))
    assert err == f"error: no checkpoint at {tmp_path}/run/ckpt.pt; train one first or pass the right path"


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_resume_from_a_damaged_checkpoint(trained, capsys, damage):
    whole = trained.read_bytes()
    trained.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"\x00garbage" * 1000)
    damaged = trained.read_bytes()
    err = fails(capsys, run_args(trained.parent.parent, init_from="resume"))
    assert err.startswith(f"error: checkpoint {trained} is truncated or corrupt")
    assert trained.read_bytes() == damaged  # left as it was, for the user to inspect


def test_resume_with_another_architecture(trained, capsys):
    before = trained.read_bytes()
    tmp_path = trained.parent.parent
    err = fails(capsys, run_args(tmp_path, init_from="resume", model="gpt2"))
    assert f"error: {trained} holds a different architecture than the config" in err
    assert "model 'reflow' vs 'gpt2'" in err
    err = fails(capsys, run_args(tmp_path, init_from="resume", n_layer=3, n_signals=8))
    assert "n_layer 2 vs 3; n_signals 16 vs 8" in err
    assert trained.read_bytes() == before


def test_fine_tune_with_a_longer_context_than_the_checkpoint(trained, capsys):
    err = fails(capsys, run_args(trained.parent.parent, "sft", init_from=str(trained), block_size=64))
    assert err == ("error: block_size 64 is longer than the checkpoint's model was built for (16); "
                   "use --block_size=16 or less")


def test_accumulation_steps_must_divide_among_ranks(tmp_path):
    cfg = run_config(tmp_path, gradient_accumulation_steps=3)
    with pytest.raises(UserError, match=r"gradient_accumulation_steps \(3\) must be a multiple of the "
                                        r"number of processes \(2\)"):
        train.run(cfg, Distributed(world_size=2))  # the check comes before any communication


def test_values_out_of_range(tmp_path, capsys):
    err = fails(capsys, run_args(tmp_path, on_nonfinite="ignore"))
    assert err == "error: on_nonfinite must be 'stop' or 'skip', got 'ignore'"
    err = fails(capsys, run_args(tmp_path, eval_interval=0))
    assert err == "error: eval_interval must be at least 1, got 0"


def test_what_the_closing_sample_needs_is_checked_before_training(tmp_path, capsys):
    # The closing sample's prompt ("\n", GPT-2 id 198) does not fit a 128-token vocabulary: say so
    # now, not after the whole run.
    err = fails(capsys, run_args(tmp_path, vocab_size=128, max_new_tokens=5))
    assert "closing sample" in err and "--max_new_tokens=0" in err
    assert not (tmp_path / "run").exists()
