"""SAE metrics on constructed cases, their agreement with SAELens' definitions, and a SAELens TopK SAE
trained through our hook points recovering a planted sparse code."""

import pytest
import torch
from conftest import scrambled, summation_tolerance

from sparse_autoencoders import (
    ce_loss_recovered,
    dead_and_dense,
    fraction_of_variance_explained,
    l0,
    latent_density,
    sae_metrics,
)
from sparse_autoencoders.metrics import BATCH_WINDOWS, DENSE_DENSITY

NO_SAE_LENS = 'SAELens is an optional extra: pip install -e ".[sae]"'


class Splice:
    """A stand-in SAE: encode is the identity, decode returns `decoded(latents)`."""

    def __init__(self, decoded):
        self.decoded = decoded

    def encode(self, x):
        return x

    def decode(self, latents):
        return self.decoded(latents)


def planted_code(dim=32, atoms=32, k=3, tokens=4096, seed=0):
    """x = codes @ dictionary: unit-norm random atoms, each token a positive mix of exactly k of them."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, dim, generator=generator)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    active = torch.rand(tokens, atoms, generator=generator).argsort(dim=1)[:, :k]
    codes = torch.zeros(tokens, atoms).scatter_(1, active, torch.rand(tokens, k, generator=generator) + 0.5)
    return codes @ dictionary, dictionary


def test_l0_counts_non_zero_latents_per_token():
    latents = torch.tensor([[0.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1.0, 1.0, 0.0]])
    assert l0(latents) == pytest.approx((2 + 0 + 3) / 3)


def test_fraction_of_variance_explained_is_one_when_perfect_and_zero_at_the_mean():
    x = torch.randn(2, 50, 8) * 3 + 1
    assert fraction_of_variance_explained(x, x) == 1.0
    mean = x.flatten(0, 1).mean(0).expand_as(x)
    assert fraction_of_variance_explained(x, mean) == pytest.approx(0.0, abs=1e-12)
    assert fraction_of_variance_explained(x, x + torch.randn_like(x)) < 0.95


def test_fraction_of_variance_explained_matches_sae_lens():
    evals = pytest.importorskip("sae_lens.evals", reason=NO_SAE_LENS)
    x = torch.randn(300, 16) + 2.0
    reconstruction = x + 0.5 * torch.randn_like(x)
    calculator = evals.ExplainedVarianceCalculator()
    calculator.add_batch(sae_output=reconstruction, hidden_acts=x)
    assert fraction_of_variance_explained(x, reconstruction) == pytest.approx(calculator.compute(), rel=1e-6)


def test_dead_and_dense_latents_on_constructed_latents():
    tokens = 100
    latents = torch.zeros(tokens, 4)
    latents[:50, 0] = 1.0  # fires on half the tokens: dense
    latents[: int(DENSE_DENSITY * tokens), 1] = 1.0  # exactly at the threshold: not dense
    latents[:1, 2] = 1.0  # rare
    density = latent_density(latents)  # latent 3 never fires: dead
    assert density.tolist() == [0.5, DENSE_DENSITY, 0.01, 0.0]
    assert dead_and_dense(density) == (1, 1)


def test_ce_loss_recovered_is_one_for_a_perfect_splice_and_zero_for_zero_ablation():
    model = scrambled("reflow")
    windows = torch.randint(0, model.config.vocab_size, (3, model.config.block_size + 1))
    hook = model.resid_hook(0)
    perfect = sae_metrics(model, Splice(lambda latents: latents), hook, windows)
    assert perfect["ce_loss_recovered"] == 1.0 and perfect["fraction_of_variance_explained"] == 1.0
    assert abs(perfect["ce_loss_zero_ablated"] - perfect["ce_loss_clean"]) > 0.1  # a defined ratio
    ablated = sae_metrics(model, Splice(torch.zeros_like), hook, windows)
    assert ablated["ce_loss_recovered"] == 0.0
    assert ce_loss_recovered(clean=2.0, spliced=2.5, ablated=4.0) == 0.75


def test_planted_sparse_code_is_recovered_by_a_sae_lens_topk_sae():
    """Nearly every atom of a planted dictionary (32 atoms, 3 per token) has a decoder direction within
    cosine 0.9 of it after training a 2x wider SAE; before training (0 steps) almost none has.
    (Over data seeds 0-2 and SAE seeds 0-1, 400 steps recovered 90-100% of atoms, FVE 0.95-0.99.)"""
    pytest.importorskip("sae_lens", reason=NO_SAE_LENS)
    from sparse_autoencoders import train_topk_sae

    x, dictionary = planted_code()

    def recovered(steps):
        sae = train_topk_sae(x, width=64, k=3, steps=steps, seed=0, lr=3e-3)
        decoder = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)  # (width, dim)
        best_cosine = (dictionary @ decoder.t()).max(dim=1).values
        with torch.no_grad():
            latents = sae.encode(x)
            explained = fraction_of_variance_explained(x, sae.decode(latents))
        return (best_cosine > 0.9).float().mean().item(), explained, l0(latents)

    share, explained, active = recovered(steps=400)
    assert share >= 0.85 and explained > 0.9 and active == 3.0
    assert recovered(steps=0)[0] < 0.2


def test_spliced_losses_match_sae_lens_through_the_transformer_lens_export():
    """Our CE losses (clean, SAE spliced in at our hook point, zero-ablated; over two batches of
    windows) equal SAELens' get_recons_loss on the exported HookedTransformer with the same SAE."""
    pytest.importorskip("sae_lens", reason=NO_SAE_LENS)
    from sae_lens.evals import get_recons_loss
    from sae_lens.training.activation_scaler import ActivationScaler

    from sparse_autoencoders import collect_activations, train_topk_sae
    from tl_export import hooked_transformer

    model = scrambled("gpt2-new")
    windows = torch.randint(0, model.config.vocab_size, (BATCH_WINDOWS + 4, model.config.block_size))
    hook = model.resid_hook(0)
    sae = train_topk_sae(collect_activations(model, hook, windows), width=64, k=4, steps=20, seed=0,
                         batch_size=32)
    ours = sae_metrics(model, sae, hook, windows)
    assert ours["ce_loss_with_sae"] != ours["ce_loss_clean"]  # the splice changes the loss
    theirs = get_recons_loss(sae, hooked_transformer(model), ActivationScaler(), windows, compute_kl=False,
                             compute_ce_loss=True, hook_name=hook)
    same = {"ce_loss_clean": "ce_loss_without_sae", "ce_loss_with_sae": "ce_loss_with_sae",
            "ce_loss_zero_ablated": "ce_loss_with_ablation"}
    for our_name, their_name in same.items():
        their_loss = theirs[their_name].double().mean()
        torch.testing.assert_close(torch.tensor(ours[our_name], dtype=torch.double), their_loss,
                                   **summation_tolerance(their_loss.float(), model.config.swiglu_hidden))


