"""Shared helpers for the unit tests: tiny configs and models, small texts, a seeded RNG,
and a headless browser page with the network cut.

Everything here is sized for a 2-core CPU shared with other people: models are 32-64 wide,
1-2 layers, contexts of 16-32 tokens.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch

import minigpt
from minigpt import GPTConfig, MiniGPT, TextData

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from rerun_check import without_ipython_lines  # noqa: E402  (the cells' IPython lines, left out to parse)

# Tiny tensors gain nothing from several threads, and on a shared, busy 2-core machine
# OpenMP threads that spin-wait for each other make tiny ops far slower.
torch.set_num_threads(1)

TINY = dict(vocab_size=23, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.0)

# every combination the model supports, for the causality and agreement tests
ALL_IMPLS = ("manual", "sdpa", "flash")
ALL_POS = ("learned", "sinusoidal", "rope")
ALL_NORMS = ("pre", "post")
ALL_COMBOS = list(itertools.product(ALL_IMPLS, ALL_POS, ALL_NORMS))


def load_file_module(name: str, path: Path):
    """A .py file that is not on the import path (tools/, grading/) loaded as module `name`: each
    test file gives its own name, so that one test's patches do not reach another's module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(**overrides) -> GPTConfig:
    values = dict(TINY)
    values.update(overrides)
    return GPTConfig(**values)


def tiny_model(seed: int = 0, scale: float | None = None, **overrides) -> MiniGPT:
    """A tiny model in eval mode. `scale` re-draws every weight matrix with that std, so that
    logits are far apart (random-init logits are nearly tied, which makes argmax fragile)."""
    torch.manual_seed(seed)
    model = MiniGPT(tiny_config(**overrides))
    if scale is not None:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def random_ids(batch: int, length: int, vocab: int = TINY["vocab_size"], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(vocab, (batch, length), generator=g)


def chinese_text(n_chars: int = 4000, seed: int = 0) -> str:
    """A few thousand characters of Chinese, built by combining short phrases."""
    phrases = ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡", "春眠不觉晓", "处处闻啼鸟",
               "夜来风雨声", "花落知多少", "白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_chars:
        line = "，".join(rng.choice(phrases) for _ in range(2)) + "。\n"
        parts.append(line)
        size += len(line)
    return "".join(parts)


@pytest.fixture(scope="session")
def shakespeare() -> str:
    return minigpt.load_shakespeare()


@pytest.fixture(scope="session")
def small_data(shakespeare) -> TextData:
    """TextData on the first 20,000 characters of tinyshakespeare (cheap to build and sample)."""
    return TextData.from_text(shakespeare[:20_000])


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same global RNG state, so failures reproduce."""
    torch.manual_seed(1234)
    random.seed(1234)
    yield



# ------------------------------------------------------------------ a headless browser
def chromium_or_skip() -> str:
    """Chromium's path. Missing Chromium or playwright skips, except in CI (or with
    MINIGPT_REQUIRE_BROWSER set), where a browser check that cannot run is a failure."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        exe = None
    if exe is None:
        message = ("headless Chromium and playwright are needed: apt-get install chromium "
                   "(make unit does it as root) and pip install playwright")
        if os.environ.get("CI") or os.environ.get("MINIGPT_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


@contextlib.contextmanager
def held_by_another_process(hold):
    """`hold()` (a context manager, e.g. run_lock(folder)) entered in a forked child that keeps it
    until this block ends; yields the child's PID. The child is then killed with SIGKILL, as a
    crash would: the kernel drops its flocks."""
    import signal
    import time
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with hold():
                os.write(ready_w, b"1")
                time.sleep(60)
        finally:
            os._exit(0)
    try:
        os.read(ready_r, 1)
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)


@contextlib.contextmanager
def offline_page(viewport=(1280, 1400), dark: bool = False):
    """A headless Chromium page on which every request but file:// is aborted.

    Yields (page, errors, blocked): JavaScript and console errors as they happen, and the
    URLs the page tried to fetch. `dark` sets the book theme's dark mode before the page draws.
    """
    from playwright.sync_api import sync_playwright

    exe = chromium_or_skip()
    errors, blocked = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"])
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            if dark:   # the theme reads its mode from localStorage before drawing
                context.add_init_script("localStorage.setItem('theme', 'dark'); "
                                        "localStorage.setItem('mode', 'dark');")

            def route(request_route):
                if request_route.request.url.startswith("file:"):
                    request_route.continue_()
                else:
                    blocked.append(request_route.request.url)
                    request_route.abort()
            context.route("**/*", route)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
            page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
            yield page, errors, blocked
        finally:
            browser.close()


@pytest.fixture
def chinese():
    """The package speaks Chinese for one test, and English again afterwards whatever happens."""
    minigpt.set_language("zh")
    try:
        yield
    finally:
        minigpt.set_language("en")


def tr_literals(source: str, names: tuple = ("tr", "tr_figure")) -> set:
    """The English texts a Python source passes to minigpt.tr (or viz.tr_figure): the string
    literal first argument of every such call, both branches of `tr("a" if x else "b")`.
    IPython lines (%magic, !shell) are skipped, so a notebook cell's source works too."""
    import ast
    found = set()
    for node in ast.walk(ast.parse(without_ipython_lines(source))):
        name = getattr(getattr(node, "func", None), "id", None) or getattr(getattr(node, "func", None), "attr", "")
        if isinstance(node, ast.Call) and name in names and node.args:
            arg = node.args[0]
            for value in ([arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.add(value.value)
    return found
