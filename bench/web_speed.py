"""The in-page model's speed in headless Chromium, beside PyTorch on the same machine.

    .venv/bin/python bench/web_speed.py [--tokens 200] [--quality] [--model-js OLD_MODEL_JS] [--before REV]

Measures, for the shipped model (minigpt/web/static/minigpt-web/shakespeare_char.js):
* asset load: navigation start -> the model decoded and the widget ready (from file://);
* time to first token after clicking Generate (the prompt's KV caches are already computed
  while it is typed, so this is one decode step), and its ratio to the per-character time,
  for the 43-character default prompt and for a typed 200-character one;
* the attention explorer on a new 128-character text (one whose first character differs from
  the text before, so every position runs): the model's pass and the drawing; an edit of the
  last character (one position reruns); a head switch;
* tokens/s of the page's generation (greedy, KV cache), and of `MiniGPT.generate` in PyTorch
  (greedy, KV cache, same prompt, same length) in this process.
--quality also evaluates the float model and its int8 copy on the whole validation split.
--model-js also measures the page with another model.js (e.g. an older one from `git show`),
in the same browser, alternating with the current one run by run. --before REV does the same
with every file of minigpt-web/ as it was at git revision REV (model.js and the widgets), for
the generation numbers and the interaction numbers alike: before and after in one run.
Timings vary with the machine's load: run it on an idle machine and read them side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import minigpt
from minigpt.web import STATIC_DIR, asset_path, load_web_model, widgets

PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou "
REPO = Path(__file__).resolve().parent.parent


def static_at(rev: str, folder: Path) -> Path:
    """A copy of minigpt-web/ with every file as it was at git revision `rev` (files that did
    not exist then, such as a newer asset, are copied as they are now)."""
    shutil.copytree(STATIC_DIR, folder)
    relative = STATIC_DIR.relative_to(REPO).as_posix()
    for path in folder.iterdir():
        old = subprocess.run(["git", "show", f"{rev}:{relative}/{path.name}"], cwd=REPO, capture_output=True)
        if old.returncode == 0:
            path.write_bytes(old.stdout)
    return folder


def _bases(folder: Path, other_model_js: Path | None, before: str | None) -> dict:
    bases = {"current": STATIC_DIR}
    if other_model_js is not None:
        bases["other"] = Path(folder) / "other"
        shutil.copytree(STATIC_DIR, bases["other"])
        shutil.copy(other_model_js, bases["other"] / "model.js")
    if before is not None:
        bases["before"] = static_at(before, Path(folder) / "before")
    return bases


def _page_runs(page, repeats: int) -> list:
    runs = []
    for _ in range(repeats):
        page.click("[data-mg=generate]")
        page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done",
                               timeout=120_000)
        runs.append(page.evaluate("() => { const r = document.querySelector('[data-mg-widget=generator]')"
                                  ".mgState.run; return [r.firstTokenMs, r.finishedMs, r.ids.length]; }"))
    return runs


def page_numbers(n_tokens: int, repeats: int, other_model_js: Path | None = None,
                 before: str | None = None) -> dict:
    """{name: numbers} for the page with the current files ("current") and, with
    other_model_js, a copy of the static folder using that file instead ("other"), with
    `before`, the folder as it was at that git revision ("before")."""
    from playwright.sync_api import sync_playwright
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        bases = _bases(Path(folder), other_model_js, before)
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        pages, load_ms, runs = {}, {}, {name: [] for name in bases}
        for name, base in bases.items():
            html = widgets.standalone_page([widgets.generator(PROMPT, temperature=0.0, max_new_tokens=n_tokens,
                                                              base=base.as_uri() + "/")])
            page_file = Path(folder) / f"bench_{name}.html"
            page_file.write_text(html, encoding="utf-8")
            pages[name] = browser.new_page()
            pages[name].goto(page_file.as_uri())
            pages[name].wait_for_selector("[data-mg-mounted=ready]", timeout=60_000)
            load_ms[name] = pages[name].evaluate("() => performance.now()")
        for _ in range(repeats):                      # alternate, so load changes hit both alike
            for name in bases:
                runs[name] += _page_runs(pages[name], 1)
        browser.close()
    numbers = {}
    for name, name_runs in runs.items():
        first = sorted(r[0] for r in name_runs)[len(name_runs) // 2]
        # steady state: the tokens after the first, over the time after the first
        rates = sorted((r[2] - 1) / ((r[1] - r[0]) / 1000) for r in name_runs)
        numbers[name] = {"load_ms": load_ms[name], "first_token_ms": first,
                         "tokens_per_s": rates[len(rates) // 2]}
    return numbers


def _new_texts(text: str, n: int, size: int = 128) -> list:
    """n passages of `size` characters, each starting with another character than the one
    before (so the explorer shares no prefix with the previous text and reruns every position)."""
    out, start = [], 0
    while len(out) < n:
        if not out or text[start] != out[-1][0]:
            out.append(text[start:start + size])
        start += 997
    return out


def interaction_numbers(repeats: int, other_model_js: Path | None = None, before: str | None = None) -> dict:
    """{name: numbers}, for the same folders as page_numbers, alternating run by run: first
    character with a typed 200-character prompt (ratio to the per-character time); the explorer
    on a new 128-character text (model pass, drawing), on an edit of its last character, and
    a head switch. Medians of `repeats`."""
    from playwright.sync_api import sync_playwright
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    text = minigpt.load_shakespeare()
    texts = _new_texts(text, repeats)
    state = "document.querySelector('[data-mg-widget=attention]').mgState"
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        bases = _bases(Path(folder), other_model_js, before)
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        pages, numbers = {}, {}
        for name, base in bases.items():
            uri = base.as_uri() + "/"
            html = widgets.standalone_page([widgets.generator(text[:200], temperature=0.0, max_new_tokens=60, base=uri),
                                            widgets.attention_explorer(["abc"], base=uri)])
            page_file = Path(folder) / f"bench_interaction_{name}.html"
            page_file.write_text(html, encoding="utf-8")
            page = pages[name] = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(page_file.as_uri())
            page.wait_for_function("document.querySelectorAll('[data-mg-mounted=ready]').length === 2", timeout=60_000)
            numbers[name] = {key: [] for key in ("first", "ratio", "maps", "positions", "draw", "edit", "switch")}

        def explore(page, value: str) -> dict:
            page.fill("[data-mg=text]", value)
            page.wait_for_function(f"{state}.timing && {state}.timing.chars === {len(value)} && "
                                   f"document.querySelector('[data-mg=text]').value === {json.dumps(value)}",
                                   timeout=60_000)
            page.wait_for_timeout(300)
            return page.evaluate(f"{state}.timing")

        for r in range(repeats):                      # alternate, so load changes hit every folder alike
            for name, page in pages.items():
                got = numbers[name]
                page.click("[data-mg=generate]")
                page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done",
                                       timeout=120_000)
                first, finished, n = page.evaluate("() => { const r = document.querySelector('[data-mg-widget=generator]')"
                                                   ".mgState.run; return [r.firstTokenMs, r.finishedMs, r.ids.length]; }")
                got["first"].append(first)
                got["ratio"].append(first / ((finished - first) / (n - 1)))
                timing = explore(page, texts[r])
                got["maps"].append(timing["computeMs"])
                got["positions"].append(timing.get("positions", 128))
                got["draw"].append(timing["drawMs"])
                got["edit"].append(explore(page, texts[r][:-1] + ("e" if texts[r][-1] != "e" else "a"))["computeMs"])
                got["switch"].append(page.evaluate("""() => { const s = document.querySelector('[data-mg=head]'),
                    t0 = performance.now(); s.value = String((+s.value + 1) % 8);
                    s.dispatchEvent(new Event('change')); return performance.now() - t0; }"""))
        browser.close()
    median = lambda xs: sorted(xs)[len(xs) // 2]
    return {name: {key: median(values) for key, values in got.items()} for name, got in numbers.items()}


def torch_numbers(n_tokens: int, repeats: int) -> dict:
    model, tok = load_web_model(asset_path())
    ids = torch.tensor([tok.encode(PROMPT)])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(ids, n_tokens, temperature=0)
        rates.append(n_tokens / (time.perf_counter() - start))
    return {"tokens_per_s": sorted(rates)[len(rates) // 2], "threads": torch.get_num_threads()}


def quality() -> None:
    from minigpt.checkpoint import load_model
    val = minigpt.TextData.shakespeare().val
    original, _ = load_model(minigpt.pretrained.pretrained_path(), "cpu")
    quantised, _ = load_web_model(asset_path())
    for name, model in (("float32 (shipped)", original), ("int8 (page asset)", quantised)):
        print(f"{name}: validation loss {minigpt.evaluate(model, val, batch_size=16):.5f} nats/char")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--model-js", type=Path, default=None,
                        help="also measure the page with this model.js instead of the package's")
    parser.add_argument("--before", default=None,
                        help="also measure the page with minigpt-web/ as it was at this git revision")
    args = parser.parse_args()
    size = asset_path().stat().st_size / 1e6
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    labels = {"current": "page", "other": f"page with {args.model_js}", "before": f"page as at {args.before}"}
    pages = page_numbers(args.tokens, args.repeats, args.model_js, args.before)
    ref = torch_numbers(args.tokens, args.repeats)
    for name, web in pages.items():
        print(f"asset {size:.1f} MB; {labels[name]}: load {web['load_ms']:.0f} ms, first token "
              f"{web['first_token_ms']:.0f} ms, {web['tokens_per_s']:.0f} tokens/s")
    for name, act in interaction_numbers(args.repeats, args.model_js, args.before).items():
        print(f"{labels[name]}: typed 200-character prompt: first character {act['first']:.0f} ms after Generate, "
              f"{act['ratio']:.2f} per-character times; explorer on a new 128-character text: maps "
              f"{act['maps']:.0f} ms ({act['positions']:.0f} positions), drawing {act['draw']:.0f} ms; "
              f"last character edited: maps {act['edit']:.0f} ms; head switch {act['switch']:.0f} ms")
    print(f"PyTorch generate ({ref['threads']} threads): {ref['tokens_per_s']:.0f} tokens/s  "
          f"[{args.tokens} greedy tokens, median of {args.repeats}; load average before: {load}, "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}]")
    if args.quality:
        quality()


if __name__ == "__main__":
    main()
