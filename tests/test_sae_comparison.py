"""Experiment 15 (native signals vs SVD directions vs SAEs at equal L0): the readings on constructed
cases, and the experiment on a tiny checkpoint whose weights make every layer matter."""

import json

import pytest
import torch
from experiment_workspace import make_run

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import load_config
from core.errors import UserError
from experiments.context import load_context
from experiments.runner import run_experiments
from experiments.sae_comparison import MIN_FIRINGS, KeptSignals, single_token_selectivity
from sparse_autoencoders import fraction_of_variance_explained
from sparse_autoencoders.saving import load_sae

NO_SAE_LENS = 'SAELens is an optional extra: pip install -e ".[sae]"'


def test_every_signal_kept_rebuilds_the_activation_and_fewer_project_onto_the_kept_ones():
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(200, 8, generator=generator, dtype=torch.float64) + 1.0
    basis = torch.randn(12, 8, generator=generator, dtype=torch.float64)  # S > C: an overcomplete basis
    full = KeptSignals(basis, k=12)
    assert fraction_of_variance_explained(h, full.decode(full.encode(h))) == pytest.approx(1.0, abs=1e-10)
    kept = KeptSignals(basis, k=3)
    code = kept.encode(h)
    assert ((code != 0).sum(-1) == 3).all()
    residual = h - kept.decode(code)
    # The projection onto the span of the kept rows: what is left is orthogonal to each of them.
    support = code.abs().topk(3, dim=-1).indices
    overlap = (residual.unsqueeze(1) * basis[support]).sum(-1)
    assert overlap.abs().max() < 1e-10 * h.abs().max()
    # Nested supports: more kept signals never explain less.
    explained = [fraction_of_variance_explained(h, r.decode(r.encode(h))) for r in
                 (KeptSignals(basis, k) for k in (2, 4, 8, 12))]
    assert explained == sorted(explained) and explained[0] < 0.9


