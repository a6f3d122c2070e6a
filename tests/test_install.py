"""The install path readers take: the chapters' first cell (one template, one install source),
the declared dependencies, and the one-line message when the install fails.

The full offline install (fresh venv with a torch, minigpt from git, chapter 1) takes longer
than a unit test should: `make test-install` (tools/check_install.py) runs it.
"""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

import minigpt

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("sync_first_cell", REPO / "tools" / "sync_first_cell.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)

PROJECT = sync.tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.mark.parametrize("chapter", sync.chapters(), ids=lambda p: p.stem)
def test_first_cell_of_every_chapter_is_the_template(chapter):
    diff = sync.drift(chapter, sync.first_cell_source())
    assert not diff, f"{chapter.name}'s first cell drifted; run `python tools/sync_first_cell.py`:\n{diff}"


def test_the_install_cell_is_hidden_but_still_runs(tmp_path):
    """The book collapses the first cell (`hide-input`); a chapter without the tag is drift."""
    assert "hide-input" in sync.FIRST_CELL_TAGS
    chapter = tmp_path / "01_x.ipynb"
    chapter.write_text(sync.json.dumps({"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# 1. X"]},
        {"cell_type": "code", "metadata": {"tags": ["keep-me"]}, "source": [sync.first_cell_source()],
         "outputs": [], "execution_count": None}]}), encoding="utf-8")
    assert "lacks the tag(s) ['hide-input']" in sync.drift(chapter, sync.first_cell_source())
    sync.write(chapter, sync.first_cell_source())
    assert sync.drift(chapter, sync.first_cell_source()) == ""
    cell = sync.json.loads(chapter.read_text(encoding="utf-8"))["cells"][1]
    assert cell["metadata"]["tags"] == ["keep-me", "hide-input"]


def test_there_are_at_least_fifteen_chapters():
    assert len(sync.chapters()) >= 15          # 1-14, the subword chapter 15, and later ones


def test_the_first_cell_installs_the_tagged_version_from_the_one_repository_address():
    url, version = PROJECT["urls"]["Repository"], PROJECT["version"]
    cell = sync.first_cell_source()
    assert f'"minigpt @ git+{url}@v{version}"' in cell
    assert cell.count("git+") == 2          # the pinned source, and the fork example in the comment
    assert "$" not in cell                  # every template placeholder was filled
    assert minigpt.__version__ == version, "minigpt/__init__.py and pyproject.toml disagree on the version"
    book = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    assert book["repository"]["url"] == url, "_config.yml's repository (launch buttons) differs from pyproject.toml"


def test_every_install_line_in_the_pages_pins_the_tagged_version():
    """A page that installs from the default branch runs against whatever is there today, not the
    package the book describes (book/gpt2.md did, in both editions)."""
    url, version = PROJECT["urls"]["Repository"], PROJECT["version"]
    pages = sorted((REPO / "book").glob("*.md")) + sorted((REPO / "zh" / "book").glob("*.md")) + [REPO / "README.md"]
    found = [f"{page.relative_to(REPO)}: {line.strip()}" for page in pages
             for line in page.read_text(encoding="utf-8").splitlines()
             if f"git+{url}" in line and f"git+{url}@v{version}" not in line and "YOU/" not in line]
    assert not found, "install lines without @v" + version + ":\n" + "\n".join(found)


def _run_first_cell():
    namespace = {"__name__": "__main__"}
    exec(compile(sync.first_cell_source(), "first cell", "exec"), namespace)
    return namespace


def test_first_cell_prints_nothing_and_picks_the_device_when_minigpt_is_installed(capsys):
    namespace = _run_first_cell()
    assert capsys.readouterr() == ("", "")                 # the stored (empty) output stays true
    assert namespace["device"] == minigpt.pick_device()
    assert namespace["torch"] is torch


