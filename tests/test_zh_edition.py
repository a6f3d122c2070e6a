"""The Chinese edition (issue 21): in sync with the English text, built from it, consistent in
its terms. The browser half (the built zh pages, the language switch) is in test_book_html.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import zh_edition  # noqa: E402
from conftest import tr_literals  # noqa: E402

ZH = ROOT / "zh"


# ---------------------------------------------------------------- the tool itself
def test_sections_split_at_headings_outside_fences_and_join_back():
    text = ("# Title\n\nIntro.\n\n```python\n# a comment, not a heading\nx = 1\n```\n\n"
            "## Part\n\n:::{note}\n# not a heading either\n:::\n\n### Sub\ntext\n")
    units = zh_edition.split_sections(text)
    assert "".join(units) == text
    assert [u.splitlines()[0] for u in units] == ["# Title", "## Part", "### Sub"]


def test_realign_keeps_translations_and_shows_edits_as_stale(tmp_path):
    Unit = zh_edition.Unit
    old = [Unit("A", "甲"), Unit("B", "乙"), Unit("C", "丙")]
    # B edited in place, D inserted after C
    units = zh_edition.realign(old, ["A", "B!", "C", "D"])
    assert [(u.english, u.chinese) for u in units] == [("A", "甲"), ("B", "乙"), ("C", "丙"), ("D", "")]
    path = tmp_path / "t.md"
    zh_edition.write_translation(path, units)
    assert [(u.english, u.chinese) for u in zh_edition.read_translation(path)] == \
        [(u.english, u.chinese) for u in units]


def test_a_changed_english_unit_is_reported_with_its_diff(tmp_path):
    repo = tmp_path
    (repo / "book").mkdir()
    (repo / "notebooks").mkdir()
    (repo / "book" / "page.md").write_text("# Page\n\nThe loss is 1.47.\n", encoding="utf-8")
    zh_edition.write_translation(repo / "zh" / "translations" / "page.md",
                                 [zh_edition.Unit("# Page\n\nThe loss is 1.47.\n", "# 页面\n\n损失是 1.47。\n")])
    assert zh_edition.problems(repo) == {}
    (repo / "book" / "page.md").write_text("# Page\n\nThe loss is 1.46.\n", encoding="utf-8")
    issues = zh_edition.problems(repo)["page"]
    assert len(issues) == 1 and "-The loss is 1.47." in issues[0] and "+The loss is 1.46." in issues[0]


# ---------------------------------------------------------------- the edition in the repo
def test_every_unit_is_translated_from_todays_english():
    """Fails when an English page changed and its translation did not: `python
    tools/zh_edition.py stale` prints each changed unit's diff."""
    problems = zh_edition.problems()
    report = "\n".join(f"{name}: {issue.splitlines()[0]}" for name, issues in problems.items() for issue in issues)
    assert not problems, f"the zh edition is out of date (run `python tools/zh_edition.py stale`):\n{report}"


def test_zh_notebooks_and_pages_are_built_from_the_translation():
    """zh/notebooks have the English notebooks' code cells (ids, tags) in the same order with only
    the markdown translated and the language line added; zh/book pages are their translations."""
    drift = zh_edition.code_drift() + zh_edition.page_drift()
    assert not drift, "\n".join(drift)


