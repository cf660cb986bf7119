"""Chunked cross-entropy and activation checkpointing change how a step computes, not what: the same
loss and gradients as the plain path, on every model."""

import dataclasses
import gc
import weakref

import pytest
import torch
from conftest import summation_tolerance, tiny_model
from train_fixtures import run_config, write_dataset

import train
from core.checkpoint import load_checkpoint
from models import MODELS, build_model
from models.chunked_loss import chunked_cross_entropy

# A weight's gradient sums over the 2 x 12 positions of a batch, and each position's contribution
# over the tiny model's widest dimension (its 97-token vocabulary): the longest sum in the backward.
GRADIENT_SUM_TERMS = 2 * 12 + 97


def loss_and_grads(model, idx, targets):
    model.zero_grad()
    logits, loss = model(idx, targets=targets)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits, loss.detach(), grads


def twin(model, **changes):
    """The same weights under a config with `changes`."""
    other = build_model(model_name(model), dataclasses.replace(model.config, **changes))
    other.load_state_dict(model.state_dict())
    return other.train(model.training)


def model_name(model) -> str:
    return next(name for name, cls in MODELS.items() if type(model) is cls)


def targets_with_ignored(idx):
    targets = torch.roll(idx, -1, dims=1)
    targets[0, :3] = -1  # a masked prompt
    targets[1, -1] = -1  # padding
    return targets


@pytest.mark.parametrize("name", list(MODELS))
def test_chunked_loss_equals_plain_loss_and_gradients(name):
    plain = tiny_model(name).train()
    chunked = twin(plain, chunked_loss=True, loss_chunk_size=5)  # 5 does not divide 2 x 12 positions
    idx = torch.randint(0, 97, (2, 12))
    targets = targets_with_ignored(idx)
    _, loss, grads = loss_and_grads(plain, idx, targets)
    logits, chunked_loss, chunked_grads = loss_and_grads(chunked, idx, targets)
    assert logits is None  # the (B, T, V) logits are never formed
    torch.testing.assert_close(chunked_loss, loss)
    assert grads.keys() == chunked_grads.keys()
    for key in grads:
        torch.testing.assert_close(chunked_grads[key], grads[key], msg=key,
                                   **summation_tolerance(grads[key], GRADIENT_SUM_TERMS))
    with torch.no_grad():  # evaluation takes the same path without checkpointing
        evaluated = [model.eval()(idx, targets=targets)[1] for model in (chunked, plain)]
        torch.testing.assert_close(*evaluated)


def test_chunked_cross_entropy_scores_each_chunk_once_and_recomputes_nothing():
    h = torch.randn(10, 4, requires_grad=True)
    weight = torch.randn(7, 4, requires_grad=True)
    targets = torch.randint(0, 7, (10,))
    targets[3] = -1
    sizes = []

    def unembed(x, w):
        sizes.append(x.size(0))
        return x @ w.t()

    loss = chunked_cross_entropy(h, targets, unembed, (weight,), chunk_size=4)
    loss.backward()
    assert sizes == [4, 4, 2]  # one chunk's logits at a time, and no second pass in the backward
    grads = h.grad.clone(), weight.grad.clone()
    h.grad = weight.grad = None
    plain = torch.nn.functional.cross_entropy(h @ weight.t(), targets, ignore_index=-1)
    (3.0 * plain).backward()  # an upstream gradient other than 1 (a GradScaler's scale, say)
    torch.testing.assert_close(loss, plain)
    torch.testing.assert_close(3.0 * grads[0], h.grad)
    torch.testing.assert_close(3.0 * grads[1], weight.grad)


@pytest.mark.parametrize("name", list(MODELS))
def test_activation_checkpointing_equals_plain_loss_and_gradients(name):
    plain = tiny_model(name, dropout=0.1).train()  # dropout: the recomputation must redraw the same masks
    checkpointed = twin(plain, activation_checkpointing=True)
    both = twin(plain, activation_checkpointing=True, chunked_loss=True, loss_chunk_size=7)
    idx = torch.randint(0, 97, (2, 12))
    targets = targets_with_ignored(idx)
    torch.manual_seed(1)
    _, loss, grads = loss_and_grads(plain, idx, targets)
    for model in (checkpointed, both):
        torch.manual_seed(1)
        _, other_loss, other_grads = loss_and_grads(model, idx, targets)
        torch.testing.assert_close(other_loss, loss)
        for key in grads:
            torch.testing.assert_close(other_grads[key], grads[key], msg=key,
                                       **summation_tolerance(grads[key], GRADIENT_SUM_TERMS))


def test_both_keep_fewer_tensors_for_the_backward():
    """What both buy: the tensors kept for the backward shrink (the blocks' inputs under activation
    checkpointing; no logits or softmax under the chunked loss)."""
    def kept_bytes(model):
        saved = []

        def pack(t):
            saved.append(weakref.ref(t))
            return t

        idx = torch.randint(0, 97, (4, 32))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _, loss = model(idx, targets=idx)
        gc.collect()  # what the forward saved and freed again (a chunk's own graph) does not count
        alive = {id(t): t for t in (ref() for ref in saved) if t is not None}
        return sum(t.numel() * t.element_size() for t in alive.values())

    plain = tiny_model("reflow", n_layer=4, vocab_size=2048).train()
    assert kept_bytes(twin(plain, activation_checkpointing=True)) < 0.7 * kept_bytes(plain)
    assert kept_bytes(twin(plain, chunked_loss=True, loss_chunk_size=16)) < 0.7 * kept_bytes(plain)


def test_training_with_both_matches_plain_training_and_resumes_across_them(tmp_path):
    """train.py with chunked_loss and activation_checkpointing: the plain run's losses and weights to
    float tolerance, and a checkpoint of one resumes under the other (they are not architecture)."""
    write_dataset(tmp_path / "data")
    plain = train.train(run_config(tmp_path, "plain", max_iters=4))
    both = train.train(run_config(tmp_path, "both", max_iters=4, chunked_loss=True, loss_chunk_size=10,
                                  activation_checkpointing=True))
    for step, loss in plain.losses.items():
        assert both.losses[step] == pytest.approx(loss, rel=1e-5)
    a, b = (load_checkpoint(tmp_path / run)["model"] for run in ("plain", "both"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
    resumed = train.train(run_config(tmp_path, "both", max_iters=6, init_from="resume"))
    assert resumed.iter_num == 6


def test_a_penalty_on_recorded_patterns_trains_under_activation_checkpointing():
    """The recorded patterns' graph is recomputed in the backward after the recording has ended:
    the recomputation must take the path the forward took (patterns written out)."""
    plain = tiny_model("reflow").train()
    idx = torch.randint(0, 97, (2, 12))
    grads = []
    for model in (plain, twin(plain, activation_checkpointing=True)):
        with model.recording(lambda name: name.endswith("hook_pattern"), detach=False) as patterns:
            _, loss = model(idx, targets=idx)
        penalty = sum(p.pow(2).mean() for p in patterns.values())
        (loss + penalty).backward()
        grads.append(model.blocks[0].attn.c_attn.weight.grad)
    torch.testing.assert_close(grads[1], grads[0])
