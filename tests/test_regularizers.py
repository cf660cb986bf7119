"""The training-time regularizers: values against longhand formulas, gradients by gradcheck, their exact
zeros, that a zero weight changes nothing, and that a positive weight lowers its term in training."""

import math
import subprocess

import pytest
import torch
import torch.nn.functional as F

from core.checkpoint import load_checkpoint
from core.config import Config
from core.errors import UserError
from models import ModelConfig, build_model
from tests.train_fixtures import (  # noqa: F401
    ONE_THREAD_ENV,
    one_thread,
    run_args,
    run_config,
    torchrun_command,
    write_dataset,
)
from train import train
from training.optimization import make_grad_scaler, make_optimizer, train_step
from training.regularizers import (
    Regularizers,
    head_similarity,
    position_similarity,
    recipe_concentration,
)


def test_recipe_concentration_is_one_for_flat_rows_and_one_over_sqrt_s_for_one_hot_rows():
    S = 16
    flat = torch.full((3, S), -0.5) * torch.tensor([[1.0], [-2.0], [3.0]])
    one_hot = torch.eye(S)[:5] * 7.0
    assert recipe_concentration(flat).item() == pytest.approx(1.0)
    assert recipe_concentration(one_hot).item() == pytest.approx(1 / math.sqrt(S))
    # Blind to the R -> cR rescaling that leaves a reflow model unchanged.
    rows = torch.randn(50, S)
    assert recipe_concentration(rows * 10).item() == pytest.approx(recipe_concentration(rows).item())


def test_terms_equal_their_longhand_definitions():
    torch.manual_seed(0)
    recipe = torch.randn(6, 5)
    longhand = sum(r.abs().sum() / (math.sqrt(5) * r.norm()) for r in recipe) / 6
    assert recipe_concentration(recipe).item() == pytest.approx(longhand.item(), rel=1e-6)

    hidden = torch.randn(2, 4, 3)
    pairs = [F.cosine_similarity(h[i], h[j], dim=0) ** 2
             for h in hidden for i in range(4) for j in range(4) if i != j]
    assert position_similarity(hidden).item() == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-6)

    pattern = torch.rand(2, 3, 4, 4)
    pairs = [F.cosine_similarity(p[a].flatten(), p[b].flatten(), dim=0)
             for p in pattern for a in range(3) for b in range(3) if a != b]
    assert head_similarity(pattern).item() == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-6)


def test_exact_zeros_and_ones():
    orthogonal = torch.eye(8)[:5].unsqueeze(0) * 3.0  # 5 positions, pairwise orthogonal
    assert position_similarity(orthogonal).item() == 0.0
    assert position_similarity(torch.ones(1, 5, 8)).item() == pytest.approx(1.0)
    disjoint = torch.zeros(1, 2, 3, 3)
    disjoint[0, 0, :, 0] = 1.0  # head 0 attends to key 0 only, head 1 to key 1 only
    disjoint[0, 1, 1:, 1] = 1.0
    assert head_similarity(disjoint).item() == 0.0
    same = torch.rand(1, 1, 4, 4).expand(1, 3, 4, 4)
    assert head_similarity(same).item() == pytest.approx(1.0)


@pytest.mark.parametrize("term, shape", [(recipe_concentration, (5, 4)), (position_similarity, (2, 3, 4)),
                                         (head_similarity, (2, 3, 3, 3))])