def test_sae_lens_own_runner_trains_on_the_export(tmp_path):
    """SAELens' LanguageModelSAETrainingRunner takes the exported HookedTransformer and a tokenized
    dataset, reads at our hook point's name the activations ours give, and trains a TopK SAE."""
    pytest.importorskip("sae_lens", reason=NO_SAE_LENS)
    import datasets
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig

    from sparse_autoencoders import collect_activations
    from tl_export import export_tl, load_exported

    model = scrambled("reflow")
    export_tl(model, tmp_path / "tl")
    T, hook = model.config.block_size, model.resid_hook(1)
    windows = torch.randint(0, model.config.vocab_size, (64, T))
    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=model.config.n_embd, d_sae=64, k=4), model_name="reflow-tiny",
        hook_name=hook, dataset_path="", is_dataset_tokenized=True, streaming=False, context_size=T,
        prepend_bos=False, training_tokens=8 * 256, train_batch_size_tokens=256, store_batch_size_prompts=8,
        n_batches_in_buffer=16, n_batches_for_norm_estimate=2, device="cpu", checkpoint_path=None,
        output_path=str(tmp_path / "sae"), logger=LoggingConfig(log_to_wandb=False))
    runner = LanguageModelSAETrainingRunner(cfg, override_model=load_exported(tmp_path / "tl"),
                                            override_dataset=datasets.Dataset.from_dict(
                                                {"input_ids": windows.tolist()}))
    theirs = runner.activations_store.get_activations(windows[:4]).flatten(0, -2)
    ours = collect_activations(model, hook, windows[:4])
    torch.testing.assert_close(theirs, ours, **summation_tolerance(ours, 2 * model.config.swiglu_hidden))
    sae = runner.run()
    assert sae.cfg.metadata.l0 == 4.0 and sae.W_dec.shape == (64, model.config.n_embd)