def test_an_orthonormal_basis_rebuilds_by_its_kept_coefficients():
    q = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    h = torch.randn(50, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    reading = KeptSignals(q.t(), k=2)
    code = reading.encode(h)
    torch.testing.assert_close(reading.decode(code), code @ q.t(), rtol=0, atol=1e-12)


def test_single_token_selectivity_on_constructed_codes():
    tokens = torch.tensor([5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 9, 9])
    code = torch.zeros(12, 3)
    code[:5, 0] = 2.0  # only on token 5: selectivity 1
    code[:10, 1] = 1.0  # half its mass on 5, half on 7: 0.5
    code[10:, 2] = 3.0  # fires on fewer than MIN_FIRINGS tokens: not counted
    assert MIN_FIRINGS > 2
    assert single_token_selectivity(code, tokens) == pytest.approx(0.75)
    assert single_token_selectivity(code[:, 2:], tokens) is None


def scrambled_run(root, model_name):
    """A tiny checkpoint with large random weights (as tests/conftest.py's scrambled models): zeroing a
    layer's residual stream then moves the loss, so CE loss recovered is a well-defined ratio."""
    import experiment_workspace

    settings = {**experiment_workspace.SETTINGS, "n_signals": experiment_workspace.SETTINGS["n_embd"]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiment_workspace, "SETTINGS", settings)
        config_file, cfg = make_run(root, model_name)
    checkpoint = load_checkpoint(cfg.out_dir)
    generator = torch.Generator().manual_seed(3)
    checkpoint["model"] = {k: torch.randn(v.shape, generator=generator) * 0.3 + (1.0 if v.dim() == 1 else 0.0)
                           for k, v in checkpoint["model"].items()}
    save_checkpoint(checkpoint, f"{cfg.out_dir}/ckpt.pt")
    return config_file


def run_15(config_file, **overrides) -> dict:
    cfg = load_config(str(config_file), {k: repr(v) if not isinstance(v, str) else v
                                         for k, v in overrides.items()})
    ctx = load_context(cfg)
    run_experiments(ctx, [15])
    report = json.loads((ctx.reports_dir / "15_signals_vs_saes.json").read_text())
    return {m["name"]: m for m in report["metrics"]}, report, ctx.reports_dir


def test_native_signals_all_kept_rebuild_the_model_and_fewer_explain_less(tmp_path):
    pytest.importorskip("sae_lens", reason=NO_SAE_LENS)
    config_file = scrambled_run(tmp_path, "reflow")  # S = C = 32
    full, report, _ = run_15(config_file, sae_k=32, sae_widths=[32], sae_steps=5)
    for where in ("middle layer", "last layer"):
        for reading in ("native signals", "SVD directions"):
            assert full[f"fraction of variance explained, {reading}, {where}"]["value"] == pytest.approx(
                1.0, abs=1e-6)
            # The splice is the activation rounded to float32: the loss moves by rounding only.
            assert full[f"CE loss recovered, {reading}, {where}"]["value"] == pytest.approx(1.0, abs=1e-3)
    sparse, report, folder = run_15(config_file, sae_k=4, sae_widths=[16], sae_steps=20)
    saved = load_sae(folder / "saes" / "last_layer_16")  # each SAE it trains is kept, for the explorer
    assert (saved.hook_name, saved.width, saved.k) == ("blocks.1.hook_resid_post", 16, 4)
    assert load_sae(folder / "saes" / "middle_layer_16").hook_name == "blocks.0.hook_resid_post"
    for where in ("middle layer", "last layer"):
        native = sparse[f"fraction of variance explained, native signals, {where}"]
        assert native["value"] < 0.99 and native["control_name"].startswith("SVD floor")
        sae = sparse[f"CE loss recovered, SAE 16 latents, {where}"]["value"]
        assert -5.0 < sae < 1.0 + 1e-3  # a short-trained SAE: worse than the clean model, finite
        assert 0 < sparse[f"single-token selectivity, SAE 16 latents, {where}"]["value"] <= 1


def test_one_reading_per_run_for_a_study_arm_and_native_not_applicable_without_a_basis(tmp_path):
    pytest.importorskip("sae_lens", reason=NO_SAE_LENS)
    config_file = scrambled_run(tmp_path, "gpt2-new")
    metrics, report, folder = run_15(config_file, sae_reading="native")
    assert folder.name == "audit_reports_reading_native"
    assert not [m for m in metrics if m != "CE loss, clean"]  # nothing of a reading that was not computed
    assert "native signals: not computed" in (folder / "15_signals_vs_saes.md").read_text()
    metrics, _, folder = run_15(config_file, sae_reading="svd")
    assert folder.name == "audit_reports_reading_svd"
    assert (metrics["fraction of variance explained, the chosen reading, last layer"]["value"]
            == metrics["fraction of variance explained, SVD directions, last layer"]["value"])
    with pytest.raises(UserError, match="give one width"):
        load_config(str(config_file), {"sae_reading": "sae"})


def test_the_study_shares_one_run_between_readings_and_keeps_their_reports_apart():
    from experiments.context import reports_dir_name
    from studying.spec import load_study

    study = load_study("studies/sae_vs_signals.py")
    reflow = [arm for arm in study.arms if arm.startswith("reflow_")]
    assert {study.run_dir(arm, 1) for arm in reflow} == {study.run_dir("reflow_native", 1)}
    folders = {reports_dir_name(study.run_config(arm, 1)) for arm in reflow}
    assert len(folders) == len(reflow)  # one report of experiment 15 per reading, none overwritten
    assert study.run_dir("gpt2_new_sae_512", 1) != study.run_dir("reflow_sae_512", 1)


def test_native_and_svd_readings_are_read_around_the_offset_an_sae_starts_from():
    """A constant added to every activation changes nothing once the reading's offset is the mean:
    the reconstruction error of (h + b) read around mean + b equals that of h read around the mean."""
    from experiments.sae_comparison import native_reading, svd_reading

    torch.manual_seed(0)
    h = torch.randn(200, 8, dtype=torch.float64)
    shift = torch.full((8,), 50.0, dtype=torch.float64)  # a residual stream that is mostly its mean
    basis = torch.randn(12, 8, dtype=torch.float64)
    for make in (lambda x: native_reading(basis, 3, offset=x.mean(0)), lambda x: svd_reading(x, 3)):
        plain, shifted = make(h), make(h + shift)
        error = (plain.decode(plain.encode(h)) - h).pow(2).sum()
        shifted_error = (shifted.decode(shifted.encode(h + shift)) - (h + shift)).pow(2).sum()
        torch.testing.assert_close(shifted_error, error, rtol=1e-9, atol=1e-9)
    no_offset = native_reading(basis, 3)  # without it, the constant dominates the error
    assert (no_offset.decode(no_offset.encode(h + shift)) - (h + shift)).pow(2).sum() > 10 * error
