import os

import pytest
import torch

from models import ModelConfig, build_model

# lang="auto" follows the locale: the tests read English on any machine unless they ask for Chinese.
os.environ["LC_ALL"] = "C.UTF-8"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough that a forward and backward take milliseconds on CPU."""
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=32, vocab_size=97,
                n_signals=16, topk=4, swiglu_multiple_of=16)
    args.update(overrides)
    return ModelConfig(**args)


def tiny_model(name: str, **overrides):
    if name == "reflow-lite":
        overrides.setdefault("n_kv_head", 2)
    return build_model(name, tiny_config(**overrides))


def summation_tolerance(reference: torch.Tensor, terms: int) -> dict:
    """rtol/atol for a float result that computed the same sums as `reference` in another order
    (chunking, recomputation, another CPU's SIMD width: Intel AVX-512 and AMD AVX2 differ). Reordering
    a sum of `terms` values moves it by at most about terms * eps * (its inputs' magnitude); the
    reference's largest entry stands in for that magnitude, so tiny entries near zero get the same
    absolute slack as the tensor's scale. A real error (a wrong mask, a missed chunk) is orders larger."""
    eps = torch.finfo(reference.dtype).eps
    return dict(rtol=terms * eps, atol=terms * eps * reference.abs().max().item())
