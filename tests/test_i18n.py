"""Languages (core/i18n.py, locales/): every message has its Chinese translation, the suite writes
Chinese reports whose figures draw Chinese with a CJK font, and the menu speaks Chinese."""

import ast
import copy
import json
import re
import warnings
from pathlib import Path

import matplotlib
import pytest
from babel.messages.extract import extract_from_dir, extract_from_file
from experiment_workspace import REPO, make_run
from matplotlib import font_manager
from matplotlib.text import Text

import experiment
import study as study_script
from core import i18n
from core.config import load_config
from core.errors import UserError, exit_on_user_error
from core.i18n import N_
from experiments.registry import EXPERIMENTS
from experiments.report import Report

# Where the messages live: docs/i18n.md extracts them from the same places.
SOURCES = ["experiment.py", "study.py", "core", "experiments", "studying", "explorer"]
FIELD = re.compile(r"\{(\w+)(?:[:!][^{}]*)?\}")
CJK = re.compile(r"[\u4e00-\u9fff]")


def source_messages() -> set[tuple[str, str | None]]:
    """(message id, context) of every message marked with _, N_ or pgettext in SOURCES, as pybabel
    extract finds them."""
    found = set()
    for source in SOURCES:
        path = REPO / source
        if path.is_dir():
            messages = extract_from_dir(str(path))
        else:
            messages = ((path.name, *m) for m in extract_from_file("python", str(path)))
        found |= {(m[2], m[4]) for m in messages if isinstance(m[2], str)}
    return found


@pytest.fixture
def chinese():
    """Chinese for one test; English and matplotlib's fonts again afterwards, for the tests that follow."""
    keys = ("font.family", "font.sans-serif", "axes.unicode_minus")
    fonts = {key: matplotlib.rcParams[key] for key in keys}
    yield
    i18n.use_language("en")
    matplotlib.rcParams.update(fonts)


def test_no_message_hides_inside_an_f_string():
    """pybabel extract reads no further into an f-string than the quote: _("...") there is never
    extracted, and _(f"...") is formatted before the lookup: neither would ever be translated."""
    for source in SOURCES:
        path = REPO / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            tree = ast.parse(file.read_text(encoding="utf-8"))
            hidden = [node.lineno for f_string in ast.walk(tree) if isinstance(f_string, ast.JoinedStr)
                      for node in ast.walk(f_string) if isinstance(node, ast.Call)
                      and getattr(node.func, "id", None) in ("_", "N_")
                      and any(isinstance(arg, ast.Constant) for arg in node.args)]
            hidden += [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)  # _(f"...")
                       and getattr(node.func, "id", None) in ("_", "N_")
                       and any(isinstance(arg, ast.JoinedStr) for arg in node.args)]
            assert not hidden, f"{file.relative_to(REPO)}:{hidden[0]}: _('...') in an f-string; move it out"


def test_every_message_has_a_chinese_translation_with_the_same_fields():
    translated = {(m.id, m.context): m for m in i18n.messages("zh") if m.id}
    wanted = source_messages()
    assert len(wanted) > 400  # the menu, the frame of a report, the 14 experiments, the audit page
    missing = sorted(m for m in wanted if m not in translated or not translated[m].string)
    assert not missing, f"no Chinese for {len(missing)} messages, e.g. {missing[:3]} (see docs/i18n.md)"
    fuzzy = sorted(m for m in wanted if translated[m].fuzzy)
    assert not fuzzy, f"fuzzy (unchecked) translations: {fuzzy[:3]}"
    stale = sorted(set(translated) - wanted, key=str)
    assert not stale, f"the catalog has messages no source uses: {stale[:3]}"
    for key in wanted:
        assert set(FIELD.findall(key[0])) == set(FIELD.findall(translated[key].string)), key


