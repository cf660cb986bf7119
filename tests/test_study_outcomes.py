"""What a study reads from each run (studying/outcomes.py): its val text, the bigram floor, and
the definitions of its metrics."""

import math

import numpy as np
import torch

from core.config import Config
from studying.outcomes import bigram_loss, text_loss, val_windows


def workspace(tmp_path, train: np.ndarray, val: np.ndarray, **overrides) -> Config:
    folder = tmp_path / "toy"
    folder.mkdir()
    train.astype(np.uint16).tofile(folder / "train.bin")
    val.astype(np.uint16).tofile(folder / "val.bin")
    return Config(data_dir=str(tmp_path), dataset="toy", **overrides)


def test_val_windows_spread_over_the_whole_split(tmp_path):
    val = np.arange(1000) % 60000
    cfg = workspace(tmp_path, np.arange(10), val, block_size=16, audit_tokens=160)
    windows = val_windows(cfg)
    assert windows.shape == (10, 17)
    assert windows[0, 0] == 0 and windows[-1, -1] == 999  # the first token and the last
    assert (np.diff(windows, axis=1) == 1).all()  # each window is contiguous text


def test_bigram_floor_of_a_deterministic_chain_is_nearly_zero(tmp_path):
    # Every token has one successor: the bigram term predicts it with certainty, so the best
    # interpolation (w = 0.95) scores -log(0.95 + 0.05 p1(next)) on every pair.
    train, val = np.arange(5000) % 10, (np.arange(800) + 3) % 10
    cfg = workspace(tmp_path, train, val, block_size=16, audit_tokens=400)
    unigram = (500 + 1) / (5000 + 10)
    assert math.isclose(bigram_loss(cfg), -math.log(0.95 + 0.05 * unigram), rel_tol=1e-9)


def test_bigram_floor_of_independent_tokens_is_the_unigram_entropy(tmp_path):
    # Tokens drawn independently: no weight on the bigram term helps, and the floor is close to
    # the entropy of the unigram distribution (log 8 for 8 uniform tokens).
    rng = np.random.default_rng(0)
    cfg = workspace(tmp_path, rng.integers(0, 8, 200_000), rng.integers(0, 8, 20_000),
                    block_size=64, audit_tokens=16_384)
    assert abs(bigram_loss(cfg) - math.log(8)) < 0.01


def test_text_loss_of_a_uniform_model_is_log_v(tmp_path):
    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 50), None

    cfg = workspace(tmp_path, np.arange(10), np.arange(500) % 50, block_size=8, audit_tokens=80)
    assert math.isclose(text_loss(Uniform(), val_windows(cfg)), math.log(50), rel_tol=1e-6)


def test_a_metric_is_defined_by_every_concept_its_name_contains():
    from studying.outcomes import metric_definition

    definitions = {"log-prob drop": "clean minus ablated.", "basis null": "rotated bases.",
                   "rank": "1 is best."}
    assert metric_definition("rank", definitions) == "1 is best."  # an exact name is its own definition
    assert metric_definition("log-prob drop, the top signal: percentile in the basis null", definitions) == (
        "log-prob drop: clean minus ablated. basis null: rotated bases.")
    assert metric_definition("answers ranked first", definitions) == ""  # whole words only: not "rank"
