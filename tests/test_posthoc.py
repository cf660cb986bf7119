"""Post-hoc factorizations of a standard model's embedding (issue 13 §3)."""

import torch
from conftest import tiny_model

from experiments.posthoc import (
    FactorizedModel,
    dictionary_factorization,
    factorize,
    svd_factorization,
)


def test_svd_at_full_rank_reproduces_the_embedding():
    E = torch.randn(200, 32) * 0.02
    f = svd_factorization(E, rank=32)
    assert f.recipes.shape == (200, 32) and f.basis.shape == (32, 32)
    torch.testing.assert_close(f.recipes @ f.basis, E, atol=1e-6, rtol=1e-5)
    # the signals are orthonormal directions of the embedding space
    torch.testing.assert_close(f.basis @ f.basis.t(), torch.eye(32), atol=1e-5, rtol=0)


def test_svd_rank_is_capped_at_the_width_and_truncation_is_the_best_low_rank_fit():
    E = torch.randn(100, 16)
    assert svd_factorization(E, rank=64).basis.shape == (16, 16)
    f = svd_factorization(E, rank=4)
    sigma = torch.linalg.svdvals(E.double())
    best = (sigma[4:].pow(2).sum().sqrt() / sigma.pow(2).sum().sqrt()).item()  # Eckart-Young
    assert abs(f.relative_error(E) - best) < 1e-5


def test_dictionary_recipes_have_the_requested_sparsity():
    torch.manual_seed(0)
    # A planted sparse code: every row mixes 3 of 24 atoms.
    atoms = torch.nn.functional.normalize(torch.randn(24, 16), dim=1)
    codes = torch.zeros(300, 24)
    for row in codes:
        row[torch.randperm(24)[:3]] = torch.randn(3)
    E = codes @ atoms
    f = dictionary_factorization(E, atoms=24, active_fraction=0.125, seed=0)
    nonzero = (f.recipes != 0).sum(1)
    assert nonzero.max().item() == 3  # round(0.125 * 24), never more
    assert (nonzero == 3).float().mean() > 0.95
    assert f.relative_error(E) < 0.5  # a real fit, far better than the zero recipe (error 1)


def test_dictionary_codes_only_the_rows_asked_for():
    E = torch.randn(120, 8)
    rows = torch.tensor([3, 10, 50])
    f = dictionary_factorization(E, atoms=8, active_fraction=0.25, seed=1, rows=rows)
    coded = (f.recipes != 0).any(1)
    assert coded[rows].all() and coded.sum() == 3
    assert (f.recipes[rows] != 0).sum(1).max() == 2


def test_factorized_gpt2_reads_out_its_own_logits_through_the_signals():
    model = tiny_model("gpt2-new").eval()
    f = factorize(model, "svd", signals=32, active_fraction=0.1, seed=0)  # full rank: C = 32
    view = FactorizedModel(model, f)
    idx = torch.randint(0, 97, (1, 6))
    logits, cache = view.run_with_cache(idx, ["hook_final"])
    h = cache["hook_final"][0, -1]
    readout = view.signal_activations(h) @ view.effective_recipe().t()
    torch.testing.assert_close(readout, logits[0, -1], atol=1e-4, rtol=1e-4)
    # the view runs exactly as the model: same forward, same vocab matrix
    torch.testing.assert_close(view(idx)[0], model(idx)[0])
    assert view.has_recipes and not model.has_recipes


def test_native_models_keep_their_own_recipes_and_none_means_no_factorization():
    reflow = tiny_model("reflow")
    f = factorize(reflow, "dictionary", signals=16, active_fraction=0.1, seed=0)
    assert f.method == "native" and f.recipes is not None
    torch.testing.assert_close(f.recipes, reflow.effective_recipe())
    assert factorize(tiny_model("gpt2"), "none", signals=16, active_fraction=0.1, seed=0) is None


def test_recipe_experiments_run_on_gpt2_new_through_a_posthoc_factorization(tmp_path, capsys):
    import json

    import pytest
    from experiment_workspace import make_run

    import experiment

    config_file, cfg = make_run(tmp_path, "gpt2-new")
    with pytest.raises(SystemExit) as refused:  # asked by number, without a factorization: one line
        experiment.main([str(config_file), "--run", "2"])
    assert refused.value.code == 2 and "--posthoc=svd" in capsys.readouterr().err
    experiment.main([str(config_file), "--run", "2", "3", "--posthoc=dictionary"])
    folder = tmp_path / "gpt2-new" / "audit_reports_posthoc_dictionary"
    for name in ("02_sparsity_profile.json", "03_basis_geometry.json"):
        report = json.loads((folder / name).read_text())
        assert report["skipped"] is None
        assert "sparse dictionary" in report["definitions"]["factorization"]
    assert not (tmp_path / "gpt2-new" / "audit_reports" / "02_sparsity_profile.json").exists()


def test_a_trained_reference_joins_the_context_with_its_factorization(tmp_path):
    import json

    from experiment_workspace import make_run

    import experiment
    from core.config import load_config
    from experiments.context import load_context

    config_file, _ = make_run(tmp_path, "reflow")
    _, reference_cfg = make_run(tmp_path, "gpt2-new", seed=3)
    ctx = load_context(load_config(str(config_file)), reference=reference_cfg.out_dir)
    r = ctx.reference
    assert r.model_name == "gpt2-new" and r.factorization.method == "svd"  # no --posthoc: SVD
    assert r.signal_model.has_recipes and not r.model.has_recipes
    experiment.main([str(config_file), "--run", "3", "--reference", reference_cfg.out_dir])
    report = json.loads((tmp_path / "reflow" / "audit_reports" / "03_basis_geometry.json").read_text())
    assert "gpt2-new" in report["definitions"]["trained reference"]


def test_a_dictionary_reading_codes_every_token_of_the_validation_text(tmp_path):
    """Causal ablation reads the recipe of each true next token: a dictionary that left one uncoded
    would give it a zero recipe and nothing to ablate."""
    from experiment_workspace import make_run

    from core.config import load_config
    from experiments.context import load_context

    config_file, cfg = make_run(tmp_path, "gpt2-new")
    ctx = load_context(load_config(str(config_file), {"posthoc": "dictionary"}))
    recipes = ctx.factorization.recipes
    text = torch.from_numpy(ctx.all_val_tokens[: cfg.audit_tokens].astype("int64")).unique()
    assert (recipes[text].abs().sum(-1) > 0).all()
    uncoded = torch.ones(len(recipes), dtype=torch.bool)
    uncoded[ctx.read_rows()] = False
    assert uncoded.any() and (recipes[uncoded] == 0).all()  # only the rows read are coded
