"""The in-page model's speed in headless Chromium, beside PyTorch on the same machine.

    .venv/bin/python bench/web_speed.py [--tokens 200] [--quality] [--model-js OLD_MODEL_JS]

Measures, for the shipped model (minigpt/web/static/minigpt-web/shakespeare_char.js):
* asset load: navigation start -> the model decoded and the widget ready (from file://);
* time to first token after clicking Generate (the prompt's KV caches are already computed
  while it is typed, so this is one decode step), and its ratio to the per-character time,
  for the 43-character default prompt and for a typed 200-character one;
* the attention explorer on a 128-character text: the model's pass (attentionMaps) and the
  drawing, and a head switch;
* tokens/s of the page's generation (greedy, KV cache), and of `MiniGPT.generate` in PyTorch
  (greedy, KV cache, same prompt, same length) in this process.
--quality also evaluates the float model and its int8 copy on the whole validation split.
--model-js also measures the page with another model.js (e.g. an older one from `git show`),
in the same browser, alternating with the current one run by run.
Timings vary with the machine's load: run it on an idle machine and read them side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

import minigpt
from minigpt.web import STATIC_DIR, asset_path, load_web_model, widgets

PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou "


def _page_runs(page, repeats: int) -> list:
    runs = []
    for _ in range(repeats):
        page.click("[data-mg=generate]")
        page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done",
                               timeout=120_000)
        runs.append(page.evaluate("() => { const r = document.querySelector('[data-mg-widget=generator]')"
                                  ".mgState.run; return [r.firstTokenMs, r.finishedMs, r.ids.length]; }"))
    return runs


def page_numbers(n_tokens: int, repeats: int, other_model_js: Path | None = None) -> dict:
    """{name: numbers} for the page with the current model.js ("current") and, with
    other_model_js, a copy of the static folder using that file instead ("other")."""
    from playwright.sync_api import sync_playwright
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        bases = {"current": STATIC_DIR}
        if other_model_js is not None:
            bases["other"] = Path(folder) / "other"
            shutil.copytree(STATIC_DIR, bases["other"])
            shutil.copy(other_model_js, bases["other"] / "model.js")
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        pages, load_ms, runs = {}, {}, {name: [] for name in bases}
        for name, base in bases.items():
            html = widgets.standalone_page([widgets.generator(PROMPT, temperature=0.0, length=n_tokens,
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


def interaction_numbers(repeats: int) -> dict:
    """First character with a typed 200-character prompt (ratio to the per-character time) and
    the explorer on a 128-character text, in one page, medians of `repeats`."""
    from playwright.sync_api import sync_playwright
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    text = minigpt.load_shakespeare()
    base = STATIC_DIR.as_uri() + "/"
    html = widgets.standalone_page([widgets.generator(text[:200], temperature=0.0, length=60, base=base),
                                    widgets.attention_explorer(["abc"], base=base)])
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        page_file = Path(folder) / "bench_interaction.html"
        page_file.write_text(html, encoding="utf-8")
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(page_file.as_uri())
        page.wait_for_function("document.querySelectorAll('[data-mg-mounted=ready]').length === 2", timeout=60_000)
        firsts, ratios, maps_ms, draw_ms, switch_ms = [], [], [], [], []
        for r in range(repeats):
            page.click("[data-mg=generate]")
            page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done",
                                   timeout=120_000)
            first, finished, n = page.evaluate("() => { const r = document.querySelector('[data-mg-widget=generator]')"
                                               ".mgState.run; return [r.firstTokenMs, r.finishedMs, r.ids.length]; }")
            firsts.append(first)
            ratios.append(first / ((finished - first) / (n - 1)))
            page.fill("[data-mg=text]", text[r:r + 128])
            page.wait_for_function(f"document.querySelector('[data-mg-widget=attention]').mgState.timing.chars === 128 && "
                                   f"document.querySelector('[data-mg=text]').value === {json.dumps(text[r:r + 128])}",
                                   timeout=60_000)
            page.wait_for_timeout(300)
            timing = page.evaluate("document.querySelector('[data-mg-widget=attention]').mgState.timing")
            maps_ms.append(timing["computeMs"])
            draw_ms.append(timing["drawMs"])
            switch_ms.append(page.evaluate("""() => { const s = document.querySelector('[data-mg=head]'),
                t0 = performance.now(); s.value = String((+s.value + 1) % 8);
                s.dispatchEvent(new Event('change')); return performance.now() - t0; }"""))
        browser.close()
    median = lambda xs: sorted(xs)[len(xs) // 2]
    return {"first_ms": median(firsts), "first_ratio": median(ratios), "maps_ms": median(maps_ms),
            "draw_ms": median(draw_ms), "switch_ms": median(switch_ms)}


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
    args = parser.parse_args()
    size = asset_path().stat().st_size / 1e6
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    pages = page_numbers(args.tokens, args.repeats, args.model_js)
    ref = torch_numbers(args.tokens, args.repeats)
    for name, web in pages.items():
        label = "page" if name == "current" else f"page with {args.model_js}"
        print(f"asset {size:.1f} MB; {label}: load {web['load_ms']:.0f} ms, first token "
              f"{web['first_token_ms']:.0f} ms, {web['tokens_per_s']:.0f} tokens/s")
    act = interaction_numbers(args.repeats)
    print(f"typed 200-character prompt: first character {act['first_ms']:.0f} ms after Generate, "
          f"{act['first_ratio']:.2f} per-character times; explorer on 128 characters: maps {act['maps_ms']:.0f} ms, "
          f"drawing {act['draw_ms']:.0f} ms, head switch {act['switch_ms']:.0f} ms")
    print(f"PyTorch generate ({ref['threads']} threads): {ref['tokens_per_s']:.0f} tokens/s  "
          f"[{args.tokens} greedy tokens, median of {args.repeats}; load average before: {load}]")
    if args.quality:
        quality()


if __name__ == "__main__":
    main()
