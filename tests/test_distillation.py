"""Signal distillation (training/distillation.py): the KL term against a direct computation, exact resume
with a teacher and a frozen shared basis, and the refusals."""

import subprocess
from pathlib import Path

import pytest
import torch
from conftest import summation_tolerance
from train_fixtures import (  # noqa: F401  (one_thread: an autouse fixture)
    ONE_THREAD_ENV,
    one_thread,
    run_args,
    run_config,
    torchrun_command,
    train_command,
    write_dataset,
)

import train
from core.checkpoint import load_checkpoint
from core.errors import UserError
from experiments.teacher import teacher_run
from models import build_model
from training import distillation
from training.distillation import distillation_loss


def test_distillation_loss_is_the_tempered_kl_over_counted_positions():
    """T^2 * mean over positions with a target of sum_v p_v (log p_v - log q_v), p and q the teacher's
    and student's softmax at temperature T, written out in float64."""
    student, teacher = torch.randn(2, 5, 11) * 3, torch.randn(2, 5, 11) * 3
    targets = torch.randint(0, 11, (2, 5))
    targets[0, 1] = targets[1, 4] = -1  # ignored positions (padding, prompt tokens) do not count
    T = 2.5
    total, counted = torch.zeros((), dtype=torch.float64), 0
    for b in range(2):
        for t in range(5):
            if targets[b, t] == -1:
                continue
            p = torch.softmax(teacher[b, t].double() / T, -1)
            q = torch.softmax(student[b, t].double() / T, -1)
            total += (p * (p.log() - q.log())).sum()
            counted += 1
    expected = T**2 * total / counted
    got = distillation_loss(student, teacher, targets, T)
    torch.testing.assert_close(got.double(), expected, **summation_tolerance(expected.float(), 11))
    assert distillation_loss(teacher, teacher, targets, T).abs() < 1e-6  # zero against itself



def test_the_chunked_kl_gives_the_gradient_of_the_written_out_kl(monkeypatch):
    """Over several chunks (a chunk of 5 rows, 39 counted rows) and with ignored positions, the loss and
    the student's gradient equal autograd through the KL written out in float64; the teacher gets none."""
    student = (torch.randn(3, 14, 11) * 3).requires_grad_()
    teacher = (torch.randn(3, 14, 11) * 3).requires_grad_()
    targets = torch.randint(0, 11, (3, 14))
    targets[1, :3] = -1
    T = 2.0
    kept = targets.reshape(-1) != -1
    s64 = student.detach().double().requires_grad_()
    p = torch.softmax(teacher.detach().double().flatten(0, 1)[kept] / T, -1)
    log_q = torch.log_softmax(s64.flatten(0, 1)[kept] / T, -1)
    expected = T**2 * (p * (p.log() - log_q)).sum(-1).mean()
    expected.backward()
    monkeypatch.setitem(distillation.KL_CHUNK_ELEMENTS, "cpu", 5 * 11)
    got = distillation_loss(student, teacher, targets, T)
    got.backward()
    tolerance = summation_tolerance(expected.float(), 11 * 39)
    torch.testing.assert_close(got.double(), expected.detach(), **tolerance)
    torch.testing.assert_close(student.grad.double(), s64.grad, **summation_tolerance(s64.grad.float(), 11))
    assert teacher.grad is None


def train_teacher(tmp_path, **overrides):
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, "teacher", max_iters=4, **overrides))
    return str(tmp_path / "teacher")


