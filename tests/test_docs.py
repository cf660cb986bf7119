"""Every command README.md and docs/*.md show names a script that exists, config and study files that
exist, and flags the script takes, read by the script's own argument handling (nothing runs); every
link to a page of ours, and to a heading in it, resolves; the README stays a front page."""

import argparse
import importlib
import importlib.util
import re
import shlex
import typing
from pathlib import Path
from unittest import mock

import pytest

import bench
import check
import experiment
import explore
from core.config import REPO_ROOT, Config, check_key, check_type, parse_args, parse_value
from core.errors import UserError
from studying.compare import check_language, compare_runs_main
from studying.spec import load_study

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
# The line CI runs (.ci/run runs its parts): the README must show it exactly.
TEST_COMMAND = 'pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest'
COMMAND_START = re.compile(r"^(?:python3? |torchrun )")


def code_block_lines(text: str) -> list[str]:
    """The lines inside ``` fences, with backslash continuations joined."""
    lines, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def inline_commands(text: str) -> list[str]:
    """`python ...` and `torchrun ...` spans outside code blocks (tables, prose); usage synopses with
    [optional] parts are not commands."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return [s for s in spans if COMMAND_START.match(s) and "[" not in s]


def commands_in(page: Path) -> list[str]:
    text = page.read_text()
    found = [line.strip() for line in code_block_lines(text) if COMMAND_START.match(line.strip())]
    return found + inline_commands(text)


def split_command(command: str) -> tuple[str, list[str]]:
    """(the script, as a repo path or `-m module`, and its arguments), comments dropped."""
    words = shlex.split(command, comments=True)
    if words[0] == "torchrun":
        at = next(i for i, w in enumerate(words) if w.endswith(".py"))
        return words[at], words[at + 1:]
    if words[1] == "-m":
        return f"-m {words[2]}", words[3:]
    return words[1], words[2:]


def check_overrides(overrides: dict[str, str]) -> None:
    """Config keys exist, and their values have the key's type."""
    hints = typing.get_type_hints(Config)
    for key, raw in overrides.items():
        check_key(key, hints, source="the command line")
        check_type(key, parse_value(raw), hints[key], "the command line")


def config_script(argv: list[str]) -> list[str]:
    """train.py, sample.py: CONFIG, then config keys (core.config.parse_args)."""
    config_file, overrides = parse_args(argv)
    check_overrides(overrides)
    return [config_file] if config_file else []


def check_script(argv: list[str]) -> list[str]:
    if "--keys" in argv:
        return []
    _, rest = check.memory_options(argv)
    files = [a for a in rest if not a.startswith("-")]
    check_overrides(parse_args([a for a in rest if a.startswith("-")])[1])
    return files


def bench_script(argv: list[str]) -> list[str]:
    return bench.parse_command_line(argv)[0]


def experiment_script(argv: list[str]) -> list[str]:
    if argv[:1] == ["--compare"]:
        return compare_arguments(argv[1:])
    rest, _, _ = experiment.split_args(argv)
    config_file, overrides = parse_args(rest)
    overrides.pop("reference", None)
    check_overrides(overrides)
    return [config_file] if config_file else []


def compare_arguments(argv: list[str]) -> list[str]:
    """The compare command's own check of its flags, stopped before it reads any run."""
    with mock.patch("studying.compare.compare_runs", side_effect=StopBeforeRunning):
        try:
            compare_runs_main(argv)
        except StopBeforeRunning:
            pass
    return []


def study_script(argv: list[str]) -> list[str]:
    if argv[:1] == ["--runs"]:
        return compare_arguments(argv[1:])
    study_file, overrides = parse_args(argv)
    check_language(overrides.pop("lang", "auto"))  # study.py's own option, beside the study's
    load_study(study_file, overrides)  # reads the study file and its keys; trains nothing
    return [study_file]


