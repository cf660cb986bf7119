import pytest
import torch

from models import ModelConfig, build_model


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


def scrambled(name: str, **overrides):
    """A tiny model with large random weights (norm gains and biases too). GPT-2's N(0, 0.02) init
    makes attention nearly uniform and logits tiny, which would hide a wrong layout under 1e-4."""
    model = tiny_model(name, **overrides).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.3 + (1.0 if param.dim() == 1 else 0.0))
    return model


def summation_tolerance(reference: torch.Tensor, terms: int) -> dict:
    """rtol/atol for a float result that computed the same sums as `reference` in another order
    (chunking, recomputation, another CPU's SIMD width: Intel AVX-512 and AMD AVX2 differ). Reordering
    a sum of `terms` values moves it by at most about terms * eps * (its inputs' magnitude); the
    reference's largest entry stands in for that magnitude, so tiny entries near zero get the same
    absolute slack as the tensor's scale. A real error (a wrong mask, a missed chunk) is orders larger."""
    eps = torch.finfo(reference.dtype).eps
    return dict(rtol=terms * eps, atol=terms * eps * reference.abs().max().item())
