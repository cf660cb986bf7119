"""sample.py end to end on a tiny checkpoint: cache equivalence, seeds, FILE: prompts, chat, bad input."""

import subprocess
import sys

import pytest
import torch

import sample
from core.chat import chat_prompt
from core.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from core.config import Config
from core.tokenizer import END_OF_TEXT_ID, GPT2_VOCAB_SIZE, decode, encode
from models import build_model

BLOCK = 32


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A random tiny reflow with GPT-2's vocabulary, saved as train.py saves checkpoints."""
    torch.manual_seed(0)
    cfg = Config(model="reflow", n_layer=2, n_head=4, n_embd=32, n_signals=16, block_size=BLOCK,
                 vocab_size=50304)
    model = build_model(cfg.model, cfg.model_config())
    with torch.no_grad():  # strong layers, so greedy text varies from token to token
        for name, param in model.named_parameters():
            if name.startswith("blocks") and param.dim() == 2:
                param.mul_(10)
    directory = tmp_path_factory.mktemp("run")
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config), "iter_num": 0,
                     "best_val_loss": 9.0, "config": cfg.to_dict()}, directory / "ckpt.pt")
    return directory


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "sample.py", *args], capture_output=True, text=True,
                          input=stdin)


def run_main(capsys, *args):
    """sample.main in this process (faster than a subprocess); returns (exit code, stdout, stderr)."""
    code = 0
    try:
        sample.main(list(args))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def samples(stdout: str) -> list[str]:
    return stdout.split(sample.SEPARATOR + "\n")[:-1]


def test_greedy_output_is_the_same_with_and_without_the_cache(run_dir):
    # 40 new tokens after a 5-token prompt pass block_size 32: the sliding window is exercised too.
    args = [f"--out_dir={run_dir}", "--start=The king said", "--temperature=0", "--max_new_tokens=40",
            "--num_samples=1"]
    cached, recomputed = cli(*args), cli(*args, "--use_cache=False")
    assert cached.returncode == 0 and recomputed.returncode == 0, cached.stderr + recomputed.stderr
    assert cached.stdout == recomputed.stdout
    text = samples(cached.stdout)[0]
    assert text.startswith("The king said")
    assert len(set(encode(text))) > 10  # a varied continuation, so the comparison means something


def test_seed_makes_sampling_reproducible(run_dir, capsys):
    args = [f"--out_dir={run_dir}", "--start=Hello", "--max_new_tokens=12", "--num_samples=2",
            "--temperature=1.0"]
    _, first, _ = run_main(capsys, *args, "--seed=7")
    _, again, _ = run_main(capsys, *args, "--seed=7")
    _, other, _ = run_main(capsys, *args, "--seed=8")
    assert first == again
    assert first != other
    assert len(samples(first)) == 2


def test_file_prompt_equals_the_same_text_on_the_command_line(run_dir, tmp_path, capsys):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("To be, or not to be\n", encoding="utf-8")
    args = [f"--out_dir={run_dir}", "--max_new_tokens=8", "--num_samples=1", "--temperature=0"]
    code, from_file, _ = run_main(capsys, *args, f"--start=FILE:{prompt}")
    _, inline, _ = run_main(capsys, *args, "--start=To be, or not to be\n")
    assert code == 0
    assert from_file == inline and from_file.startswith("To be, or not to be\n")


def test_chat_reads_stdin_until_end_of_input_and_applies_the_template(run_dir, capsys):
    args = [f"--out_dir={run_dir}", "--chat=True", "--temperature=0", "--max_new_tokens=6"]
    result = cli(*args, stdin="hello there\n\n")  # a message, an empty line (skipped), then EOF
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    replies = [line for line in result.stdout.splitlines() if line.startswith("assistant> ")]
    assert len(replies) == 1

    # The same reply, computed here from the chat template directly.
    from core.checkpoint import load_checkpoint, model_from_checkpoint
    model = model_from_checkpoint(load_checkpoint(run_dir)).eval()
    ids = chat_prompt([], "hello there")[-BLOCK:]
    new = model.generate(torch.tensor([ids]), 6, temperature=0)[0, len(ids):].tolist()
    new = new[: new.index(END_OF_TEXT_ID)] if END_OF_TEXT_ID in new else new
    assert replies[0] == "assistant> " + decode(new).strip()

    # --start on the command line asks once, with the same template.
    code, out, _ = run_main(capsys, *args, "--start=hello there", "--num_samples=1")
    assert code == 0 and samples(out) == [decode(new).strip() + "\n"]


def test_a_prompt_longer_than_the_context_is_cropped_with_a_notice(run_dir, capsys):
    long_prompt = " ".join(f"word{i}" for i in range(40))  # well over 32 tokens
    code, out, err = run_main(capsys, f"--out_dir={run_dir}", f"--start={long_prompt}",
                              "--max_new_tokens=3", "--num_samples=1", "--temperature=0")
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("notice: the prompt is")
    assert "keeping its last 32 tokens" in err
    assert samples(out)[0].startswith(decode(encode(long_prompt)[-BLOCK:]))