def test_language_follows_the_locale_unless_given():
    assert i18n.language_from_locale({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert i18n.language_from_locale({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}) == "zh"
    assert i18n.language_from_locale({"LC_ALL": "C.UTF-8", "LANG": "zh_CN.UTF-8"}) == "en"  # LC_ALL wins
    assert i18n.language_from_locale({"LC_MESSAGES": "zh_CN", "LANG": "de_DE"}) == "zh"
    assert i18n.language_from_locale({}) == "en"
    assert load_config(None, {"lang": "zh"}).lang == "zh"
    with pytest.raises(UserError, match="lang must be 'auto', 'en' or 'zh', got 'fr'"):
        load_config(None, {"lang": "fr"})


def test_stored_english_is_shown_translated_also_when_filled_from_a_template():
    assert i18n.translate("random-init models", "zh") == "随机初始化模型"
    assert i18n.translate("shuffled labels (200)", "zh") == "打乱的标签（200）"
    # A template whose field is itself a filled template ("{control} (mean of {count}, sd {sd})").
    assert i18n.translate("basis null (100 rotated signal bases) (mean of 100, sd 0.004)", "zh") == \
        "信号基零假设（100 个旋转的信号基）（100 次的均值，标准差 0.004）"
    assert i18n.translate("log-prob drop, the top 10 signals", "zh") == "对数概率下降，最强的 10 个信号"
    # "shuffled labels ({count})" also matches these two, with count = "200) (mean of 200, sd 0.2" and
    # "mean of 200, sd 0.07": a field never holds half a bracket, and each is translated whole or not at all.
    assert i18n.translate("shuffled labels (200) (mean of 200, sd 0.2)", "zh") == \
        "打乱的标签（200）（200 次的均值，标准差 0.2）"
    assert i18n.translate("shuffled labels (mean of 200, sd 0.07)", "zh") == \
        "打乱的标签（200 次的均值，标准差 0.07）"
    assert i18n.translate("a name no catalog knows", "zh") == "a name no catalog knows"
    assert i18n.translate("beats a control no catalog knows", "zh") == "beats a control no catalog knows"
    assert i18n.translate("shuffled labels (200)", "en") == "shuffled labels (200)"
    assert i18n.translator("zh")("Recipe Atlas") == "配方图谱"
    # A field used twice in one template matches the same text both times.
    assert i18n.translate("alpha must be a finite number from -5 to 5", "zh") == \
        "alpha 须为 -5 到 5 之间的有限数"
    assert i18n.translate("alpha must be a finite number from -5 to 6", "zh") == \
        "alpha must be a finite number from -5 to 6"


def test_a_user_error_is_shown_in_the_readers_language_with_what_was_typed_kept():
    """The template is translated and filled; a label field ("seed") is translated, what the user
    typed is kept even when it is a catalog word; English, and an error no catalog knows, read as str()."""
    typed = UserError(N_("{what}: {value} is not a number; give a whole number from {low} to {high}"),
                      what=N_("seed"), value=repr("seed"), low=0, high=9)
    assert str(typed) == "seed: 'seed' is not a number; give a whole number from 0 to 9"
    assert i18n.error_line(typed, "zh") == "随机种子：'seed' 不是数字；请给出 0 到 9 之间的整数"
    assert i18n.error_line(typed, "en") == str(typed)
    unknown = UserError("{what}: nothing any catalog knows", what=N_("seed"))
    assert i18n.error_line(unknown, "zh") == "seed: nothing any catalog knows"
    plain = UserError("a line made without a template, {braces} and all")
    assert str(plain) == i18n.error_line(plain, "zh") == "a line made without a template, {braces} and all"
    assert i18n.error_line(ValueError("not a user error"), "zh") == "not a user error"


def test_a_script_in_chinese_prints_its_error_line_in_chinese(capsys, chinese):
    @exit_on_user_error
    def main():
        raise UserError(N_("the prompt is empty; type some text"))

    i18n.use_language("zh")
    with pytest.raises(SystemExit) as exit_status:
        main()
    assert exit_status.value.code == 2
    assert capsys.readouterr().err == "error: 提示为空；请输入一些文字\n"


def cjk_font_on_disk() -> bool:
    """Whether a CJK font file is installed, whether or not matplotlib's cached font list knows it."""
    return any(mark in Path(path).name.lower()
               for path in font_manager.findSystemFonts() for mark in i18n.CJK_FONT_FILE_MARKS)


def test_a_cjk_font_installed_after_matplotlib_cached_its_font_list_is_used(monkeypatch, chinese):
    """matplotlib lists the system's fonts once and caches the list: a CJK font installed later
    (CI's machine had drawn a figure before apt-get install fonts-noto-cjk) is on disk, not in it."""
    if not cjk_font_on_disk():
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk)")
    stale = copy.copy(font_manager.fontManager)
    stale.ttflist = [font for font in font_manager.fontManager.ttflist if "CJK" not in font.name]
    monkeypatch.setattr(font_manager, "fontManager", stale)
    font = i18n.use_cjk_font()
    assert font in i18n.CJK_FONTS and matplotlib.rcParams["font.sans-serif"][0] == font


def test_no_cjk_font_means_a_one_line_note(monkeypatch, capsys, chinese):
    monkeypatch.setattr(i18n, "CJK_FONTS", ("No Such Font SC",))
    assert i18n.use_cjk_font() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fonts-noto-cjk" in err


def test_suite_in_chinese_writes_chinese_reports_and_figures_without_missing_glyphs(
        tmp_path, monkeypatch, capsys, chinese):
    # .ci/run installs fonts-noto-cjk; without a CJK font the suite still runs and says so once.
    has_cjk_font = cjk_font_on_disk()
    config_file, cfg = make_run(tmp_path, "reflow")
    _, teacher = make_run(tmp_path / "teacher", "reflow", seed=1)  # experiment 16's
    fonts_used, cjk_texts = set(), []
    save = Report.figure

    def figure(report, fig, name):  # the font matplotlib picks for every Chinese text of every figure
        for text in fig.findobj(Text):
            if CJK.search(text.get_text()):
                cjk_texts.append(text.get_text())
                font = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
                fonts_used.add(Path(font))
        save(report, fig, name)

    monkeypatch.setattr(Report, "figure", figure)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        experiment.main([str(config_file), "--run", "all", "--lang=zh", f"--teacher_run={teacher.out_dir}"])
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    out, err = capsys.readouterr()
    assert len(cjk_texts) > 50
    if has_cjk_font:
        assert not missing, missing[:3]
        assert all("CJK" in font.name for font in fonts_used), fonts_used
    else:
        assert "no CJK font is installed" in err

    reports = Path(cfg.out_dir) / "audit_reports"
    catalog = {m.id for m in i18n.messages("zh") if m.id}
    assert "配方图谱" in out and "报告位于" in out
    for e in EXPERIMENTS.values():
        markdown = (reports / f"{e.number:02d}_{e.slug}.md").read_text(encoding="utf-8")
        assert markdown.startswith(f"# {e.number}. {i18n.translator('zh')(e.title)}\n")
        assert "**结论：**" in markdown and "## 定义" in markdown and "## 指标" in markdown
        data = json.loads((reports / f"{e.number:02d}_{e.slug}.json").read_text(encoding="utf-8"))
        # What studies and scripts read stays English: metric and control names, definition keys.
        assert all(not CJK.search(m["name"] + (m["control_name"] or "")) for m in data["metrics"])
        assert all(not CJK.search(key) for key in data["definitions"])
        assert all(CJK.search(text) for text in data["definitions"].values())
        for m in data["metrics"]:  # each shown in Chinese: a catalog message, or filled from one
            for text in filter(None, (m["name"], m["control_name"], m["verdict"])):
                shown = i18n.translate(text, "zh")
                assert (shown != text or text in catalog) and shown in markdown, text
                assert not re.search(r"\b(of|at|from|the|mean|draws)\b", shown), shown  # no English left
    page = (reports / "index.html").read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in page and "reFlow 可解释性审计" in page and "随机初始化模型" in page
    assert "Definitions" not in page and "full report" not in page


def test_menu_speaks_chinese(tmp_path, monkeypatch, capsys, chinese):
    config_file, cfg = make_run(tmp_path, "reflow")
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or "3")
    experiment.main([str(config_file), "--lang=zh"])
    out = capsys.readouterr().out
    assert "A. 信号身份" in out and "E. 来自相关工作" in out and "[需要配方]" in out
    assert " 1  配方图谱" in out and "运行哪些实验" in prompts[0]
    report = (Path(cfg.out_dir) / "audit_reports" / "03_basis_geometry.md").read_text(encoding="utf-8")
    assert report.startswith("# 3. 信号基几何")
    monkeypatch.setattr("builtins.input", lambda prompt="": "seven")
    with pytest.raises(SystemExit) as exit_status:
        experiment.main([str(config_file), "--lang=zh"])
    assert exit_status.value.code == 2
    assert "'seven' 不是实验编号" in capsys.readouterr().err


