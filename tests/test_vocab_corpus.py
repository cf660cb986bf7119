"""vocab='corpus': the model's ids are a dense range standing for the GPT-2 ids its corpus holds.

Checked here: the map round-trips (text, and ids both ways); a model trained on the dense ids gives
the same logits over the kept tokens as the same weights scattered into GPT-2's full table; and a
tiny run trains, resumes, samples and runs an experiment through the map, refusing in one line the
words its corpus never held.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import summation_tolerance, tiny_config
from train_fixtures import TINY_RUN, one_thread  # noqa: F401  (autouse: one thread)

import train
from core.checkpoint import load_checkpoint, model_from_checkpoint, tokenizer_of
from core.config import load_config, parse_args
from core.errors import UserError
from core.tokenizer import END_OF_TEXT_ID, GPT2_VOCAB_SIZE, Tokenizer, decode, encode
from experiments.common import token_id
from experiments.context import load_context
from experiments.runner import run_experiments
from models import MODELS, build_model
from sampling.text import load_for_sampling, sample_text
from training.batches import Batches, corpus_token_ids

REPO = Path(__file__).resolve().parent.parent
CORPUS_CHARS = 20000  # Shakespeare's opening: ~5,600 GPT-2 tokens of ~1,400 distinct ids


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, str, list[int]]:
    """A dataset folder holding Shakespeare's opening as GPT-2 ids (90% train, 10% val)."""
    text = (REPO / "data" / "shakespeare" / "input.txt").read_text(encoding="utf-8")[:CORPUS_CHARS]
    ids = encode(text)
    folder = tmp_path_factory.mktemp("data") / "opening"
    folder.mkdir()
    split = int(len(ids) * 0.9)
    np.array(ids[:split], dtype=np.uint16).tofile(folder / "train.bin")
    np.array(ids[split:], dtype=np.uint16).tofile(folder / "val.bin")
    return folder, text, ids


def test_the_kept_ids_are_the_corpus_ids_and_the_map_round_trips(corpus):
    folder, text, ids = corpus
    kept = corpus_token_ids(folder)
    assert kept.tolist() == sorted(set(ids) | {END_OF_TEXT_ID})  # train and val, plus <|endoftext|>
    tokenizer = Tokenizer(2048, kept)
    assert tokenizer.n_vocab == len(kept) and tokenizer.remapped
    dense = tokenizer.encode(text)
    assert max(dense) < tokenizer.n_vocab and len(dense) == len(ids)
    assert tokenizer.decode(dense) == text  # text -> dense ids -> text
    assert tokenizer.to_gpt2(dense).tolist() == ids  # dense -> GPT-2 is the tokenizer's own encoding
    assert tokenizer.from_gpt2(kept).tolist() == list(range(len(kept)))  # GPT-2 -> dense is 0..n-1
    assert tokenizer.to_gpt2([tokenizer.end_of_text_id]).tolist() == [END_OF_TEXT_ID]
    assert tokenizer.decode([tokenizer.n_vocab, 2047]) == ""  # padding rows stand for no text


def test_a_word_the_corpus_never_holds_is_refused_in_one_line(corpus):
    folder, text, _ = corpus
    tokenizer = Tokenizer(2048, corpus_token_ids(folder))
    assert " Beijing" not in text
    with pytest.raises(UserError) as error:
        token_id(" Beijing", tokenizer, "word_groups['cities']")
    message = str(error.value)
    assert message.startswith("word_groups['cities']: ' Beijing' is GPT-2 token 11618, outside this model's "
                              "vocabulary") and "vocab='corpus'" in message and "\n" not in message


def scattered(name: str, small: torch.nn.Module, gpt2_ids: np.ndarray, full_size: int) -> torch.nn.Module:
    """A copy of `small` with a full-size vocabulary: every token table (the parameters whose first
    dimension is the vocabulary) holds small's row i at GPT-2 id gpt2_ids[i]; the other rows random."""
    full = build_model(name, dataclasses.replace(small.config, vocab_size=full_size))
    state = full.state_dict()
    rows = torch.from_numpy(gpt2_ids)
    for name, tensor in small.state_dict().items():
        if state[name].shape == tensor.shape:
            state[name] = tensor
        else:  # a vocabulary table: (V, ...)
            assert state[name].shape[1:] == tensor.shape[1:] and tensor.size(0) == small.config.vocab_size
            state[name][rows] = tensor[: len(gpt2_ids)]
    full.load_state_dict(state)
    return full


