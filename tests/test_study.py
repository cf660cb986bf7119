"""A tiny study end to end: two arms, two seeds, a few steps; killed mid-way and continued (issue 13 §1)."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from experiment_workspace import SETTINGS
from statsmodels.stats.multitest import multipletests

import experiment
import study as study_script
from core.checkpoint import CHECKPOINT_NAME
from core.config import Config
from core.errors import UserError
from core.i18n import use_language
from core.tokenizer import encode
from studying import compare, runs
from studying.compare import group_runs, rotation_baselines
from studying.comparison import ComparisonInput, write_comparison
from studying.floors import Floors
from studying.outcomes import RunOutcome
from studying.runs import check_same_training
from studying.spec import load_study

REPO = Path(__file__).resolve().parent.parent
VOCAB = 1024
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TRAINING = dict(
    batch_size=4,
    gradient_accumulation_steps=1,
    learning_rate=3e-3,
    warmup_iters=1,
    max_iters=6,
    lr_decay_iters=6,
    min_lr=3e-4,
    eval_interval=3,
    eval_iters=2,
    log_interval=1,
    dtype="float32",
    max_new_tokens=0,
    compile=False,
)


def write_workspace(root: Path) -> Path:
    """Shakespeare as GPT-2 ids below VOCAB (train and val), a base config of a tiny model, and a
    study file with two arms (reflow; gpt2-new read through a post-hoc SVD) and two seeds."""
    text = (REPO / "data" / "shakespeare" / "input.txt").read_text(encoding="utf-8")[:40000]
    ids = np.array([i for i in encode(text) if i < VOCAB], dtype=np.uint16)
    data = root / "data" / "toy"
    data.mkdir(parents=True)
    ids[: len(ids) * 3 // 4].tofile(data / "train.bin")
    ids[len(ids) * 3 // 4 :].tofile(data / "val.bin")
    base = {**SETTINGS, **TRAINING, "block_size": 16, "data_dir": str(root / "data"), "model": "reflow"}
    (root / "base.py").write_text("".join(f"{k} = {v!r}\n" for k, v in base.items()))
    study_file = root / "tiny_study.py"
    study_file.write_text(f"""
