"""The language of what the package says to a reader: English, or Simplified Chinese (中文).

    minigpt.set_language("zh")     # the Chinese edition's notebooks run this in their first cell
    tr("all {n} cases agree with the package.", n=4)   # -> "全部 4 个用例都与包的结果一致。"

Messages are written in English in the code and looked up, by their English text, in the
catalogues `minigpt/locale/zh/*.json` (one JSON object {english: chinese} per file, merged;
one file per area: the exercise checks, the widgets). A message missing from the catalogues is
said in English, never lost; `tests/test_zh_edition.py` checks the catalogues cover every
message the checks and widgets can say. `{name}` fields are filled in after the lookup, so one
entry covers every value.

Only what a *reader* sees is translated (check results, widget labels, hints). Errors from the
package's API (UsageError and friends), logs and the CLI stay in English, like torch's own.
"""

from __future__ import annotations

import json
import re
import string
from functools import lru_cache
from pathlib import Path

LANGUAGES = ("en", "zh")
_LOCALE = Path(__file__).resolve().parent / "locale"
_current = "en"


def set_language(code: str) -> None:
    """Speak `code` ("en" or "zh") from now on, in this process."""
    global _current
    code = str(code).lower().replace("_", "-")
    code = "zh" if code.startswith("zh") else code
    if code not in LANGUAGES:
        from .errors import UsageError
        raise UsageError(f"unknown language {code!r}: choose one of {', '.join(LANGUAGES)}")
    _current = code


def language() -> str:
    """The language now in use: "en" (the default) or "zh"."""
    return _current


@lru_cache(maxsize=None)
def catalogue(code: str) -> dict:
    """Every {english: translation} entry of a language, from all its catalogue files."""
    entries: dict = {}
    for path in sorted((_LOCALE / code).glob("*.json")):
        entries.update(json.loads(path.read_text(encoding="utf-8")))
    return entries


def tr(english: str, **fields) -> str:
    """`english` in the current language, with `{fields}` filled in."""
    if _current == "en":
        return english.format(**fields) if fields else english
    text = catalogue(_current).get(english, english)
    return _fill_spaced(text, fields) if fields else text


_HAN = re.compile(r"[\u3400-\u9fff]")
# how Latin text (a word, a number, inline code, a shape, a quoted value) starts and ends
_LATIN_START = re.compile(r"[A-Za-z0-9`(\['\"]")
_LATIN_END = re.compile(r"[A-Za-z0-9`)\]'\"%]")


def _fill_spaced(text: str, fields: dict) -> str:
    """`text.format(**fields)`, with a space where a filled-in field meets the words around it
    in the other script: "在{case}上" with case "C = 8" gives "在 C = 8 上", as Chinese
    typesetting spaces Latin words, while a Chinese case name stays joined ("在两个头上").
    Only the seams of fields are touched: the catalogue's own text is written as it should read."""
    formatter, pieces = string.Formatter(), []
    for literal, name, spec, conversion in formatter.parse(text):
        pieces.append(literal)
        if name is not None:
            value, _ = formatter.get_field(name, (), fields)
            pieces.append(formatter.format_field(formatter.convert_field(value, conversion), spec or ""))
    joined = ""
    for piece in pieces:
        if joined and piece and _needs_space(joined[-1], piece[0]):
            joined += " "
        joined += piece
    return joined


def _needs_space(left: str, right: str) -> bool:
    return bool((_HAN.match(left) and _LATIN_START.match(right)) or (_LATIN_END.match(left) and _HAN.match(right)))