def explore_script(argv: list[str]) -> list[str]:
    _, rest = explore.split_args(argv)
    config_file, overrides = parse_args(rest)
    check_overrides(overrides)
    return [config_file] if config_file else []


class StopBeforeRunning(Exception):
    """Raised where a script would start its work, once its arguments are parsed."""


def argparse_script(module_name: str, path: Path | None = None):
    """A script that parses with argparse inside its main: run main until parse_args returns."""
    def parse(argv: list[str]) -> list[str]:
        if path is not None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        original = argparse.ArgumentParser.parse_args

        def parse_then_stop(parser, args=None, namespace=None):
            original(parser, args, namespace)
            raise StopBeforeRunning

        with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop):
            try:
                module.main(argv)
            except StopBeforeRunning:
                pass
        return []
    return parse


def openwebtext_prepare(argv: list[str]) -> list[str]:
    path = REPO_ROOT / "data/openwebtext/prepare.py"
    spec = importlib.util.spec_from_file_location("openwebtext_prepare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with mock.patch.object(module, "load_openwebtext", side_effect=StopBeforeRunning):
        try:
            module.main(argv)
        except StopBeforeRunning:
            pass
    return []


def no_arguments(argv: list[str]) -> list[str]:
    assert argv == [], f"takes no arguments, shown with {argv}"
    return []


# How each entry script reads its command line.
SCRIPTS = {
    "train.py": config_script,
    "sample.py": config_script,
    "check.py": check_script,
    "bench.py": bench_script,
    "experiment.py": experiment_script,
    "study.py": study_script,
    "explore.py": explore_script,
    "export_hf.py": argparse_script("export_hf"),
    "export_tl.py": argparse_script("export_tl"),
    "data/openwebtext/prepare.py": openwebtext_prepare,
    "data/sft-lima/prepare.py": argparse_script("sft_lima_prepare", REPO_ROOT / "data/sft-lima/prepare.py"),
    "data/shakespeare/prepare.py": no_arguments,
    "-m explorer.screenshots": argparse_script("explorer.screenshots"),
    "-m pytest": lambda argv: [],
}

SHOWN = [(page, command) for page in PAGES for command in commands_in(page)]


def test_the_pages_show_commands():
    assert len(SHOWN) > 50 and {p.name for p, _ in SHOWN} >= {"README.md", "training.md", "suite.md"}


@pytest.mark.parametrize("page, command", SHOWN, ids=[f"{p.name}:{c[:60]}" for p, c in SHOWN])
def test_shown_command_names_a_script_its_files_and_its_flags(page, command):
    script, argv = split_command(command)
    assert script in SCRIPTS, f"{page.name}: {command!r} runs {script}, which no entry in SCRIPTS reads"
    if not script.startswith("-m"):
        assert (REPO_ROOT / script).is_file(), f"{page.name}: {script} does not exist"
    try:
        files = SCRIPTS[script](argv)
    except SystemExit as exit:  # --help prints and exits 0; argparse refuses with 2
        assert exit.code == 0 and "--help" in argv, f"{page.name}: {command!r} is refused"
        return
    except UserError as error:
        pytest.fail(f"{page.name}: {command!r} is refused: {error}")
    for file in files:  # configs and study files of ours; other paths are the user's (runs, prompts)
        if file.endswith(".py"):  # config/train_shakespeare_<model>.py stands for several: one must exist
            matches = list(REPO_ROOT.glob(re.sub(r"<[^>]+>", "*", file)))
            assert matches, f"{page.name}: {command!r} names {file}: no such file"


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL),
                          re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name} links to {target}, which does not exist"
            if anchor:
                assert anchor in anchors(linked), f"{page.name} links to {target}: no such heading"


def test_readme_is_a_front_page_with_the_ci_command():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert TEST_COMMAND in code_block_lines(text)
    for part in ("install --quiet torch==2.13.0", 'install --quiet -e ".[dev]"', "python -m pytest"):
        assert part in (REPO_ROOT / ".ci/run").read_text()
