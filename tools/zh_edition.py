"""The Chinese edition (中文版), made from the English one and kept in sync with it.

    python tools/zh_edition.py stale            # what is untranslated or out of date (exit 1 if any)
    python tools/zh_edition.py refresh [PAGE]   # add new English units, keep every translation
    python tools/zh_edition.py build            # write zh/notebooks/*.ipynb and zh/book/*.md

Every page of the English book (a chapter notebook or a `book/*.md` page) has one translation
file, `zh/translations/<page>.md`, a list of *units*. A unit is one markdown cell of a notebook,
or one section of a page (from a heading to the next heading outside code fences). Each unit
records the English it was translated from and its Chinese:

    %%%% 3 en
    The English text, exactly as the page has it now.
    %%%% 3 zh
    中文译文。

`stale` compares the recorded English of every unit with the page's English today: a unit whose
English changed prints a diff (what to re-translate) and `tests/test_zh_edition.py` fails until the
Chinese and the recorded English are both updated. `refresh` re-aligns a translation file with
its page after cells or sections were added, removed or edited: units whose English is unchanged
keep their Chinese; an edited unit keeps its old Chinese *and* its old English, so `stale`
shows the diff; a new unit gets an empty Chinese part (`stale` lists it as untranslated).

`build` writes the Chinese notebooks (same cells, ids, tags and outputs as the English ones; only
the markdown is Chinese, and the first cell adds `minigpt.set_language("zh")` so the checks and
widgets speak Chinese) and the Chinese pages. The zh notebooks' outputs are then refreshed by
running them (`make zh-notebooks`), and nbval checks them like the English ones.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LANGUAGE_LINE = 'minigpt.set_language("zh")      # 检查结果和小部件的提示用中文'

_MARK = re.compile(r"^%%%% (\d+) (en|zh)$")
_FENCE = re.compile(r"^(`{3,}|~{3,}|:{3,})")


def english_pages(repo: Path = REPO) -> dict[str, Path]:
    """Every page of the English book, by name: the chapter notebooks and the book/*.md pages."""
    pages = {p.stem: p for p in sorted((repo / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
    pages.update({p.stem: p for p in sorted((repo / "book").glob("*.md"))})
    return pages


def split_sections(text: str) -> list[str]:
    """A markdown page cut before every heading that is not inside a code fence or directive.
    Concatenating the pieces gives the text back exactly."""
    units: list[str] = []
    current: list[str] = []
    fences: list[str] = []                 # the open fences, innermost last
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        fence = _FENCE.match(stripped)
        if fence:
            marker = fence.group(1)
            if fences and marker[0] == fences[-1][0] and len(marker) >= len(fences[-1]) \
                    and stripped == marker:
                fences.pop()                     # a bare fence of the open kind closes it
            elif stripped != marker or not fences:
                fences.append(marker)            # an opener: ```{note}, ```python, :::{admonition}
        elif not fences and line.startswith("#") and current and any(l.strip() for l in current):
            units.append("".join(current))
            current = []
        current.append(line)
    if current:
        units.append("".join(current))
    return units


def translation_file(name: str, repo: Path = REPO) -> Path:
    """The translation of the English page `name` (a notebook's or book page's stem)."""
    return repo / "zh" / "translations" / f"{name}.md"


def english_units(path: Path) -> list[str]:
    """The English units of a page: its markdown cells, or its sections."""
    if path.suffix == ".ipynb":
        notebook = json.loads(path.read_text(encoding="utf-8"))
        return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown"]
    return split_sections(path.read_text(encoding="utf-8"))


@dataclass
class Unit:
    english: str          # the English this translation was made from
    chinese: str          # "" while untranslated


def read_translation(path: Path) -> list[Unit]:
    """The units of a translation file, in order (see the module docstring for the format)."""
    units: list[Unit] = []
    part = None
    lines: list[str] = []

    def flush():
        if part is None:
            return
        text = "".join(lines)
        text = text[:-1] if text.endswith("\n") else text    # the newline before the next mark
        if part == "en":
            units.append(Unit(text, ""))
        else:
            units[-1].chinese = text

    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        mark = _MARK.match(line.rstrip("\n"))
        if mark:
            flush()
            number, part = int(mark.group(1)), mark.group(2)
            if part == "en" and number != len(units):
                raise ValueError(f"{path}: unit {number} where unit {len(units)} was expected")
            if part == "zh" and number != len(units) - 1:
                raise ValueError(f"{path}: the Chinese of unit {number} does not follow its English")
            lines = []
        elif part is None:
            if line.strip():
                raise ValueError(f"{path}: text before the first '%%%% 0 en' mark")
        else:
            lines.append(line)
    flush()
    return units


def write_translation(path: Path, units: list[Unit]) -> None:
    parts = []
    for number, unit in enumerate(units):
        parts.append(f"%%%% {number} en\n{unit.english}\n%%%% {number} zh\n{unit.chinese}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")


def realign(old: list[Unit], english: list[str]) -> list[Unit]:
    """New units for today's English: unchanged units keep their Chinese; a unit edited in place
    keeps its old English and Chinese (so it shows as stale); new units are untranslated."""
    matcher = difflib.SequenceMatcher(a=[u.english for u in old], b=english, autojunk=False)
    units: list[Unit] = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            units += [copy.copy(u) for u in old[a0:a1]]
        elif tag == "replace" and a1 - a0 == b1 - b0:
            units += [copy.copy(u) for u in old[a0:a1]]          # edited: stale, diff shown
        else:
            units += [Unit(text, "") for text in english[b0:b1]]
    return units


_CJK = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"      # CJK punctuation, ideographs, full-width forms
_ENDS_CJK = re.compile(f"[{_CJK}]$")
_STARTS_CJK = re.compile(f"^[{_CJK}]")
_STARTS_CJK_PUNCT = re.compile("^[\u3001\u3002\uff0c\uff1b\uff1a\uff09\uff01\uff1f\u300d\u300f\u201d]")  # 、。，；：）！？」』”
_NOT_PROSE = ("#", "|", ":", "```", "~~~", "$$", "(")       # headings, table rows, options, fences, labels


def join_cjk_lines(text: str) -> str:
    """Join the lines of a Chinese paragraph where both sides of the break are Chinese: HTML
    turns a line break into a space, and Chromium draws it between two Chinese characters
    (English needs that space, Chinese has none). Never inside code or $$ math, never onto a
    heading, table row, directive line or option; a line that starts with a Chinese character
    can't itself be a list item, heading or table row."""
    lines = text.split("\n")
    out: list[str] = []
    code_fence = None          # the fence of the code block we are in (directive bodies are prose)
    in_math = False
    prose_before = ends_cjk = False     # is out[-1] a prose line, and does it end in Chinese?
    for line in lines:
        stripped = line.strip()
        if code_fence is None and not in_math and prose_before and (
                (ends_cjk and _STARTS_CJK.match(line)) or _STARTS_CJK_PUNCT.match(line)):
            out[-1] += line            # "……由于 $e^0$" + "，于是……": punctuation joins anything
            ends_cjk = bool(_ENDS_CJK.search(line))
            continue
        out.append(line)
        fence = _FENCE.match(stripped)
        if code_fence is not None:
            if fence and stripped == code_fence:
                code_fence = None
        elif in_math:
            in_math = not stripped.endswith("$$")                  # the closing $$
        elif stripped.startswith("$$"):
            in_math = stripped == "$$" or not stripped.endswith("$$")   # $$...$$ on one line closes itself
        elif fence and not stripped[len(fence.group(1)):].startswith("{") and fence.group(1)[0] != ":":
            code_fence = fence.group(1)
        prose_before = (code_fence is None and not in_math and bool(stripped)
                        and not stripped.startswith(_NOT_PROSE))
        ends_cjk = bool(_ENDS_CJK.search(line))
    return "\n".join(out)


def has_chinese(text: str) -> bool:
    return re.search(r"[\u4e00-\u9fff]", text) is not None


def needs_translation(english: str) -> bool:
    """False for units with no prose to translate (only code, math, a label or an image)."""
    prose = re.sub(r"```.*?```|\$\$.*?\$\$|\$[^$]*\$|`[^`]*`|\([^)]*\)=|<[^>]+>", " ", english, flags=re.S)
    return re.search(r"[A-Za-z]{3,}", prose) is not None


def problems(repo: Path = REPO) -> dict[str, list[str]]:
    """Per page: what is missing, untranslated or stale (an empty dict when all is in sync)."""
    found: dict[str, list[str]] = {}
    for name, page in english_pages(repo).items():
        path = translation_file(name, repo)
        issues: list[str] = []
        if not path.exists():
            found[name] = [f"no translation file {path.relative_to(repo)} (run `refresh {name}`)"]
            continue
        units = read_translation(path)
        english = english_units(page)
        if len(units) != len(english):
            issues.append(f"{len(units)} units but the page has {len(english)} (run `refresh {name}`)")
        for number, (unit, now) in enumerate(zip(units, english)):
            if unit.english != now:
                diff = "".join(difflib.unified_diff(unit.english.splitlines(True), now.splitlines(True),
                                                    "translated from", "English now", n=1))
                issues.append(f"unit {number}: the English changed since it was translated:\n{diff}")
            elif not unit.chinese.strip():
                issues.append(f"unit {number}: untranslated: {now.strip().splitlines()[0][:70] if now.strip() else '(blank)'}")
            elif needs_translation(now) and not has_chinese(unit.chinese):
                issues.append(f"unit {number}: the Chinese part has no Chinese")
        if issues:
            found[name] = issues
    return found


# ------------------------------------------------------------------------------ build
def zh_notebook(english_path: Path, units: list[Unit]) -> dict:
    """The Chinese notebook: the English one with Chinese markdown and the language line."""
    notebook = json.loads(english_path.read_text(encoding="utf-8"))
    markdown = iter(units)
    first_code = True
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = join_cjk_lines(next(markdown).chinese).splitlines(keepends=True)
        elif cell["cell_type"] == "code" and first_code:
            first_code = False
            source = "".join(cell["source"]).rstrip("\n") + "\n" + LANGUAGE_LINE
            cell["source"] = source.splitlines(keepends=True)
    return notebook


def build(repo: Path = REPO, only: list[str] | None = None, draft: bool = False) -> list[Path]:
    """Write zh/notebooks/*.ipynb and zh/book/*.md from the translations; refuse when stale
    (`draft`: build anyway, English where a unit is untranslated, to try the pipeline out)."""
    bad = problems(repo)
    if only:
        bad = {k: v for k, v in bad.items() if k in only}
    if bad and not draft:
        raise SystemExit("the translation is not in sync; `python tools/zh_edition.py stale` says what to do:\n  "
                         + "\n  ".join(bad))
    written = []
    for name, page in english_pages(repo).items():
        if only and name not in only:
            continue
        units = read_translation(translation_file(name, repo))
        if draft:
            units = [Unit(now, u.chinese if u.chinese.strip() and u.english == now else now)
                     for u, now in zip(units, english_units(page))]
        if page.suffix == ".ipynb":
            target = repo / "zh" / "notebooks" / page.name
            old = json.loads(target.read_text(encoding="utf-8")) if target.exists() else None
            notebook = zh_notebook(page, units)
            if old is not None:
                keep_outputs(notebook, old)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            target = repo / "zh" / "book" / page.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_page_text(units), encoding="utf-8")
        written.append(target)
    return written


def _page_text(units: list[Unit]) -> str:
    """A zh/book page: its units' Chinese, one after another (each ends its own line)."""
    text = "".join(u.chinese if u.chinese.endswith("\n") or i == len(units) - 1 else u.chinese + "\n"
                   for i, u in enumerate(units))
    return _one_level_deeper(join_cjk_lines(text))


_DIRECTIVE_PATH = re.compile(r"^(\s*```+\{(?:literalinclude|include|image|figure)\}\s+)\.\./", re.M)


def _one_level_deeper(text: str) -> str:
    """zh/book/x.md sits one folder deeper than book/x.md: a directive's `../minigpt/...` path
    (the appendix includes the package's source) becomes `../../minigpt/...`."""
    return _DIRECTIVE_PATH.sub(r"\1../../", text)


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"     # notebook metadata: every widget model
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"       # an output: which model it shows
_MODEL_REFERENCE = re.compile(r"IPY_MODEL_([0-9a-f]+)")        # a model's field naming another model


def keep_outputs(notebook: dict, old: dict) -> None:
    """Keep the outputs the zh notebook's own run stored (its checks print Chinese) for every
    code cell whose source is unchanged; a changed cell takes the English outputs until the zh
    notebooks are run again.

    A kept ipywidgets output shows a model of the zh run's widget state, which the English
    notebook does not have: the state is rebuilt from both runs' models, keeping those the
    outputs show and the models they name (layouts, styles, children), so every view finds its
    model in the rendered book."""
    # Cells are paired by their place among the code cells, as a diff of the sources pairs
    # lines: not every chapter's cells have ids (nbformat 4.4 has none), and a cell added or
    # removed upstream must not shift the outputs of the cells after it.
    old_code = [c for c in old["cells"] if c["cell_type"] == "code"]
    new_code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    pairs = difflib.SequenceMatcher(None, ["".join(c["source"]) for c in old_code],
                                    ["".join(c["source"]) for c in new_code], autojunk=False)
    for block in pairs.get_matching_blocks():
        for previous, cell in zip(old_code[block.a:block.a + block.size], new_code[block.b:block.b + block.size]):
            cell["outputs"] = previous.get("outputs", [])
            cell["execution_count"] = previous.get("execution_count")
            if "execution" in previous.get("metadata", {}):       # the run's timestamps with its outputs
                cell["metadata"] = dict(cell.get("metadata", {}), execution=previous["metadata"]["execution"])
    widgets = notebook.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE)
    old_widgets = old.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE)
    if widgets is None and old_widgets is None:
        return
    models = {**(old_widgets or {}).get("state", {}), **(widgets or {}).get("state", {})}
    shown = [output["data"][WIDGET_VIEW]["model_id"] for cell in notebook["cells"]
             for output in cell.get("outputs", []) if WIDGET_VIEW in output.get("data", {})]
    needed, waiting = set(), [m for m in shown if m in models]
    while waiting:                                    # the models shown, and all they name
        model = waiting.pop()
        if model not in needed:
            needed.add(model)
            waiting += [m for m in _MODEL_REFERENCE.findall(json.dumps(models[model])) if m in models]
    state = dict(widgets or old_widgets, state={m: v for m, v in models.items() if m in needed})
    notebook.setdefault("metadata", {}).setdefault("widgets", {})[WIDGET_STATE] = state


def code_drift(repo: Path = REPO) -> list[str]:
    """Where a zh notebook's code cells differ from the English notebook's (should be none)."""
    found = []
    for name, page in english_pages(repo).items():
        if page.suffix != ".ipynb":
            continue
        target = repo / "zh" / "notebooks" / page.name
        if not target.exists():
            found.append(f"{name}: no zh notebook (run `python tools/zh_edition.py build`)")
            continue
        units = read_translation(translation_file(name, repo))
        expected = zh_notebook(page, units)
        actual = json.loads(target.read_text(encoding="utf-8"))
        # what a cell *is*; its run (outputs, execution count, the kernel's timestamps) is the zh notebook's own
        strip = lambda nb: [(c["cell_type"], "".join(c["source"]), c.get("id"),
                             {k: v for k, v in c.get("metadata", {}).items() if k != "execution"})
                            for c in nb["cells"]]
        if strip(expected) != strip(actual):
            found.append(f"{name}: zh/notebooks/{page.name} is not what the English notebook and the "
                         "translation make (run `python tools/zh_edition.py build`)")
    return found


def page_drift(repo: Path = REPO) -> list[str]:
    """zh/book pages that are not what their translation makes (should be none)."""
    found = []
    for name, page in english_pages(repo).items():
        if page.suffix != ".md":
            continue
        target = repo / "zh" / "book" / page.name
        units = read_translation(translation_file(name, repo))
        if not target.exists() or target.read_text(encoding="utf-8") != _page_text(units):
            found.append(f"{name}: zh/book/{page.name} is not what its translation makes "
                         "(run `python tools/zh_edition.py build`)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stale", help="list untranslated and out-of-date units (exit 1 if any)")
    sub.add_parser("check", help="fail unless the translation is in sync and zh/ is built from it")
    refresh = sub.add_parser("refresh", help="re-align translation files with their pages")
    refresh.add_argument("pages", nargs="*")
    build_cmd = sub.add_parser("build", help="write zh/notebooks and zh/book from the translations")
    build_cmd.add_argument("pages", nargs="*")
    build_cmd.add_argument("--draft", action="store_true",
                           help="build even when stale, English where untranslated (never commit this)")
    args = parser.parse_args(argv)
    if args.command == "stale":
        bad = problems()
        for name, issues in bad.items():
            print(f"== {name}")
            for issue in issues:
                print("  " + issue.replace("\n", "\n  "))
        total = sum(len(v) for v in bad.values())
        print(f"{total} unit(s) to translate or update in {len(bad)} page(s)" if bad else "the zh edition is in sync")
        return 1 if bad else 0
    if args.command == "check":
        bad = problems()
        drift = code_drift() + page_drift()
        if bad or drift:
            print("the Chinese edition is out of date:", file=sys.stderr)
            for name, issues in bad.items():
                print(f"  {name}: {len(issues)} unit(s) to translate or update", file=sys.stderr)
            for line in drift:
                print("  " + line, file=sys.stderr)
            print("run `python tools/zh_edition.py stale` for the details, translate, then "
                  "`make zh-notebooks`", file=sys.stderr)
            return 1
        print("the zh edition is in sync with the English one")
        return 0
    if args.command == "refresh":
        for name, page in english_pages().items():
            if args.pages and name not in args.pages:
                continue
            path = translation_file(name)
            old = read_translation(path) if path.exists() else []
            write_translation(path, realign(old, english_units(page)))
            print(f"refreshed {path.relative_to(REPO)}")
        return 0
    for path in build(only=args.pages or None, draft=args.draft):
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
