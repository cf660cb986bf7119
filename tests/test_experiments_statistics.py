"""Verdicts that can fail: each test and null on constructed cases, planted (it must win) and absent
(it must not, at about the nominal false-positive rate over many seeds)."""

import numpy as np
import pytest
import torch

from experiments.common import logits_at, projection_hook, projector, stream_hooks
from experiments.nulls import random_rotations, rotated_signals, svd_factorization
from experiments.report import Report
from experiments.signal_identity import hoyer_sparsity, l1_mass_fraction, sparsity_null
from experiments.statistics import ALPHA, bootstrap_ci, empirical_p, holm, paired_p


def test_empirical_p_false_positive_rate_is_nominal_and_a_planted_effect_wins():
    rng = np.random.default_rng(0)
    trials, draws = 4000, 100
    null = rng.normal(size=(trials, draws))
    absent = rng.normal(size=trials)  # the value is one more draw of the null
    rate = np.mean([empirical_p(v, n, True) < ALPHA for v, n in zip(absent, null, strict=True)])
    assert 0.035 < rate < 0.065
    planted = 5.0 + 0.3 * absent[:200]  # several sd above the null
    assert all(empirical_p(v, n, True) < ALPHA for v, n in zip(planted, null[:200], strict=True))
    assert empirical_p(-4.0, null[0], False) < ALPHA and empirical_p(4.0, null[0], False) > 0.5


def test_paired_test_false_positive_rate_and_power():
    rng = np.random.default_rng(1)
    absent = [paired_p(rng.normal(size=12), rng.normal(size=12), True) < ALPHA for _ in range(300)]
    assert 0.02 < np.mean(absent) < 0.09
    planted = [paired_p(rng.normal(size=12) + 2.0, rng.normal(size=12), True) < ALPHA for _ in range(50)]
    assert np.mean(planted) > 0.95
    assert paired_p([1, 2, 3], [1, 2, 3], True) == 1.0


def test_bootstrap_interval_covers_the_mean():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(100):
        low, high = bootstrap_ci(rng.normal(loc=3.0, size=40))
        covered += low <= 3.0 <= high
    assert covered >= 88
    assert bootstrap_ci([0.5]) is None and bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)


def test_holm_controls_the_family_and_the_report_uses_it(tmp_path):
    rng = np.random.default_rng(3)
    # Holm's step-down: sorted p times (m, m-1, ...), made monotone. (statsmodels runs gc.collect() in
    # every call, so the family-wise rate is not simulated here.)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.04, 0.001]) == pytest.approx([0.04, 0.002])
    report = Report(1, "t", "T", "A", folder=tmp_path, model="m", checkpoint="c", iter_num=0)
    report.metric("planted", 10.0, list(rng.normal(size=100)), "null", higher_is_structure=True)
    report.metric("absent", 0.0, list(rng.normal(size=100)), "null", higher_is_structure=True)
    report.metric("three draws", 10.0, [0.0, 0.1, 0.2], "random init", higher_is_structure=True)
    report.metric("missing control", 1.0, None, "reference", higher_is_structure=True)
    report.judge()
    m = {x["name"]: x for x in report.metrics}
    assert m["planted"]["beats_control"] is True and m["planted"]["verdict"] == "beats null"
    assert m["absent"]["beats_control"] is False
    assert "not distinguishable from null at n = 100" in m["absent"]["verdict"]
    assert m["three draws"]["beats_control"] is None  # never judged on 3 draws
    assert m["missing control"]["beats_control"] is None  # a missing control is no win
    assert m["planted"]["p_holm"] == pytest.approx(min(1.0, 2 * m["planted"]["p_value"]))


def sparse_recipes(generator, V=300, S=16, active=2):
    """V recipes with `active` non-zero entries each: sparse in the signal basis by construction."""
    recipe = torch.zeros(V, S)
    for v in range(V):
        recipe[v, torch.randperm(S, generator=generator)[:active]] = torch.randn(active, generator=generator)
    return recipe


def test_basis_null_finds_the_sparse_basis_and_not_its_rotation():
    """A model whose recipes are a random rotation of sparse ones has the same embedding; the basis
    null must credit the sparse basis and not the rotated one, at about the nominal rate."""
    wins_sparse, wins_rotated = 0, 0
    seeds = 60
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        recipe = sparse_recipes(g)
        basis = torch.randn(16, 24, generator=g)
        rotation = random_rotations(1, 16, g)[0]
        rotated, rotated_basis = rotated_signals(recipe, basis, rotation)
        assert torch.allclose(rotated @ rotated_basis, recipe @ basis, atol=1e-4)  # the same model
        nulls = random_rotations(40, 16, g)
        for rows, counter in ((recipe, "sparse"), (rotated, "rotated")):
            null = sparsity_null(rows, nulls)
            win = empirical_p(hoyer_sparsity(rows).mean().item(), null["Hoyer"], True) < ALPHA
            win_l1 = empirical_p(l1_mass_fraction(rows).mean().item(), null["L1"], False) < ALPHA
            if counter == "sparse":
                wins_sparse += win and win_l1
            else:
                wins_rotated += win
    assert wins_sparse == seeds
    assert wins_rotated / seeds < 0.12


def test_svd_factorization_is_exact_at_full_rank():
    E = torch.randn(50, 8)
    recipe, basis = svd_factorization(E)
    assert torch.allclose(recipe @ basis, E, atol=1e-5)
    assert torch.allclose(basis @ basis.t(), torch.eye(8), atol=1e-5)


def test_removing_a_signal_that_carries_nothing_leaves_the_logits_unchanged(reflow_model):
    """Signal s has a zero recipe column, its basis row is orthogonal to every other, and the layers
    write nothing (their output projections are zero): projecting it out of the residual stream at
    every layer must leave every logit as it was; projecting out a used signal must not."""
    model = reflow_model
    S, C = model.basis.shape
    with torch.no_grad():
        model.basis.copy_(random_rotations(1, C, torch.Generator().manual_seed(0))[0][:S])
        model.recipe[:, 3] = 0.0
        for block in model.blocks:
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()
    idx = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(4, 16)
    clean = logits_at(model, idx, positions)
    remove = lambda s: {name: projection_hook(projector(model.basis[s : s + 1].detach())[None])
                        for name in stream_hooks(model)}
    assert torch.allclose(logits_at(model, idx, positions, remove(3)), clean, atol=1e-4)
    assert not torch.allclose(logits_at(model, idx, positions, remove(4)), clean, atol=1e-2)


@pytest.fixture
def reflow_model():
    from models import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(n_layer=2, n_head=4, n_embd=32, block_size=32, vocab_size=1024, n_signals=16)
    return build_model("reflow", config).eval()
