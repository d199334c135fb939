"""UI text through gettext catalogues: Simplified Chinese by default, English on request.

English is the source language: every UI string is written in English in the code and templates
(``_("Sign in")``, ``{% trans %}…{% endtrans %}``) and translated in ``web/locale/<locale>/LC_MESSAGES/
messages.po`` (Babel). ``zh_CN`` translates every message; ``en`` is the source itself (its catalogue
carries only the plural rule, an empty ``msgstr`` shows the ``msgid``).

The ``.po`` files are the only form kept in git: each process compiles them in memory when it first
needs a locale (Babel reads the ``.po`` and builds the same ``GNUTranslations`` a ``.mo`` file would
give), so a fresh clone, ``make demo`` and ``make test`` need no build step and can never serve a
stale ``.mo``. ``make i18n`` re-extracts the strings (``web/babel.cfg``) and updates the catalogues;
``tests/unit/web/test_i18n.py`` fails when a string in the code has no Chinese translation, or a
translation is fuzzy or no longer used.

The locale of a request: ``?lang=`` (then remembered in a cookie), else the cookie, else
``Accept-Language`` when it prefers English, else zh-CN.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DEFAULT_LOCALE: Final = "zh-CN"
LOCALES: Final = ("zh-CN", "en")
LOCALE_DIR: Final = Path(__file__).parent / "locale"
DOMAIN: Final = "messages"
# Our locale tags (HTML ``lang``, ``?lang=``) and the catalogues' directory names (POSIX style).
CATALOGUE: Final = {"zh-CN": "zh_CN", "en": "en"}


def N_(message: str) -> str:
    """Marks a string for the catalogue where it is defined; it is translated where it is shown."""
    return message


# An order's next step (the API's ``next_step.code``), for the order pages; ``{minutes}`` from ``act_by``.
ORDER_NEXT_STEP: Final = {
    "operator_queue": N_(
        "No caregiver could take the order at once; the call centre will assign one by hand within "
        "{minutes} minutes. In an emergency, call the hotline."
    ),
    "awaiting_caregiver": N_(
        "A caregiver has been asked to accept; if not, the next one or the call centre takes over."
    ),
    "awaiting_plan": N_("The order gets a caregiver in the provider's day plan, built the day before."),
}


def pick_locale(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LOCALES:
            return candidate
    if accept_language and accept_language.lower().startswith("en"):
        return "en"
    return DEFAULT_LOCALE


def po_path(locale: str) -> Path:
    return LOCALE_DIR / CATALOGUE[locale] / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(locale: str) -> Translations:
    """The compiled catalogue of ``locale`` (one of :data:`LOCALES`), built once per process."""
    with po_path(locale).open("rb") as f:
        catalogue = read_po(f, locale=CATALOGUE[locale], domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalogue, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def gettext_for(locale: str) -> Callable[[str], str]:
    return translations(locale).gettext


def template_callables(locale: str) -> dict[str, Any]:
    """What a template needs to translate: ``_``/``gettext``/``ngettext`` (Jinja2's i18n extension
    looks them up in the render context, so each request renders in its own locale)."""
    t = translations(locale)
    return {"_": t.gettext, "gettext": t.gettext, "ngettext": t.ngettext}
