"""Open the built book (_build/html, from `make html`) in headless Chromium, as a reader would.

Each chapter page must render its title and every figure its notebook stores, show no
traceback, and load nothing from the network. Screenshots land in _build/screenshots/ for
a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import offline_page

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAGES = ["index", "book/intro", "book/running", "book/notation", "book/instructor_guide",
         "book/data_parallel", "book/gpt2", "book/references"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        message = "Chromium is not installed; `make browser` installs Debian's chromium when run as root."
        if os.environ.get("MINIGPT_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


def _run_chromium(args: list[str]) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=180)
    return proc.stdout


def _dom(page: Path) -> str:
    return _run_chromium(["--virtual-time-budget=8000", "--dump-dom", page.as_uri()])


def _stored_figures(notebook: Path) -> int:
    """image/png outputs the reader should see (cells tagged remove-output/remove-cell excluded)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    count = 0
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or tags & {"remove-output", "remove-cell"}:
            continue
        count += sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
    return count


def _title(notebook: Path) -> str:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise AssertionError(f"{notebook.name} has no '# Title' heading")


@pytest.fixture(scope="module", autouse=True)
def built_book():
    if not (HTML / "index.html").is_file():
        pytest.fail("the book is not built: run `make html` first (make browser does).")


def test_every_chapter_notebook_is_in_the_table_of_contents():
    """The toc lists exactly the chapter notebooks on disk (16 today), so a new chapter cannot
    be left out of the book, nor a removed one linger in it."""
    import re
    in_toc = re.findall(r"^\s*- file: notebooks/(\d\d_\w+)\s*$", (ROOT / "_toc.yml").read_text(), re.M)
    assert sorted(in_toc) == [c.stem for c in CHAPTERS]
    assert len(CHAPTERS) >= 16, [c.name for c in CHAPTERS]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_page_renders(notebook: Path):
    page = HTML / "notebooks" / f"{notebook.stem}.html"
    assert page.is_file(), f"{page} was not built"
    dom = _dom(page)
    assert "<body" in dom, "Chromium returned no document"
    text = re.sub(r"<[^>]+>", " ", dom)
    title = _title(notebook)
    assert title.split(":")[0] in text, f"title {title!r} not on the page"
    assert "Traceback (most recent call last)" not in text
    assert 'class="output traceback' not in dom and "cell_output error" not in dom
    images = re.findall(r'<img[^>]+src="([^"]+)"', dom)
    figures = [src for src in images if "_images/" in src]
    assert len(figures) >= _stored_figures(notebook), (
        f"{len(figures)} figures on the page, the notebook stores {_stored_figures(notebook)}")
    for src in figures:
        file = (page.parent / src).resolve()
        assert file.is_file() and file.stat().st_size > 1000, f"figure {src} is missing or empty"
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", PAGES)
def test_no_page_needs_the_network(name: str):
    """Scripts, stylesheets, images and fonts all come from the build folder (links may point out)."""
    page = HTML / f"{name}.html"
    assert page.is_file(), f"{page} was not built"
    html = page.read_text(encoding="utf-8")
    external = re.findall(r'<(?:script|img|iframe)[^>]+src="(https?:[^"]+)"', html)
    external += re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="(https?:[^"]+)"', html)
    external += re.findall(r'<link[^>]+href="(https?:[^"]+)"[^>]+rel="stylesheet"', html)
    assert not external, f"{name} loads {external}"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_pages_load_nothing_from_the_network(notebook: Path):
    html = (HTML / "notebooks" / f"{notebook.stem}.html").read_text(encoding="utf-8")
    external = re.findall(r'<(?:script|img|iframe)[^>]+src="(https?:[^"]+)"', html)
    external += re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="(https?:[^"]+)"', html)
    assert not external, f"{notebook.stem} loads {external}"


def test_formulas_render_offline():
    """MathJax is vendored: a page with math shows typeset formulas with no network."""
    pages = [p for p in sorted((HTML / "notebooks").glob("*.html")) if 'class="math' in p.read_text(encoding="utf-8")]
    if not pages:
        pytest.skip("no page uses math")
    dom = _dom(pages[0])
    assert "<mjx-container" in dom, f"formulas on {pages[0].name} were not typeset"