def test_distilled_student_with_the_teachers_frozen_basis_resumes_exactly(tmp_path):
    """8 steps straight == 4, stop, resume 4, with a teacher's logits and its basis shared and frozen:
    same losses and weights bit for bit; the basis is still the teacher's, bit for bit; the teacher's
    term changes the trajectory, and at distill_weight=0 it changes nothing."""
    teacher = train_teacher(tmp_path)
    student = dict(n_layer=1, distill_from=teacher, init_basis_from=teacher, freeze_basis=True)
    straight = train.train(run_config(tmp_path, "straight", **student))
    first = train.train(run_config(tmp_path, "split", max_iters=4, **student))
    resumed = train.train(run_config(tmp_path, "split", init_from="resume", **student))
    assert {**first.losses, **resumed.losses} == straight.losses  # floats compared exactly
    a, b = (load_checkpoint(tmp_path / run)["model"] for run in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["basis"], load_checkpoint(teacher)["model"]["basis"])

    undistilled = train.train(run_config(tmp_path, "plain", **{**student, "distill_from": ""}))
    weightless = train.train(run_config(tmp_path, "weightless", **student, distill_weight=0.0))
    assert weightless.losses == undistilled.losses != straight.losses


def test_distilled_ddp_with_the_teachers_frozen_basis_matches_one_process(tmp_path):
    """2 gloo processes under torchrun (one micro-batch each, each with its own copy of the teacher)
    give the weights of 1 process that ran both micro-batches, with distill_from, init_basis_from and
    freeze_basis on; the basis is still the teacher's, bit for bit, on both."""
    teacher = train_teacher(tmp_path)
    student = dict(n_layer=1, max_iters=4, lr_decay_iters=4, distill_from=teacher, init_basis_from=teacher,
                   freeze_basis=True)
    ddp = subprocess.run(torchrun_command(2, *run_args(tmp_path, "ddp", **student)), cwd=tmp_path,
                         env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=120)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "2 processes" in ddp.stdout
    train.train(run_config(tmp_path, "single", **student))
    single, distributed = (load_checkpoint(tmp_path / run)["model"] for run in ("single", "ddp"))
    for key, value in distributed.items():
        torch.testing.assert_close(value, single[key], rtol=1e-4, atol=1e-5)
    basis = load_checkpoint(teacher)["model"]["basis"]
    assert torch.equal(distributed["basis"], basis) and torch.equal(single["basis"], basis)
    cfg = run_config(tmp_path, "single", **student)
    torch.manual_seed(cfg.seed)  # as train.py builds a model from scratch
    assert not torch.allclose(single["recipe"], build_model(cfg.model, cfg.model_config()).recipe, atol=1e-4)


def test_frozen_recipes_stay_as_initialized(tmp_path):
    write_dataset(tmp_path / "data")
    cfg = run_config(tmp_path, freeze_recipes=True)
    train.train(cfg)
    torch.manual_seed(cfg.seed)  # as train.py builds a model from scratch
    initial = build_model(cfg.model, cfg.model_config())
    trained = load_checkpoint(tmp_path / "run")["model"]
    assert torch.equal(trained["recipe"], initial.recipe)
    assert not torch.equal(trained["basis"], initial.basis)


def test_the_teachers_recipes_and_basis_frozen_together(tmp_path):
    teacher = train_teacher(tmp_path)
    train.train(run_config(tmp_path, "student", max_iters=2, n_layer=1, init_basis_from=teacher,
                           init_recipes_from=teacher, freeze_basis=True, freeze_recipes=True))
    ours, theirs = (load_checkpoint(run)["model"] for run in (tmp_path / "student", teacher))
    assert torch.equal(ours["basis"], theirs["basis"]) and torch.equal(ours["recipe"], theirs["recipe"])


def test_rotated_basis_control_keeps_the_signals_geometry_not_their_directions(tmp_path):
    """rotate_basis_seed: basis @ Q with Q orthogonal, so B B^T (lengths and angles among signals)
    is the teacher's while the rows point elsewhere."""
    teacher = train_teacher(tmp_path)
    train.train(run_config(tmp_path, "control", max_iters=2, init_basis_from=teacher, rotate_basis_seed=0,
                           freeze_basis=True))
    ours, theirs = (load_checkpoint(run)["model"]["basis"] for run in (tmp_path / "control", teacher))
    gram = theirs @ theirs.t()
    torch.testing.assert_close(ours @ ours.t(), gram, **summation_tolerance(gram, 2 * theirs.size(1)))
    assert (ours - theirs).abs().max() > 0.1 * theirs.abs().max()


