"""Choose experiments, check their inputs, run them, write the reports, the audit page and wandb logs.

Every input an experiment will read (its words, prompts, the validation text, wandb) is checked
before the first one runs, so a mistake costs one line and no report is overwritten.
"""

import time
import unicodedata
from pathlib import Path

from core.config import Config
from core.errors import UserError
from core.i18n import N_, _, use_cjk_font, use_language
from core.run_files import read_report
from core.wandb_login import first_line
from experiments.audit_page import write_audit_page
from experiments.common import prompt_ids, token_id
from experiments.context import RECIPE_SPACE_EXPERIMENTS, Context
from experiments.registry import EXPERIMENTS, GROUPS, Experiment
from experiments.report import Report
from experiments.teacher import teacher_run
from models import MODELS

# How each entry of a list-of-lists key is shaped: key -> (length, what the entries are).
SHAPES = {"analogies": (4, "[a, b, c, d] with a - b + c = d"),
          "target_prompts": (2, "[prompt, target word]"),
          "typo_sentences": (3, "[correct, misspelled, unrelated]")}
MINIMUM = {"word_groups": 2, "analogies": 1, "target_prompts": 1, "typo_sentences": 1, "steer_prompts": 1,
           # the sentiment lists are halved: one half defines a direction, the other measures it
           "positive_words": 2, "negative_words": 2, "concept_words": 1, "probe_words": 1}


def parse_selection(text: str) -> tuple[list[int], bool]:
    """'all', or numbers and ranges separated by spaces or commas ('1 3 5', '1-3,7'), as a list of
    experiment numbers, and whether they were named explicitly (not 'all')."""
    tokens = text.replace(",", " ").split()
    if not tokens:
        raise UserError(_("no experiment chosen; type all, or numbers like 1 3 5"))
    if [t.lower() for t in tokens] == ["all"]:
        return list(EXPERIMENTS), False
    numbers = []
    for token in tokens:
        low, dash, high = token.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise UserError(_("{token!r} is not an experiment number; type all, or numbers from 1 to "
                              "{last} like 1 3 5").format(token=token, last=max(EXPERIMENTS)))
        span = range(int(low), int(high) + 1) if dash else [int(low)]
        for n in span:
            if n not in EXPERIMENTS:
                raise UserError(_("unknown experiment {number}; the experiments are numbered 1 to "
                                  "{last} (or type all)").format(number=n, last=max(EXPERIMENTS)))
        if not span:
            raise UserError(_("{token!r} is an empty range; write it low-high, like 2-5").format(token=token))
        numbers.extend(span)
    return list(dict.fromkeys(numbers)), True


def check_runnable(numbers: list[int], model_name: str, explicit: bool, posthoc: str = "none",
                   teacher: str = "") -> None:
    """Asking by number for an experiment that needs recipes, on a model without them (and no
    post-hoc factorization), or for one that needs a teacher when none is named (`teacher`: the run
    experiments.teacher.teacher_run gives), is an error; under 'all' such experiments are skipped
    with their reason in the report instead."""
    if not explicit:
        return
    for n in numbers:
        e = EXPERIMENTS[n]
        if e.needs_teacher and not teacher:
            raise UserError(f"experiment {n} ({e.title}) needs a teacher: {e.needs_teacher}")
    if MODELS[model_name].has_recipes or posthoc != "none":
        return
    for n in numbers:
        e = EXPERIMENTS[n]
        if e.needs_recipes:
            others = " ".join(str(k) for k, x in EXPERIMENTS.items() if not x.needs_recipes)
            raise UserError(f"experiment {n} ({e.title}) needs recipes, but this is a {model_name} model: "
                            f"{e.needs_recipes}; run it on a reflow checkpoint, give --posthoc=svd or "
                            f"--posthoc=dictionary, or choose from {others}")