# --- saving and opening a trained SAE (sparse_autoencoders/saving.py) ---------------------------
def test_a_saved_sae_opens_with_identical_encode_and_decode_and_where_it_reads(tmp_path):
    """A trained SAE saved in SAELens' format and loaded back encodes and decodes bit for bit as before,
    and says its hook, layer, k, width and checkpoint; SAELens' own load_from_disk opens the folder."""
    pytest.importorskip("sae_lens", reason=NO_SAE_LENS)
    from sae_lens import TrainingSAE

    from sparse_autoencoders import train_topk_sae
    from sparse_autoencoders.saving import load_sae, save_sae

    x, _ = planted_code(dim=16, atoms=16, tokens=512)
    sae = train_topk_sae(x, width=32, k=3, steps=5, seed=0)
    folder = save_sae(sae, tmp_path / "saes" / "last_layer_32", "blocks.3.hook_resid_post", "out/run/ckpt.pt")
    assert sorted(p.name for p in (tmp_path / "saes").iterdir()) == ["last_layer_32"]  # nothing left over
    saved = load_sae(folder)
    with torch.no_grad():
        assert torch.equal(saved.sae.encode(x), sae.encode(x))
        assert torch.equal(saved.sae.decode(sae.encode(x)), sae.decode(sae.encode(x)))
    assert (saved.hook_name, saved.layer, saved.k, saved.width, saved.d_in, saved.checkpoint) == (
        "blocks.3.hook_resid_post", 3, 3, 32, 16, "out/run/ckpt.pt")
    assert torch.equal(TrainingSAE.load_from_disk(folder).W_enc, sae.W_enc)


def test_a_save_killed_halfway_leaves_the_old_sae_whole(tmp_path, monkeypatch):
    """Saving writes a hidden folder and renames it into place: a failure inside save_model leaves the SAE
    saved before untouched and no half-written folder beside it; a save that completes replaces it."""
    pytest.importorskip("sae_lens", reason=NO_SAE_LENS)
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    from sparse_autoencoders.saving import WEIGHTS_FILE, load_sae, save_sae

    torch.manual_seed(0)
    first, second = (TopKTrainingSAE(TopKTrainingSAEConfig(d_in=8, d_sae=16, k=2)) for _ in range(2))
    folder = save_sae(first, tmp_path / "last_layer_16", "blocks.0.hook_resid_post", "ckpt.pt")

    def killed(path):
        (path / WEIGHTS_FILE).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(second, "save_model", killed)
    with pytest.raises(KeyboardInterrupt):
        save_sae(second, folder, "blocks.0.hook_resid_post", "ckpt.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last_layer_16"]
    assert torch.equal(load_sae(folder).sae.W_enc, first.W_enc)
    monkeypatch.undo()
    save_sae(second, folder, "blocks.0.hook_resid_post", "ckpt.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last_layer_16"]
    assert torch.equal(load_sae(folder).sae.W_enc, second.W_enc)
