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
    for where in ("middle layer", "last layer"):  # the edits too, under both names; the controls on one
        for metric in ("causal ablation percentile, top feature", "ablation log-prob drop, top 10 features",
                       "steering log-prob rise"):
            own = metrics[f"{metric}, SVD directions, {where}"]
            chosen = metrics[f"{metric}, the chosen reading, {where}"]
            assert chosen["value"] == own["value"] and chosen["control"] is None
        percentile = metrics[f"causal ablation percentile, top feature, SVD directions, {where}"]["value"]
        assert 0 <= percentile <= 100
        steering = metrics[f"steering log-prob rise, SVD directions, {where}"]
        assert steering["n"] == 20 and steering["p_value"] is not None  # judged against 20 random features
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


def test_the_study_loader_checks_experiment_15s_metric_names():
    """Experiment 15 names its metrics with literal templates, so a study naming one it cannot report is
    refused at load (an experiment whose names are computed is 'open' and lets every name through)."""
    from studying.metric_names import metric_patterns, reportable
    from studying.spec import load_study

    assert metric_patterns(15) is not None
    study = load_study("studies/sae_vs_signals.py")
    assert all(reportable(15, m.split(":", 1)[1]) for m in study.metrics if m.startswith("15:"))
    assert not reportable(15, "steering log-prob raise, the chosen reading, last layer")
    assert not reportable(15, "causal ablation rank, top feature, the chosen reading, last layer")


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