def test_sampling_explorer_ships_what_it_needs():
    """Chapter 9's page holds its sliders and the model asset beside it, and no Thebe (no
    server); test_in_page_model_runs_in_the_built_book runs it with the network blocked."""
    page = HTML / "notebooks" / "09_decoding.html"
    dom = _dom(page)
    assert dom.count('type="range"') >= 3, "chapter 9's temperature/top-k/top-p sliders are missing"
    assert (HTML / "minigpt-web" / "shakespeare_char.js").is_file(), "the model asset was not copied"
    html = page.read_text(encoding="utf-8")
    assert len(html.encode()) < 200_000 + 100_000, "chapter 9's own HTML is too heavy"
    assert "THEBE_JS_URL" not in html


def test_screenshots_for_review():
    """Screenshots of the home page and every chapter, to look at by eye."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = [HTML / "index.html"] + [HTML / "notebooks" / f"{c.stem}.html" for c in CHAPTERS]
    for page in pages:
        shot = SHOTS / f"{page.stem}.png"
        shot.unlink(missing_ok=True)
        _run_chromium(["--virtual-time-budget=8000", f"--screenshot={shot}", "--window-size=1280,1600",
                       page.as_uri()])
        assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot of {page.name}"


# ------------------------------------------------------------ the in-page model (issue 10)
def test_no_page_has_a_javascript_error():
    """Every page of the book loads with no JavaScript error and no network request."""
    pages = [HTML / f"{name}.html" for name in PAGES + ["book/appendix_javascript"]]
    _open_with_no_error([*pages, *(HTML / "notebooks" / f"{c.stem}.html" for c in CHAPTERS)])


def _open_with_no_error(pages: list) -> None:
    """Load each page offline; fail on any JavaScript error or network request."""
    with offline_page() as (page, errors, blocked):
        for file in pages:
            assert file.is_file(), f"{file} was not built"
            page.goto(file.as_uri(), wait_until="load")
            page.wait_for_timeout(300)
    assert not errors, errors
    assert not blocked, f"pages tried the network: {blocked}"


@pytest.mark.parametrize("chapter,kind", [("09_decoding", "generator"), ("04_multi_head_attention", "attention"),
                                          ("10_inside_the_model", "attention"), ("10_inside_the_model", "layers")])
def test_in_page_model_runs_in_the_built_book(chapter, kind):
    """The chapter's widget mounts from file:// with the network cut, in light, dark and phone
    views (screenshots of each land in _build/screenshots/ to look at)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for mode, viewport, dark in (("light", (1280, 1400), False), ("dark", (1280, 1400), True),
                                 ("phone", (390, 1400), False)):
        with offline_page(viewport, dark) as (page, errors, blocked):
            page.goto((HTML / "notebooks" / f"{chapter}.html").as_uri())
            widget = page.locator(f"[data-mg-widget={kind}]")
            page.wait_for_function(f"document.querySelector('[data-mg-widget={kind}]')"
                                   ".getAttribute('data-mg-mounted') === 'ready'", timeout=60_000)
            assert "shakespeare_char" in widget.inner_text()
            if kind == "layers":
                widget.scroll_into_view_if_needed()
                widget.locator(".mg-char[data-index='3']").click()
                assert "(position 3)" in widget.locator("[data-mg=lens-title]").inner_text()
                assert widget.locator("tbody tr").count() == 7          # the embedding and 6 blocks
            elif kind == "generator":
                page.click("[data-mg=generate]")
                page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done",
                                       timeout=60_000)
                page.click(".mg-char[data-index='3']")
                assert page.locator(".mg-bar.mg-drawn").count() == 1
            else:
                heatmap = widget.locator("[data-mg=heatmap]")
                heatmap.scroll_into_view_if_needed()        # the mouse moves in viewport coordinates
                box = heatmap.bounding_box()
                page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.8)
                assert "weight" in widget.locator("[data-mg=readout]").inner_text()
            overflow = widget.evaluate("w => w.scrollWidth - w.clientWidth")
            assert overflow <= 1, f"the {kind} widget is {overflow} px too wide at {viewport[0]} px"
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=str(SHOTS / f"{chapter}_{kind}_{mode}.png"))
            if os.environ.get("MINIGPT_SHOTS"):                  # a copy to look at outside the build
                widget.screenshot(path=str(Path(os.environ["MINIGPT_SHOTS"]) / f"{chapter}_{kind}_{mode}.png"))
        assert not errors, errors
        assert not blocked, blocked


