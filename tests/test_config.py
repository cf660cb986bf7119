"""Config files plus --key=value overrides; bad keys and values refused in one line."""

import pytest

from core.config import Config, load_config, parse_args
from core.errors import UserError


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