@pytest.mark.parametrize("name", list(MODELS))
@torch.no_grad()
def test_a_remapped_model_gives_the_logits_of_its_weights_scattered_into_the_full_table(corpus, name):
    folder, text, ids = corpus
    kept = corpus_token_ids(folder)
    tokenizer = Tokenizer(-(-len(kept) // 64) * 64, kept)
    extra = {"n_kv_head": 2} if name == "reflow-lite" else {}
    small = build_model(name, tiny_config(vocab_size=tokenizer.vocab_size, **extra)).eval()
    for p in small.parameters():  # trained-looking weights: no table row left at its init scale
        p.normal_(0, 0.2)
    full = scattered(name, small, kept, 50304).eval()
    block = small.config.block_size
    gpt2_window = torch.tensor([ids[:block], ids[block : 2 * block]])
    dense_window = torch.from_numpy(tokenizer.from_gpt2(gpt2_window.numpy()))

    small_logits, _ = small(dense_window)
    full_logits, _ = full(gpt2_window)
    kept_logits = full_logits[..., torch.from_numpy(kept)]  # the full table's logits over the kept ids
    torch.testing.assert_close(small_logits[..., : len(kept)], kept_logits,
                               **summation_tolerance(kept_logits, small.config.n_embd))
    assert small_logits.shape[-1] == tokenizer.vocab_size and full_logits.shape[-1] == 50304


def corpus_run_args(folder: Path, out: Path, **overrides) -> list[str]:
    values = {**TINY_RUN, "data_dir": str(folder.parent), "dataset": folder.name, "out_dir": str(out),
              "vocab": "corpus", "block_size": 32, **overrides}
    del values["vocab_size"]  # vocab='corpus' sets it
    return [f"--{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    folder, _, _ = corpus
    out = tmp_path_factory.mktemp("runs") / "corpus"
    train.train(load_config(*parse_args(corpus_run_args(folder, out))))
    return out


def test_a_run_trains_on_the_dense_ids_and_its_checkpoint_says_which_they_are(corpus, trained):
    folder, _, ids = corpus
    checkpoint = load_checkpoint(trained)  # weights_only=True
    kept = corpus_token_ids(folder)
    assert checkpoint["vocab_gpt2_ids"].tolist() == kept.tolist()
    assert checkpoint["model_args"]["vocab_size"] == -(-len(kept) // 64) * 64 < GPT2_VOCAB_SIZE
    # The saved config is the one given (vocab_size unset), so the next run's config compares equal to it.
    assert checkpoint["config"]["vocab"] == "corpus" and checkpoint["config"]["vocab_size"] == 50304
    tokenizer = tokenizer_of(checkpoint)
    x, y = Batches(folder, 32, 2, seed=0, tokenizer=tokenizer).eval_batch("val", 0, "cpu")
    val = np.fromfile(folder / "val.bin", dtype=np.uint16)
    window = tokenizer.to_gpt2(x[0].numpy())  # the batch holds the model's ids of a val.bin window
    start = next(i for i in range(len(val)) if val[i : i + 32].tolist() == window.tolist())
    assert tokenizer.to_gpt2(y[0].numpy()).tolist() == val[start + 1 : start + 33].tolist()


@torch.no_grad()
def test_the_trained_model_gives_the_logits_of_its_weights_scattered_into_the_full_table(corpus, trained):
    _, _, ids = corpus
    checkpoint = load_checkpoint(trained)
    tokenizer, model = tokenizer_of(checkpoint), model_from_checkpoint(checkpoint).eval()
    full = scattered(checkpoint["model_args"]["model"], model, tokenizer.gpt2_ids, 50304).eval()
    gpt2_window = torch.tensor([ids[-32:]])
    small_logits, _ = model(torch.from_numpy(tokenizer.from_gpt2(gpt2_window.numpy())))
    kept_logits = full(gpt2_window)[0][..., torch.from_numpy(tokenizer.gpt2_ids)]
    torch.testing.assert_close(small_logits[..., : tokenizer.n_vocab], kept_logits,
                               **summation_tolerance(kept_logits, model.config.n_embd))


def test_resuming_continues_a_corpus_run_and_refuses_another_vocab(corpus, trained, tmp_path, capsys):
    folder, _, _ = corpus
    resumed = load_config(*parse_args(corpus_run_args(folder, trained, init_from="resume", max_iters=10,
                                                      lr_decay_iters=10)))
    assert train.train(resumed).iter_num == 10
    mismatch = [a for a in corpus_run_args(folder, trained, init_from="resume") if a != "--vocab=corpus"]
    with pytest.raises(SystemExit) as stopped:
        train.main(mismatch + ["--vocab_size=4096"])
    assert stopped.value.code == 2
    assert "trained with vocab='corpus', the config says 'gpt2'" in capsys.readouterr().err

    # A fine-tune takes the vocabulary from its checkpoint, whatever the config says.
    tuned = tmp_path / "tuned"
    args = [a for a in corpus_run_args(folder, tuned, init_from=str(trained)) if a != "--vocab=corpus"]
    train.main(args)
    assert torch.equal(load_checkpoint(tuned)["vocab_gpt2_ids"], load_checkpoint(trained)["vocab_gpt2_ids"])


def test_sampling_and_an_experiment_read_the_model_through_its_map(corpus, trained, tmp_path):
    folder, text, _ = corpus
    cfg = load_config(*parse_args(corpus_run_args(folder, trained, start="KING OF FRANCE.", max_new_tokens=8,
                                                  num_samples=2)))
    model, tokenizer, device, dtype = load_for_sampling(cfg, block_size_given=False)
    samples = sample_text(model, tokenizer, cfg, device, dtype, torch.Generator().manual_seed(0))
    assert len(samples) == 2 and all(s.startswith("KING OF FRANCE.") for s in samples)

    words = [" father", " sir", " love", " virginity"]  # each one GPT-2 token the opening holds
    assert all(len(encode(w)) == 1 and w in text for w in words)
    settings = dict(probe_words=words, word_groups={"people": words[:2], "other": words[2:]},
                    audit_tokens=256, audit_vocab=100, floor_draws=3)
    ctx = load_context(dataclasses.replace(cfg, **settings), ckpt=str(trained))
    val_ids, train_ids = (np.fromfile(folder / f"{split}.bin", np.uint16) for split in ("val", "train"))
    assert ctx.all_val_tokens.tolist() == tokenizer.from_gpt2(val_ids).tolist()  # the model's ids
    most_frequent = np.argsort(-np.bincount(train_ids), kind="stable")[:3]
    assert tokenizer.to_gpt2(ctx.frequent_tokens[:3]).tolist() == most_frequent.tolist()
    run_experiments(ctx, [1])
    report = (ctx.reports_dir / "01_recipe_atlas.md").read_text()
    for word in words:  # each probe's row of the neighbour table, labelled through the map
        assert f"\n| {tokenizer.label(token_id(word, tokenizer, 'probe_words'))} |" in report
    assert "\n| ·father |" in report

    with pytest.raises(UserError, match=r"^probe_words\[0\]: ' Beijing' is GPT-2 token 11618, outside"):
        run_experiments(dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, probe_words=[" Beijing"])),
                        [1])
    assert decode([11618]) == " Beijing"


def test_bench_times_the_model_train_py_would_build(corpus, trained):
    folder, _, _ = corpus
    from benchmarking.measurements import build_any

    cfg = load_config(*parse_args(corpus_run_args(folder, trained)))
    assert build_any("reflow", cfg).config.vocab_size == load_checkpoint(trained)["model_args"]["vocab_size"]


def test_export_refuses_a_remapped_model_in_one_line(trained, tmp_path, capsys):
    import export_hf

    with pytest.raises(SystemExit) as stopped:
        export_hf.main([str(trained), str(tmp_path / "hf")])
    assert stopped.value.code == 2 and not (tmp_path / "hf").exists()
    err = capsys.readouterr().err
    assert "vocab='corpus'" in err and "--vocab=gpt2" in err and err.count("\n") == 1


def test_a_study_scores_a_corpus_run_on_its_own_ids(corpus, trained):
    """The study's val loss reads val.bin's GPT-2 ids through the run's map: the same number as the
    model's loss on those windows mapped by hand, and the same windows as a gpt2-vocabulary run reads."""
    from studying.outcomes import text_loss, val_loss, val_windows

    folder, _, _ = corpus
    cfg = load_config(*parse_args(corpus_run_args(folder, trained, audit_tokens=256)))
    checkpoint = load_checkpoint(trained)
    windows = val_windows(cfg)  # GPT-2 ids
    mapped = tokenizer_of(checkpoint).from_gpt2(windows)
    assert tokenizer_of(checkpoint).to_gpt2(mapped).tolist() == windows.tolist()
    model = model_from_checkpoint(checkpoint).float().eval()
    loss, random_loss = val_loss(trained, cfg)
    assert loss == pytest.approx(text_loss(model, mapped), rel=1e-6)
    assert loss < random_loss
