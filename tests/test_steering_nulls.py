"""The nulls of Typo Resilience (6), Emotion Surgery (10), Concept Inception (11) and Genetic Hijack
(12) on constructed cases: where the structure is planted the experiment must win; where it is absent
it must not, at about the nominal rate over many seeds.

The absent cases use the experiments' own null constructions with a readout simple enough to run
hundreds of times (a bag-of-tokens state for 6, a linear readout for 10, cached critical strengths of
one random-init model for 11, cached edits of one random-init model for 12); the planted cases of 11
and 12 run the experiments themselves.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from experiment_workspace import make_run

from core.config import load_config
from experiments.common import frequent_words
from experiments.context import load_context
from experiments.control_steering import (
    critical_alphas,
    easier_than_null,
    reading_gap,
    sentiment_direction,
    sentiment_ids,
    smallest,
    split_held_out,
    with_rows_pulled,
    word_difference_directions,
)
from experiments.runner import run_experiments
from experiments.semantic_properties import overlap_matched
from experiments.statistics import ALPHA, empirical_p

SEEDS = 300  # the false-positive rate of a test at 0.05 over 300 seeds has sd 0.0126


def typo_p(seed: int, planted: bool) -> float:
    """Experiment 6's test on a state that is the mean of its tokens' vectors (it sees only overlap):
    the typo's cosine with the correct sentence among 50 overlap-matched sentences'."""
    g = torch.Generator().manual_seed(seed)
    V, d = 300, 16
    E = torch.randn(V, d, generator=g)
    correct = torch.randint(V, (6,), generator=g).tolist()
    misspelled = list(correct)
    misspelled[2:4] = torch.randint(V, (2,), generator=g).tolist()
    if planted:  # the misspelled tokens mean nearly what the correct ones do
        E[misspelled[2:4]] = E[correct[2:4]] + 0.1 * torch.randn(2, d, generator=g)
    matched = overlap_matched(correct, misspelled, torch.arange(V), 50, g)
    state = lambda ids: E[torch.as_tensor(ids)].mean(-2)
    value = F.cosine_similarity(state(correct), state(misspelled), dim=0).item()
    null = F.cosine_similarity(state(correct)[None], state(matched)).tolist()
    return empirical_p(value, null, True)


def test_typo_null_rejects_overlap_alone_and_credits_a_planted_spelling_relation():
    rate = np.mean([typo_p(seed, planted=False) < ALPHA for seed in range(SEEDS)])
    assert 0.02 < rate < 0.09
    assert np.mean([typo_p(seed, planted=True) < ALPHA for seed in range(50)]) > 0.95


class LinearReadout:
    """A model reduced to its vocab matrix: adding a direction d to the final state moves token t's
    logit by d . E[t]."""

    def __init__(self, E: torch.Tensor):
        self.E = E

    def vocab_matrix(self) -> torch.Tensor:
        return self.E


def steering_p(seed: int, planted: bool) -> float:
    """Experiment 10's test: the held-out log-odds shift of the sentiment direction (built from the
    defining words) among 50 word-difference directions from other words, in a linear readout."""
    g = torch.Generator().manual_seed(seed)
    V, d = 400, 16
    E = torch.randn(V, d, generator=g)
    order = torch.randperm(V, generator=g).tolist()
    positive, negative, pool = order[:8], order[8:16], order[16:]
    if planted:  # a shared sentiment axis
        axis = 3 * F.normalize(torch.randn(d, generator=g), dim=0)
        E[positive] += axis
        E[negative] -= axis
    (define_pos, held_pos), (define_neg, held_neg) = split_held_out(positive), split_held_out(negative)
    model = LinearReadout(E)
    held = E[held_pos].mean(0) - E[held_neg].mean(0)
    value = (sentiment_direction(model, define_pos, define_neg) @ held).item()
    null = (word_difference_directions(model, pool, (4, 4), 50, g) @ held).tolist()
    return empirical_p(value, null, True)


def test_sentiment_direction_null_fails_without_a_sentiment_axis_and_wins_with_one():
    rate = np.mean([steering_p(seed, planted=False) < ALPHA for seed in range(SEEDS)])
    assert 0.02 < rate < 0.09
    assert np.mean([steering_p(seed, planted=True) < ALPHA for seed in range(50)]) > 0.95


@pytest.fixture
def reflow_ctx(tmp_path):
    config_file, _ = make_run(tmp_path, "reflow")
    return load_context(load_config(str(config_file)))


def own_row_alpha(ctx, token: int) -> float | None:
    idx = ctx.prompt(ctx.cfg.concept_prompt, "concept_prompt")
    row = F.normalize(ctx.model.vocab_matrix().detach()[token].float(), dim=0)
    return smallest(critical_alphas(ctx.model, idx, row, token, ctx.cfg.concept_alpha_max))


@torch.no_grad()
def test_inception_null_holds_its_rate_on_random_concepts_and_credits_planted_ones(reflow_ctx):
    ctx = reflow_ctx
    alpha_max = ctx.cfg.concept_alpha_max
    tokens = list(range(100, 160))
    alphas = [own_row_alpha(ctx, t) for t in tokens]
    rng = np.random.default_rng(0)
    rejected = []
    for _ in range(SEEDS):  # absent: the "concepts" are random tokens like the null's
        pick = rng.permutation(len(tokens))
        rejected.append(easier_than_null([alphas[i] for i in pick[:2]], [alphas[i] for i in pick[2:22]],
                                         alpha_max) < ALPHA)
    assert np.mean(rejected) < 0.09
    concepts = [200, 201]  # planted: rows five times longer raise their own logit five times faster
    ctx.model.recipe[concepts] *= 5
    planted = [own_row_alpha(ctx, t) for t in concepts]
    assert easier_than_null(planted, alphas[:20], alpha_max) < ALPHA


def test_genetic_hijack_wins_when_the_target_is_what_the_held_out_positive_word_is(reflow_ctx):
    """Planted: the held-out positive word's recipe is the mean of the defining positive words', so
    the edit makes the held-out negative word read exactly like it; no random target can."""
    ctx = reflow_ctx
    positive, _ = sentiment_ids(ctx)
    define_pos, held_pos = split_held_out(positive)
    with torch.no_grad():
        ctx.model.recipe[held_pos] = ctx.model.recipe[define_pos].mean(0)
    run_experiments(ctx, [12])
    report = json.loads((ctx.reports_dir / "12_genetic_hijack.json").read_text())
    metric = next(m for m in report["metrics"] if m["name"] == "gap reduction (held-out words)")
    assert metric["value"] == pytest.approx(1.0, abs=1e-5) and metric["beats_control"]


@torch.no_grad()
def test_hijack_null_holds_its_rate_when_the_target_words_are_like_the_null_words(reflow_ctx):
    """Absent: the 'defining positive' words are a random set drawn from the null's own pool, so no
    target can be special; pulling the held-out negative rows toward it must beat the random-target null
    at about the nominal rate. The reductions of 60 candidate sets are computed once with the
    experiment's own edit and gap, then dealt out 300 times (one target, 50 null sets)."""
    ctx = reflow_ctx
    positive, negative = sentiment_ids(ctx)
    (_, held_pos), (_, held_neg) = split_held_out(positive), split_held_out(negative)
    table, size = ctx.model.token_table(), len(split_held_out(positive)[0])
    pool = frequent_words(ctx, positive + negative)
    g = torch.Generator().manual_seed(0)
    candidates = [[pool[i] for i in torch.randperm(len(pool), generator=g)[:size].tolist()]
                  for _ in range(60)]
    before = reading_gap(ctx, held_pos, held_neg)
    gap = lambda: reading_gap(ctx, held_pos, held_neg)
    reductions = [1 - with_rows_pulled(table, held_neg, rows, 1.0, gap) / before for rows in candidates]
    assert len(set(reductions)) > 50  # the edits do move the gap, differently per target set
    rng = np.random.default_rng(0)
    rejected = []
    for _ in range(SEEDS):
        pick = rng.permutation(len(candidates))
        rejected.append(empirical_p(reductions[pick[0]], [reductions[i] for i in pick[1:51]], True) < ALPHA)
    assert 0.01 < np.mean(rejected) < 0.09


def test_overlap_matched_sentences_are_token_ids_when_the_typo_is_in_the_first_or_last_word():
    """A typo in the first word leaves no common prefix (and in the last, no suffix): the matched
    sentences must still be integer token ids, the typo's length, with the shared part kept."""
    g = torch.Generator().manual_seed(0)
    pool = torch.arange(100, 200)
    first = overlap_matched([1, 2, 3, 4], [9, 2, 3, 4], pool, 5, g)
    last = overlap_matched([1, 2, 3, 4], [1, 2, 3, 8, 8], pool, 5, g)
    assert first.dtype == last.dtype == torch.long
    assert first.shape == (5, 4) and (first[:, 1:] == torch.tensor([2, 3, 4])).all()
    assert last.shape == (5, 5) and (last[:, :3] == torch.tensor([1, 2, 3])).all()
