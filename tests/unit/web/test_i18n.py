"""The gettext catalogues are in step with the code: every UI string in the web package's Python and
templates has a Chinese translation (not fuzzy, with the same placeholders), no translation is left
for a string the code no longer has, and both locales compile. Run ``make i18n`` after changing text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from web.i18n import CATALOGUE, DEFAULT_LOCALE, LOCALES, pick_locale, po_path, translations

pytestmark = pytest.mark.unit

WEB = Path(__file__).resolve().parents[3] / "web"
PLACEHOLDER = re.compile(r"\{\w+\}|%\(\w+\)s")
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
OPTIONS = {
    "templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}
}


def _in_code() -> set[str]:
    found = extract_from_dir(
        str(WEB),
        method_map=METHODS,
        options_map=OPTIONS,
        keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
    )
    ids: set[str] = set()
    for _filename, _lineno, message, _comments, _context in found:
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def _catalogue(locale: str) -> dict[str, str]:
    with po_path(locale).open("rb") as f:
        catalogue = read_po(f, locale=CATALOGUE[locale])
    assert not [m.id for m in catalogue if m.id and m.fuzzy], f"fuzzy entries in {locale}"
    entries: dict[str, str] = {}
    for m in catalogue:
        if not m.id:
            continue
        source = m.id if isinstance(m.id, str) else m.id[0]
        text = m.string if isinstance(m.string, str) else (m.string or ("",))[0]
        entries[source] = text or ""
    return entries


def test_every_string_in_the_code_is_translated_into_chinese_and_none_is_stale() -> None:
    code = _in_code()
    assert len(code) > 50, "the extraction found the pages' strings"
    zh = _catalogue("zh-CN")
    assert sorted(code - zh.keys()) == [], "strings without a catalogue entry: run make i18n"
    assert sorted(zh.keys() - code) == [], "catalogue entries the code no longer uses: run make i18n"
    untranslated = sorted(k for k, v in zh.items() if not v.strip())
    assert untranslated == [], "strings without a Chinese translation"
    for source, text in zh.items():
        assert sorted(PLACEHOLDER.findall(source)) == sorted(PLACEHOLDER.findall(text)), source


def test_english_is_the_source_and_has_the_same_entries() -> None:
    assert _catalogue("en").keys() == _catalogue("zh-CN").keys()


def test_both_locales_compile_and_translate() -> None:
    assert translations("zh-CN").gettext("Sign in") == "登录"
    assert translations("en").gettext("Sign in") == "Sign in"
    assert translations("zh-CN").gettext("{n} district(s)").format(n=3) == "3 个区县"
    assert set(LOCALES) == set(CATALOGUE)


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "expected"),
    [
        (None, None, None, DEFAULT_LOCALE),
        ("en", None, None, "en"),
        ("xx", "en", None, "en"),
        (None, None, "en-GB,en;q=0.9", "en"),
        (None, "zh-CN", "en-US", "zh-CN"),
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    ],
)
def test_the_locale_of_a_request(
    query: str | None, cookie: str | None, accept: str | None, expected: str
) -> None:
    assert pick_locale(query, cookie, accept) == expected