def test_a_study_comparison_in_chinese_keeps_its_json_identifiers_english(tmp_path, monkeypatch, chinese):
    """study.py --lang=zh: comparison.md, index.html and the figures speak Chinese, the verdicts in the
    catalog's words; comparison.json keeps the English names tools read (metrics, roles, tests, verdicts)."""
    from test_study import constructed_comparison

    from studying import comparison
    from studying.compare import speak

    has_cjk_font = cjk_font_on_disk()
    fonts_used, cjk_texts = set(), []
    save = comparison.save_figure

    def save_figure(fig, path):  # the font matplotlib picks for every Chinese text of every figure
        for text in fig.findobj(Text):
            if CJK.search(text.get_text()):
                cjk_texts.append(text.get_text())
                font = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
                fonts_used.add(Path(font))
        save(fig, path)

    monkeypatch.setattr(comparison, "save_figure", save_figure)
    speak("zh")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comparison.write_comparison(constructed_comparison(), tmp_path)
    if has_cjk_font:
        assert not [w for w in caught if "missing from font" in str(w.message)]
        assert fonts_used and all("CJK" in font.name for font in fonts_used), fonts_used
    assert "验证损失" in cjk_texts[0] and "随机初始化（x）" in cjk_texts[0]
    assert "每次运行的验证损失" in cjk_texts and len(cjk_texts) >= 3

    result = json.loads((tmp_path / "comparison.json").read_text(encoding="utf-8"))
    (topk_loss, topk_cosine), (svd_loss, _cosine) = (c["results"] for c in result["comparisons"])
    assert topk_loss["verdict"] == "opposite direction detected" and topk_loss["test"] == "paired t"
    assert svd_loss["verdict"].startswith("no detectable difference (smallest detectable effect ")
    assert topk_cosine["role"] == "exploratory" and topk_cosine["verdict"] == "exploratory: no verdict"
    assert [m["name"] for m in result["metrics"]] == ["val loss", "1:top-pair cosine"]
    assert result["primary"] == {"val loss": {"reflow vs topk": "lower", "reflow vs svd": "differs"}}
    assert set(result["floors"]["floors"]) == {"unigram", "bigram", "trigram"}
    effect = svd_loss["verdict"].removeprefix("no detectable difference (smallest detectable effect ")[:-1]

    markdown = (tmp_path / "comparison.md").read_text(encoding="utf-8")
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    for shown in (markdown, page):
        assert "检测到相反方向" in shown and f"无可检测差异（最小可检测效应 {effect}）" in shown
        assert "主要指标：一个 Holm 校正族" in shown and "探索性：reflow 对 topk（未校正，不下结论）" in shown
        assert "配对 t 检验，n = 6 个种子" in shown and "1:最相似词对余弦" in shown
        assert "一元模型下限" in shown and "三元模型下限" in shown and "“成立”" in shown
        assert "opposite direction" not in shown and "Holm family" not in shown and "paired t" not in shown
    assert markdown.startswith("# constructed\n") and "| 验证损失 | 主要指标 |" in markdown
    assert "svd 就是 gpt2-new 自身的嵌入" in markdown
    assert '<html lang="zh-CN">' in page and "<h2>实验组</h2>" in page
    # Verdicts filled from nested templates, as a fragile or untestable cell shows them.
    assert i18n.translate("not testable at this scale (1 seed with a value in both arms; needs 2)") == \
        "在此规模下无法检验（两组都有值的种子只有 1 个；至少需要 2 个）"
    assert i18n.translate("without seed 3: no detectable difference (smallest detectable effect 0.12)") == \
        "去掉种子 3：无可检测差异（最小可检测效应 0.12）"


def test_study_and_compare_take_lang_and_refuse_another(capsys, chinese):
    with pytest.raises(SystemExit) as exit_status:
        study_script.main(["--runs", "a", "b", "--lang=fr"])
    assert exit_status.value.code == 2
    assert "--lang must be 'auto', 'en' or 'zh', got 'fr'" in capsys.readouterr().err
