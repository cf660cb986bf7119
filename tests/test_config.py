"""Config files plus --key=value overrides; bad keys and values refused in one line."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Config, keys_by_group, load_config, parse_args
from core.errors import UserError
from models import ModelConfig

REPO = Path(__file__).resolve().parent.parent


def test_file_then_overrides(tmp_path):
    path = tmp_path / "my_config.py"
    path.write_text("n_layer = 3\nlearning_rate = 1e-3\nimport math\n_private = 1\n")
    file, overrides = parse_args([str(path), "--n_layer=5", "--dropout=0.1", "--top_k=None"])
    cfg = load_config(file, overrides)
    assert isinstance(cfg, Config)
    assert (cfg.n_layer, cfg.learning_rate, cfg.dropout, cfg.top_k) == (5, 1e-3, 0.1, None)


def test_int_is_accepted_for_float_and_strings_stay_strings():
    cfg = load_config(None, {"learning_rate": "1", "out_dir": "out/x", "start": "FILE:p.txt"})
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.out_dir == "out/x" and cfg.start == "FILE:p.txt"


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(UserError, match="unknown config key 'learnig_rate'.*'learning_rate'"):
        load_config(None, {"learnig_rate": "1e-3"})


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("n_layers = 3\n")
    with pytest.raises(UserError, match=r"bad\.py; did you mean 'n_layer'"):
        load_config(str(path))


@pytest.mark.parametrize("key,value,kind", [
    ("n_layer", "3.5", "int"), ("compile", "1", "bool"), ("learning_rate", "fast", "float"),
    ("n_layer", "True", "int"),
])
def test_wrong_type_is_refused(key, value, kind):
    with pytest.raises(UserError, match=f"'{key}' on the command line must be {kind}"):
        load_config(None, {key: value})


def test_override_without_value_and_unknown_model_and_missing_file():
    with pytest.raises(UserError, match="needs a value"):
        parse_args(["--compile"])
    with pytest.raises(UserError, match="model must be 'gpt2', 'gpt2-new', 'reflow'"):
        load_config(None, {"model": "'gpt3'"})
    with pytest.raises(UserError, match="not found"):
        load_config("config/nope.py")


def test_inconsistent_heads_are_refused():
    with pytest.raises(UserError, match="multiple of n_kv_head"):
        load_config(None, {"n_head": "12", "n_kv_head": "5"})
    with pytest.raises(UserError, match="reflow-lite needs n_kv_head < n_head"):
        load_config(None, {"model": "reflow-lite"})


def test_a_model_config_key_is_a_config_key_with_its_limits():
    """ModelConfig is the one declaration of the architecture keys: settable here, checked here."""
    cfg = load_config(None, {"rope_theta": "500000", "swiglu_multiple_of": "32", "model": "gpt2-new"})
    assert (cfg.model_config().rope_theta, cfg.model_config().swiglu_multiple_of) == (500000.0, 32)
    assert {f.name for f in dataclasses.fields(ModelConfig)} < {f.name for f in dataclasses.fields(Config)}
    with pytest.raises(UserError, match="swiglu_multiple_of must be at least 1, got 0"):
        load_config(None, {"swiglu_multiple_of": "0"})


@pytest.mark.parametrize("overrides,message", [
    ({"dtype": "float64"}, "dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got 'float64'"),
    ({"top_k": "0"}, "top_k must be at least 1 or None, got 0"),
    ({"beta2": "1"}, "beta2 must be at least 0 and below 1, got 1.0"),
    ({"seed": str(2**63)}, f"seed must be at least 0 and below 2\\*\\*63, got {2**63}"),
    ({"device": "cuda:x"}, "device must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
    ({"out_dir": ""}, "out_dir must be a non-empty string, got ''"),
    ({"n_embd": "30", "n_head": "10"},
     r"n_embd / n_head \(the head size\) must be even: reflow rotates .*; got 30 / 10 = 3"),
])
def test_values_outside_their_declared_limits_are_refused_naming_what_is_allowed(overrides, message):
    with pytest.raises(UserError, match=f"^{message}"):
        load_config(None, overrides)


def test_odd_head_size_is_fine_without_rotary_positions():
    assert load_config(None, {"model": "gpt2", "n_embd": "30", "n_head": "10"}).n_embd == 30


def test_a_value_from_a_config_file_is_checked_like_an_override(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("dropout = 1.5\n")
    with pytest.raises(UserError, match="dropout must be at least 0 and below 1, got 1.5"):
        load_config(str(path))


def test_every_key_has_a_group_and_a_comment_and_help_lists_them():
    groups = keys_by_group()
    assert list(groups)[:2] == ["I/O", "data"]
    assert {"optimization", "system"} <= set(groups)
    keys = [key for rows in groups.values() for key, *_ in rows]
    assert keys == [f.name for f in dataclasses.fields(Config)]
    undocumented = [key for rows in groups.values() for key, _, _, comment in rows if not comment]
    assert not undocumented
    model_group = next(rows for name, rows in groups.items() if name.startswith("model"))
    rope = ("rope_theta", "10000.0", "greater than 0", "base of the rotary position frequencies")
    assert rope in model_group


def test_help_on_the_command_line_lists_keys_by_group():
    for command in (["train.py", "--help"], ["check.py", "--keys"], ["sample.py", "-h"]):
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "optimization" in lines and "system" in lines
        assert any(line.split()[:3] == ["on_nonfinite", "'stop'", "a"] for line in lines)
        assert any(line.split()[:2] == ["rope_theta", "10000.0"] for line in lines)
