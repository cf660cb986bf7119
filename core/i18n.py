"""Languages: English and Chinese, from one gettext message catalog.

English is the source language: a message id is its English text, so English needs no catalog.
Chinese lives in locales/zh/LC_MESSAGES/reflow.po, compiled with Babel when first used (no .mo file
to keep in step). A module marks its text with `_`:

    from core.i18n import _
    print(_("Run which experiments?"))
    report.define(name, _("mean cosine of the {count} most similar pairs").format(count=20))

Placeholders are named `{...}` fields filled by str.format after translation, never f-strings
(an f-string is formatted before it reaches the catalog, so it would never be found there).
Text that is also an identifier (a metric's name, a control's name, an experiment's title: studies and
scripts read them from the JSON reports) stays English where it is stored and is marked with `N_`;
`translate(text)` shows it in the reader's language, also when it was filled from a template
(`N_("shuffled labels ({count})").format(count=200)` reads back as "打乱标签 (200)").
`use_language(cfg.lang)` sets the language of this process once a script has its config;
`translator(lang)` gives the `_` of one language, for code that serves several (a web page).
`error_line(error, lang)` is a UserError made from a template (core/errors.py) in a reader's language.
docs/i18n.md says how to add a message or a language.
"""

import functools
import gettext
import io
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

LANGUAGES = ("en", "zh")
LANGUAGE_CHOICES = ("auto", *LANGUAGES)  # the config key: auto = from the locale (LC_ALL, LANG)
LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "reflow"
# The first one installed draws Chinese figure text (Debian's fonts-noto-cjk, then common others).
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC",
             "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC", "SimHei")
CJK_FONT_FILE_MARKS = ("cjk", "sourcehan", "wqy", "msyh", "pingfang", "simhei")  # their files' names

_language = "en"


def language_from_locale(environ=os.environ) -> str:
    """'zh' when the locale that sets messages (LC_ALL, then LC_MESSAGES, then LANG: the POSIX order)
    is Chinese, else 'en'."""
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(variable)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def resolve(lang: str) -> str:
    """A config's lang ('auto', 'en' or 'zh') as a language of LANGUAGES."""
    return language_from_locale() if lang == "auto" else lang


def catalog_path(lang: str) -> Path:
    return LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def messages(lang: str):
    """The catalog of a language as Babel reads it from its .po file (a babel Catalog)."""
    from babel.messages.pofile import read_po  # here: English never needs Babel

    with open(catalog_path(lang), "rb") as f:
        return read_po(f, domain=DOMAIN)  # no locale: loading its CLDR data would cost ~0.5 s


