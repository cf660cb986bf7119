"""Experiment 16 (agreement with a teacher) on constructed cases: a model against a copy of itself
agrees perfectly; the same function with its signals relabelled (basis rows and recipe columns
permuted) predicts alike but agrees signal by signal only at chance; teachers that cannot be compared
are refused in one line, before any report is written."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import summation_tolerance
from experiment_workspace import make_run
from train_fixtures import run_config, write_dataset

import train
from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import load_config
from core.errors import UserError
from experiments.context import load_context
from experiments.related_work import final_signals
from experiments.runner import check_runnable, run_experiments
from experiments.teacher import teacher_run
from experiments.teacher_agreement import correlation_matrix, top_context_overlap
from models import ModelConfig, build_model

REPORT = "16_teacher_agreement.json"


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A tiny random-init reflow (S = 16) and its config file."""
    root = tmp_path_factory.mktemp("student")
    config_file, cfg = make_run(root, "reflow")
    return root, config_file, cfg


def save_teacher(root: Path, name: str, checkpoint: dict) -> str:
    save_checkpoint(checkpoint, root / name / "ckpt.pt")
    return str(root / name)


def run_16(config_file, teacher: str, out: Path) -> dict:
    """Experiment 16's metrics by name, with `teacher` as teacher_run; reports in `out`."""
    cfg = load_config(str(config_file), {"teacher_run": teacher})
    ctx = load_context(cfg)
    ctx.reports_dir = out
    out.mkdir()
    run_experiments(ctx, [16])
    report = json.loads((out / REPORT).read_text())
    return report


def metrics_of(report: dict) -> dict:
    return {m["name"]: m for m in report["metrics"]}