def menu() -> str:
    """The experiments, grouped, one line each, in the language of core.i18n."""
    lines = []
    for letter, name in GROUPS.items():
        lines.append(f"{letter}. {_(name)}")
        for e in EXPERIMENTS.values():
            if e.group == letter:
                note = "  " + _("[needs recipes]") if e.needs_recipes else ""
                lines.append(f"  {e.number:2d}  {padded(_(e.title), 24)} {_(e.summary)}{note}")
    return "\n".join(lines)


def padded(text: str, width: int) -> str:
    """text left-aligned in `width` terminal columns: a CJK character takes two."""
    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(width - columns, 0)


def entries(cfg: Config, key: str) -> list[tuple[str, object]]:
    """(where, entry) for each entry of a list or dict config key, with shapes checked."""
    value = getattr(cfg, key)
    if isinstance(value, dict):
        items = [(f"{key}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        items = [(key, value)]
    if len(items) < MINIMUM.get(key, 1):
        raise UserError(f"{key} needs at least {MINIMUM[key]} entries, it has {len(items)}")
    if key in SHAPES:
        length, shape = SHAPES[key]
        for where, item in items:
            if not (isinstance(item, (list, tuple)) and len(item) == length):
                raise UserError(f"{where} must be {shape}, got {item!r}")
    if key == "word_groups":
        for where, item in items:
            if not isinstance(item, list) or len(item) < 2:
                raise UserError(f"{where} must be a list of at least 2 words, got {item!r}")
    return items


def texts(where: str, item) -> list[tuple[str, object]]:
    return [(where, t) for t in item] if isinstance(item, (list, tuple)) else [(where, item)]


def check_inputs(ctx: Context, experiments: list[Experiment]) -> None:
    """Look up every word and prompt the experiments will use, and the validation text if needed."""
    for e in experiments:
        for key in e.word_keys:
            for where, item in entries(ctx.cfg, key):
                words = item[1:] if key == "target_prompts" else item  # targets only; prompts are text
                for where_, word in texts(where, words):
                    if not isinstance(word, str):
                        raise UserError(f"{where_} must be text, got {word!r}")
                    token_id(word, ctx.tokenizer, where_)
        for key in e.prompt_keys:
            for where, item in entries(ctx.cfg, key):
                prompts = item[:1] if key == "target_prompts" else item
                for where_, text in texts(where, prompts):
                    if not isinstance(text, str):
                        raise UserError(f"{where_} must be text, got {text!r}")
                    prompt_ids(text, ctx.model.config.block_size, ctx.tokenizer, where_)
        if e.needs_teacher:
            ctx.teacher  # noqa: B018  (loads and checks it: a teacher that cannot be compared is one line)
        if e.needs_text:
            if ctx.cfg.audit_tokens < 2 or ctx.cfg.audit_vocab < 2:
                raise UserError("audit_tokens and audit_vocab must be at least 2, got "
                                f"{ctx.cfg.audit_tokens} and {ctx.cfg.audit_vocab}")
            ctx.all_val_tokens  # noqa: B018  (raises the one-line error if the text is missing)
    if ctx.cfg.wandb_log:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("wandb_log=True needs wandb: pip install wandb (or set --wandb_log=False)")


def run_experiments(ctx: Context, numbers: list[int]) -> list[Path]:
    """Run the numbered experiments in order; each writes its report, then the audit page is rebuilt
    (also when an experiment fails or is interrupted, for the reports already written)."""
    if use_language(ctx.cfg.lang) == "zh":
        use_cjk_font()
    experiments = [EXPERIMENTS[n] for n in numbers]
    unable = {e.number: reason for e in experiments if (reason := reason_unable(ctx, e))}
    check_inputs(ctx, [e for e in experiments if e.number not in unable])
    written: list[Path] = []
    try:
        for e in experiments:
            report = Report(e.number, e.slug, _(e.title), f"{e.group}. {_(GROUPS[e.group])}",
                            folder=ctx.reports_dir, model=ctx.model_name, checkpoint=ctx.checkpoint,
                            iter_num=ctx.iter_num)
            start = time.perf_counter()
            if e.number in unable:
                report.skip(_("{title} does not run on {model}: {reason}.").format(
                    title=_(e.title), model=ctx.model_name, reason=_(unable[e.number])))
            else:
                e.run(context_for(ctx, e, report), report)
            written.append(report.write())
            reason = _(unable[e.number]) if e.number in unable else report.skipped
            outcome = _("skipped ({reason})").format(reason=reason) if report.skipped else report.verdict()
            print(f"{e.number:2d}. {_(e.title)} ({time.perf_counter() - start:.1f} s): {outcome}", flush=True)
    finally:
        page = write_audit_page(ctx.reports_dir)
        print(_("reports in {folder}; open {page}").format(folder=ctx.reports_dir, page=page))
    if ctx.cfg.wandb_log:
        log_to_wandb(ctx, written)
    return written


def reason_unable(ctx: Context, e: Experiment) -> str | None:
    """Why experiment e cannot run here (skipped under 'all'): no signals, or no teacher named."""
    if e.needs_recipes and not ctx.has_signals:
        return e.needs_recipes
    if e.needs_teacher and not teacher_run(ctx.cfg):
        return e.needs_teacher
    return None


def context_for(ctx: Context, e: Experiment, report: Report) -> Context:
    """The context experiment e sees: recipe experiments read the post-hoc factorization of a model
    without recipes (cfg.posthoc); the report says which factorization and reference were used."""
    if e.needs_recipes or e.number in RECIPE_SPACE_EXPERIMENTS:
        ctx = ctx.in_signal_space()
        if ctx.factorization is not None and ctx.factorization.method != "native":
            report.define(N_("factorization"), _(
                "recipes and signals of this {model} model: {description} Its random-init controls are "
                "factorized the same way.").format(model=ctx.model_name,
                                                   description=ctx.factorization.description))
    if ctx.reference is not None:
        r = ctx.reference
        how = _("; its recipes: {description}").format(description=r.factorization.description) \
            if r.factorization else ""
        report.define(N_("trained reference"), _("{model} from {checkpoint} (iter {iter_num})").format(
            model=r.model_name, checkpoint=r.checkpoint, iter_num=r.iter_num) + how)
    return ctx


def log_to_wandb(ctx: Context, json_paths: list[Path]) -> None:
    """Log each report's metrics (and controls) and figures to the checkpoint's wandb run when it
    recorded one, else to a new run; works with WANDB_MODE=offline."""

    import wandb

    cfg = ctx.cfg
    number = lambda v: float(v) if isinstance(v, (int, float)) else None  # bools too: one column type
    try:
        run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, id=ctx.wandb_run_id,
                         resume="allow", dir=str(ctx.reports_dir.parent), config=cfg.to_dict(),
                         job_type="audit")
    except Exception as error:  # login was checked at start; this is the server or the network
        raise UserError(f"wandb could not start a run ({first_line(error)}); the reports are written in "
                        f"{ctx.reports_dir}")
    table = wandb.Table(columns=["experiment", "metric", "value", "control", "control_name", "beats_control"])
    for path in json_paths:
        report = read_report(path)
        stem = path.stem
        data = {}
        for m in report["metrics"]:
            value, control = number(m["value"]), number(m["control"])
            if value is not None:
                data[f"audit/{stem}/{m['name']}"] = value
            if control is not None:
                data[f"audit/{stem}/{m['name']} [control: {m['control_name']}]"] = control
            table.add_data(stem, m["name"], value, control, m["control_name"] or "", str(m["beats_control"]))
        for figure in report["figures"]:
            data[f"audit/{Path(figure).stem}"] = wandb.Image(str(ctx.reports_dir / figure))
        if data:
            run.log(data)
    run.log({"audit/metrics": table})
    run.finish()