def _code_cell(source, text, model=None):
    outputs = [{"output_type": "stream", "name": "stdout", "text": [text]}]
    if model:
        outputs.append({"output_type": "display_data", "metadata": {},
                        "data": {zh_edition.WIDGET_VIEW: {"model_id": model, "version_major": 2, "version_minor": 0}}})
    return {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": [source], "outputs": outputs}


def _widget_state(*models):
    """Models named m0, m1, ...: each shown model names a layout model (as ipywidgets do)."""
    state = {}
    for model in models:
        state[model] = {"model_name": "SliderModel", "state": {"layout": f"IPY_MODEL_{model}0"}}
        state[f"{model}0"] = {"model_name": "LayoutModel", "state": {}}
    return {"widgets": {zh_edition.WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": state}}}


def test_a_rebuilt_notebook_keeps_the_zh_runs_outputs_and_their_widgets():
    """Cells without ids (nbformat 4.4) are paired by source, a cell inserted upstream shifts
    nothing, an edited cell takes the English output, and every kept widget view keeps its model
    (the English run's models have other ids)."""
    old = {"cells": [_code_cell("a = 1", "一"), _code_cell("slider()", "", model="aa11"), _code_cell("b = 2", "二")],
           "metadata": _widget_state("aa11")}
    english = {"cells": [_code_cell("a = 1", "one"), _code_cell("new()", "new"), _code_cell("slider()", "", model="bb22"),
                         _code_cell("b = 3", "three")],
               "metadata": _widget_state("bb22")}
    zh_edition.keep_outputs(english, old)
    shown = [[o.get("text", o.get("data")) for o in c["outputs"]] for c in english["cells"]]
    assert shown[0] == [["一"]] and shown[1] == [["new"]] and shown[3] == [["three"]]
    assert shown[2][1][zh_edition.WIDGET_VIEW]["model_id"] == "aa11"
    assert set(english["metadata"]["widgets"][zh_edition.WIDGET_STATE]["state"]) == {"aa11", "aa110"}


def _widget_views_without_a_model(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    models = nb.get("metadata", {}).get("widgets", {}).get(zh_edition.WIDGET_STATE, {}).get("state", {})
    return [f"{path.name}: cell {i} shows widget model {o['data'][zh_edition.WIDGET_VIEW]['model_id']}, "
            "which the notebook's widget state lacks" for i, cell in enumerate(nb["cells"])
            for o in cell.get("outputs", []) if zh_edition.WIDGET_VIEW in o.get("data", {})
            and o["data"][zh_edition.WIDGET_VIEW]["model_id"] not in models]


def test_every_stored_widget_view_finds_its_model_in_both_editions():
    """A view whose model is missing from the notebook's metadata renders as an error in the book."""
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted((ZH / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    found = [problem for path in paths for problem in _widget_views_without_a_model(path)]
    assert not found, "\n".join(found)


def test_zh_notebooks_run_in_chinese_and_have_outputs():
    for path in sorted((ZH / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert zh_edition.LANGUAGE_LINE in "".join(first["source"]), path.name
        english = json.loads((ROOT / "notebooks" / path.name).read_text(encoding="utf-8"))
        with_output = lambda book: sum(bool(c.get("outputs")) for c in book["cells"] if c["cell_type"] == "code")
        assert with_output(nb) == with_output(english), f"{path.name}: run it (`make zh-notebooks`)"


def _toc_files(toc: Path) -> list[str]:
    return re.findall(r"^\s*(?:- file|root): (\S+)\s*$", toc.read_text(encoding="utf-8"), re.M)


def test_every_english_page_has_a_chinese_twin_in_the_same_place():
    english = _toc_files(ROOT / "_toc.yml")
    chinese = _toc_files(ZH / "_toc.yml")
    assert [f for f in chinese if f != "book/glossary"] == english
    for name in chinese:
        assert (ZH / f"{name}.md").is_file() or (ZH / f"{name}.ipynb").is_file(), name
    captions = re.findall(r"caption: (.+)", (ZH / "_toc.yml").read_text(encoding="utf-8"))
    assert captions and all(zh_edition.has_chinese(c) for c in captions), captions


def _glossary() -> list[tuple[str, str, list[str]]]:
    rows = []
    for line in (ZH / "book" / "glossary.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[0] not in ("英文", "---"):
            rows.append((cells[0], cells[1], [v.strip() for v in cells[2].split(",") if v.strip()]))
    return rows


def _chinese_parts() -> dict[str, str]:
    return {path.stem: "\n".join(u.chinese for u in zh_edition.read_translation(path))
            for path in sorted((ZH / "translations").glob("*.md"))}


def test_the_glossary_is_the_notation_pages_companion_and_is_followed():
    rows = _glossary()
    assert len(rows) >= 40, "the glossary lost its table"
    assert any(english.startswith("causal mask") and chinese == "因果掩码" for english, chinese, _ in rows)
    notation = (ZH / "book" / "notation.md").read_text(encoding="utf-8")
    assert "glossary" in notation, "the zh notation page must link to the glossary (术语表)"
    found = []
    for name, text in _chinese_parts().items():
        for english, chinese, avoided in rows:
            found += [f"{name}: {word!r} (use {chinese!r} for {english})" for word in avoided if word in text]
    assert not found, "\n".join(found)


def _spans(text: str) -> dict[str, list[str]]:
    """What a translation must carry over unchanged: inline code, math, link targets, directives."""
    no_fences = re.sub(r"```.*?```", " ", text, flags=re.S)
    # a role's text may be translated, its target not: {doc}`chapter 5 <../notebooks/05_positions>`
    roles = re.findall(r"\{[\w:-]+\}`[^`]*?<([^>`]+)>`", no_fences)
    no_fences = re.sub(r"\{[\w:-]+\}`[^`]*?<[^>`]+>`", " ", no_fences)
    return {
        # a code span may run across a line break (CommonMark joins it): compare without the break
        "inline code": [re.sub(r"\s*\n\s*", " ", span) for span in re.findall(r"`[^`]+`", no_fences)],
        "math": re.findall(r"\$\$.+?\$\$|\$[^$\n]+\$", text, flags=re.S),
        "link targets": re.findall(r"\]\(([^)\s]+)\)", text) + roles,
        "directives": re.findall(r"^\s*(?:`{3,}|:{3,})\{([\w-]+)\}", text, flags=re.M),
    }


@pytest.mark.parametrize("name", sorted(p.stem for p in (ZH / "translations").glob("*.md")))
def test_translation_keeps_code_math_links_and_directives(name):
    """A translator may rephrase the prose, never the code, the formulas, the link targets or the
    MyST directives (a missing `{admonition}` would change what the page shows)."""
    lost = []
    for number, unit in enumerate(zh_edition.read_translation(ZH / "translations" / f"{name}.md")):
        if not unit.chinese.strip():
            continue
        english, chinese = _spans(unit.english), _spans(unit.chinese)
        for kind in english:
            if kind == "directives":
                if english[kind] != chinese[kind]:
                    lost.append(f"unit {number}: directives {english[kind]} became {chinese[kind]}")
                continue
            missing = sorted(set(english[kind]) - set(chinese[kind]))
            if missing:
                lost.append(f"unit {number}: {kind} missing: {missing[:4]}")
    assert not lost, "\n".join(lost)


# a decimal (1.7552, 0.22, 65.4) or an integer of two digits or more (300, 1,100), outside words
_NUMBER = re.compile(r"(?<![\w.,])(?:\d+\.\d+|\d{1,3}(?:,\d{3})+|\d{2,})(?![\w,]|\.\d)")
_MILLION = re.compile(r"(\d+(?:\.\d+)?) million")


def _numbers(text: str, english: bool) -> set[str]:
    """The numbers of a unit's prose (code fences left out: the translation test above compares
    those), thousands' commas dropped; English "4.8 million" counts as the "480 万" Chinese writes."""
    prose = re.sub(r"^(`{3,}).*?^\1", "", text, flags=re.S | re.M)
    found = {n.replace(",", "") for n in _NUMBER.findall(_MILLION.sub("", prose) if english else prose)}
    if english:
        found |= {f"{float(m) * 100:g}" for m in _MILLION.findall(prose)}
    return found


def test_numbers_survive_the_translation():
    """The zh prose quotes the same measurements as the English: every decimal and every number of
    two digits or more in an English unit is in its Chinese (a re-translated sentence that kept an
    old loss, or a 178 that became 11 in English only, fails here)."""
    assert _numbers("val 1.7552 in 65.4 s, 1,100 steps, 4.8 million; step 3", True) == {
        "1.7552", "65.4", "1100", "480"}
    lost = []
    for path in sorted((ZH / "translations").glob("*.md")):
        for number, unit in enumerate(zh_edition.read_translation(path)):
            if unit.chinese.strip():
                missing = _numbers(unit.english, True) - _numbers(unit.chinese, False)
                if missing:
                    lost.append(f"{path.stem} unit {number}: {sorted(missing)[:6]}")
    assert not lost, "\n".join(lost)


# ---------------------------------------------------------------- the language setting
def test_set_language_switches_and_refuses_unknown_codes():
    import minigpt
    from minigpt.errors import UsageError
    try:
        minigpt.set_language("zh_CN")
        assert minigpt.language() == "zh"
        with pytest.raises(UsageError, match="unknown language 'fr'"):
            minigpt.set_language("fr")
    finally:
        minigpt.set_language("en")
    assert minigpt.tr("{n} cases", n=3) == "3 cases"


def test_a_latin_field_in_chinese_text_is_spaced_and_a_chinese_one_is_not():
    """"在{case}上" with a case named in Latin reads "在 C = 8 … x 上", as Chinese typesetting
    spaces Latin words; a Chinese name stays joined, and English is never touched."""
    import minigpt
    from minigpt.exercises import check_layer_norm     # its first case is named "(B, T, C) = ..."
    try:
        minigpt.set_language("zh")
        assert minigpt.tr("on {case}, {problem}.", case="C = 8，形状为 (2, 5, 8) 的 x",
                          problem="数值不同") == "在 C = 8，形状为 (2, 5, 8) 的 x 上，数值不同。"
        assert minigpt.tr("on {case}, {problem}.", case="两个头", problem="x 不对") == "在两个头上，x 不对。"
        assert minigpt.tr("{what} is NaN", what="loss") == "loss 是 NaN"
        assert minigpt.tr("{what} is NaN", what="`loss`") == "`loss` 是 NaN"
        assert minigpt.tr("{what} is NaN", what="损失") == "损失是 NaN"
        failed = repr(check_layer_norm(lambda x, weight, bias, eps=1e-5: x))
    finally:
        minigpt.set_language("en")
    assert failed.startswith("✗ 还没通过 — 层归一化：在 (B, T, C) = (2, 5, 8)，尺度异常的数值上"), failed
    assert minigpt.tr("{what} is NaN", what="损失") == "损失 is NaN"


def test_chinese_lines_are_joined_where_html_would_show_a_space():
    text = ("## 标题\n第一行，\n第二行。\n\n- 列表\n- 项\n\n```\n代码，\n注释\n```\n英文 word\n下一行\n由于 $e^0$\n，于是\n\n"
            ":::{dropdown} 答案\n:class: tip\n内容一，\n内容二。\n:::\n$$\n甲\n乙\n$$\n")
    assert zh_edition.join_cjk_lines(text) == (
        "## 标题\n第一行，第二行。\n\n- 列表\n- 项\n\n```\n代码，\n注释\n```\n英文 word\n下一行由于 $e^0$，于是\n\n"
        ":::{dropdown} 答案\n:class: tip\n内容一，内容二。\n:::\n$$\n甲\n乙\n$$\n")


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_exercises_keep_their_numbers_in_chinese(name):
    """"Exercise 4.2" is "练习 4.2" and "question 10.2" is "第 10.2 题" on the zh page: the
    labels a teacher and the checks refer to are the same in both editions."""
    units = zh_edition.read_translation(ZH / "translations" / f"{name}.md")
    english = "\n".join(u.english for u in units)
    chinese = "\n".join(u.chinese for u in units)
    exercises = set(re.findall(r"Exercise (\d+\.\d+)", english))
    assert exercises <= set(re.findall(r"练习 (\d+\.\d+)", chinese)), sorted(exercises)


def test_every_message_a_chapter_translates_is_in_the_catalogue():
    """A chapter's own `minigpt.tr("...")` / `tr_figure("...")` labels (chapter 9's sliders) have
    their Chinese in minigpt/locale/zh/*.json, so the zh notebook shows no English label."""
    from minigpt.language import catalogue
    known = catalogue("zh")
    missing = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                missing += [f"{path.name}: {text!r}" for text in tr_literals("".join(cell["source"]))
                            if text not in known]
    assert not missing, missing


def _exercise_messages() -> set:
    """Every English text a check can show: the data of every exercise and question, the answer
    key's explanations and hints (chapter 14's hidden cell), and each tr("...") in the checks."""
    import ast

    from minigpt.exercises import EXERCISES, QUESTIONS
    texts = set()
    for exercise in EXERCISES:
        texts |= {exercise.name, exercise.success} | {case.name for case in exercise.cases()}
        texts |= {mistake.hint for mistake in exercise.mistakes}
    for question in QUESTIONS.values():
        texts |= {question.text, question.form}
    for path in (ROOT / "minigpt" / "exercises").glob("*.py"):
        texts |= tr_literals(path.read_text(encoding="utf-8"))
    key_cells = [c for c in json.loads((ROOT / "notebooks" / "14_self_test.ipynb").read_text(encoding="utf-8"))["cells"]
                 if "answer-key" in c.get("metadata", {}).get("tags", [])]
    assert len(key_cells) == 1
    for node in ast.walk(ast.parse("".join(key_cells[0]["source"]))):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "explanation":
                    texts.add(ast.literal_eval(value))
                if isinstance(key, ast.Constant) and key.value == "wrong":
                    texts |= set(ast.literal_eval(value).values())
    return {t for t in texts if t and zh_edition.needs_translation(t)}


def test_every_check_message_has_its_chinese():
    """The checks can say nothing in English to a reader of the Chinese edition: each exercise's
    name, cases, hints and success sentence, each question and answer explanation, and every
    sentence the machinery composes them with has an entry in minigpt/locale/zh/*.json."""
    from minigpt.language import catalogue
    known = catalogue("zh")
    missing = sorted(t for t in _exercise_messages() if t not in known)
    assert not missing, f"{len(missing)} messages without Chinese, e.g. {missing[:5]}"
    fields = re.compile(r"\{\w+\}")
    bad = [t for t in _exercise_messages() if sorted(fields.findall(t)) != sorted(fields.findall(known[t]))]
    assert not bad, f"the Chinese must keep the same {{fields}}: {bad[:5]}"


def test_a_check_answers_in_chinese_after_set_language():
    import torch

    import minigpt
    wrong = lambda scores: scores.exp() / scores.exp().sum(0, keepdim=True)     # softmax over dim 0
    try:
        minigpt.set_language("zh")
        failed = repr(minigpt.exercises.check_softmax(wrong))
        passed = repr(minigpt.exercises.check_softmax(lambda s: torch.softmax(s, dim=-1)))
    finally:
        minigpt.set_language("en")
    assert failed.startswith("✗ 还没通过 — 手写 softmax：在形状为 (5, 5) 的分数上，形状正确，但数值不同"), failed
    assert "可能的错误：" in failed and "dim=-1" in failed
    assert passed.startswith("✓ 通过 — 手写 softmax：全部 4 个用例都与包的结果一致"), passed
    assert "Likely mistake" in repr(minigpt.exercises.check_softmax(wrong))     # English again