# --- causal ablation and steering along a reading's features (experiments/feature_interventions.py) ---
def ablation_case(layer: int):
    """A scrambled float64 reflow (large weights: ablations move the loss), random windows split as
    experiment 9 splits them, the layer's hook, a mean to ablate to, and the true-next-token targets."""
    from conftest import scrambled

    from experiments.mechanistic_analysis import AblationText

    model = scrambled("reflow").double()
    T, C = model.config.block_size, model.config.n_embd
    generator = torch.Generator().manual_seed(1)
    windows = torch.randint(model.config.vocab_size, (16, T), generator=generator)
    positions = torch.arange(T // 4, T - 1, 2)
    text = AblationText(windows[:8], windows[8:], positions)
    mean = torch.randn(C, generator=generator, dtype=torch.float64)
    return model, text, model.resid_hook(layer), mean, lambda w: w[:, positions + 1]


@pytest.mark.parametrize("layer", [0, 1])
def test_the_first_order_drop_is_the_derivative_of_mean_ablating_a_direction(layer):
    """u^T M u against a central finite difference of log p(target) as u's part of h - mean is removed
    with strength eps, in float64: a wrong gradient, sign, mean or normalisation is off by far more."""
    from experiments.common import projection_hook, projector
    from experiments.feature_interventions import gradient_product

    model, text, hook, mean, targets_of = ablation_case(layer)
    product = gradient_product(model, hook, text.choose, text.positions, targets_of(text.choose), mean)
    u = torch.nn.functional.normalize(torch.randn(mean.numel(), dtype=torch.float64,
                                                  generator=torch.Generator().manual_seed(2)), dim=0)
    removal = projector(u[None]).double()[None]

    def mean_log_p(eps):
        edits = {hook: projection_hook(eps * removal, mean), "hook_final": lambda h: h[:, text.positions]}
        with model.hooks(edits):
            log_p = torch.log_softmax(model(text.choose)[0], dim=-1)
        return log_p.gather(-1, targets_of(text.choose)[..., None]).mean().item()

    eps = 1e-5
    finite_difference = (mean_log_p(-eps) - mean_log_p(eps)) / (2 * eps)  # the drop per unit of eps
    assert abs(finite_difference) > 1e-3  # the case moves the loss at all
    assert (u @ product @ u).item() == pytest.approx(finite_difference, rel=1e-5)


@pytest.mark.parametrize("layer", [0, 1])
def test_a_planted_direction_that_carries_the_prediction_ranks_high_among_random_directions(layer):
    """Among random unit directions, plant the one with the largest first-order drop: the reading's top
    feature must be that one, its measured drop (float32 forward) in the top tenth of the null's (each
    draw the best of as many random directions); the same reading without the plant ranks lower."""
    from experiments.feature_interventions import ablation_drops, gradient_product, random_direction_drops
    from experiments.statistics import percentile

    model, text, hook, mean, targets_of = ablation_case(layer)

    product = gradient_product(model, hook, text.choose, text.positions, targets_of(text.choose), mean)
    planted = torch.linalg.eigh((product + product.t()) / 2).eigenvectors[:, -1]
    model, mean, product = model.float(), mean.float(), product.float()
    C = mean.numel()
    generator = torch.Generator().manual_seed(3)
    others = torch.nn.functional.normalize(torch.randn(C - 1, C, generator=generator), dim=-1)
    directions = torch.cat([others[: C // 2], planted[None].float(), others[C // 2:]])
    drops = ablation_drops(model, text, hook, mean, directions, product, [1, 3], targets_of)
    alone = ablation_drops(model, text, hook, mean, planted[None].float(), product, [1], targets_of)
    assert drops[1] == alone[1]  # the planted direction is the one chosen
    null = random_direction_drops(model, text, hook, mean, product, C, [1, 3], 20, generator, targets_of)
    assert len(null[1]) == len(null[3]) == 20
    assert percentile(drops[1], null[1]) >= 90.0
    unplanted = ablation_drops(model, text, hook, mean, others, product, [1], targets_of)
    assert unplanted[1] < drops[1]


def test_steering_along_a_words_unembedding_raises_that_word_more_than_random_directions():
    """At the last layer, adding a word's vocab row (unit, fixed norm) must raise that word's log-prob
    more than any random direction of the same norm does, and more than it raises the other words:
    each row of the batch gets its own vector."""
    from conftest import scrambled

    from experiments.feature_interventions import steering_rises

    model = scrambled("reflow")
    generator = torch.Generator().manual_seed(4)
    windows = torch.randint(model.config.vocab_size, (4, model.config.block_size), generator=generator)
    words = torch.tensor([3, 17, 40])
    rows = torch.nn.functional.normalize(model.vocab_matrix().detach()[words], dim=-1)
    random = torch.nn.functional.normalize(torch.randn(20, rows.size(1), generator=generator), dim=-1)
    scale = 3.0
    rises = steering_rises(model, model.resid_hook(model.config.n_layer - 1), windows, torch.arange(8, 31, 2),
                           scale * torch.cat([rows, random]), words, chunk=3)
    own = rises[:3].diagonal()
    assert (own > 0).all()
    assert (own > rises[3:].max(0).values).all()
    for i in range(3):  # each word's row raises it above what the other words' rows do to it
        assert own[i] > torch.cat([rises[:i, i], rises[i + 1:3, i]]).max()


def test_the_feature_tied_to_a_word_is_the_one_that_rises_before_it(monkeypatch):
    """Planted: feature 3 is +5 before word 11 and feature 1 is -4 before word 12 (noise elsewhere); the
    choice must find them with their signs, across chunk boundaries, and count each word."""
    import experiments.feature_interventions as interventions

    monkeypatch.setattr(interventions, "VALUE_CHUNK", 7)  # several chunks, one cut between word and value
    generator = torch.Generator().manual_seed(5)
    activations = torch.randn(60, 6, generator=generator, dtype=torch.float64) * 0.3
    next_tokens = torch.randint(0, 10, (60,), generator=generator)
    next_tokens[[4, 9, 30, 41]], next_tokens[[6, 20, 55]] = 11, 12
    next_tokens[59] = -1
    activations[[4, 9, 30, 41], 3] += 5.0
    activations[[6, 20, 55], 1] -= 4.0
    feature, sign, count = interventions.features_tied_to_words(lambda h: h * 2.0, activations, next_tokens,
                                                                torch.tensor([11, 12, 13]))
    assert feature[:2].tolist() == [3, 1] and sign[:2].tolist() == [1.0, -1.0]
    assert count.tolist() == [4, 3, 0]