base_config = {str(root / "base.py")!r}
arms = {{"reflow": {{}}, "gpt2_new_svd": {{"model": "gpt2-new", "posthoc": "svd"}}}}
seeds = [1, 2]
experiments = [3]
metrics = ["val loss", "3:effective rank", "crystallization depth"]
comparisons = [("reflow", "gpt2_new_svd")]
primary = {{"val loss": "differs"}}
runs_dir = {str(root / "runs")!r}
results_dir = {str(root / "results")!r}
""")
    return study_file


def events(root: Path) -> list[dict]:
    path = root / "runs" / "study_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still running")


@pytest.fixture(scope="module")
def killed_and_finished(tmp_path_factory):
    """Start the study, SIGKILL it once its first run is trained, then run it again to the end."""
    root = tmp_path_factory.mktemp("study")
    study_file = write_workspace(root)
    command = [sys.executable, str(REPO / "study.py"), str(study_file)]
    first = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not any(e["event"] == "trained" for e in events(root)):
        assert first.poll() is None, first.stdout.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    for e in events(root):
        if e["event"] == "child":
            wait_gone(e["pid"])  # its child got SIGTERM when the study died, and stops
    study = load_study(str(study_file))
    first_run = study.run_dir("reflow", 1)
    mtime = (first_run / "ckpt.pt").stat().st_mtime_ns
    killed_events = len(events(root))
    second = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    return root, study, first_run, mtime, killed_events, second.stdout


def test_a_study_started_with_sigint_ignored_still_stops_its_child_on_sigterm(tmp_path):
    """`python study.py ... &` in a script starts the study, and so its children, with SIGINT ignored:
    a stop must reach train.py as a signal it still hears, and the run saves before both end."""
    study_file = write_workspace(tmp_path)
    with open(tmp_path / "base.py", "a") as base:  # a run long enough to be stopped in the middle
        base.write("max_iters = 100000\nlr_decay_iters = 100000\neval_interval = 100000\n")
    command = [sys.executable, str(REPO / "study.py"), str(study_file)]
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731  as bash does for &
    started = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=ignore_sigint)
    deadline = time.time() + 120
    run_log = tmp_path / "runs" / load_study(str(study_file)).run_name("reflow", 1) / "train.log"
    while not (run_log.exists() and "iter 2/" in run_log.read_text()):
        assert started.poll() is None and time.time() < deadline
        time.sleep(0.05)
    started.send_signal(signal.SIGTERM)
    assert started.wait(timeout=60) == 130, started.stderr.read().decode()
    child = next(e["pid"] for e in events(tmp_path) if e["event"] == "child")
    wait_gone(child, timeout=5)  # ended with the study, not orphaned and training on
    assert "stopped at step" in run_log.read_text()
    started.stderr.close()


def test_the_study_finishes_without_retraining_finished_runs(killed_and_finished):
    root, study, first_run, mtime, killed_events, output = killed_and_finished
    assert (first_run / "ckpt.pt").stat().st_mtime_ns == mtime
    later = events(root)[killed_events:]
    assert not any(e["event"] == "train" and e["run"] == study.run_name("reflow", 1) for e in later)
    for arm, seed in study.runs():
        run = study.run_dir(arm, seed)
        assert json.loads((run / "val_history.json").read_text()).keys() == {"0", "3", "6"}
    # the two gpt2-new arms' runs were read through the post-hoc SVD, in their own reports folder
    report = json.loads(
        (
            study.run_dir("gpt2_new_svd", 1) / "audit_reports_posthoc_svd" / "03_basis_geometry.json"
        ).read_text()
    )
    assert report["skipped"] is None and "post-hoc truncated SVD" in report["definitions"]["factorization"]
    assert "time left" in output or "min left" in output


def test_the_comparison_is_written_with_every_part(killed_and_finished):
    root, study, *_ = killed_and_finished
    results = root / "results"
    comparison = json.loads((results / "comparison.json").read_text())
    assert [m["name"] for m in comparison["metrics"]] == [
        "val loss",
        "3:effective rank",
        "crystallization depth",
    ]
    for m in comparison["metrics"][:2]:
        for arm in ("reflow", "gpt2_new_svd"):
            assert m["arms"][arm]["n"] == 2 and len(m["arms"][arm]["values"]) == 2
        assert m["random_init"]["reflow"] is not None
    val = comparison["metrics"][0]
    assert all(v < val["random_init"]["reflow"] for v in val["arms"]["reflow"]["values"])  # it trained
    (pair,) = comparison["comparisons"]
    assert pair["paired"] and comparison["seeds"] == {"reflow": [1, 2], "gpt2_new_svd": [1, 2]}
    assert comparison["primary"] == {"val loss": {"reflow vs gpt2_new_svd": "differs"}}
    rows = {r["metric"]: r for r in pair["results"]}
    assert rows["val loss"]["role"] == "primary" and rows["val loss"]["test"] == "paired t"
    assert rows["val loss"]["verdict"].startswith(("holds", "no detectable difference (smallest detectable"))
    assert rows["3:effective rank"]["role"] == "exploratory"
    assert rows["3:effective rank"]["verdict"] == "exploratory: no verdict"
    for name in ["comparison.md", "index.html", "val_loss_curves.png", *comparison["figures"]]:
        assert (results / name).is_file(), name
    markdown = (results / "comparison.md").read_text()
    assert "Primary metrics: one Holm family" in markdown and "Floors" in markdown
    floors = comparison["floors"]
    assert set(floors["floors"]) == {"unigram", "bigram", "trigram"}
    assert all(0 < value < math.log(VOCAB) for value in floors["floors"].values())
    reflow = floors["arms"]["reflow"]
    assert math.isclose(reflow["margins"]["trigram"], floors["floors"]["trigram"] - reflow["val loss"])


def test_a_rerun_of_a_finished_study_trains_nothing_and_compare_reads_runs_as_they_are(
    killed_and_finished, tmp_path
):
    root, study, *_ = killed_and_finished
    before = len(events(root))
    study_script.main([str(root / "tiny_study.py")])
    assert not any(e["event"] in ("train", "experiments") for e in events(root)[before:])
    runs = [str(study.run_dir(arm, seed)) for arm, seed in study.runs()]
    study_script.main(["--runs", *runs, f"--out={tmp_path / 'cmp'}"])
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(comparison["arms"]) == {"model=reflow", "model=gpt2-new"}
    assert "3:effective rank" in [m["name"] for m in comparison["metrics"]]
    fonts = {key: matplotlib.rcParams[key]
             for key in ("font.family", "font.sans-serif", "axes.unicode_minus")}
    try:  # the same from experiment.py, in Chinese: the JSON's identifiers and numbers do not change
        experiment.main(["--compare", *runs, f"--out={tmp_path / 'cmp2'}", "--lang=zh"])
    finally:
        use_language("en")
        matplotlib.rcParams.update(fonts)
    again = json.loads((tmp_path / "cmp2" / "comparison.json").read_text())
    without_prose = [{k: v for k, v in m.items() if k != "definition"} for m in comparison["metrics"]]
    assert [{k: v for k, v in m.items() if k != "definition"} for m in again["metrics"]] == without_prose
    assert all(r["role"] == "exploratory" for c in again["comparisons"] for r in c["results"])
    assert set(again["arms"]) == {"model=reflow", "model=gpt2-new"} and again["title"] == "运行对比"
    markdown = (tmp_path / "cmp2" / "comparison.md").read_text(encoding="utf-8")
    assert "## 探索性：model=reflow 对 model=gpt2-new（未校正，不下结论）" in markdown
    assert "| 3:有效秩 |" in markdown and "Exploratory" not in markdown


def test_a_run_given_twice_is_refused(killed_and_finished, tmp_path, capsys):
    """Issue 25, class 7: the same run twice (by another path, or copied to another folder) would be
    a second seed with no spread; compare refuses it, and an --out that cannot be written."""
    root, study, *_ = killed_and_finished
    runs = [str(study.run_dir(arm, seed)) for arm, seed in study.runs()]
    first = study.run_dir("reflow", 1)
    (tmp_path / "link").symlink_to(first.resolve())
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    (tmp_path / "a_file").write_text("")
    for argv, says in [
        ([*runs, runs[0], f"--out={tmp_path / 'o'}"], "are the same run"),
        ([*runs, str(tmp_path / "link"), f"--out={tmp_path / 'o'}"], "are the same run"),
        ([*runs, str(copy), f"--out={tmp_path / 'o'}"], "hold the same checkpoint"),
        ([*runs, "--out="], "--out= is empty"),
        ([*runs, f"--out={tmp_path / 'a_file'}"], "is a file, not a folder"),
    ]:
        assert says in refused(["--runs", *argv], capsys)
    assert not (tmp_path / "o").exists()


def refused(argv: list[str], capsys) -> str:
    """Run study.py's main, expect exit 2 with one line on stderr, and return that line."""
    with pytest.raises(SystemExit) as exit_info:
        study_script.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