def test_a_basis_of_another_size_is_refused_in_one_line(tmp_path):
    teacher = train_teacher(tmp_path)
    args = run_args(tmp_path, "student", n_signals=8, init_basis_from=teacher)
    result = subprocess.run(train_command(*args), capture_output=True, text=True, env=ONE_THREAD_ENV)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "S x C = 16 x 32, this model 8 x 32" in result.stderr
    assert not (tmp_path / "student").exists()


@pytest.mark.parametrize("overrides,teacher_overrides,message", [
    (dict(model="gpt2-new", freeze_basis=True), None, "freeze_basis need a model with W_basis"),
    (dict(model="gpt2-new", init_basis_from="TEACHER"), {}, "init_basis_from need a model with W_basis"),
    (dict(distill_from="TEACHER"), dict(vocab_size=300), "has vocab_size 300 and the student 256"),
    (dict(distill_from="TEACHER"), dict(block_size=8), "reads at most 8 tokens; use --block_size=8"),
])
def test_distillation_keys_that_do_not_fit_the_model_are_refused(tmp_path, overrides, teacher_overrides,
                                                                  message):
    write_dataset(tmp_path / "data")
    if teacher_overrides is not None:
        teacher = train_teacher(tmp_path, **teacher_overrides)
        overrides = {k: teacher if v == "TEACHER" else v for k, v in overrides.items()}
    with pytest.raises(UserError, match=message):
        train.train(run_config(tmp_path, "student", **overrides))
    assert not (tmp_path / "student").exists()


def test_resuming_with_other_frozen_weights_is_refused(tmp_path):
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, max_iters=4))
    with pytest.raises(UserError, match="trained with freeze_basis=False; resume with --freeze_basis=False"):
        train.train(run_config(tmp_path, init_from="resume", freeze_basis=True))


def test_keys_that_do_not_fit_together_are_refused_by_the_config(tmp_path):
    with pytest.raises(UserError, match="set --chunked_loss=False"):
        run_config(tmp_path, distill_from="out/teacher", chunked_loss=True)
    with pytest.raises(UserError, match="set --init_basis_from=RUN or drop it"):
        run_config(tmp_path, rotate_basis_seed=3)


def test_the_distillation_study_reads_the_teacher_its_first_arm_trains():
    """Each arm's runs are distinct folders directly in the study's runs folder (a path value is
    named by its last part and a digest), and the students' teacher is the teacher arm's seed-1 run,
    which is the depth study's 8-layer run."""
    from studying.spec import load_study

    study = load_study("studies/distillation.py")
    folders = {study.run_dir(arm, seed) for arm, seed in study.runs()}
    assert len(folders) == len(study.runs()) and {f.parent for f in folders} == {Path(study.runs_dir)}
    teacher = study.run_dir("teacher_8_layers", study.seeds[0])
    assert list(study.arms)[0] == "teacher_8_layers"  # trained first at seed 1, before its students
    for arm in study.arms:
        cfg = study.run_config(arm, study.seeds[-1])
        assert cfg.distill_from in ("", str(teacher))
        assert teacher_run(cfg) == str(teacher)  # every arm can run experiment 16 against the teacher
    depth = load_study("studies/depth.py")
    assert teacher == depth.run_dir("layers_8", 1)
    # teacher_run is read by the experiments only: the arms naming it keep the depth study's runs.
    assert study.run_dir("scratch", 2) == depth.run_dir("layers_2", 2)
    assert study.run_dir("teacher_8_layers", 2) == depth.run_dir("layers_8", 2)
    training = study.command_overrides("scratch", 2, include_evaluation=False)
    assert not any("teacher_run" in arg for arg in training)