def test_a_model_against_a_copy_of_itself_agrees_perfectly(student, tmp_path):
    root, config_file, cfg = student
    teacher = save_teacher(tmp_path, "copy", load_checkpoint(cfg.out_dir))
    report = run_16(config_file, teacher, tmp_path / "reports")
    m = metrics_of(report)
    assert m["KL(teacher || model), nats per token"]["value"] == 0.0  # the same logits bit for bit
    assert m["KL(teacher || model), nats per token"]["control"] > 1e-3  # random-init models predict otherwise
    assert m["activation correlation, median over signals"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert m["share of signals with activation correlation above 0.5"]["value"] == 1.0
    assert m["top-context overlap, median over signals"]["value"] == 1.0
    assert m["ablation agreement (Spearman over signals)"]["value"] == pytest.approx(1.0, abs=1e-12)
    for name in ("activation correlation, median over signals", "top-context overlap, median over signals",
                 "ablation agreement (Spearman over signals)"):
        assert m[name]["beats_control"] is True, name  # far outside the permuted-teacher null
        assert m[name]["control_name"].startswith("teacher's signals randomly permuted")
        assert name in report["definitions"]
    assert report["figures"] and "teacher_run" in report["definitions"]["teacher"]


def relabelled(checkpoint: dict, shift: int) -> dict:
    """The same model with its signals renumbered (s -> s + shift mod S): basis rows and recipe columns
    rolled together, so E = W_recipe W_basis and every logit are unchanged."""
    weights = dict(checkpoint["model"])
    weights["basis"] = weights["basis"].roll(shift, dims=0)
    weights["recipe"] = weights["recipe"].roll(shift, dims=1)
    return {**checkpoint, "model": weights}


def test_relabelled_signals_predict_alike_but_agree_only_at_chance(student, tmp_path):
    root, config_file, cfg = student
    original = load_checkpoint(cfg.out_dir)
    teacher = save_teacher(tmp_path, "relabelled", relabelled(original, 1))
    m = metrics_of(run_16(config_file, teacher, tmp_path / "reports"))
    # Same function: the KL is only the rounding of sums taken in another order.
    assert m["KL(teacher || model), nats per token"]["value"] < 1e-5
    correlation = m["activation correlation, median over signals"]
    assert correlation["value"] < 0.9 and correlation["beats_control"] is False
    assert m["top-context overlap, median over signals"]["value"] < 0.5
    assert m["ablation agreement (Spearman over signals)"]["beats_control"] is False

    # Signal s of the model is the teacher's signal s + 1: the matrices find it there.
    ctx = load_context(load_config(str(config_file)))
    ours = final_signals(ctx.model, ctx.text_windows())
    args = {k: v for k, v in original["model_args"].items() if k != "model"}
    model = build_model("reflow", ModelConfig(**args))
    model.load_state_dict(relabelled(original, 1)["model"])
    theirs = final_signals(model.eval(), ctx.text_windows())
    S = ours.size(1)
    shifted = correlation_matrix(ours, theirs)[torch.arange(S), (torch.arange(S) + 1) % S]
    torch.testing.assert_close(shifted, torch.ones(S, dtype=torch.float64),
                               **summation_tolerance(torch.ones(1), ours.size(1)))
    overlap = top_context_overlap(ours, theirs, 20)[torch.arange(S), (torch.arange(S) + 1) % S]
    assert (overlap == 1).all()


def variant(checkpoint: dict, model_name: str, **changes) -> dict:
    """A random-init checkpoint of `model_name` with the architecture of `checkpoint` but `changes`."""
    args = {**{k: v for k, v in checkpoint["model_args"].items() if k != "model"}, **changes}
    torch.manual_seed(1)
    model = build_model(model_name, ModelConfig(**args))
    model_args = {"model": model_name, **dataclasses.asdict(model.config)}
    return {"model": model.state_dict(), "model_args": model_args, "iter_num": 3}


@pytest.mark.parametrize("model_name,changes,message", [
    ("reflow", dict(n_signals=8), "has S = 8 signals and this model S = 16"),
    ("gpt2-new", {}, "is a gpt2-new model with none"),
    ("reflow", dict(block_size=16), "reads at most 16 tokens and this model 32"),
])
def test_a_teacher_that_cannot_be_compared_is_refused_before_any_report(student, tmp_path, model_name,
                                                                        changes, message):
    root, config_file, cfg = student
    teacher = save_teacher(tmp_path, "teacher", variant(load_checkpoint(cfg.out_dir), model_name, **changes))
    ctx = load_context(load_config(str(config_file), {"teacher_run": teacher}))
    ctx.reports_dir = tmp_path / "reports"
    with pytest.raises(UserError, match=message) as refusal:
        run_experiments(ctx, [16, 3])
    assert "\n" not in str(refusal.value)
    assert not (tmp_path / "reports" / REPORT).exists() and not list((tmp_path / "reports").glob("03_*"))


def test_another_vocabulary_is_refused(student, tmp_path):
    root, config_file, cfg = student
    checkpoint = load_checkpoint(cfg.out_dir)
    teacher = save_teacher(tmp_path, "teacher", {**checkpoint, "vocab_gpt2_ids": torch.arange(5, 1029)})
    ctx = load_context(load_config(str(config_file), {"teacher_run": teacher}))
    with pytest.raises(UserError, match="has another vocabulary than this model"):
        run_experiments(ctx, [16])


def test_without_a_teacher_it_is_skipped_under_all_and_refused_by_number(student, tmp_path):
    root, config_file, cfg = student
    with pytest.raises(UserError, match="experiment 16 .* needs a teacher: .*--teacher_run=RUN"):
        check_runnable([16], "reflow", explicit=True)
    check_runnable([16], "reflow", explicit=False)
    ctx = load_context(load_config(str(config_file)))
    ctx.reports_dir = tmp_path
    run_experiments(ctx, [16])
    assert "none is named" in json.loads((tmp_path / REPORT).read_text())["skipped"]


def test_a_model_named_as_its_own_teacher_is_skipped(student, tmp_path):
    root, config_file, cfg = student
    ctx = load_context(load_config(str(config_file), {"teacher_run": cfg.out_dir}))
    ctx.reports_dir = tmp_path
    run_experiments(ctx, [16])
    report = json.loads((tmp_path / REPORT).read_text())
    assert "its own teacher" in report["skipped"] and not report["metrics"]


def test_two_different_teachers_are_refused(student, tmp_path):
    root, config_file, cfg = student
    shutil.copytree(cfg.out_dir, tmp_path / "other")
    overrides = {"teacher_run": str(tmp_path / "other"), "distill_from": cfg.out_dir}
    with pytest.raises(UserError, match="name two teachers"):
        teacher_run(load_config(str(config_file), overrides))


def test_a_distilled_run_is_compared_with_the_teacher_it_learned_from(tmp_path):
    """No teacher_run: a run trained with distill_from names its own teacher (a study's distilled arms)."""
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, "teacher", max_iters=4))
    teacher = str(tmp_path / "teacher")
    cfg = run_config(tmp_path, "student", n_layer=1, max_iters=4, distill_from=teacher,
                     init_basis_from=teacher, freeze_basis=True)
    train.train(cfg)
    ctx = load_context(cfg)
    run_experiments(ctx, [16])
    report = json.loads((ctx.reports_dir / REPORT).read_text())
    assert report["skipped"] is None
    assert "named by distill_from" in report["definitions"]["teacher"]
    assert str(tmp_path / "teacher" / "ckpt.pt") in report["definitions"]["teacher"]
    assert metrics_of(report)["KL(teacher || model), nats per token"]["value"] > 0