METRICS_LINE = 'metrics = ["val loss", "3:effective rank", "crystallization depth"]'
ARMS_LINE = 'arms = {"reflow": {}, "gpt2_new_svd": {"model": "gpt2-new", "posthoc": "svd"}}'
PRIMARY_LINE = 'primary = {"val loss": "differs"}'


@pytest.mark.parametrize("bad, instead, says", [
    (METRICS_LINE, 'metrics = ["9:x"]', "'N:metric name' with N one of the study's experiments"),
    ("seeds = [1, 2]", "seeds = [1]", "at least 2 distinct integers"),
    ('"posthoc": "svd"', '"posthoc": "pca"', "posthoc"),
    # issue 25, class 5: wrong types and unknown metrics, refused at load, before anything trains
    ("seeds = [1, 2]", "seeds = 3", "seeds must be a list of integers"),
    ("seeds = [1, 2]", "seeds = [1, True]", "seeds must be a list of integers"),
    ("seeds = [1, 2]", "seeds = [1, 2**70]", "seed must be at least 0 and below 2**63"),  # every seed checked
    ("seeds = [1, 2]", "seeds = [1.0, 2.0]", "seeds must be a list of integers"),
    (METRICS_LINE, 'metrics = ["val loss", 3]', "metrics must be a list of metric names"),
    (ARMS_LINE, 'arms = {1: {}, "gpt2_new_svd": {"model": "gpt2-new"}}', "arm name 1 must be a string"),
    (ARMS_LINE, 'arms = {"reflow": "gpt2"}', "arm 'reflow' must be a dict"),
    (f"experiments = [3]\n{METRICS_LINE}", 'experiments = [3, 5]\nmetrics = ["val loss", "5:MRRR"]',
     "experiment 5 reports no metric 'MRRR'; it reports MRR;"),
    ("experiments = [3]", "experiments = ['3']", "experiments must be a list of experiment numbers"),
    ('comparisons = [("reflow", "gpt2_new_svd")]', 'comparisons = [("reflow",)]', "comparisons must be"),
    ('comparisons = [("reflow", "gpt2_new_svd")]', "comparisons = []", "comparisons is empty"),
    ("experiments = [3]", "experiments = [3, 3]", "experiments lists one twice"),
    ("seeds = [1, 2]", "seeds = [1, 2]\nname = '../up'", "name '../up' may use only"),
    (ARMS_LINE, 'arms = {"reflow": {"max_iters": 0}, "gpt2_new_svd": {"model": "gpt2-new"}}',
     "needs at least 1"),
    # pre-registration: 1 to 5 primaries, each a metric, each with a direction
    (PRIMARY_LINE, "primary = {}", "primary must name 1 to 5"),
    (PRIMARY_LINE, 'primary = {"val loss": "better"}', "must be one of higher, lower, differs"),
    (PRIMARY_LINE, 'primary = {"1:top-pair cosine": "lower"}', "is not one of the metrics"),
    (PRIMARY_LINE, 'primary = {"val loss": {("reflow", "x"): "lower"}}', "a direction for each comparison"),
    # issue 25, class 10: arm values name folders, so they cannot climb out of runs_dir
    (ARMS_LINE, 'arms = {"reflow": {}, "gpt2_new_svd": {"wandb_project": "..\\\\b"}}', "may not hold '/'"),
    (ARMS_LINE, 'arms = {"reflow": {}, "gpt2_new_svd": {"wandb_project": ".."}}', "start with '..'"),
    (ARMS_LINE, 'arms = {"reflow": {}, "gpt2_new_svd": {"wandb_project": "x" * 300}}', "the limit is 255"),
])
def test_study_file_mistakes_are_one_line_before_anything_trains(tmp_path, capsys, bad, instead, says):
    study_file = write_workspace(tmp_path)
    text = study_file.read_text()
    assert bad in text
    study_file.write_text(text.replace(bad, instead))
    assert says in refused([str(study_file)], capsys)
    assert not (tmp_path / "runs").exists()