@functools.cache
def catalog(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of a language; English, the source language, translates to itself."""
    if lang == "en":
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo

    compiled = io.BytesIO()
    write_mo(compiled, messages(lang))  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def translator(lang: str) -> Callable[[str], str]:
    """The `_` of one language ('auto' reads the locale)."""
    return catalog(resolve(lang)).gettext


def use_language(lang: str) -> str:
    """Make `lang` ('auto', 'en' or 'zh') the language of this process's messages; returns it resolved."""
    global _language
    _language = resolve(lang)
    return _language


def current_language() -> str:
    return _language


def _(message: str) -> str:
    """The message in this process's language (see use_language)."""
    return catalog(_language).gettext(message)


def pgettext(context: str, message: str) -> str:
    """_ for an English word that means two things ("group": of words, of experiments): the context
    tells the catalog which one."""
    return catalog(_language).pgettext(context, message)


def N_(message: str) -> str:
    """Mark English text for the catalog without translating it (it is stored; translate() shows it)."""
    return message


@functools.cache
def message_ids(lang: str) -> frozenset[str]:
    return frozenset(m.id for m in messages(lang) if isinstance(m.id, str) and m.string and not m.fuzzy)


FIELD = re.compile(r"\{(\w+)(?:[:!][^{}]*)?\}")


@functools.cache
def templates(lang: str) -> list[tuple[re.Pattern, str]]:
    """(pattern of the filled English text, translation) for every catalog message with {fields},
    the most literal text first."""
    found = []
    for message in messages(lang):
        if not isinstance(message.id, str) or not message.string or message.fuzzy:
            continue
        literal = FIELD.sub("", message.id)
        if literal == message.id or not literal.strip():
            continue  # no field, or nothing but fields: it would match any text
        pattern, end, seen = "", 0, set()
        for field in FIELD.finditer(message.id):
            name = field.group(1)  # a field used twice ("-{limit} to {limit}") matches the same text
            group = f"(?P={name})" if name in seen else f"(?P<{name}>.+?)"
            pattern += re.escape(message.id[end:field.start()]) + group
            end, seen = field.end(), seen | {name}
        pattern += re.escape(message.id[end:])
        found.append((len(literal), re.compile(pattern, re.DOTALL), FIELD.sub(r"{\1}", message.string)))
    return [(pattern, translation) for _, pattern, translation in sorted(found, key=lambda t: -t[0])]


def balanced(text: str) -> bool:
    """Whether every bracket in text closes, in order: a field holds a whole phrase, never half of one."""
    depth = 0
    for character in text:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(character, 0)
        if depth < 0:
            return False
    return depth == 0


def known(text: str, lang: str) -> str | None:
    """text translated whole, or None: a catalog message, a number or a symbol (no word), or a
    template whose every field is known in turn ("{control} (mean of {count}, sd {sd})" with control
    "shuffled labels"). Half-known text is None, so a reader never sees half a sentence translated."""
    if text in message_ids(lang):
        return catalog(lang).gettext(text)
    if not re.search(r"[A-Za-z]{2}", text):  # no word: a number (1.98e-05), a layer (L3), symbols
        return text
    for pattern, translation in templates(lang):  # a few hundred patterns: microseconds each
        match = pattern.fullmatch(text)
        if match and all(balanced(value) for value in match.groupdict().values()):
            fields = {name: known(value, lang) for name, value in match.groupdict().items()}
            if None not in fields.values():
                return translation.format(**fields)
    return None


def translate(text: str, lang: str | None = None) -> str:
    """English text made earlier (maybe from a template: see N_) in the reader's language; text the
    catalog does not know whole is returned as it is."""
    lang = lang or _language
    if lang == "en" or not text:
        return text
    return known(text, lang) or text


def error_line(error: BaseException, lang: str | None = None) -> str:
    """A UserError's line in the reader's language: its template translated, then filled with its
    fields, each field that is catalog text (a label like "word A") translated too and what the user
    typed left as it is. An error the catalog does not know is its English line."""
    lang = resolve(lang) if lang else _language
    template = getattr(error, "template", None)
    if lang == "en" or template is None or template not in message_ids(lang):
        return str(error)
    fields = {name: translate(value, lang) if isinstance(value, str) else value
              for name, value in error.fields.items()}
    return catalog(lang).gettext(template).format(**fields)


def installed_cjk_font(manager) -> str | None:
    """The first of CJK_FONTS that matplotlib's font manager knows, or None."""
    names = {font.name for font in manager.ttflist}
    return next((name for name in CJK_FONTS if name in names), None)


def register_cjk_font_files(font_manager) -> None:
    """Add the CJK font files on disk to matplotlib's font manager. Its font list is cached at the
    first import and not rescanned, so a font installed after that (apt-get install fonts-noto-cjk on
    a machine that had already drawn a figure) is on disk but unknown to it."""
    for path in font_manager.findSystemFonts():
        if any(mark in Path(path).name.lower() for mark in CJK_FONT_FILE_MARKS):
            font_manager.fontManager.addfont(path)


def use_cjk_font() -> str | None:
    """Put the first installed CJK font first in matplotlib's sans-serif list and return its name, so
    figure labels in Chinese draw as characters, not boxes; with none installed, say so in one line
    (Debian: apt-get install fonts-noto-cjk) and return None."""
    import matplotlib
    from matplotlib import font_manager

    font = installed_cjk_font(font_manager.fontManager)
    if font is None:
        register_cjk_font_files(font_manager)
        font = installed_cjk_font(font_manager.fontManager)
    if font is None:
        print("note: no CJK font is installed, so Chinese figure labels may show as boxes; "
              "install one (Debian: apt-get install fonts-noto-cjk)", file=sys.stderr)
        return None
    sans = matplotlib.rcParams["font.sans-serif"]
    matplotlib.rcParams["font.sans-serif"] = [font, *[name for name in sans if name != font]]
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["axes.unicode_minus"] = False  # CJK fonts often lack U+2212; use '-'
    return font