def test_bad_inputs_get_one_line_and_exit_2(run_dir, tmp_path, capsys):
    ok = [f"--out_dir={run_dir}", "--max_new_tokens=2"]
    (tmp_path / "cut.pt").write_bytes((run_dir / "ckpt.pt").read_bytes()[:2000])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    cases = {
        "the prompt is empty": [*ok, "--start="],
        "prompt file": [*ok, f"--start=FILE:{tmp_path / 'missing.txt'}"],
        "no checkpoint at": [f"--out_dir={tmp_path / 'nothing'}"],
        "is truncated or corrupt": [f"--out_dir={tmp_path / 'cut.pt'}"],
        "truncated or corrupt": [f"--out_dir={tmp_path / 'junk.pt'}"],
        "is larger than the 32 this model": [*ok, "--block_size=64"],
        "temperature must be at least 0": [*ok, "--temperature=-1"],
        "did you mean 'max_new_tokens'": [*ok, "--max_new_token=3"],
        "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu9'": [*ok, "--device=tpu9"],
    }
    for expected, args in cases.items():
        code, out, err = run_main(capsys, *args)
        assert code == 2, (expected, err)
        assert err.startswith("error: ") and expected in err, (expected, err)
        assert err.count("\n") == 1 and out == ""


def test_a_bad_input_through_the_cli_has_no_traceback(run_dir):
    result = cli(f"--out_dir={run_dir}", "--start=FILE:/no/such/prompt.txt")
    assert result.returncode == 2
    assert result.stderr == ("error: prompt file /no/such/prompt.txt not found; "
                             "write --start=FILE:path/to/prompt.txt\n")


def test_a_smaller_block_size_is_allowed(run_dir, capsys):
    code, out, err = run_main(capsys, f"--out_dir={run_dir}", "--block_size=8", "--start=a b c d e f g h i j",
                              "--max_new_tokens=4", "--num_samples=1")
    assert code == 0 and "keeping its last 8 tokens" in err


def test_top_k_draws_only_among_the_k_best_with_their_softmax_odds():
    from models.transformer import sample_next

    logits = torch.tensor([[0.0, 3.0, 2.0, 2.5, -1.0]]).repeat(4000, 1)
    generator = torch.Generator().manual_seed(0)
    draws = sample_next(logits, temperature=1.0, top_k=2, generator=generator)[:, 0]
    assert set(draws.tolist()) == {1, 3}
    expected = torch.softmax(torch.tensor([3.0, 2.5]), dim=0)[0].item()  # 0.62
    assert (draws == 1).float().mean().item() == pytest.approx(expected, abs=0.03)


def test_padding_ids_are_never_drawn_even_when_they_score_best(run_dir, tmp_path, capsys):
    """The vocabulary is padded past GPT-2's 50,257 ids; here the padding rows are +-1000 times a real
    recipe row, so one of them outscores every real id at every step. No sampling rule draws them."""
    checkpoint = load_checkpoint(run_dir)
    recipe = checkpoint["model"]["recipe"].clone()
    recipe[GPT2_VOCAB_SIZE::2], recipe[GPT2_VOCAB_SIZE + 1::2] = 1000 * recipe[11], -1000 * recipe[11]
    save_checkpoint({**checkpoint, "model": {**checkpoint["model"], "recipe": recipe}}, tmp_path / "ckpt.pt")
    model = model_from_checkpoint(load_checkpoint(tmp_path)).eval()
    unguarded = model.generate(torch.tensor([encode("Hello")]), 3, temperature=0)[0, -3:]
    assert unguarded.min() >= GPT2_VOCAB_SIZE  # what the guard has to stop
    rules = (["--temperature=0"], ["--temperature=1.0", "--top_k=None"], ["--temperature=1.0", "--top_k=3"])
    for rule in rules:
        code, out, err = run_main(capsys, f"--out_dir={tmp_path}", "--start=Hello", "--max_new_tokens=3",
                                  "--num_samples=2", "--device=cpu", *rule)
        assert code == 0 and out.startswith("Hello"), (rule, err)


def test_a_temperature_that_underflows_samples_as_greedy(run_dir, capsys):
    """1e-300 is 0 in float32: dividing by it made every probability NaN. Now it is greedy, as its
    limit is; and non-finite scores raise the one-line error instead of reaching the draw."""
    from core.errors import is_user_error
    from models.transformer import NonFiniteLogits, sample_next

    args = (f"--out_dir={run_dir}", "--start=Hello", "--max_new_tokens=6", "--num_samples=1", "--device=cpu")
    greedy = run_main(capsys, *args, "--temperature=0")
    assert run_main(capsys, *args, "--temperature=1e-300") == greedy and greedy[0] == 0
    huge = sample_next(torch.tensor([[1.0, 2.0, 3.0]]), float("inf"), None, torch.Generator().manual_seed(0))
    assert 0 <= huge.item() < 3  # an infinite temperature is uniform, not NaN
    with pytest.raises(NonFiniteLogits) as error:
        sample_next(torch.tensor([[0.0, float("nan"), 1.0]]), 1.0, None)
    assert is_user_error(error.value) and "\n" not in str(error.value)
    # Only the first valid_vocab_size scores count: a NaN in padding is never looked at.
    assert sample_next(torch.tensor([[0.0, 5.0, float("nan")]]), 0, None, valid_vocab_size=2).item() == 1