def test_output_folders_are_checked_before_anything_trains(tmp_path, capsys):
    """Issue 25, class 6: a results_dir that is a file or cannot be made, and an empty --results_dir=,
    are refused at load, not after every run trained."""
    study_file = write_workspace(tmp_path)
    (tmp_path / "a_file").write_text("keep me")
    for option, says in [
        (f"--results_dir={tmp_path / 'a_file'}", "is a file, not a folder"),
        (f"--results_dir={tmp_path / 'a_file' / 'below'}", "cannot be made"),
        (f"--runs_dir={tmp_path / 'a_file'}", "runs_dir"),
        ("--results_dir=", "--results_dir= is empty"),
    ]:
        assert says in refused([str(study_file), option], capsys)
    assert (tmp_path / "a_file").read_text() == "keep me"
    assert not (tmp_path / "runs").exists()


def test_runs_of_one_arm_differ_in_the_seed_and_nothing_else_that_training_reads(tmp_path):
    """The seed sets init (torch.manual_seed(seed) in train.load_model), data order (seed_for(seed, step))
    and dropout (seed_for(seed, 'dropout', step, rank)); the study changes only it, and where the
    run lives."""
    study = load_study(str(write_workspace(tmp_path)))
    for arm in study.arms:
        one, two = (study.run_config(arm, seed).to_dict() for seed in study.seeds)
        assert {k for k in one if one[k] != two[k]} == {"seed", "out_dir", "wandb_run_name"}


def test_the_shipped_studies_load_and_share_runs_between_posthoc_readings():
    for path in sorted((REPO / "studies").glob("[!_]*.py")):  # _*.py: settings the studies share
        study = load_study(str(path))
        assert len(study.seeds) == 6 and study.comparisons and 1 <= len(study.primary) <= 5
    native = load_study(str(REPO / "studies" / "native_vs_posthoc.py"))
    assert native.run_dir("gpt2_new_svd", 1) == native.run_dir("gpt2_new_dictionary", 1)
    assert native.run_dir("reflow", 1) != native.run_dir("gpt2_new_svd", 1)