def test_gradients_match_finite_differences(term, shape):
    torch.manual_seed(1)
    x = (torch.rand(shape, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(term, (x,), eps=1e-6, atol=1e-5)


def tiny(name="reflow", **overrides):
    torch.manual_seed(0)
    config = ModelConfig(n_layer=2, n_head=2, n_embd=16, n_signals=8, block_size=8, vocab_size=32,
                         **overrides)
    return build_model(name, config)


def steps(model, regularizers, count=3):
    optimizer = make_optimizer(model, Config(), "cpu")
    scaler = make_grad_scaler("cpu", "float32")
    generator = torch.Generator().manual_seed(0)
    for _ in range(count):
        x = torch.randint(0, 32, (2, 8), generator=generator)
        train_step(model, optimizer, scaler, [(x, torch.roll(x, -1, 1))] * 2, lr=1e-2, grad_clip=1.0,
                   device="cpu", dtype="float32", regularizers=regularizers)
    return model.state_dict()


def test_zero_weights_change_nothing_and_a_positive_weight_does():
    zero = Regularizers.from_config(Config(model="reflow"), n_layer=2, has_recipes=True)
    assert not zero.active
    plain = steps(tiny(), None)
    with_zero = steps(tiny(), zero)
    assert all(torch.equal(plain[k], with_zero[k]) for k in plain)
    weighted = Regularizers.from_config(Config(model="reflow", recipe_l1=0.5, repulsion=0.5), 2, True)
    changed = steps(tiny(), weighted)
    assert not torch.equal(plain["recipe"], changed["recipe"])
    assert set(weighted.latest) == {"recipe_l1", "repulsion"}
    assert all(0 < value <= 1 for value in weighted.latest.values())


def test_objective_gradient_is_the_lm_gradient_plus_the_weighted_terms():
    model = tiny()
    weights = Regularizers.from_config(Config(model="reflow", recipe_l1=0.3, repulsion=0.2), 2, True)
    x = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(3))
    y = torch.roll(x, -1, 1)
    with weights.capture(model) as captured:
        _, loss = model(x, targets=y)
    values = weights.terms(model, captured)
    (loss + weights.weighted_sum(values)).backward()
    got = model.recipe.grad.clone()
    model.zero_grad()
    # Longhand: the LM loss, plus the terms recomputed from the hidden states the model returns.
    _, loss = model(x, targets=y)
    residuals = {}
    with model.hooks({f"blocks.{i}.hook_resid_post": (lambda h, *a, i=i, **k: residuals.__setitem__(i, h))
                      for i in range(2)}):
        _, loss = model(x, targets=y)
    longhand = (loss + 0.3 * recipe_concentration(model.recipe)
                + 0.2 * torch.stack([position_similarity(residuals[i]) for i in range(2)]).mean())
    longhand.backward()
    torch.testing.assert_close(got, model.recipe.grad)


def test_refusals():
    with pytest.raises(UserError, match="recipe_l1 needs a model with recipes"):
        Regularizers.from_config(Config(model="gpt2-new", recipe_l1=0.1), 2, has_recipes=False)
    with pytest.raises(UserError, match="regularize_layers"):
        Regularizers.from_config(Config(repulsion=0.1, regularize_layers=[5]), 2, has_recipes=True)
    with pytest.raises(UserError, match="finite weight"):
        Regularizers.from_config(Config(repulsion=-1.0), 2, has_recipes=True)


def test_recipe_l1_lowers_recipe_concentration_in_a_real_run(tmp_path, capsys):
    write_dataset(tmp_path / "data")
    plain = train(run_config(tmp_path, "plain", max_iters=30, eval_interval=30))
    sparse = train(run_config(tmp_path, "sparse", max_iters=30, eval_interval=30, recipe_l1=1.0))
    out = capsys.readouterr().out
    assert "recipe_l1" in out and "val recipe_l1" in out
    assert sparse.evaluations[30]["val_recipe_l1"] < plain_concentration(tmp_path / "plain")
    assert plain.iter_num == sparse.iter_num == 30


def plain_concentration(run_dir) -> float:
    checkpoint = torch.load(run_dir / "ckpt.pt", weights_only=True)
    return recipe_concentration(checkpoint["model"]["recipe"]).item()


REGULARIZED = dict(recipe_l1=0.5, repulsion=0.3, regularize_layers=[1])


def test_regularized_ddp_matches_one_process_and_resume_is_exact(tmp_path):
    """Two gloo processes equal one (each rank's terms are averaged like its loss), and 4 + 4 steps
    with a stop between equal 8 straight, with the terms in the objective."""
    write_dataset(tmp_path / "data")
    ddp = subprocess.run(torchrun_command(2, *run_args(tmp_path, "ddp", **REGULARIZED)), cwd=tmp_path,
                         env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=120)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    train(run_config(tmp_path, "single", **REGULARIZED))
    train(run_config(tmp_path, "halves", max_iters=4, **REGULARIZED))
    train(run_config(tmp_path, "halves", init_from="resume", **REGULARIZED))
    single = load_checkpoint(tmp_path / "single")["model"]
    for key, value in load_checkpoint(tmp_path / "ddp")["model"].items():
        torch.testing.assert_close(value, single[key], rtol=1e-4, atol=1e-5)
    halves = load_checkpoint(tmp_path / "halves")["model"]
    assert all(torch.equal(halves[key], single[key]) for key in single)


def test_head_diversity_reads_the_patterns_the_model_attends_with():
    model = tiny("gpt2-new")
    weights = Regularizers.from_config(Config(model="gpt2-new", head_diversity=1.0), 2, has_recipes=False)
    x = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(4))
    plain, _ = model(x)
    with weights.capture(model) as captured:
        logits, _ = model(x)
    torch.testing.assert_close(logits, plain)  # reading the pattern leaves the output as it was
    value = weights.terms(model, captured)["head_diversity"]
    patterns = [captured[f"blocks.{i}.attn.hook_pattern"] for i in range(2)]
    assert patterns[0].shape == (2, 2, 8, 8)
    assert value.item() == pytest.approx(torch.stack([head_similarity(p) for p in patterns]).mean().item())
    value.backward()
    assert model.blocks[0].attn.c_attn.weight.grad.abs().sum() > 0  # the penalty reaches the queries/keys
