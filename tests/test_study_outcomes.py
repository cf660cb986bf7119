"""What a study reads from each run (studying/outcomes.py): its val text, the floors its models must
clear (studying/floors.py), gains over a report's own baseline, and the definitions of its metrics."""

import json
import math
from collections import Counter

import numpy as np
import torch

from core.config import Config
from studying.floors import (
    HELD_OUT_FRACTION,
    MIN_WEIGHT,
    NgramCounts,
    floors_of,
    mixture_loss,
    ngram_floors,
    text_windows,
)
from studying.outcomes import collect, text_loss, val_windows


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


def test_unigram_floor_is_add_one_counts_of_train(tmp_path):
    train, val = np.array([0, 0, 0, 1, 2, 2] * 50), np.array([0, 1, 2, 3] * 40)
    windows = val_windows(workspace(tmp_path, train, val, block_size=7, audit_tokens=140))
    floors = ngram_floors(train, windows)
    V, N = 4, 300  # id 3 never occurs in train: add-one gives it 1 / (N + V)
    p = {0: 151 / (N + V), 1: 51 / (N + V), 2: 101 / (N + V), 3: 1 / (N + V)}
    expected = -np.mean([math.log(p[int(t)]) for t in windows[:, 1:].ravel()])
    assert math.isclose(floors.unigram, expected, rel_tol=1e-12)


def test_trigram_floor_of_a_deterministic_cycle_is_its_exact_expected_value(tmp_path):
    """Every token has one successor (period 10): the bigram and trigram terms predict it with
    certainty, so the tuned mixture keeps only the unigram's least weight MIN_WEIGHT, and each target
    costs -log(1 - MIN_WEIGHT + MIN_WEIGHT p1(target)), p1 = (500 + 1) / (5000 + 10) for every token."""
    train, val = np.arange(5000) % 10, (np.arange(800) + 3) % 10
    windows = val_windows(workspace(tmp_path, train, val, block_size=16, audit_tokens=400))
    floors = ngram_floors(train, windows)
    p1 = (500 + 1) / (5000 + 10)
    expected = -math.log(1 - MIN_WEIGHT + MIN_WEIGHT * p1)
    assert math.isclose(floors.trigram, expected, rel_tol=1e-9)
    assert math.isclose(floors.bigram, expected, rel_tol=1e-9)
    assert math.isclose(floors.trigram_weights[0], MIN_WEIGHT, rel_tol=1e-9)
    assert math.isclose(floors.unigram, -math.log(p1), rel_tol=1e-12)


def longhand_trigram(train: list[int], windows: np.ndarray, weights: list[float], vocab: int) -> float:
    """The trigram floor's definition (studying/floors.py) with Python dicts, one target at a time."""
    unigram = Counter(train)
    pairs = Counter(zip(train[:-1], train[1:], strict=True))
    triples = Counter(zip(train[:-2], train[1:-1], train[2:], strict=True))
    as_context, pair_contexts = Counter(train[:-1]), Counter(zip(train[:-2], train[1:-1], strict=True))
    losses = []
    for window in windows.tolist():
        for t in range(1, len(window)):
            c, b = window[t], window[t - 1]
            p1 = (unigram[c] + 1) / (len(train) + vocab)
            p2 = pairs[b, c] / as_context[b] if as_context[b] else p1
            a = window[t - 2] if t >= 2 else None
            p3 = triples[a, b, c] / pair_contexts[a, b] if a is not None and pair_contexts[a, b] else p2
            losses.append(-math.log(weights[0] * p1 + weights[1] * p2 + weights[2] * p3))
    return sum(losses) / len(losses)


def test_trigram_floor_where_only_two_tokens_of_context_tell_the_next(tmp_path):
    """'0 1 0 2' repeated, with noise: after 0 the bigram says 1 or 2 at even odds, the trigram knows.
    The floor equals its definition computed longhand at the tuned weights, beats the bigram floor,
    and the tuned weights beat every point of a grid on the held-out text."""
    rng = np.random.default_rng(0)
    clean = np.tile([0, 1, 0, 2], 3000)
    train = np.where(rng.random(len(clean)) < 0.1, rng.integers(0, 3, len(clean)), clean)
    val = np.tile([0, 1, 0, 2], 200)
    windows = val_windows(workspace(tmp_path, train, val, block_size=15, audit_tokens=600))
    floors = ngram_floors(train, windows)
    assert math.isclose(floors.trigram, longhand_trigram(train.tolist(), windows, floors.trigram_weights, 3),
                        rel_tol=1e-10)
    assert floors.trigram < floors.bigram - 0.2 < floors.unigram - 0.2
    cut = int(len(train) * (1 - HELD_OUT_FRACTION))
    held_out = NgramCounts(train[:cut], 3).probabilities(text_windows(train[cut:], 16))
    tuned = mixture_loss(np.array(floors.trigram_weights), held_out)
    grid = [np.array([w1, w2, 1 - w1 - w2]) for w1 in np.linspace(MIN_WEIGHT, 1, 21)
            for w2 in np.linspace(0, 1, 21) if w1 + w2 <= 1]
    assert tuned <= min(mixture_loss(w, held_out) for w in grid) + 1e-9


def test_floors_of_independent_tokens_are_the_unigram_entropy(tmp_path):
    # Tokens drawn independently: no context helps, and every floor is close to log 8.
    rng = np.random.default_rng(0)
    cfg = workspace(tmp_path, rng.integers(0, 8, 200_000), rng.integers(0, 8, 20_000),
                    block_size=64, audit_tokens=16_384)
    floors = floors_of(cfg, val_windows(cfg))
    for value in floors.as_dict().values():
        assert abs(value - math.log(8)) < 0.01


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


def test_a_gain_over_control_is_the_value_minus_the_reports_baseline(tmp_path):
    """'5:MRR (gain over control)' is MRR minus the report's control (the no-offset baseline), per run;
    '5:MRR' itself keeps a random-init reference only when the control is the random-init models."""
    cfg = Config(out_dir=str(tmp_path))
    from experiments.context import reports_dir_name

    folder = tmp_path / reports_dir_name(cfg)
    folder.mkdir()
    report = {"metrics": [
        {"name": "MRR", "value": 0.25, "control": 0.10, "control_name": "only c (no offset)"},
        {"name": "answers ranked first", "value": 0.5, "control": 0.0, "control_name": "random-init models"},
    ], "definitions": {"MRR": "mean reciprocal rank of d."}}
    (folder / "05_semantic_algebra.json").write_text(json.dumps(report))
    metrics = ["5:MRR", "5:MRR (gain over control)", "5:answers ranked first"]
    outcome = collect(tmp_path, cfg, metrics)
    assert math.isclose(outcome.values["5:MRR (gain over control)"], 0.15)
    assert outcome.values["5:MRR"] == 0.25 and "5:MRR" not in outcome.random_init
    assert outcome.random_init["5:answers ranked first"] == 0.0
    assert "only c (no offset)" in outcome.definitions["5:MRR (gain over control)"]
    assert outcome.seed == cfg.seed