def constructed_comparison() -> ComparisonInput:
    """Three arms of six seeds, without training: topk's val loss is higher than reflow's (the study
    expected lower), svd's as reflow's with more spread; svd is a full-rank SVD (a rotation baseline)."""
    rng = np.random.default_rng(0)
    block = rng.normal(0, 1, 6)  # what a seed does to every arm

    def arm(name, shift, sd=0.05):
        loss = 4.7 + shift + 0.1 * block + rng.normal(0, sd, 6)
        values = [{"val loss": loss[s - 1], "1:top-pair cosine": 0.7 + shift} for s in range(1, 7)]
        return [RunOutcome(Path(f"{name}_seed{s}"), s, v) for s, v in enumerate(values, start=1)]

    arms = {"reflow": arm("reflow", 0.0), "topk": arm("topk", 0.4), "svd": arm("svd", 0.0, sd=0.2)}
    pairs = [("reflow", "topk"), ("reflow", "svd")]
    primary = {"val loss": {("reflow", "topk"): "lower", ("reflow", "svd"): "differs"}}
    configs = {"svd": Config(model="gpt2-new", posthoc="svd", n_embd=64, n_signals=64),
               "reflow": Config(n_embd=64, n_signals=64)}
    baselines = rotation_baselines(configs, ["val loss", "1:top-pair cosine"])
    floors = Floors(6.0, 5.0, 4.9, [0.2, 0.8], [0.2, 0.5, 0.3])
    return ComparisonInput("constructed", arms, dict.fromkeys(arms, ""), ["val loss", "1:top-pair cosine"],
                           pairs, [], primary, floors, baselines)


def test_a_comparison_of_constructed_runs_records_its_design(tmp_path):
    """comparison.json from constructed outcomes: the pre-registered primaries, one Holm family over
    every comparison's primaries, exploratory cells without verdicts, floors with each arm's margin,
    and the SVD arm named as the raw embedding on a cosine metric."""
    data = constructed_comparison()
    arms = data.arms
    write_comparison(data, tmp_path)
    result = json.loads((tmp_path / "comparison.json").read_text())
    assert result["primary"] == {"val loss": {"reflow vs topk": "lower", "reflow vs svd": "differs"}}
    assert result["seeds"]["topk"] == [1, 2, 3, 4, 5, 6]
    (topk_loss, topk_cosine), (svd_loss, svd_cosine) = (c["results"] for c in result["comparisons"])
    assert topk_loss["verdict"] == "opposite direction detected" and topk_loss["test"] == "paired t"
    assert svd_loss["verdict"].startswith("no detectable difference (smallest detectable effect ")
    _, family, _, _ = multipletests([topk_loss["p"], svd_loss["p"]], method="holm")
    assert np.allclose([topk_loss["p_holm"], svd_loss["p_holm"]], family)  # one family over both pairs
    assert topk_cosine["role"] == "exploratory" and topk_cosine["verdict"] == "exploratory: no verdict"
    assert math.isclose(topk_cosine["difference"], 0.4) and topk_cosine["p_holm"] is None
    assert "svd is gpt2-new's own embedding" in svd_cosine["baseline"] and not svd_loss["baseline"]
    margins = result["floors"]["arms"]["topk"]["margins"]
    topk_mean = np.mean([r.values["val loss"] for r in arms["topk"]])
    assert math.isclose(margins["trigram"], 4.9 - topk_mean)
    assert math.isclose(margins["unigram"], 6.0 - topk_mean)
    assert "Primary metrics: one Holm family" in (tmp_path / "comparison.md").read_text()
    assert "opposite direction detected" in (tmp_path / "index.html").read_text()


def test_a_run_trained_in_another_language_is_the_same_run(tmp_path, monkeypatch):
    """lang sets only the language of messages: neither the study's check of a run's saved settings
    nor the grouping of runs into arms tells runs apart by it; a setting training reads still does."""
    study = load_study(str(write_workspace(tmp_path)))
    run_dir = study.run_dir("reflow", 1)
    run_dir.mkdir(parents=True)
    (run_dir / CHECKPOINT_NAME).touch()
    saved = {**study.run_config("reflow", 1).to_dict(), "lang": "zh"}
    monkeypatch.setattr(runs, "load_checkpoint", lambda folder: {"config": saved})
    check_same_training(study, "reflow", 1)  # not refused
    saved["n_layer"] += 1
    with pytest.raises(UserError, match="n_layer"):
        check_same_training(study, "reflow", 1)

    configs = {Path(f"{arm}_{seed}_{lang}"): Config(seed=seed, lang=lang, n_signals=signals)
               for arm, signals in (("a", 32), ("b", 64)) for seed, lang in ((1, "en"), (2, "zh"))}
    monkeypatch.setattr(compare, "run_config", configs.get)
    arms = group_runs(list(configs))
    assert {name: [d.name for d, _ in found] for name, found in arms.items()} == {
        "n_signals=32": ["a_1_en", "a_2_zh"], "n_signals=64": ["b_1_en", "b_2_zh"]}


