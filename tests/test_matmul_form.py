"""The skinny product's two forms compute the same numbers, so choosing between them by speed
changes neither the logits nor the generated text."""

import pytest
import torch
from conftest import tiny_model

from models import MODELS, matmul_form
from models.matmul_form import PLAIN, TRANSPOSED, forced_form, multiply, skinny_matmul


def test_both_forms_give_the_same_scores():
    h = torch.randn(3, 1, 64)
    vocab = torch.randn(5000, 64)
    torch.testing.assert_close(multiply(h, vocab, TRANSPOSED), multiply(h, vocab, PLAIN))
    assert multiply(h, vocab, TRANSPOSED).shape == (3, 1, 5000)


def test_the_choice_is_measured_once_per_shape_and_cached():
    h, vocab = torch.randn(2, 1, 48), torch.randn(999, 48)
    skinny_matmul(h, vocab)
    key = matmul_form.shape_key(h, vocab)
    assert set(matmul_form.timings[key]) == {PLAIN, TRANSPOSED}
    assert matmul_form.chosen[key] == min(matmul_form.timings[key], key=matmul_form.timings[key].get)
    matmul_form.timings[key] = "measured once"  # a second call must not measure again
    skinny_matmul(h, vocab)
    assert matmul_form.timings[key] == "measured once"
    many_rows = torch.randn(64, 48)  # a training-sized batch takes the plain form, untimed
    assert torch.equal(skinny_matmul(many_rows, vocab), many_rows @ vocab.t())


@pytest.mark.parametrize("name", list(MODELS))
def test_generation_is_the_same_in_either_form(name):
    model = tiny_model(name).eval()
    prompt = torch.randint(0, 97, (3, 4))
    outputs, logits = [], []
    for form in (PLAIN, TRANSPOSED, None):
        with forced_form(form):
            outputs.append(model.generate(prompt, 12, temperature=0))
            logits.append(model(prompt, last_only=True)[0])
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    torch.testing.assert_close(logits[1], logits[0])