def test_a_failed_install_says_what_to_do_in_one_line(monkeypatch, tmp_path):
    missing = tmp_path / "no-such-checkout"
    monkeypatch.setitem(sys.modules, "minigpt", None)      # `import minigpt` now fails as if not installed
    monkeypatch.setenv("MINIGPT_SOURCE", str(missing))
    with pytest.raises(Exception) as info:
        _run_first_cell()
    assert type(info.value).__name__ == "InstallFailed"
    shown = info.value._render_traceback_()                # what Jupyter and Colab display
    assert len(shown) == 1 and "\n" not in shown[0], shown
    assert str(missing) in shown[0] and "MINIGPT_SOURCE" in shown[0] and "ERROR" in shown[0], shown[0]


def _lower_bound(requirements, name):
    bounds = [re.fullmatch(rf"{name}\s*>=\s*([\d.]+)", r.split(";")[0].strip()) for r in requirements]
    return next(m.group(1) for m in bounds if m)


def test_declared_dependencies_match_what_runs():
    """numpy is declared (torch warns without it); one torch lower bound, the one that is tested."""
    requirements = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    for declared in (PROJECT["dependencies"], requirements):
        assert "numpy" in {_dist_name(r) for r in declared}
    oldest = _lower_bound(PROJECT["dependencies"], "torch")
    assert _lower_bound(requirements, "torch") == oldest
    tested = re.search(r"^TORCH_OLDEST \?= ([\d.]+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert tested.split(".")[:2] == oldest.split(".")[:2], "make test-oldest-torch tests another torch"


def _dist_name(requirement):
    """'tokenizers>=0.15  # why' -> 'tokenizers', normalised as pip does (lower case, '-');
    '' for a blank or comment line."""
    name = re.split(r"[<>=!~\[\s;#]", requirement.strip())[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _own_extras_expanded(requirements):
    """`requirements` with this package's own extras ("minigpt[bpe]") replaced by what they list."""
    expanded = []
    for requirement in requirements:
        own = re.fullmatch(r"minigpt\[(\w[\w-]*)\]", requirement.strip())
        expanded += _own_extras_expanded(PROJECT["optional-dependencies"][own.group(1)]) if own else [requirement]
    return expanded


def _with_dependencies(requirements):
    """The installed distributions that `requirements` pull in (pip's closure, from the metadata)."""
    from importlib import metadata
    seen, todo = set(), [_dist_name(r) for r in _own_extras_expanded(requirements)]
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_dist_name(r) for r in requires if "extra ==" not in r]
    return seen


def _install_routes():
    """What each documented install puts in: requirements.txt (a local reader, `make install`),
    and the package with its `book` extra (a student server installs minigpt[classroom])."""
    classroom = PROJECT["optional-dependencies"]["classroom"]
    assert "minigpt[book]" in classroom, "a classroom install must bring what the chapters import"
    return {"requirements.txt": (REPO / "requirements.txt").read_text().splitlines(),
            "minigpt[book]": PROJECT["dependencies"] + ["minigpt[book]"]}


@pytest.mark.parametrize("route", ["requirements.txt", "minigpt[book]"])
@pytest.mark.parametrize("folder", ["notebooks", "zh/notebooks"])
def test_every_module_a_chapter_imports_comes_with_the_install(folder, route):
    """A reader who ran `pip install -r requirements.txt` (or a student with minigpt[classroom])
    runs every chapter: nothing a chapter imports may come only from another extra (chapter 15
    once imported `tokenizers`, which only the `bpe` extra declared)."""
    from importlib import metadata
    installed = _with_dependencies(_install_routes()[route])
    providers = metadata.packages_distributions()
    missing = {}
    for chapter in sync.chapters(REPO / folder):
        cells = sync.json.loads(chapter.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for module in set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, re.M)):
            if module in sys.stdlib_module_names or module == "minigpt":
                continue
            assert importlib.util.find_spec(module), f"{chapter.name} imports {module}, which is not installed here"
            # Python 3.10's packages_distributions misses some (matplotlib, torch): then the
            # distribution is named as the module is
            dists = {_dist_name(d) for d in providers.get(module, [module])}
            if not dists & installed:
                missing.setdefault(module, []).append(chapter.name)
    assert not missing, f"chapters import modules that {route} does not bring: {missing}"