def test_every_metric_an_experiment_can_report_is_known_to_the_study_loader():
    """studying/metric_names.py reads each experiment's metric names from its function and the
    functions of its module it calls. Every report.metric(...) in experiments/ must be reached that
    way, or a study naming a real metric would be refused at load."""
    import ast

    from experiments.registry import EXPERIMENTS
    from studying.metric_names import EXPERIMENTS_DIR, metric_patterns, module_constants, name_pattern

    modules = {e.code.rsplit(".", 1)[0] for e in EXPERIMENTS.values()}
    for path in sorted(EXPERIMENTS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [node for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and node.func.attr == "metric" and node.args]
        if not calls:
            continue
        assert path.stem in modules, f"{path.name} reports metrics outside any experiment's module"
        known = set().union(*(metric_patterns(n) or () for n, e in EXPERIMENTS.items()
                              if e.code.startswith(f"{path.stem}.")))
        open_names = any(metric_patterns(n) is None for n, e in EXPERIMENTS.items()
                         if e.code.startswith(f"{path.stem}."))
        for call in calls:
            pattern = name_pattern(call.args[0], module_constants(tree))
            assert open_names or pattern in known, (path.name, call.lineno)  # open: checked against reports


def test_shards_train_their_own_runs_and_the_last_to_finish_compares(tmp_path):
    """--shard=I/N (one process per GPU): each process trains and evaluates only its runs, dealt
    round-robin; the one that finds every run done writes the comparison."""
    study_file = write_workspace(tmp_path)
    study = load_study(str(study_file))
    names = list(dict.fromkeys(study.run_name(arm, seed) for arm, seed in study.runs()))
    command = [sys.executable, str(REPO / "study.py"), str(study_file)]

    def trained() -> set[str]:
        return {name for name in names if (Path(study.runs_dir) / name / CHECKPOINT_NAME).exists()}

    first = subprocess.run([*command, "--shard=1/2"], cwd=REPO, env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert trained() == set(names[0::2]) and len(names) == 4
    assert "other shards' runs are not done yet" in first.stdout
    assert not (tmp_path / "results").exists()
    second = subprocess.run([*command, "--shard=2/2"], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert trained() == set(names)
    assert "shard 2/2's 2 runs trained and evaluated" in second.stdout
    assert (tmp_path / "results" / "comparison.json").exists()


def test_a_shard_waits_for_a_teacher_another_shard_trains(monkeypatch, capsys):
    """The distillation study split over shards: a student waits for the seed-1 teacher, and a
    half-trained teacher checkpoint is not enough."""
    study = load_study(str(REPO / "studies" / "distillation.py"))
    teacher = ("teacher_8_layers", 1)
    assert runs.runs_read_by(study, "distilled", 3, runs.TRAINING_READS) == [teacher]
    assert runs.runs_read_by(study, "distilled_basis_recipes_frozen", 2, runs.TRAINING_READS) == [teacher]
    assert runs.runs_read_by(study, "scratch", 2, runs.TRAINING_READS) == []  # it trains alone
    assert runs.runs_read_by(study, "scratch", 2) == [teacher]  # its experiment 16 reads the teacher
    assert runs.runs_read_by(study, *teacher) == []
    looks = iter([None, 1200, 2400])  # no checkpoint yet, half-trained, trained
    monkeypatch.setattr(runs, "trained_steps", lambda run_dir: next(looks))
    monkeypatch.setattr(runs, "WAIT_SECONDS", 0)
    runs.wait_until_trained(study, [teacher])
    assert next(looks, "all read") == "all read"  # it looked until the teacher was trained
    assert capsys.readouterr().out == f"waiting for {study.run_name(*teacher)} (another shard trains it)\n"


@pytest.mark.parametrize("shard", ["3/2", "0/2", "2", "a/b", "1/0"])
def test_a_bad_shard_is_one_line_before_anything_trains(tmp_path, capsys, shard):
    study_file = write_workspace(tmp_path)
    with pytest.raises(SystemExit) as exit_status:
        study_script.main([str(study_file), f"--shard={shard}"])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--shard=2/4" in err
    assert not (tmp_path / "runs").exists()
