"""A checkpoint is data: one that carries a pickled call is refused and the call never runs."""

import subprocess
import sys

import pytest
import torch
from conftest import tiny_model

from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import UserError


class WritesAFile:
    """Unpickling this would call Path.touch(marker): the 'payload' of a crafted checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def crafted_checkpoint(tmp_path):
    model = tiny_model("reflow")
    marker = tmp_path / "payload_ran"
    torch.save({"model": model.state_dict(), "model_args": vars(model.config),
                "config": {"model": "reflow"}, "extra": WritesAFile(str(marker))},
               tmp_path / "ckpt.pt")
    return tmp_path / "ckpt.pt", marker


def test_pickled_call_is_refused_and_never_runs(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(UserError, match=r"refusing to load .*: it holds pickled code \(getattr\)") as error:
        load_checkpoint(path)
    assert not marker.exists()
    # One short line, and never torch's advice to load it with weights_only=False (which runs the code).
    assert "\n" not in str(error.value) and "weights_only" not in str(error.value)


def test_every_entry_point_refuses_it(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    for command in (["check.py", str(path)], ["sample.py", f"--out_dir={tmp_path}", "--max_new_tokens=1"]):
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert "refusing to load" in result.stderr and "Traceback" not in result.stderr
        assert "weights_only" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert not marker.exists()


def test_an_honest_checkpoint_loads(tmp_path):
    model = tiny_model("reflow")
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config),
                     "config": {"model": "reflow"}}, tmp_path / "ckpt.pt")
    loaded = load_checkpoint(tmp_path)
    assert torch.equal(loaded["model"]["recipe"], model.recipe.detach())


def test_a_save_never_writes_through_a_planted_symlink(tmp_path):
    """Links at the old fixed temporary name and at ckpt.pt itself: the file outside out_dir they
    point to is untouched; ckpt.pt becomes a file of its own, and no temporary file is left."""
    out_dir, outside = tmp_path / "run", tmp_path / "precious.txt"
    out_dir.mkdir()
    outside.write_text("not yours to overwrite\n")
    (out_dir / "ckpt.pt.tmp").symlink_to(outside)
    (out_dir / "ckpt.pt").symlink_to(outside)
    model = tiny_model("reflow")
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config)}, out_dir / "ckpt.pt")
    assert outside.read_text() == "not yours to overwrite\n"
    assert not (out_dir / "ckpt.pt").is_symlink() and load_checkpoint(out_dir)["model"].keys()
    assert sorted(p.name for p in out_dir.iterdir()) == ["ckpt.pt", "ckpt.pt.tmp"]  # the link, left alone


def test_a_second_training_in_the_same_out_dir_is_refused(tmp_path, capsys):
    """While one run holds out_dir, another is refused in one line before it writes anything; once
    the first ends, however it ended, the folder is free."""
    from train_fixtures import run_args, write_dataset

    import train
    from core.out_dir_lock import OutDirLock

    write_dataset(tmp_path / "data")
    (tmp_path / "run").mkdir()
    with OutDirLock(tmp_path / "run"), pytest.raises(SystemExit) as exit_info:
        train.main(run_args(tmp_path, max_iters=2, eval_interval=2))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: out_dir {tmp_path / 'run'} is in use by another training; wait for it to end, " \
                  "or give this run another --out_dir\n"
    assert not (tmp_path / "run" / "ckpt.pt").exists()
    train.main(run_args(tmp_path, max_iters=2, eval_interval=2))  # released: the folder is free again
    assert load_checkpoint(tmp_path / "run")["iter_num"] == 2


def test_a_lock_file_planted_as_a_symlink_is_refused_not_followed(tmp_path):
    from core.out_dir_lock import LOCK_NAME, OutDirLock

    outside = tmp_path / "precious.txt"
    outside.write_text("keep\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).symlink_to(outside)
    with pytest.raises(UserError, match=r"cannot create the lock file .*\.train\.lock \(Too many levels"):
        OutDirLock(tmp_path / "run")
    assert outside.read_text() == "keep\n"
