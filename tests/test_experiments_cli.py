"""experiment.py's command line: selection, the menu, bad input (one line, exit 2, nothing written),
and reports that are never left half-written."""

import subprocess
import sys
from pathlib import Path

import pytest
from experiment_workspace import REPO, make_run

import experiment
from experiments.report import atomic_path, write_atomic
from experiments.runner import parse_selection


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {name: make_run(root, name) for name in ("reflow", "gpt2")}


def test_selection_parsing():
    assert parse_selection("all") == (list(range(1, 17)), False)
    assert parse_selection("1 3 5") == ([1, 3, 5], True)
    assert parse_selection("2-4,9 3") == ([2, 3, 4, 9], True)
    args = ["--run", "1", "3", "cfg.py", "--ckpt", "x.pt", "--seed=3"]
    assert experiment.split_args(args) == (["cfg.py", "--seed=3"], "x.pt", "1 3")
    assert experiment.split_args(["cfg.py", "--run=all"]) == (["cfg.py"], None, "all")


def test_bad_inputs_get_one_line_exit_2_and_touch_nothing(runs):
    (reflow_config, reflow_cfg), (gpt2_config, _) = runs["reflow"], runs["gpt2"]
    reports = Path(reflow_cfg.out_dir) / "audit_reports"
    reports.mkdir(exist_ok=True)
    earlier = reports / "01_recipe_atlas.md"
    earlier.write_text("an earlier report")
    cases = {
        "unknown experiment 17": ([str(reflow_config), "--run", "1", "17"], None),
        "experiment 16 (Teacher Agreement) needs a teacher": ([str(reflow_config), "--run", "16"], None),
        "needs recipes, but this is a gpt2 model": ([str(gpt2_config), "--run", "2"], None),
        "probe_words[1]: ' Kingsbury' is 2 GPT-2 tokens (' Kings' + 'bury')":
            ([str(reflow_config), "--run", "1", "--probe_words=[' he', ' Kingsbury']"], None),
        "end of input at the menu": ([str(reflow_config)], ""),
        "is not an experiment number": ([str(reflow_config)], "seven\n"),
    }
    # Start every case at once: each pays Python and torch start-up, and they overlap.
    procs = {message: subprocess.Popen([sys.executable, "experiment.py", *args], cwd=REPO, text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for message, (args, _) in cases.items()}
    for message, proc in procs.items():
        _, stderr = proc.communicate(input=cases[message][1], timeout=120)
        assert proc.returncode == 2, (message, stderr)
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert message in stderr and "Traceback" not in stderr, stderr
    assert earlier.read_text() == "an earlier report"
    assert sorted(p.name for p in reports.iterdir()) == ["01_recipe_atlas.md"]


def test_menu_runs_what_is_typed(runs, monkeypatch, capsys):
    config_file, cfg = runs["reflow"]
    monkeypatch.setattr("builtins.input", lambda prompt="": "4")
    experiment.main([str(config_file)])
    out = capsys.readouterr().out
    assert "A. Signal identity" in out and "E. From related work" in out and "[needs recipes]" in out
    assert (Path(cfg.out_dir) / "audit_reports" / "04_semantic_galaxy.json").is_file()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    report = tmp_path / "05_semantic_algebra.md"
    write_atomic(report, "old report")
    with pytest.raises(RuntimeError):
        with atomic_path(report) as tmp:
            tmp.write_text("half a rep")
            raise RuntimeError("killed mid-write")
    assert report.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["05_semantic_algebra.md"]
    write_atomic(report, "new report")
    assert report.read_text() == "new report" and len(list(tmp_path.iterdir())) == 1