@pytest.mark.parametrize("name,width", [("book/gpt2", 390), ("book/appendix_javascript", 1280),
                                        ("book/appendix_javascript", 390)])
def test_appendix_pages_do_not_scroll_sideways(name, width):
    """No page-wide sideways scroll on a phone (GPT-2 had a long inline call); the JavaScript
    appendix shows each Python block beside its JavaScript twin at 1280 px, stacked on a phone,
    and its code wraps instead of scrolling sideways. (A code block on the GPT-2 page may scroll
    inside itself on a phone, as code does.)"""
    with offline_page((width, 1000)) as (page, errors, blocked):
        page.goto((HTML / f"{name}.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if name.endswith("javascript"):
            wide = page.evaluate("Array.from(document.querySelectorAll('article pre'))"
                                 ".filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.textContent.slice(0, 40))")
            assert not wide, f"code blocks scroll sideways at {width} px: {wide}"
            # the top of each column's first code block (a column may hold more than one)
            tops = page.evaluate("Array.from(document.querySelectorAll('.mg-side')).map(g => "
                                 "Array.from(g.querySelectorAll('.sd-col')).map(c => "
                                 "Math.round(c.querySelector('pre').getBoundingClientRect().top)))")
            assert len(tops) == 7 and all(len(t) == 2 for t in tops)
            side_by_side = [t[0] == t[1] for t in tops]
            assert all(side_by_side) if width >= 1280 else not any(side_by_side), tops
    assert not errors and not blocked


# ------------------------------------------------------------ the Chinese edition (issue 21)
ZH_HTML = HTML / "zh"
ZH_PAGES = PAGES + ["book/glossary", "book/appendix_javascript"]


def _cjk(text: str) -> int:
    return len(re.findall(r"[\u4e00-\u9fff]", text))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chinese_chapter_page_renders(notebook: Path):
    """Every chapter has its Chinese twin at the same path under zh/: marked zh-CN, its text in
    Chinese, the same figures as the English page, no traceback."""
    page = ZH_HTML / "notebooks" / f"{notebook.stem}.html"
    assert page.is_file(), f"{page} was not built (make html builds the zh edition too)"
    html = page.read_text(encoding="utf-8")
    assert '<html lang="zh-CN"' in html
    article = re.search(r"<article.*?</article>", html, re.S).group(0)
    text = re.sub(r"<[^>]+>", " ", article)
    assert _cjk(text) > 300, f"only {_cjk(text)} Chinese characters on the zh page"
    assert "Traceback (most recent call last)" not in text
    english = (HTML / "notebooks" / f"{notebook.stem}.html").read_text(encoding="utf-8")
    figures = lambda h: len(re.findall(r'<img[^>]+src="[^"]*_images/', h))
    assert figures(html) == figures(english)


def test_every_page_links_to_its_twin_in_the_other_language():
    """The switch at the top of a page leads to the same page in the other edition and back."""
    starts = ["notebooks/09_decoding", "book/intro", "book/instructor_guide"]
    with offline_page() as (page, errors, blocked):
        for name in starts:
            page.goto((HTML / f"{name}.html").as_uri())
            switch = page.locator(".minigpt-language-switch")
            assert switch.inner_text() == "中文" and switch.is_visible()
            switch.click()
            page.wait_for_load_state()
            assert page.url == (ZH_HTML / f"{name}.html").as_uri()
            assert page.evaluate("document.documentElement.lang") == "zh-CN"
            back = page.locator(".minigpt-language-switch")
            assert back.inner_text() == "English"
            back.click()
            page.wait_for_load_state()
            assert page.url == (HTML / f"{name}.html").as_uri()
        page.goto((ZH_HTML / "book" / "glossary.html").as_uri())       # zh only: to the notation page
        assert page.locator(".minigpt-language-switch").get_attribute("href").endswith("/book/notation.html")
    assert not errors and not blocked, (errors, blocked)


def test_no_chinese_page_has_a_javascript_error():
    pages = [ZH_HTML / f"{name}.html" for name in ZH_PAGES]
    _open_with_no_error([*pages, *(ZH_HTML / "notebooks" / f"{c.stem}.html" for c in CHAPTERS)])


@pytest.mark.parametrize("chapter,kind", [("09_decoding", "generator"), ("10_inside_the_model", "attention")])
def test_in_page_model_speaks_chinese_in_the_chinese_book(chapter, kind):
    """The widgets work in the zh edition and label themselves in Chinese."""
    with offline_page() as (page, errors, blocked):
        page.goto((ZH_HTML / "notebooks" / f"{chapter}.html").as_uri())
        page.wait_for_function(f"document.querySelector('[data-mg-widget={kind}]')"
                               ".getAttribute('data-mg-mounted') === 'ready'", timeout=60_000)
        widget = page.locator(f"[data-mg-widget={kind}]")
        assert _cjk(widget.inner_text()) > 10, widget.inner_text()[:300]
        if kind == "generator":
            page.click("[data-mg=generate]")
            page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done",
                                   timeout=60_000)
        widget.scroll_into_view_if_needed()
        SHOTS.mkdir(parents=True, exist_ok=True)
        widget.screenshot(path=str(SHOTS / f"zh_{chapter}_{kind}.png"))
    assert not errors and not blocked, (errors, blocked)


# ------------------------------------------------ the language switch, pinned (mutation review)
def test_the_language_switch_ignores_the_query_and_fragment_of_the_address():
    """A page reached with ?query or #section (a search result, a link to a heading) still has
    its twin: the switch leads to the other edition's page itself, and the Chinese-only glossary
    still leads to the notation page rather than to an English glossary that does not exist."""
    with offline_page() as (page, errors, blocked):
        page.goto((HTML / "notebooks" / "09_decoding.html").as_uri() + "?highlight=top-p#top-p")
        assert page.locator(".minigpt-language-switch").get_attribute("href") == \
            (ZH_HTML / "notebooks" / "09_decoding.html").as_uri()
        page.goto((ZH_HTML / "book" / "glossary.html").as_uri() + "?highlight=softmax#softmax")
        assert page.locator(".minigpt-language-switch").get_attribute("href") == \
            (HTML / "book" / "notation.html").as_uri()
    assert not errors and not blocked, (errors, blocked)


def test_the_language_switch_says_its_language_and_sits_first_in_the_header_buttons():
    """The switch is marked with the language it leads to (lang and hreflang: a screen reader
    reads "中文" with a Chinese voice, a browser picks its font) and says where it goes in that
    language; it is the first of the theme's header buttons on every page (its place does not
    move with the download buttons a page has), once, even if its script runs again."""
    with offline_page() as (page, errors, blocked):
        for file, lang, title in [(HTML / "notebooks" / "09_decoding.html", "zh-CN", "阅读本页的中文版"),
                                  (HTML / "book" / "intro.html", "zh-CN", "阅读本页的中文版"),
                                  (ZH_HTML / "notebooks" / "09_decoding.html", "en", "Read this page in English")]:
            page.goto(file.as_uri())
            switch = page.locator(".minigpt-language-switch")
            assert [switch.get_attribute(name) for name in ("lang", "hreflang", "title")] == [lang, lang, title]
            assert switch.evaluate("a => a.parentElement.matches('.article-header-buttons') && "
                                   "a.parentElement.firstElementChild === a"), file
            page.add_script_tag(path=str(file.parent.parent / "_static" / "language_switch.js"))
            assert page.locator(".minigpt-language-switch").count() == 1
    assert not errors and not blocked, (errors, blocked)
