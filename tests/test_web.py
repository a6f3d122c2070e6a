"""The model in the page (minigpt.web): the JavaScript must compute what PyTorch computes.

Two levels:
* node runs model.js / sampling.js on small models of every kind the exporter writes
  (learned, sinusoidal, RoPE, GQA, Post-LN, no bias; float32 and int8) - fast, many cases.
  These tests FAIL when node is missing: a skipped parity test proves nothing.
* headless Chromium (playwright), with every non-file request aborted, opens a page with the
  real widgets and the shipped asset: parity on the shipped model, then the controls as a
  reader uses them. Any JavaScript error fails.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import shutil
import subprocess
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import torch

import minigpt
from minigpt import viz
from minigpt.web import STATIC_DIR, asset_path, export_web, load_web_model, read_web_asset
from minigpt.web import widgets

from conftest import offline_page, tr_literals, without_ipython_lines

NODE = shutil.which("node")
SETTINGS = [(1.0, None, None), (0.7, None, None), (1.5, 5, None), (1.0, None, 0.5), (0.8, 10, 0.9),
            (1.0, 1, None), (0.0, None, None), (2.0, None, 0.05), (1.0, 64, 0.999), (0.3, 3, 0.2)]
RUNNER = r"""
const fs = require("fs"), vm = require("vm");
const dir = process.argv[1];
for (const f of ["model.js", "sampling.js"]) vm.runInThisContext(fs.readFileSync(dir + "/" + f, "utf8"), {filename: f});
const job = JSON.parse(fs.readFileSync(0, "utf8"));
if (job.asset) vm.runInThisContext(fs.readFileSync(job.asset, "utf8"));
const out = (new Function("MG", job.code))(MiniGPTWeb);
process.stdout.write(JSON.stringify(out));
"""


def run_js(code: str, asset: Path | None = None):
    """Run `code` (a function body that gets MG = MiniGPTWeb and returns JSON) in node."""
    if NODE is None:
        pytest.fail("node is not installed: the JavaScript parity tests need it (apt-get install nodejs).")
    job = {"code": code, "asset": str(asset) if asset else None}
    proc = subprocess.run([NODE, "-e", RUNNER, str(STATIC_DIR)], input=json.dumps(job),
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"node failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


# ------------------------------------------------------------------------ sampling twin
def _logits(seed=0, V=65, scale=3.0):
    return torch.randn(V, generator=torch.Generator().manual_seed(seed)) * scale


def test_filter_matches_next_token_probs():
    cases = [(seed, *s) for seed in range(4) for s in SETTINGS]
    data = [[_logits(seed).tolist(), t, k, p] for seed, t, k, p in cases]
    out = run_js(f"return {json.dumps(data)}.map(c => MG.filterProbs(c[0], c[1], c[2], c[3]));")
    for (seed, t, k, p), js in zip(cases, out):
        ref = minigpt.next_token_probs(_logits(seed), t, k, p).double()
        torch.testing.assert_close(torch.tensor(js, dtype=torch.float64), ref, atol=1e-6, rtol=1e-5,
                                   msg=f"settings T={t} k={k} p={p}")


def test_seeded_sampling_is_reproducible_and_follows_the_distribution():
    probs = [0.5, 0.3, 0.15, 0.05, 0.0]
    out = run_js(f"""
        const draw = seed => {{ const r = new MG.Rng(seed); const c = [0,0,0,0,0];
                               for (let i = 0; i < 20000; i++) c[MG.sampleIndex({probs}, r.next())]++; return c; }};
        const seq = seed => {{ const r = new MG.Rng(seed); return [r.next(), r.next(), r.next()]; }};
        return {{counts: draw(1), same: seq(7), again: seq(7), other: seq(8)}};""")
    freq = torch.tensor(out["counts"], dtype=torch.float64) / 20000
    assert out["counts"][4] == 0, "a token with probability 0 was drawn"
    torch.testing.assert_close(freq, torch.tensor(probs, dtype=torch.float64), atol=0.015, rtol=0)
    assert out["same"] == out["again"] and out["same"] != out["other"]
    assert all(0 <= u < 1 for u in out["same"])


def _mulberry32(seed: int, n: int) -> list[float]:
    """The published mulberry32, in Python: n uniform numbers in [0, 1) from a 32-bit seed."""
    mask, state, out = 0xFFFFFFFF, seed & 0xFFFFFFFF, []
    for _ in range(n):
        state = (state + 0x6D2B79F5) & mask
        t = ((state ^ (state >> 15)) * (state | 1)) & mask
        t ^= (t + ((t ^ (t >> 7)) * (t | 61))) & mask
        out.append(((t ^ (t >> 14)) & mask) / 2 ** 32)
    return out


def test_the_seeded_rng_is_mulberry32():
    """The seed the generator shows reproduces a sample only while Rng stays the same function
    of it: a changed constant still gives reproducible, well-spread numbers (the test above
    passes), but different ones, so every seeded text written down would change. Its numbers
    equal a Python mulberry32's, bit for bit, for small, large and the largest seed."""
    seeds = [0, 1, 3, 123456, 2 ** 32 - 1]
    out = run_js(f"return {json.dumps(seeds)}.map(s => {{ const r = new MG.Rng(s); return [r.next(), r.next(), r.next(), r.next()]; }});")
    assert out == [_mulberry32(seed, 4) for seed in seeds]


def test_a_draw_never_lands_on_a_token_with_probability_zero():
    """sampleIndex walks the cumulative sum; when u is past it (the sum of float probabilities
    rounds below 1), it returns the last token that can be drawn, never a cut token after it.
    And u = 0 never picks a leading token of probability 0."""
    out = run_js("return [MG.sampleIndex([0.3, 0.3, 0.3, 0, 0], 0.95), MG.sampleIndex([0, 0, 0.5, 0.5], 0),"
                 " MG.sampleIndex([0, 0.25, 0, 0.75, 0], 0.999999)];")
    assert out == [2, 2, 3]


def test_argmax_breaks_ties_by_the_lower_id_like_torch():
    """Greedy decoding in the page (Model.greedy) takes MG.argmax: on equal logits it must pick
    the first, as torch.argmax does, or the page's greedy text could differ from generate()'s.
    A temperature that is 0 in float32 (1e-50) is greedy too: the tied best tokens do not
    share the mass, the lower id takes it all, as in next_token_probs."""
    rows = [[1.0, 3.0, 3.0, 2.0], [0.5, 0.5], [-1.0, 7.0, 2.0, 7.0, 7.0]]
    out = run_js(f"return {json.dumps(rows)}.map(r => MG.argmax(r));")
    assert out == [int(torch.tensor(r).argmax()) for r in rows] == [1, 0, 1]
    tiny = run_js("return MG.filterProbs([2, 0.5, 2], 1e-50, null, null);")
    assert tiny == minigpt.next_token_probs(torch.tensor([2, 0.5, 2]), 1e-50).tolist() == [1, 0, 0]


def test_tokenizer_names_an_unknown_character_and_its_position(tmp_path):
    tok = minigpt.CharTokenizer(list("\n abc"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=5, block_size=8, n_embd=8, n_head=2, n_layer=1))
    with pytest.raises(minigpt.UnknownCharacterError) as python_error:
        tok.encode("ab é")
    path = export_web(model, tok, tmp_path / "mg_tok_test.js", quantize="float32")
    out = run_js("""const m = new MG.Model(MINIGPT_WEB_MODELS["mg_tok_test"]);
                    try { m.tokenizer.encode("ab é"); return null; } catch (e) { return [e.message, e.position]; }""",
                 path)
    assert out is not None, "the JavaScript tokenizer accepted an unknown character"
    assert out[1] == 3
    assert out[0].startswith(str(python_error.value).split(". ")[0])   # same first sentence


# --------------------------------------------------------------- forward-pass parity (node)
VARIANTS = {
    "learned": dict(pos_encoding="learned"),
    "rope+gqa": dict(pos_encoding="rope", n_kv_head=2),
    "sinusoidal+post-ln+no-bias": dict(pos_encoding="sinusoidal", norm="post", bias=False),
    "mqa": dict(pos_encoding="rope", n_kv_head=1),
    "gelu-tanh": dict(pos_encoding="learned", gelu="tanh"),     # GPT-2's activation
}
PROMPTS = ["abc", "a", "hij\n abcdefg", "  ", "jihgfedcba\n"]


@pytest.mark.parametrize("quantize", ["float32", "int8", "float16"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_javascript_forward_matches_pytorch(variant, quantize, tmp_path):
    torch.manual_seed(0)
    tok = minigpt.CharTokenizer(list("\n abcdefghij"))
    cfg = minigpt.GPTConfig(vocab_size=12, block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.0,
                            **VARIANTS[variant])
    model = minigpt.MiniGPT(cfg)
    for p in model.parameters():                  # larger than the init, so every part matters
        p.data.normal_(0, 0.3)
    path = export_web(model, tok, tmp_path / "m.js", quantize=quantize)
    reference, _ = load_web_model(path)
    out = run_js(f"""const m = new MG.Model(MINIGPT_WEB_MODELS["m"]), prompts = {json.dumps(PROMPTS)};
        return {{logits: prompts.map(p => Array.from(m.forward(m.tokenizer.encode(p)))),
                maps: prompts.map(p => m.attentionMaps(m.tokenizer.encode(p)).map(l => l.map(h => Array.from(h)))),
                lens: prompts.map(p => m.layerLogits(m.tokenizer.encode(p)).map(l => Array.from(l))),
                greedy: m.greedy(m.tokenizer.encode("abc"), 40)}};""", path)
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            logits = reference(ids)[0][0]
        torch.testing.assert_close(torch.tensor(out["logits"][i], dtype=torch.float32).view_as(logits), logits, atol=1e-4, rtol=0)
        maps = reference.attention_maps(ids)[:, 0]
        torch.testing.assert_close(torch.tensor(out["maps"][i], dtype=torch.float32).view_as(maps), maps, atol=1e-5, rtol=0)
        lens = viz.layer_logits(reference, ids)[:, 0]                       # (L + 1, T, V)
        torch.testing.assert_close(torch.tensor(out["lens"][i], dtype=torch.float32).view_as(lens), lens,
                                   atol=1e-4, rtol=0)
    # 40 new tokens from a 3-token prompt: past block_size=16 the window slides, as in Python
    greedy = reference.generate(torch.tensor([tok.encode("abc")]), 40, temperature=0)[0, 3:].tolist()
    assert out["greedy"] == greedy


def test_position_tables_match_pytorch_over_a_whole_256_window():
    """The forward-pass parity tests use a 16-position window; the fixed position tables are
    compared here over 256 positions (the shipped model's window). At position 255 an angle
    rounded in float32 differs by one float32 step (1.5e-5) at most, which sin and cos pass on."""
    from minigpt.positions import rope_cos_sin, sinusoidal_table
    out = run_js("return [Array.from(MG.sinusoidalTable(256, 64)), "
                 "Array.from(MG.ropeCosSin(256, 32, 10000).cos), Array.from(MG.ropeCosSin(256, 32, 10000).sin)];")
    table = torch.tensor(out[0]).view(256, 64)
    assert (table - sinusoidal_table(256, 64)).abs().max().item() <= 1e-5
    cos, sin = rope_cos_sin(256, 32)
    assert (torch.tensor(out[1]).view(256, 16) - cos).abs().max().item() <= 1e-6
    assert (torch.tensor(out[2]).view(256, 16) - sin).abs().max().item() <= 1e-6


def test_gelu_tanh_model_differs_from_exact_so_the_page_must_know(tmp_path):
    """The tanh GELU is not a rounding detail: run with the exact one, a gelu="tanh" model's
    logits move by far more than the 1e-4 the parity tests allow."""
    xs = torch.linspace(-6, 6, 241, dtype=torch.float64)
    out = run_js(f"const xs = {json.dumps(xs.tolist())}; return [xs.map(MG.geluTanh), xs.map(MG.gelu)];")
    tanh_ref = torch.nn.functional.gelu(xs, approximate="tanh")
    torch.testing.assert_close(torch.tensor(out[0], dtype=torch.float64), tanh_ref, atol=1e-12, rtol=0)
    assert (torch.tensor(out[1], dtype=torch.float64) - tanh_ref).abs().max() > 1e-4


def test_top_k_ties_keep_the_lowest_ids_in_both():
    """12 logits with 8 tied at the top: top-k 2 keeps ids 2 and 3 (the lowest tied ids) in
    JavaScript and in next_token_probs alike."""
    logits = torch.tensor([0.5, -1.0] + [2.0] * 8 + [0.0, 1.0])
    cases = [(1.0, 2), (0.7, 5), (1.0, 9), (2.0, 1)]
    out = run_js(f"return {json.dumps([[logits.tolist(), t, k] for t, k in cases])}"
                 ".map(c => MG.filterProbs(c[0], c[1], c[2], null));")
    for (t, k), js in zip(cases, out):
        ref = minigpt.next_token_probs(logits, t, k, None).double()
        torch.testing.assert_close(torch.tensor(js, dtype=torch.float64), ref, atol=1e-7, rtol=0,
                                   msg=f"temperature {t}, top-k {k}")
    assert [i for i, p in enumerate(out[0]) if p > 0] == [2, 3]


def test_top_p_ties_keep_the_lowest_ids_in_both():
    """One clear winner and 64 tied logits: top-p keeps the winner and the lowest tied ids, in
    JavaScript and in next_token_probs alike (an unstable sort once kept other ids)."""
    logits = torch.zeros(65)
    logits[64] = 3.0
    cases = [(1.0, 0.9), (0.7, 0.5), (1.0, 0.01), (2.0, 0.3)]
    out = run_js(f"return {json.dumps([[logits.tolist(), t, p] for t, p in cases])}"
                 ".map(c => MG.filterProbs(c[0], c[1], null, c[2]));")
    for (t, p), js in zip(cases, out):
        ref = minigpt.next_token_probs(logits, t, None, p).double()
        js = torch.tensor(js, dtype=torch.float64)
        assert js.nonzero().flatten().tolist() == ref.nonzero().flatten().tolist(), f"T={t} p={p}"
        torch.testing.assert_close(js, ref, atol=1e-6, rtol=1e-5, msg=f"temperature {t}, top-p {p}")


def test_top_p_decides_ties_that_land_exactly_on_p_alike():
    """Uniform logits put the mass of the better tokens exactly on p (6 of 10 tokens hold 0.6):
    whether the next token is dropped then depends on rounding, and the JavaScript walk rounds
    as torch's float32 cumsum does. Every vocabulary from 2 to 69 and 24 values of p: the same
    tokens kept. (Summed in float64, 118 of these 3,264 cases kept one token more or fewer.)"""
    tops = [round(0.05 * i, 2) for i in range(1, 20)] + [0.01, 0.33, 0.66, 0.7, 0.99]
    cases = [(V, p, t) for V in range(2, 70) for p in tops for t in (1.0, 0.7)]
    out = run_js(f"return {json.dumps(cases)}.map(c => MG.filterProbs(new Array(c[0]).fill(0), c[2], null, c[1])"
                 ".map(x => x > 0 ? 1 : 0));")
    for (V, p, t), kept in zip(cases, out):
        ref = minigpt.next_token_probs(torch.zeros(V), t, None, p)
        assert kept == (ref > 0).int().tolist(), f"V={V} top_p={p} temperature={t}"


def test_the_javascript_twin_refuses_what_next_token_probs_refuses():
    """NaN or +inf logits, a row of -inf, top-k 0, a negative temperature and top-p outside
    (0, 1] raise with next_token_probs' words (before, NaN logits drew id 0 without a word);
    a temperature that is 0 in float32 is greedy, as in Python."""
    cases = [([0, float("nan"), 1], 1, None, None), ([0, 1], 1, None, None, "inf"), ([0, 1], 1, 0, None),
             ([0, 1], -1, None, None), ([0, 1], 1, None, 0), ([0, 1], 1, None, 1.5), ("-inf", 1, None, None)]
    jobs = [[c[0] if c[0] != "-inf" else None, c[1], c[2], c[3], len(c) > 4] for c in cases]
    out = run_js(f"return {json.dumps(jobs)}.map(function (c) {{"
                 "  var logits = c[0] === null ? [-Infinity, -Infinity] : c[0].map(x => x === null ? NaN : x);"
                 "  if (c[4]) { logits[1] = Infinity; }"
                 "  try { MG.filterProbs(logits, c[1], c[2], c[3]); return 'no error'; }"
                 "  catch (e) { return e.message; } });")
    assert out[0].startswith("the logits hold NaN") and out[1].startswith("the logits hold +inf")
    assert out[2] == "top_k must be a positive integer or None, got 0."
    assert out[3] == "temperature must be a number >= 0 (0 = greedy), got -1."
    assert out[4].startswith("top_p must be in (0, 1]") and out[5].startswith("top_p must be in (0, 1]")
    assert out[6].startswith("every logit of a row is -inf")
    tiny = run_js("return MG.filterProbs([0.5, 2, 1], 1e-320, null, null);")
    assert tiny == minigpt.next_token_probs(torch.tensor([0.5, 2, 1]), 1e-320).tolist() == [0, 1, 0]
    small = run_js("return MG.filterProbs([0.5, 2, 1.999999], 1e-30, null, null);")   # overflows float32
    torch.testing.assert_close(torch.tensor(small, dtype=torch.float32),
                               minigpt.next_token_probs(torch.tensor([0.5, 2, 1.999999]), 1e-30),
                               atol=1e-7, rtol=0)


def _small_rope_model(tmp_path, block_size: int):
    """A 2-layer RoPE model over 12 characters, weights drawn at std 0.3 (seed 0) so that its
    greedy text varies, exported in float32: (model, tokenizer, the asset's path)."""
    torch.manual_seed(0)
    tok = minigpt.CharTokenizer(list("\n abcdefghij"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=12, block_size=block_size, n_embd=32, n_head=4,
                                              n_layer=2, dropout=0.0, pos_encoding="rope"))
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    return model, tok, export_web(model, tok, tmp_path / "m.js", quantize="float32")


def test_prefill_follows_edits_and_generation_starts_from_it(tmp_path):
    """A Prefill updated edit by edit (typing, deleting, changing the middle) holds the same
    logits as a fresh pass over the whole prompt, computes only the changed positions, and a
    generator started from it gives generate()'s greedy text."""
    model, tok, path = _small_rope_model(tmp_path, block_size=24)
    edits = ["a", "ab", "abc", "abcd", "abc", "abXd", "hij\nabc", "hij\nabcdefg"]
    edits = [e.replace("X", "j") for e in edits]
    out = run_js(f"""const m = new MG.Model(MINIGPT_WEB_MODELS["m"]), pre = new MG.Prefill(m), res = [];
        for (const text of {json.dumps(edits)}) {{
          const ids = m.tokenizer.encode(text), computed = pre.update(ids);
          res.push({{computed, logits: Array.from(pre.logits), fresh: Array.from(m.nextLogits(ids, m.newCaches()))}});
        }}
        const ids = m.tokenizer.encode({json.dumps(edits[-1])}), gen = m.generator(ids, MG.argmax, pre), greedy = [];
        for (let i = 0; i < 10; i++) greedy.push(gen.step().id);
        const again = m.generator(ids, MG.argmax, pre), second = [];
        for (let i = 0; i < 10; i++) second.push(again.step().id);
        return {{res, greedy, second, stillReady: pre.matches(ids)}};""", path)
    assert [r["computed"] for r in out["res"]] == [1, 1, 1, 1, 1, 2, 7, 4]
    for text, r in zip(edits, out["res"]):
        torch.testing.assert_close(torch.tensor(r["logits"]), torch.tensor(r["fresh"]), atol=1e-5, rtol=0, msg=text)
    ids = torch.tensor([tok.encode(edits[-1])])
    assert out["greedy"] == model.eval().generate(ids, 10, temperature=0)[0, ids.size(1):].tolist()
    assert out["second"] == out["greedy"] and out["stillReady"], "a run used up the prefill"


def test_a_prefill_of_a_longer_prompt_is_not_used_for_its_prefix(tmp_path):
    """The reader deleted the prompt's last character ("abcd" -> "abc") and pressed generate before
    the prefill caught up: a prefill that holds "abcd" agrees with "abc" on every position "abc"
    has, but its caches and logits are one character further on. It must not count as ready, and
    a run from "abc" must give generate()'s greedy text for "abc", not for "abcd"."""
    model, tok, path = _small_rope_model(tmp_path, block_size=24)
    out = run_js("""const m = new MG.Model(MINIGPT_WEB_MODELS["m"]), pre = new MG.Prefill(m);
        const long = m.tokenizer.encode("abcd"), short = m.tokenizer.encode("abc");
        pre.update(long);
        const gen = m.generator(short, MG.argmax, pre), greedy = [];
        for (let i = 0; i < 8; i++) greedy.push(gen.step().id);
        return {short: pre.matches(short), long: pre.matches(long), greedy};""", path)
    assert out["long"] and not out["short"]
    ids = torch.tensor([tok.encode("abc")])
    assert out["greedy"] == model.eval().generate(ids, 8, temperature=0)[0, ids.size(1):].tolist()


def test_odd_sizes_and_live_maps_follow_edits(tmp_path):
    """Sizes that are not multiples of 4 (width 36, head size 9, vocabulary 13, c_attn's query
    and key rows 54) take every tail of linear's 4 x 4 tiles and of attention's channel loop:
    logits, maps and every layer's logits still match PyTorch. LiveMaps (the explorer's maps,
    kept across edits) equals a fresh attentionMaps pass after each edit and runs only the
    positions after the shared prefix."""
    torch.manual_seed(1)
    tok = minigpt.CharTokenizer(list("\n abcdefghijk"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=13, block_size=24, n_embd=36, n_head=4, n_kv_head=2,
                                              n_layer=2, dropout=0.0))
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    path = export_web(model, tok, tmp_path / "m.js", quantize="int8")
    reference, _ = load_web_model(path)
    text = "hijk\nabcdefg abc"
    edits = ["a", "ab", "abc", "abcd", "abc", "abkd", "hijk\nabc", text, "k" + text[1:], "k"]
    out = run_js(f"""const m = new MG.Model(MINIGPT_WEB_MODELS["m"]), live = new MG.LiveMaps(m), ids = m.tokenizer.encode({json.dumps(text)});
        const flat = maps => maps.map(l => l.map(h => Array.from(h)));
        const steps = {json.dumps(edits)}.map(e => {{ const i = m.tokenizer.encode(e), got = flat(live.update(i));
          return {{computed: live.computed, live: got, fresh: flat(m.attentionMaps(i))}}; }});
        return {{logits: Array.from(m.forward(ids)), maps: flat(m.attentionMaps(ids)),
                lens: m.layerLogits(ids).map(l => Array.from(l)), steps}};""", path)
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        logits = reference(ids)[0][0]
    torch.testing.assert_close(torch.tensor(out["logits"]).view_as(logits), logits, atol=1e-4, rtol=0)
    maps = reference.attention_maps(ids)[:, 0]
    torch.testing.assert_close(torch.tensor(out["maps"]).view_as(maps), maps, atol=1e-5, rtol=0)
    lens = viz.layer_logits(reference, ids)[:, 0]
    torch.testing.assert_close(torch.tensor(out["lens"]).view_as(lens), lens, atol=1e-4, rtol=0)
    assert [s["computed"] for s in out["steps"]] == [1, 1, 1, 1, 1, 2, 8, 8, 16, 1]
    for edit, step in zip(edits, out["steps"]):
        torch.testing.assert_close(torch.tensor(step["live"]), torch.tensor(step["fresh"]), atol=1e-6, rtol=0, msg=edit)


def test_attention_with_huge_scores_matches_pytorch(tmp_path):
    """Query and key weights 40 times too large make attention scores of thousands: exp() of
    a raw score overflows to inf and inf / inf gives NaN, so the softmax must subtract each
    row's largest score first, as PyTorch's does. Maps and logits still match PyTorch."""
    torch.manual_seed(0)
    tok = minigpt.CharTokenizer(list("\n abcdefghij"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=12, block_size=16, n_embd=32, n_head=4, n_layer=2,
                                              dropout=0.0))
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.c_attn.weight.mul_(40)
    path = export_web(model, tok, tmp_path / "m.js", quantize="float32")
    text = "hij\n abcdefg"
    ids = torch.tensor([tok.encode(text)])
    maps = model.eval().attention_maps(ids)[:, 0]
    assert maps.isfinite().all() and model.blocks[0].attn.c_attn.weight.abs().max() > 4
    out = run_js(f"""const m = new MG.Model(MINIGPT_WEB_MODELS["m"]), ids = m.tokenizer.encode({json.dumps(text)});
        return {{logits: Array.from(m.forward(ids)), maps: m.attentionMaps(ids).map(l => l.map(h => Array.from(h)))}};""",
                 path)
    js_maps = torch.tensor([[[x if x is not None else float("nan") for x in h] for h in l] for l in out["maps"]])
    torch.testing.assert_close(js_maps.view_as(maps), maps, atol=1e-4, rtol=0)
    with torch.no_grad():
        logits = model(ids)[0][0]
    js_logits = torch.tensor([x if x is not None else float("nan") for x in out["logits"]])
    torch.testing.assert_close(js_logits.view_as(logits), logits, atol=1e-3, rtol=0)


def test_a_run_keeps_its_own_caches_while_the_prefill_follows_edits(tmp_path):
    """The generator page keeps its Prefill up to date while a run is still decoding (the reader
    may edit the prompt between two chunks). The run decodes from copies of the prefill's
    caches: an edit that rewrites the prefill's keys and values must not reach the run, whose
    greedy text stays generate()'s for the prompt it started from. A run started later from
    that prompt finds the prefill holding the edited one and must not decode from it."""
    model, tok, path = _small_rope_model(tmp_path, block_size=32)
    prompt, edited = "ba ba ba", "abc"            # greedy: "hihihihihiih" and "hihiiiiiiiih"
    out = run_js(f"""const m = new MG.Model(MINIGPT_WEB_MODELS["m"]), pre = new MG.Prefill(m);
        const ids = m.tokenizer.encode({json.dumps(prompt)});
        pre.update(ids);
        const gen = m.generator(ids, MG.argmax, pre), run = [];
        for (let i = 0; i < 4; i++) run.push(gen.step().id);
        pre.update(m.tokenizer.encode({json.dumps(edited)}));      // the reader edits mid-run
        for (let i = 0; i < 8; i++) run.push(gen.step().id);
        const later = m.generator(ids, MG.argmax, pre), again = [];
        for (let i = 0; i < 12; i++) again.push(later.step().id);
        return {{run, again}};""", path)
    ids = torch.tensor([tok.encode(prompt)])
    greedy = model.eval().generate(ids, 12, temperature=0)[0, ids.size(1):].tolist()
    assert out["run"] == greedy, "an edit of the prefill reached the run decoding from it"
    assert out["again"] == greedy, "a run decoded from a prefill of another prompt"


def test_float16_weights_decode_exactly_subnormals_included(tmp_path):
    """A float16 asset's matrices are halves: the page must turn each one back into exactly
    the float PyTorch's .half().float() gives. Tiny weights are float16 subnormals (below
    6.1e-5, no implicit leading 1, scale 2^-24): too small to move the parity tests' logits,
    so they are checked here one by one, with normal halves, signs, 0 and -0 beside them."""
    tok = minigpt.CharTokenizer(list("abc"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=3, block_size=4, n_embd=8, n_head=2, n_layer=1))
    values = torch.tensor([6e-8, -6e-8, 1e-6, -3e-5, 6.0e-5, 6.2e-5, 0.0, -0.0, 0.3, -1.5, 1024.0, 65504.0,
                           2 ** -24, 1023 * 2 ** -24, -(2 ** -14), 7e-7, 1.1e-5, -4.4e-6, 0.1, 3.0, 0.5, -2.0, 1e-4,
                           -1e-7])
    with torch.no_grad():
        model.wte.weight.copy_(values.view(3, 8))
    path = export_web(model, tok, tmp_path / "m.js", quantize="float16")
    out = run_js('return Array.from(new MG.Model(MINIGPT_WEB_MODELS["m"]).wte);', path)
    assert out == values.half().float().tolist()


def test_javascript_erf_is_accurate():
    xs = torch.linspace(-6, 6, 241, dtype=torch.float64)
    out = run_js(f"return {json.dumps(xs.tolist())}.map(MG.erf);")
    torch.testing.assert_close(torch.tensor(out, dtype=torch.float64), torch.erf(xs), atol=2e-7, rtol=0)


# ------------------------------------------------------------------------ the exporter
def test_export_web_rejects_bad_arguments(tmp_path):
    tok = minigpt.CharTokenizer(list("ab"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=3, block_size=4, n_embd=8, n_head=2, n_layer=1))
    with pytest.raises(ValueError, match="vocab_size"):
        export_web(model, tok, tmp_path / "m.js")
    tok = minigpt.CharTokenizer(list("abc"))
    with pytest.raises(ValueError, match=r"\.js"):
        export_web(model, tok, tmp_path / "m.json")
    with pytest.raises(ValueError, match="quantize"):
        export_web(model, tok, tmp_path / "m.js", quantize="int4")
    with pytest.raises(ValueError, match="name"):
        export_web(model, tok, tmp_path / "m.js", name="no spaces please")
    with pytest.raises(ValueError, match=r"name 'my model' .* \(taken from the file name 'my model\.js': pass a "
                                         r"name, --name at the command line\)"):
        export_web(model, tok, tmp_path / "my model.js")
    (tmp_path / "folder.js").mkdir()
    with pytest.raises(ValueError, match=r"'.*folder\.js' is a folder; the asset is one \.js file"):
        export_web(model, tok, tmp_path / "folder.js")
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(ValueError, match=r"'.*notes\.txt' on its path is a file"):
        export_web(model, tok, tmp_path / "notes.txt" / "m.js")
    with pytest.raises(FileNotFoundError, match="export_web"):
        read_web_asset(tmp_path / "missing.js")
    (tmp_path / "other.js").write_text("console.log(1);\n")
    with pytest.raises(ValueError, match="not a minigpt web asset"):
        read_web_asset(tmp_path / "other.js")


def test_shipped_asset_is_the_pretrained_model_quantised():
    path = asset_path()
    assert path.is_file() and path.stat().st_size < 10_000_000
    asset = read_web_asset(path)
    info = minigpt.pretrained_info()
    assert asset["quantize"] == "int8"
    assert asset["info"]["val_loss"] == info["summary"]["val_loss"]
    quantised, tok = load_web_model(path)
    original, original_tok = minigpt.load_model(minigpt.pretrained.pretrained_path(), "cpu")
    assert tok.chars == original_tok.chars and quantised.config == original.config
    for (name, q), (_, w) in zip(quantised.state_dict().items(), original.state_dict().items()):
        if w.dim() == 2:                          # int8 rows: within half a step of the original
            step = w.abs().amax(dim=1, keepdim=True) / 127
            assert ((q - w).abs() <= step / 2 + 1e-7).all(), name
        else:
            assert torch.equal(q, w), name


def test_the_shipped_model_in_javascript_agrees_with_pytorch_below_1e_5():
    """The appendix's figure: over the first 180 characters of tinyshakespeare the shipped
    model's logits reach about 16 in size, and the page's forward pass (node here) is within
    1e-5 of PyTorch's at every position (6.7e-6 when the appendix was written)."""
    model, tok = load_web_model(asset_path())
    ids = tok.encode(minigpt.load_shakespeare()[:180])
    js = run_js(f"""const m = new MG.Model(MINIGPT_WEB_MODELS["shakespeare_char"]);
        return Array.from(m.forward({json.dumps(ids)}));""", asset_path())
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0][0]                     # (180, V)
    diff = (torch.tensor(js, dtype=torch.float32).view_as(logits) - logits).abs().max().item()
    assert logits.abs().max().item() > 15 and diff < 1e-5, (logits.abs().max().item(), diff)


def test_widget_html_is_small_and_loads_only_local_files():
    for widget in (widgets.generator("ROMEO:\n"), widgets.attention_explorer(["the king, the king"])):
        html = widget.data
        assert len(html.encode()) < 200_000
        assert "http" not in html
        assert "mg-fallback" in html and repr(widget).startswith("WebWidget(")
    with pytest.raises(ValueError, match="temperature"):
        widgets.generator(temperature=-1)
    with pytest.raises(ValueError, match="max_chars"):
        widgets.attention_explorer(["x" * 300])


def test_int8_rows_round_to_within_half_a_step_and_zero_rows_stay_zero():
    from minigpt.web.export import dequantize_int8, quantize_int8
    rows = torch.tensor([1.0, 0.01, 100.0, 0.0, 3.0])[:, None]            # one all-zero row
    weight = torch.randn(5, 12, generator=torch.Generator().manual_seed(0)) * rows
    q, scale = quantize_int8(weight)
    assert q.dtype == torch.int8 and scale.shape == (5,)
    assert q.abs().amax(dim=1).tolist() == [127, 127, 127, 0, 127]       # each row uses the whole range
    back = dequantize_int8(q, scale)
    step = weight.abs().amax(dim=1, keepdim=True) / 127
    assert ((back - weight).abs() <= step / 2 + 1e-7).all()
    assert torch.equal(back[3], torch.zeros(12))


@pytest.mark.parametrize("quantize", ["float32", "int8", "float16"])
def test_the_asset_stores_each_tensor_once_vectors_exactly_and_the_info(quantize, tmp_path):
    """The tied head is stored once (as wte), matrices in the asset's dtype, vectors (biases,
    LayerNorm) in float32 whatever the quantisation; the info and the quantisation are recorded."""
    torch.manual_seed(0)
    tok = minigpt.CharTokenizer(list("\n abc"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=5, block_size=8, n_embd=8, n_head=2, n_layer=1))
    info = {"description": "a test model", "val_loss": 2.5}
    path = export_web(model, tok, tmp_path / "m.js", quantize=quantize, info=info)
    asset = read_web_asset(path)
    assert asset["quantize"] == quantize and asset["info"] == info and asset["name"] == "m"
    state = model.state_dict()
    assert set(asset["tensors"]) == set(state) - {"lm_head.weight"}
    for key, entry in asset["tensors"].items():
        assert entry["dtype"] == (quantize if state[key].dim() == 2 else "float32"), key
        assert entry["shape"] == list(state[key].shape), key
    loaded, _ = load_web_model(path)
    assert not loaded.training
    for key, value in state.items():
        if value.dim() == 1:
            assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("settings, said", [
    (dict(temperature=0.07), "temperature 0.07: the page's slider goes from 0 (greedy) to 2 in steps of 0.05"),
    (dict(top_p=0.01), "top_p 0.01: the page's slider goes from 0.05 to 1"),
    (dict(top_k=66), "top_k (the model has 65 tokens) must be a whole number from 1 to 65, got 66"),
    (dict(max_new_tokens=256), "max_new_tokens (the page generates inside the 256-character window) must be a "
                               "whole number from 1 to 255, got 256"),
])
def test_generator_refuses_settings_the_pages_controls_cannot_show(settings, said):
    with pytest.raises(minigpt.MiniGPTError, match=re.escape(said)):
        widgets.generator("ROMEO:\n", **settings)
    edges = dict(temperature=2.0, top_p=0.05, top_k=65, max_new_tokens=255, seed=2 ** 32 - 1)
    assert widgets.generator("ROMEO:\n", **edges).kind == "generator"          # the ends of each range


def test_generator_examples_get_the_defaults_and_their_characters_checked():
    import html as html_lib
    widget = widgets.generator("ROMEO:\n", examples=[{"label": "plain", "prompt": "JULIET:\n"}])
    config = json.loads(html_lib.unescape(re.search(r'data-mg-config="([^"]*)"', widget.data).group(1)))
    example = config["examples"][0]
    assert (example["temperature"], example["top_k"], example["top_p"], example["seed"]) == (1.0, None, None, 0)
    with pytest.raises(minigpt.MiniGPTError, match=re.escape("example 'bad': character \"é\" (U+00E9) at position 3")):
        widgets.generator("ROMEO:\n", examples=[{"label": "bad", "prompt": "café"}])


def test_layer_predictions_position_must_be_inside_the_text():
    assert "position 4" in repr(widgets.layer_predictions("to be", position=4))
    with pytest.raises(minigpt.MiniGPTError, match=r"position must be a whole number in 0..4 for this text, got 5"):
        widgets.layer_predictions("to be", position=5)


def test_kernel_explorer_reads_a_weight_on_the_diagonal():
    """A query sees its own position: the diagonal is a weight (position 0's is 1), not masked."""
    torch.manual_seed(0)
    tok = minigpt.CharTokenizer(list("\n abc"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=5, block_size=16, n_embd=16, n_head=2, n_layer=1)).eval()
    explorer = widgets.kernel_attention_explorer(model, tok, ["abc ab"], head=1)
    maps = model.attention_maps(torch.tensor([tok.encode("abc ab")]))[:, 0]
    explorer.query.value, explorer.key.value = 3, 3
    assert explorer.readout_text() == (f'query " " (position 3) → key " " (position 3): '
                                       f"weight {maps[0, 1, 3, 3].item():.4f} (layer 0, head 1)")
    explorer.query.value, explorer.key.value = 0, 0
    assert explorer.readout_text().endswith("weight 1.0000 (layer 0, head 1)")


def test_kernel_explorer_caps_its_text_at_the_models_window():
    """A model with a 16-character window: the box takes at most 16 characters (the default 128
    would let a longer text reach the model and fail there); a larger max_chars or a prepared text
    past it is refused when the explorer is made, naming the limit."""
    tok = minigpt.CharTokenizer(list("\n abc"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=5, block_size=16, n_embd=16, n_head=2, n_layer=1)).eval()
    explorer = widgets.kernel_attention_explorer(model, tok, ["abc"])
    assert explorer.max_chars == 16
    explorer.text.value = "abc " * 5
    assert "20 characters" in explorer.error.value and "at most 16" in explorer.error.value
    assert explorer.maps is None
    explorer.text.value = "abc " * 4
    assert explorer.error.value == "" and explorer.maps.shape == (1, 2, 16, 16)
    with pytest.raises(minigpt.UsageError, match=r"max_chars \(the model reads at most 16 characters\) must be "
                                                 r"a whole number from 1 to 16, got 17"):
        widgets.kernel_attention_explorer(model, tok, ["abc"], max_chars=17)
    with pytest.raises(minigpt.UsageError, match=r"prepared texts longer than max_chars=16: \['abc abc "):
        widgets.kernel_attention_explorer(model, tok, ["abc " * 5])



# ------------------------------------------------------------------- in a real browser
PARITY_PROMPTS = ["JULIET:\nO Romeo, Romeo! wherefore art thou ", "ROMEO:\nBut soft, what ligh", "\n",
                  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.",
                  "KING RICHARD II:\nI have been studying how I may compare"]
ATTENTION_TEXTS = ["ROMEO:\nBut soft, what light", "the king, the king, the king"]
EXAMPLES = [{"label": "ligh, top-p 0.9", "prompt": "ROMEO:\nBut soft, what ligh", "temperature": 1.0,
             "top_p": 0.9, "seed": 3, "max_new_tokens": 20},
            {"label": "a long one", "prompt": "JULIET:\n", "temperature": 1.0, "seed": 5, "max_new_tokens": 240}]
LENS_TEXT = "ROMEO:\nBut soft, what ligh"
GEN = "[data-mg-widget=generator] "
EXP = "[data-mg-widget=attention] "
RUN_DONE = "document.querySelector('[data-mg-widget=generator]').mgState.run.done"


@pytest.fixture(scope="module")
def page_and_errors(tmp_path_factory):
    base = STATIC_DIR.as_uri() + "/"
    html = widgets.standalone_page([
        widgets.generator("JULIET:\nO Romeo, Romeo! wherefore art thou ", temperature=0.8, seed=0, max_new_tokens=40, base=base,
                          examples=EXAMPLES),
        widgets.attention_explorer(ATTENTION_TEXTS, layer=0, head=2, base=base),
        widgets.layer_predictions(LENS_TEXT, base=base)])
    page_file = tmp_path_factory.mktemp("web") / "page.html"
    page_file.write_text(html, encoding="utf-8")
    with offline_page(viewport=(900, 1200)) as (page, errors, blocked):
        page.goto(page_file.as_uri())
        page.wait_for_function("document.querySelectorAll('[data-mg-mounted=ready]').length === 3", timeout=60_000)
        yield page, errors, blocked
    assert not errors, errors
    assert not blocked, f"the page tried the network: {blocked}"


@contextlib.contextmanager
def another_tab(page_and_errors, console_errors: bool = False):
    """A new tab in the module page's offline browser context, so that a test can load a page
    of its own while the module's page keeps its state. Yields (tab, errors, requests): the
    tab's uncaught errors (and its console errors, if asked), and every URL it requested.
    The tab is closed afterwards, however the test ends."""
    tab = page_and_errors[0].context.new_page()
    errors, requests = [], []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("request", lambda request: requests.append(request.url))
    if console_errors:
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        yield tab, errors, requests
    finally:
        tab.close()


@pytest.fixture(scope="module")
def reference():
    model, tok = load_web_model(asset_path())
    return model, tok


def test_page_parity_with_pytorch(page_and_errors, reference):
    page, errors, _ = page_and_errors
    model, tok = reference
    out = page.evaluate("""([prompts, texts]) => { const m = MiniGPTWeb.loadModel("shakespeare_char");
        return {logits: prompts.map(p => Array.from(m.forward(m.tokenizer.encode(p)))),
                maps: texts.map(t => m.attentionMaps(m.tokenizer.encode(t)).map(l => l.map(h => Array.from(h)))),
                greedy: m.greedy(m.tokenizer.encode(prompts[0]), 200)}; }""", [PARITY_PROMPTS, ATTENTION_TEXTS])
    for prompt, js in zip(PARITY_PROMPTS, out["logits"]):
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            logits = model(ids)[0][0]
        diff = (torch.tensor(js, dtype=torch.float32).view_as(logits) - logits).abs().max().item()
        assert diff <= 1e-4, f"page logits differ from PyTorch by {diff:.2e} on {prompt!r}"
    for text, js in zip(ATTENTION_TEXTS, out["maps"]):
        maps = model.attention_maps(torch.tensor([tok.encode(text)]))[:, 0]
        torch.testing.assert_close(torch.tensor(js, dtype=torch.float32).view_as(maps), maps, atol=1e-5, rtol=0)
    ids = torch.tensor([tok.encode(PARITY_PROMPTS[0])])
    greedy = model.generate(ids, 200, temperature=0)[0, ids.size(1):].tolist()
    assert out["greedy"] == greedy, "200 greedy characters differ from generate(temperature=0)"
    assert not errors


def _set(page, selector, value):
    """Move a slider / number field the way a reader's input does (value + input event)."""
    page.eval_on_selector(selector, """(el, v) => { el.value = v; el.dispatchEvent(new Event("input", {bubbles: true}));
                                                   el.dispatchEvent(new Event("change", {bubbles: true})); }""", value)


def _to_fixed(x: float, digits: int) -> str:
    """JavaScript's Number.prototype.toFixed: the exact binary value rounded half up."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def test_generator_controls(page_and_errors, reference):
    page, errors, _ = page_and_errors
    model, tok = reference
    gen = "[data-mg-widget=generator] "
    assert "shakespeare_char" in page.inner_text(gen + "[data-mg=model]")
    assert "1.47" in page.inner_text(gen + "[data-mg=model]")
    # an out-of-vocabulary character is named with its position, and blocks Generate
    page.fill(gen + "[data-mg=prompt]", "ROMEO: é")
    page.wait_for_function("document.querySelector('[data-mg=prompt-error]').textContent.length > 0")
    assert "position 7" in page.inner_text(gen + "[data-mg=prompt-error]")
    assert page.is_disabled(gen + "[data-mg=generate]")
    prompt = "ROMEO:\nBut soft, what ligh"
    page.fill(gen + "[data-mg=prompt]", prompt)
    page.wait_for_function("document.querySelector('[data-mg=prompt-error]').textContent === '' && "
                           "!document.querySelector('[data-mg=generate]').disabled")
    # top-k 1 keeps one token; the k slider's label follows
    _set(page, gen + "[data-mg=top-k]", "1")
    assert page.get_attribute(gen + "[data-mg=kept]", "data-kept") == "1"
    assert page.inner_text(gen + "[data-mg=top-k-value]") == "1"
    _set(page, gen + "[data-mg=top-k]", "65")
    assert page.inner_text(gen + "[data-mg=top-k-value]") == "off (65)"
    # top-p: the kept count equals next_token_probs' on the same logits
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(prompt)]))[0][0, -1]
    for temperature, top_p in ((1.0, 0.5), (1.5, 0.9)):
        _set(page, gen + "[data-mg=temperature]", str(temperature))
        _set(page, gen + "[data-mg=top-p]", str(top_p))
        expected = int((minigpt.next_token_probs(logits, temperature, None, top_p) > 0).sum())
        assert page.get_attribute(gen + "[data-mg=kept]", "data-kept") == str(expected)
    # temperature 0 is greedy: the streamed text is generate(temperature=0)'s
    _set(page, gen + "[data-mg=temperature]", "0")
    _set(page, gen + "[data-mg=top-p]", "1")
    assert page.inner_text(gen + "[data-mg=temperature-value]") == "0 (greedy)"
    _set(page, gen + "[data-mg=length]", "30")
    page.click(gen + "[data-mg=generate]")
    page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done", timeout=60_000)
    ids = torch.tensor([tok.encode(prompt)])
    greedy = tok.decode(model.generate(ids, 30, temperature=0)[0, ids.size(1):])
    chars = page.eval_on_selector_all(gen + ".mg-char", "els => els.map(e => e.textContent.replace('↵\\n', '\\n'))")
    assert "".join(chars) == greedy
    # clicking a generated character shows the distribution it was drawn from
    page.click(gen + ".mg-char[data-index='2']")
    assert page.inner_text(gen + "[data-mg=dist-title]").startswith("Character 3")
    assert page.get_attribute(gen + "[data-mg=kept]", "data-kept") == "1"
    assert page.locator(gen + ".mg-bar.mg-drawn").count() == 1
    # the keyboard moves between characters
    page.keyboard.press("ArrowRight")
    assert page.inner_text(gen + "[data-mg=dist-title]").startswith("Character 4")
    # sampling: the seed is shown, the same seed gives the same text, another seed another
    _set(page, gen + "[data-mg=temperature]", "1")
    texts = []
    for seed in ("5", "5", "6"):
        _set(page, gen + "[data-mg=seed]", seed)
        page.click(gen + "[data-mg=generate]")
        page.wait_for_function("document.querySelector('[data-mg-widget=generator]').mgState.run.done", timeout=60_000)
        texts.append(page.inner_text(gen + "[data-mg=output]"))
        assert f"seed {seed}" in page.inner_text(gen + "[data-mg=status]")
    assert texts[0] == texts[1] and texts[0] != texts[2]
    assert not errors


def test_attention_explorer_controls(page_and_errors, reference):
    page, errors, _ = page_and_errors
    model, tok = reference
    exp = "[data-mg-widget=attention] "
    text = "the king, the king, the king"
    page.select_option(exp + "[data-mg=preset]", "1")
    assert page.input_value(exp + "[data-mg=text]") == text
    maps = model.attention_maps(torch.tensor([tok.encode(text)]))[:, 0]
    for layer, head in ((3, 4), (5, 7)):
        page.select_option(exp + "[data-mg=layer]", str(layer))
        page.select_option(exp + "[data-mg=head]", str(head))
        state = page.evaluate("() => { const s = document.querySelector('[data-mg-widget=attention]').mgState;"
                              " return {margin: s.margin, cell: s.cell}; }")
        box = page.locator(exp + "[data-mg=heatmap]").bounding_box()
        i, j = 12, 7
        page.mouse.move(box["x"] + state["margin"] + (j + 0.5) * state["cell"],
                        box["y"] + state["margin"] + (i + 0.5) * state["cell"])
        readout = page.inner_text(exp + "[data-mg=readout]")
        assert f"(layer {layer}, head {head})" in readout
        assert f"query {json.dumps(text[i])} (position {i})" in readout
        assert f"key {json.dumps(text[j])} (position {j})" in readout
        assert f"weight {maps[layer, head, i, j].item():.4f}" in readout
    # the keyboard moves the cursor
    page.focus(exp + "[data-mg=heatmap]")
    page.keyboard.press("ArrowLeft")
    assert "(position 6)" in page.inner_text(exp + "[data-mg=readout]")
    # an overview square opens that head in the big view
    page.click(exp + ".mg-thumb[data-layer='2'][data-head='6']")
    assert page.input_value(exp + "[data-mg=layer]") == "2" and page.input_value(exp + "[data-mg=head]") == "6"
    assert page.locator(exp + ".mg-thumb.mg-selected").count() == 1
    # the reader's own text, with a character the model does not know
    page.fill(exp + "[data-mg=text]", "Hello, wörld")
    page.wait_for_function("document.querySelector('[data-mg=text-error]').textContent.includes('position 8')")
    page.fill(exp + "[data-mg=text]", "To be, or not to be")
    page.wait_for_function("document.querySelector('[data-mg-widget=attention]').mgState.chars.length === 19")
    assert page.locator(exp + ".mg-thumb").count() == model.config.n_layer * model.config.n_head
    assert not errors


def test_widgets_fit_a_phone(page_and_errors):
    page, errors, _ = page_and_errors
    page.set_viewport_size({"width": 390, "height": 900})
    page.evaluate("() => window.dispatchEvent(new Event('resize'))")
    page.wait_for_timeout(400)
    overflow = page.evaluate("() => Array.from(document.querySelectorAll('.mg-widget')).map("
                             "w => w.scrollWidth - w.clientWidth)")
    assert max(overflow) <= 1, f"widgets wider than a 390 px screen by {overflow} px"
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 900, "height": 1200})
    assert not errors


# ------------------------------------------------------- speed: ratios measured in one run
def test_generate_decodes_from_the_prompt_typed_so_far(page_and_errors, shakespeare):
    """With a 200-character prompt already typed, Generate computes no prompt position: the
    first character comes from the prompt's KV caches, kept while the reader typed, and each
    later one costs one position. Counted, not timed (a timing would change with the machine's
    load); `python bench/web_speed.py` measures the time to the first character."""
    page, errors, _ = page_and_errors
    prompt = shakespeare[:200]
    page.fill(GEN + "[data-mg=prompt]", prompt)
    page.wait_for_function("() => { const s = document.querySelector('[data-mg-widget=generator]').mgState;"
                           " return s.promptIds && s.promptIds.length === 200 && s.prefill.matches(s.promptIds); }")
    _set(page, GEN + "[data-mg=temperature]", "0")
    _set(page, GEN + "[data-mg=length]", "40")
    page.evaluate("""() => { const m = MiniGPTWeb.loadModel("shakespeare_char"), real = m.nextLogits;
        window.mgPositions = [];
        m.nextLogits = function (ids, caches) { window.mgPositions.push(ids.length); return real.call(this, ids, caches); }; }""")
    try:
        page.click(GEN + "[data-mg=generate]")
        page.wait_for_function(RUN_DONE, timeout=60_000)
        run = page.evaluate("""() => { const r = document.querySelector('[data-mg-widget=generator]').mgState.run;
            return {n: r.ids.length, used: r.usedPrefill, positions: window.mgPositions}; }""")
    finally:
        page.evaluate("() => { delete MiniGPTWeb.loadModel('shakespeare_char').nextLogits; }")
    assert run["used"], "Generate ran the prompt again instead of using its prefill"
    assert run["n"] == 40 and run["positions"] == [1] * 39, run["positions"][:5]   # none for the prompt
    assert not errors


# ------------------------------------------------------------- never stale, never silent
def _generate(page, prompt: str = "ROMEO:\n", length: int = 10) -> None:
    """Type a prompt and a length, click Generate, wait for the run to end."""
    page.fill(GEN + "[data-mg=prompt]", prompt)
    _set(page, GEN + "[data-mg=length]", str(length))
    page.click(GEN + "[data-mg=generate]")
    page.wait_for_function(RUN_DONE, timeout=60_000)


def test_generator_clears_what_an_invalid_prompt_would_leave_stale(page_and_errors):
    page, errors, _ = page_and_errors
    _generate(page)
    assert page.locator(GEN + ".mg-char").count() == 10 and page.locator(GEN + ".mg-bar").count() > 0
    page.fill(GEN + "[data-mg=prompt]", "ROMEO: \U0001F600")
    page.wait_for_function("document.querySelector('[data-mg=prompt-error]').textContent.includes('position 7')")
    assert page.locator(GEN + ".mg-char").count() == 0, "the old output stayed under the error"
    assert page.locator(GEN + ".mg-bar").count() == 0, "the old bars stayed under the error"
    assert "error" in page.inner_text(GEN + "[data-mg=dist-title]")
    assert page.is_disabled(GEN + "[data-mg=generate]")
    assert not errors


def test_a_new_run_does_not_keep_the_panel_of_a_character_it_replaced(page_and_errors):
    page, errors, _ = page_and_errors
    _generate(page)
    page.click(GEN + ".mg-char[data-index='3']")
    assert page.inner_text(GEN + "[data-mg=dist-title]").startswith("Character 4 (")
    page.click(GEN + "[data-mg=generate]")
    assert page.inner_text(GEN + "[data-mg=dist-title]").startswith("Next character after the prompt"), \
        "the panel showed a character of the run this one replaced"
    page.wait_for_function(RUN_DONE, timeout=60_000)
    assert not errors


def test_a_prompt_broken_during_a_run_clears_the_bars_and_keeps_the_run(page_and_errors):
    """The bars of the old prompt went on showing beside the error, and when the run ended its
    text was wiped while screen readers had just heard "Done"."""
    page, errors, _ = page_and_errors
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\n")
    _set(page, GEN + "[data-mg=length]", "240")
    page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
    page.evaluate("""() => { const w = document.querySelector('[data-mg-widget=generator]');
        w.querySelector('[data-mg=generate]').click();
        const box = w.querySelector('[data-mg=prompt]');
        box.value = 'ROMEO:\u00e9'; box.dispatchEvent(new Event('input', {bubbles: true})); }""")
    page.wait_for_function("document.querySelector('[data-mg=prompt-error]').textContent.length > 0")
    assert page.locator(GEN + ".mg-bar").count() == 0, "the old prompt's bars stayed beside the error"
    assert "error" in page.inner_text(GEN + "[data-mg=dist-title]")
    page.wait_for_function(RUN_DONE, timeout=60_000)
    assert page.locator(GEN + ".mg-char").count() == 240, "the finished run was wiped"
    assert page.inner_text(GEN + "[data-mg=status]").startswith("Done: 240 of 240 characters")
    assert "position 6" in page.inner_text(GEN + "[data-mg=prompt-error]")
    assert page.is_disabled(GEN + "[data-mg=generate]")
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\n")                 # fixed: the page is usable again
    page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
    assert not errors


def test_full_width_digits_from_a_chinese_input_method_are_numbers(page_and_errors):
    page, errors, _ = page_and_errors
    _set(page, GEN + "[data-mg=seed]", "\uff14\uff12")              # "４２"
    assert page.inner_text(GEN + "[data-mg=field-error]") == ""
    assert page.evaluate("document.querySelector('[data-mg-widget=generator]').mgState.seed") == 42
    _set(page, GEN + "[data-mg=seed]", "0")
    assert not errors


def test_an_example_hands_keyboard_focus_to_stop(page_and_errors):
    page, errors, _ = page_and_errors
    focus = page.evaluate("""() => { const b = document.querySelector("[data-mg=example][data-example='1']");
        b.focus(); b.click(); return document.activeElement.getAttribute('data-mg'); }""")
    assert focus == "stop", "focus fell off the example button, which a run disables"
    page.wait_for_function(RUN_DONE, timeout=60_000)
    page.wait_for_timeout(50)
    assert page.evaluate("document.activeElement.getAttribute('data-mg')") == "generate"
    assert not errors


def test_a_long_paste_says_what_was_cut(page_and_errors, shakespeare):
    page, errors, _ = page_and_errors
    page.fill(GEN + "[data-mg=prompt]", shakespeare[:5000])
    page.wait_for_function("document.querySelector('[data-mg=prompt-note]').textContent.length > 0")
    note = page.inner_text(GEN + "[data-mg=prompt-note]")
    assert "5000 characters" in note and "last 255" in note and "first 4745 are cut" in note
    assert page.input_value(GEN + "[data-mg=prompt]") == shakespeare[:5000], "the box cut the paste itself"
    assert page.evaluate("document.querySelector('[data-mg-widget=generator]').mgState.promptIds.length") == 255
    # a character the model does not know, in the kept part, is named at its place in the box
    page.fill(GEN + "[data-mg=prompt]", "a" * 300 + "é")
    page.wait_for_function("document.querySelector('[data-mg=prompt-error]').textContent.includes('position 300')")
    assert not errors


@pytest.mark.parametrize("field,value,message", [("seed", "99999999999", "seed must be a whole number"),
                                                 ("seed", "-3", "seed must be a whole number"),
                                                 ("length", "0", "characters must be a whole number"),
                                                 ("length", "300", "characters must be a whole number")])
def test_out_of_range_fields_are_named_not_clamped(page_and_errors, field, value, message):
    page, errors, _ = page_and_errors
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\n")
    _set(page, GEN + f"[data-mg={field}]", value)
    assert message in page.inner_text(GEN + "[data-mg=field-error]")
    assert page.input_value(GEN + f"[data-mg={field}]") == value, "the box was changed behind the reader's back"
    assert page.get_attribute(GEN + f"[data-mg={field}]", "aria-invalid") == "true"
    page.wait_for_function("document.querySelector('[data-mg=generate]').disabled")
    _set(page, GEN + f"[data-mg={field}]", "7")
    assert page.inner_text(GEN + "[data-mg=field-error]") == ""
    page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
    assert not errors


def _hot_run(page) -> None:
    """120 characters after "ROMEO:\\n" at temperature 2, no top-k or top-p, seed 1: hot enough
    that some drawn characters rank below the 12 bars."""
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\n")
    for field, value in (("temperature", "2"), ("top-k", "65"), ("top-p", "1"), ("length", "120"), ("seed", "1")):
        _set(page, GEN + f"[data-mg={field}]", value)
    page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
    page.click(GEN + "[data-mg=generate]")
    page.wait_for_function(RUN_DONE, timeout=60_000)


def test_the_drawn_character_always_has_a_bar(page_and_errors):
    page, errors, _ = page_and_errors
    _hot_run(page)
    low = page.evaluate("""() => { const h = document.querySelector('[data-mg-widget=generator]').mgState.run.history;
        for (let i = 0; i < h.length; i++) {
          const rank = h[i].logits.filter((x, j) => x > h[i].logits[h[i].id] || (x === h[i].logits[h[i].id] && j < h[i].id)).length;
          if (rank >= 12) return [i, rank + 1];
        } return null; }""")
    assert low is not None, "no character ranked below 12th in 120 draws at temperature 2"
    page.click(GEN + f".mg-char[data-index='{low[0]}']")
    drawn = page.locator(GEN + ".mg-bar.mg-drawn")
    assert drawn.count() == 1
    assert drawn.get_attribute("data-rank") == str(low[1])
    assert f"ranks {low[1]} of 65" in page.inner_text(GEN + "[data-mg=bars]")
    # a slider moved after clicking a character: the panel and the highlight agree again
    _set(page, GEN + "[data-mg=temperature]", "0.5")
    assert page.inner_text(GEN + "[data-mg=dist-title]").startswith("Next character after the prompt")
    assert page.locator(GEN + ".mg-char.mg-selected").count() == 0
    assert not errors


def test_the_rest_line_counts_and_sums_the_tokens_without_a_bar(page_and_errors):
    """Under the 12 bars, "the other n tokens: p%" covers every token without a bar: when the
    drawn character ranks below 12th it gets a bar of its own, so it leaves both the count and
    the sum. Checked against the run's own logits and probabilities, summed in the page's order."""
    page, errors, _ = page_and_errors
    _hot_run(page)
    history = page.evaluate("document.querySelector('[data-mg-widget=generator]').mgState.run.history"
                            ".map(h => ({logits: h.logits, probs: h.probs, id: h.id}))")
    ranks = []
    for step in history:
        order = sorted(range(len(step["logits"])), key=lambda i: (-step["logits"][i], i))
        ranks.append((order, order.index(step["id"])))
    low = next(i for i, (_, rank) in enumerate(ranks) if rank >= 12)
    high = next(i for i, (_, rank) in enumerate(ranks) if rank < 12)
    for index, others in ((low, 52), (high, 53)):
        step, order = history[index], ranks[index][0]
        rest = 0.0
        for i in order[12:]:
            if i != step["id"]:
                rest += step["probs"][i]
        page.click(GEN + f".mg-char[data-index='{index}']")
        assert f"the other {others} tokens: {_to_fixed(100 * rest, 1)}%" in page.inner_text(GEN + "[data-mg=bars]")
    assert not errors


def test_a_prompt_that_nearly_fills_the_window_says_what_fits(page_and_errors):
    """A 250-character prompt leaves room for 6 of 10 characters in the 256-character window:
    the page makes exactly 6, says so, and says the window is full (a shorter run does not);
    a length of 256 can never fit and is refused, like the Python widget's max_new_tokens."""
    page, errors, _ = page_and_errors
    _set(page, GEN + "[data-mg=temperature]", "1")
    _set(page, GEN + "[data-mg=seed]", "4")
    _generate(page, "a" * 250, 10)
    assert page.locator(GEN + ".mg-char").count() == 6
    status = page.inner_text(GEN + "[data-mg=status]")
    assert status.startswith("Done: 6 of 6 characters"), status
    assert "(only 6 of the 10 asked for fit in the 256-character window after this prompt)" in status
    assert "The 256-character window is full" in status
    _generate(page, "ROMEO:\n", 10)
    assert "window is full" not in page.inner_text(GEN + "[data-mg=status]")
    _set(page, GEN + "[data-mg=length]", "256")
    assert "characters must be a whole number from 1 to 255" in page.inner_text(GEN + "[data-mg=field-error]")
    assert page.is_disabled(GEN + "[data-mg=generate]")
    _set(page, GEN + "[data-mg=length]", "10")
    assert not errors


def test_a_characters_panel_names_the_settings_it_was_drawn_with(page_and_errors):
    """top-p at 1 is off (as top-k at 65): its label says so and a character's title does not
    list it; a top-k that was on is listed."""
    page, errors, _ = page_and_errors
    _set(page, GEN + "[data-mg=temperature]", "1")
    _set(page, GEN + "[data-mg=top-k]", "5")
    _set(page, GEN + "[data-mg=top-p]", "1")
    assert page.inner_text(GEN + "[data-mg=top-p-value]") == "off (1.00)"
    _generate(page, "ROMEO:\n", 5)
    page.click(GEN + ".mg-char[data-index='0']")
    title = page.inner_text(GEN + "[data-mg=dist-title]")
    assert title.startswith("Character 1 (") and title.endswith("was drawn from (temperature 1, top-k 5):"), title
    _set(page, GEN + "[data-mg=top-k]", "65")
    assert not errors


def test_a_clicked_characters_panel_stays_while_the_prompt_is_edited_and_home_goes_first(page_and_errors):
    """The panel of a clicked character describes that character of the output on screen: an
    edit of the prompt (still valid) updates the prefill but leaves the panel alone. Home moves
    to the first generated character, End to the last."""
    page, errors, _ = page_and_errors
    _generate(page, "ROMEO:\n", 10)
    page.click(GEN + ".mg-char[data-index='3']")
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\nBut")
    page.wait_for_function("() => { const s = document.querySelector('[data-mg-widget=generator]').mgState;"
                           " return s.promptIds && s.promptIds.length === 10 && s.prefill.matches(s.promptIds); }")
    assert page.inner_text(GEN + "[data-mg=dist-title]").startswith("Character 4 (")
    page.focus(GEN + ".mg-char[data-index='3']")
    page.keyboard.press("Home")
    assert page.inner_text(GEN + "[data-mg=dist-title]").startswith("Character 1 (")
    page.keyboard.press("End")
    assert page.inner_text(GEN + "[data-mg=dist-title]").startswith("Character 10 (")
    assert not errors


def test_new_seed_replaces_an_invalid_seed_and_clears_its_error(page_and_errors):
    page, errors, _ = page_and_errors
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\n")
    _set(page, GEN + "[data-mg=seed]", "-3")
    assert "seed must be a whole number" in page.inner_text(GEN + "[data-mg=field-error]")
    page.click(GEN + "[data-mg=new-seed]")
    assert page.inner_text(GEN + "[data-mg=field-error]") == ""
    assert page.get_attribute(GEN + "[data-mg=seed]", "aria-invalid") == "false"
    page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
    seed = int(page.input_value(GEN + "[data-mg=seed]"))
    assert page.evaluate("document.querySelector('[data-mg-widget=generator]').mgState.seed") == seed
    assert not errors


def test_generator_keyboard_focus_and_announcements(page_and_errors):
    page, errors, _ = page_and_errors
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\n")
    _set(page, GEN + "[data-mg=temperature]", "1")
    _set(page, GEN + "[data-mg=length]", "150")
    page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
    assert page.get_attribute(GEN + "[data-mg=status]", "aria-live") is None
    _set(page, GEN + "[data-mg=top-k]", "65")
    assert page.get_attribute(GEN + "[data-mg=top-k]", "aria-valuetext") == "off (65)"   # not "65"
    _set(page, GEN + "[data-mg=temperature]", "1")
    focus = page.evaluate("""() => { const w = document.querySelector('[data-mg-widget=generator]'),
        live = w.querySelector('[data-mg=announce]'), go = w.querySelector('[data-mg=generate]');
        window.mgAnnouncements = [];
        new MutationObserver(() => window.mgAnnouncements.push(live.textContent))
          .observe(live, {childList: true, characterData: true, subtree: true});
        go.focus(); go.click(); return document.activeElement.getAttribute('data-mg'); }""")
    assert focus == "stop", "focus fell off the disabled Generate button"
    page.wait_for_function(RUN_DONE, timeout=60_000)
    page.wait_for_timeout(50)
    assert page.evaluate("document.activeElement.getAttribute('data-mg')") == "generate"
    said = page.evaluate("window.mgAnnouncements")
    assert len(said) == 2 and said[0].startswith("Generating 150") and said[1].startswith("Done"), said
    assert not errors


def test_one_click_example_sets_the_widget(page_and_errors):
    page, errors, _ = page_and_errors
    page.click(GEN + "[data-mg=example][data-example='0']")
    page.wait_for_function(RUN_DONE, timeout=60_000)
    assert page.input_value(GEN + "[data-mg=prompt]") == EXAMPLES[0]["prompt"]
    assert page.input_value(GEN + "[data-mg=seed]") == "3" and page.input_value(GEN + "[data-mg=top-p]") == "0.9"
    assert page.locator(GEN + ".mg-char").count() == 20
    assert page.get_attribute(GEN + "[data-mg=kept]", "data-kept") == "1"    # 't' holds 0.997 after 'ligh'
    assert "seed 3" in page.inner_text(GEN + "[data-mg=status]")
    assert not errors


def test_stop_halts_a_run_and_the_model_file_is_loaded_once(page_and_errors):
    """Stop ends a run at the next chunk (the first one runs before the click returns): fewer
    characters than asked, a "Stopped" status, Generate back. Three widgets share one <script>."""
    page, errors, _ = page_and_errors
    assert page.evaluate("document.querySelectorAll('script[src$=\"shakespeare_char.js\"]').length") == 1
    page.fill(GEN + "[data-mg=prompt]", "ROMEO:\n")
    _set(page, GEN + "[data-mg=length]", "240")
    page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
    page.evaluate("""() => { const w = document.querySelector('[data-mg-widget=generator]');
        w.querySelector('[data-mg=generate]').click(); w.querySelector('[data-mg=stop]').click(); }""")
    page.wait_for_function(RUN_DONE, timeout=60_000)
    made = page.locator(GEN + ".mg-char").count()
    assert 1 <= made < 240
    assert page.inner_text(GEN + "[data-mg=status]").startswith(f"Stopped: {made} of 240 characters")
    assert not page.is_disabled(GEN + "[data-mg=generate]") and page.is_disabled(GEN + "[data-mg=stop]")
    assert not errors


def test_an_error_during_a_run_ends_it_and_says_so(page_and_errors):
    """Before, an exception in a chunk left Generate disabled and Stop doing nothing for good."""
    page, errors, _ = page_and_errors
    page.evaluate("""() => { const MG = window.MiniGPTWeb; window.mgRealSampler = MG.sampler;
        MG.sampler = function (settings, rng) { const choose = window.mgRealSampler(settings, rng);
          const broken = function (logits) { if (choose.history.length === 3) { throw new Error('boom'); }
                                             return choose(logits); };
          broken.history = choose.history; return broken; }; }""")
    try:
        page.wait_for_function("!document.querySelector('[data-mg=generate]').disabled")
        page.click(GEN + "[data-mg=generate]")
        page.wait_for_function(RUN_DONE, timeout=60_000)
        assert page.inner_text(GEN + "[data-mg=status]") == "Stopped by an error after 3 characters: boom"
        assert not page.is_disabled(GEN + "[data-mg=generate]") and page.is_disabled(GEN + "[data-mg=stop]")
    finally:
        page.evaluate("() => { window.MiniGPTWeb.sampler = window.mgRealSampler; }")
    assert errors and "boom" in errors[-1]          # logged to the console too, for whoever debugs it
    errors.clear()


def test_a_widget_that_cannot_start_says_so_and_the_others_still_mount(page_and_errors, tmp_path):
    """One widget's bad configuration (here written into the page by hand, past widgets.py's
    checks) no longer leaves every other widget of the page at "Loading the model…". A
    max_chars beyond the model's window is held to the window, with a message."""
    base = STATIC_DIR.as_uri() + "/"
    broken = widgets.attention_explorer(ATTENTION_TEXTS, base=base).data
    broken = broken.replace("&quot;texts&quot;: [", "&quot;texts&quot;: null, &quot;unused&quot;: [", 1)
    wide = widgets.layer_predictions(LENS_TEXT, base=base).data.replace(
        "&quot;max_chars&quot;: 128", "&quot;max_chars&quot;: 1000", 1)
    html = widgets.standalone_page([widgets.WebWidget("attention", broken, "broken"),
                                    widgets.WebWidget("layers", wide, "wide")])
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    with another_tab(page_and_errors, console_errors=True) as (page, errors, _):
        page.goto((tmp_path / "page.html").as_uri())
        page.wait_for_function("document.querySelector('[data-mg-widget=layers]').dataset.mgMounted === 'ready'",
                               timeout=60_000)
        assert page.get_attribute("[data-mg-widget=attention]", "data-mg-mounted") == "failed"
        assert page.inner_text("[data-mg-widget=attention]").startswith("This widget could not start (")
        assert len(errors) == 1 and "null" in errors[0], errors      # the console has the error too
        page.fill("[data-mg-widget=layers] [data-mg=text]", "a" * 300)
        page.wait_for_function("document.querySelector('[data-mg-widget=layers] [data-mg=text-error]')"
                               ".textContent.length > 0")
        assert "reads at most 256" in page.inner_text("[data-mg-widget=layers] [data-mg=text-error]")
        assert len(errors) == 1, errors


def test_a_widget_that_mounts_after_the_model_failed_to_load_is_told_at_once(page_and_errors, tmp_path):
    """It used to wait for good ("Loading the model into this page…"): the failed load was
    forgotten, and the widget joined a waiting list nobody would answer."""
    static = tmp_path / "static"
    shutil.copytree(STATIC_DIR, static)
    (static / "shakespeare_char.js").unlink()                  # the model file did not arrive
    html = widgets.standalone_page([widgets.generator("ROMEO:\n", base=static.as_uri() + "/")])
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    with another_tab(page_and_errors) as (page, _, _):
        page.goto((tmp_path / "page.html").as_uri())
        page.wait_for_function("document.querySelector('[data-mg-widget=generator]').dataset.mgMounted === 'failed'",
                               timeout=60_000)
        late = page.evaluate("""() => new Promise(done => {
            const src = document.querySelector('script[src$="shakespeare_char.js"]').src;
            window.MiniGPTWeb.whenModel(src, "shakespeare_char", (error, model) => done(error ? error.message : "model"));
            setTimeout(() => done("no answer"), 2000); })""")
        assert late.startswith("could not load the model file"), late


def test_the_explorer_does_not_break_when_its_first_text_cannot_be_read(page_and_errors, tmp_path):
    """A prepared text the model cannot read (written into the page past widgets.py's check):
    focusing or hovering the map threw a TypeError (no characters yet)."""
    with pytest.raises(minigpt.MiniGPTError, match=r"prepared text 'naïve': character \"ï\" \(U\+00EF\) at position 2"):
        widgets.attention_explorer({"naïve": "naïve"})
    base = STATIC_DIR.as_uri() + "/"
    html = widgets.standalone_page([widgets.attention_explorer(ATTENTION_TEXTS, base=base)]).replace(
        ATTENTION_TEXTS[0].replace("\n", "\\n"), "caf\u00e9", 1)
    assert "café" in html
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    with another_tab(page_and_errors) as (page, errors, _):
        page.goto((tmp_path / "page.html").as_uri())
        page.wait_for_function("document.querySelector('[data-mg-widget=attention]').dataset.mgMounted === 'ready'",
                               timeout=60_000)
        assert "position 3" in page.inner_text("[data-mg-widget=attention] [data-mg=text-error]")
        page.focus("[data-mg-widget=attention] [data-mg=heatmap]")
        page.keyboard.press("ArrowDown")
        page.hover("[data-mg-widget=attention] [data-mg=heatmap]")
        assert page.get_attribute("[data-mg-widget=attention] [data-mg=heatmap]", "role") == "application"
        assert not errors, errors


def test_the_layer_view_keeps_a_chosen_position_while_the_text_is_edited(page_and_errors):
    page, errors, _ = page_and_errors
    lens = "[data-mg-widget=layers] "
    page.click(lens + ".mg-char[data-index='7']")
    page.focus(lens + "[data-mg=text]")
    page.keyboard.press("End")
    page.keyboard.type("t")
    page.wait_for_function("document.querySelector('[data-mg-widget=layers]').mgState.chars.length === "
                           f"{len(LENS_TEXT) + 1}")
    assert "(position 7)" in page.inner_text(lens + "[data-mg=lens-title]"), "the chosen position was dropped"
    page.focus(lens + ".mg-char[data-index='7']")
    page.keyboard.press("ArrowDown")                                  # a radio group's keys: Down is next
    assert "(position 8)" in page.inner_text(lens + "[data-mg=lens-title]")
    page.fill(lens + "[data-mg=text]", LENS_TEXT)                     # as the page opened
    page.wait_for_function("document.querySelector('[data-mg-widget=layers]').mgState.chars.length === "
                           f"{len(LENS_TEXT)}")
    page.click(lens + f".mg-char[data-index='{len(LENS_TEXT) - 1}']")
    assert not errors


def test_the_layer_view_outlines_the_character_that_comes_next(page_and_errors):
    """The cell of the true next character carries a visible outline (it had no style at all)."""
    page, errors, _ = page_and_errors
    found = None
    for position in range(1, len(LENS_TEXT) - 1):
        page.click(f"[data-mg-widget=layers] .mg-char[data-index='{position}']")
        if page.locator("[data-mg-widget=layers] td.mg-lens-hit").count():
            found = position
            break
    assert found is not None, "no layer ranked the next character in its top 5 at any position"
    style = page.eval_on_selector("[data-mg-widget=layers] td.mg-lens-hit",
                                  "td => [getComputedStyle(td).outlineStyle, getComputedStyle(td).outlineWidth]")
    assert style == ["solid", "2px"]
    assert "outlined where a layer ranks it" in page.inner_text("[data-mg-widget=layers] [data-mg=lens-title]")
    page.click(f"[data-mg-widget=layers] .mg-char[data-index='{len(LENS_TEXT) - 1}']")   # as the page opened
    assert not errors


# ---------------------------------------------------------------------------- the explorer
def test_explorer_reruns_only_edited_positions_and_switches_heads_cheaply(page_and_errors, shakespeare):
    page, errors, _ = page_and_errors
    text = shakespeare[:128]
    page.fill(EXP + "[data-mg=text]", text)
    page.wait_for_function("document.querySelector('[data-mg-widget=attention]').mgState.chars.length === 128")
    state = "document.querySelector('[data-mg-widget=attention]').mgState"
    timing = page.evaluate(f"{state}.timing")
    print(f"128 characters: maps computed in {timing['computeMs']:.0f} ms, drawn in {timing['drawMs']:.0f} ms")
    assert timing["positions"] == 128, timing                   # a new text: one whole pass
    # an edit at the end reruns one position, not the text (counted, not timed: the times are
    # bench/web_speed.py's, since a busy machine changes them)
    page.fill(EXP + "[data-mg=text]", text[:127])
    page.wait_for_function("document.querySelector('[data-mg-widget=attention]').mgState.chars.length === 127")
    edit = page.evaluate(f"{state}.timing")
    print(f"127 characters after 128: {edit['positions']} position(s) in {edit['computeMs']:.1f} ms")
    assert edit["positions"] == 1, (edit, timing)
    page.fill(EXP + "[data-mg=text]", text)
    page.wait_for_function("document.querySelector('[data-mg-widget=attention]').mgState.chars.length === 128")
    assert page.evaluate(f"{state}.labels") == "positions"       # position ticks, not thinned letters
    before = page.evaluate(f"[{state}.thumbDraws, {state}.bigDraws]")
    page.select_option(EXP + "[data-mg=head]", "5")
    after = page.evaluate(f"[{state}.thumbDraws, {state}.bigDraws]")
    assert after[0] == before[0], "a head switch redrew the thumbnails"
    assert after[1] == before[1] + 1
    assert page.inner_text(EXP + ".mg-axis-query") == "query ↓" and page.inner_text(EXP + ".mg-axis-key") == "key →"
    assert page.inner_text(EXP + "[data-mg=scale]").split()[:2] == ["0", "1"]
    # the previous-character head keeps its line in a 64-pixel thumbnail of 128 characters
    bright = page.evaluate("""() => { const c = document.querySelector('[data-mg-widget=attention] .mg-thumb[data-layer="0"][data-head="2"] canvas'),
        d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, S = c.width;
        let diag = 0, rest = 0, n = 0;
        for (let a = 1; a < S; a++) { diag += d[(a * S + a) * 4 + 1];
          for (let b = 0; b < a; b++) { rest += d[(a * S + b) * 4 + 1]; n++; } }
        return [S, diag / (S - 1), rest / n]; }""")
    assert bright[0] == 64 and bright[1] > 2 * bright[2], bright
    assert not errors


def test_explorer_readout_and_maps_follow_the_text(page_and_errors):
    page, errors, _ = page_and_errors
    page.select_option(EXP + "[data-mg=preset]", "0")
    page.focus(EXP + "[data-mg=heatmap]")
    for _ in range(6):
        page.keyboard.press("ArrowDown")
    assert "(position 6)" in page.inner_text(EXP + "[data-mg=readout]")
    page.fill(EXP + "[data-mg=text]", "To be, or not")
    page.wait_for_function("document.querySelector('[data-mg-widget=attention]').mgState.chars.length === 13")
    assert page.get_attribute(EXP + "[data-mg=readout]", "data-query") is None
    assert "position" not in page.inner_text(EXP + "[data-mg=readout]"), "the readout names the old text"
    page.fill(EXP + "[data-mg=text]", "To be, or nöt")
    page.wait_for_function("document.querySelector('[data-mg=text-error]').textContent.includes('position 11')")
    assert "mg-stale" in page.get_attribute(EXP + "[data-mg=map-box]", "class")
    assert "previous text" in page.inner_text(EXP + "[data-mg=readout]")
    page.fill(EXP + "[data-mg=text]", "To be, or not")
    page.wait_for_function("!document.querySelector('[data-mg=map-box]').classList.contains('mg-stale')")
    assert not errors


def test_explorer_overview_is_one_tab_stop_with_arrow_keys(page_and_errors):
    page, errors, _ = page_and_errors
    page.select_option(EXP + "[data-mg=layer]", "1")
    page.select_option(EXP + "[data-mg=head]", "3")
    assert page.locator(EXP + ".mg-thumb[tabindex='0']").count() == 1
    page.focus(EXP + ".mg-thumb[tabindex='0']")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    assert page.input_value(EXP + "[data-mg=layer]") == "2" and page.input_value(EXP + "[data-mg=head]") == "4"
    focused = page.evaluate("[document.activeElement.dataset.layer, document.activeElement.dataset.head]")
    assert focused == ["2", "4"]
    assert page.locator(EXP + ".mg-thumb[aria-checked='true']").count() == 1
    assert not errors


def test_explorer_head_scores_are_averages_of_the_open_heads_map(page_and_errors):
    """The sentence under the map ("puts on average 0.41 on the previous character, ...") is
    computed from the open head's map: for every query i >= 1, its weight on key i - 1, on key
    0 and on every newline up to and including i itself, and 1 / (i + 1) for an even head.
    Checked for every head, on a text with several newlines, against the same sums in Python."""
    page, errors, _ = page_and_errors
    text = "ROMEO:\nBut\n\nsoft,\nwhat\n"
    page.fill(EXP + "[data-mg=text]", text)
    page.wait_for_function(f"document.querySelector('[data-mg-widget=attention]').mgState.chars.length === {len(text)}")
    out = page.evaluate("""() => { const w = document.querySelector('[data-mg-widget=attention]'), s = w.mgState;
        const layer = w.querySelector('[data-mg=layer]'), head = w.querySelector('[data-mg=head]'), res = [];
        for (let l = 0; l < s.maps.length; l++) for (let h = 0; h < s.maps[l].length; h++) {
          layer.value = String(l); head.value = String(h); head.dispatchEvent(new Event('change'));
          res.push({l, h, map: Array.from(s.maps[l][h]), said: w.querySelector('[data-mg=head-scores]').textContent});
        } return res; }""")
    T = len(text)
    for head in out:
        m, previous, first, newline, uniform = head["map"], 0.0, 0.0, 0.0, 0.0
        for i in range(1, T):
            uniform += 1 / (i + 1)
            previous += m[i * T + i - 1]
            first += m[i * T]
            for j in range(i + 1):
                if text[j] == "\n":
                    newline += m[i * T + j]
        n = T - 1
        expected = (f"layer {head['l']} head {head['h']} puts on average {_to_fixed(previous / n, 2)} on the "
                    f"previous character, {_to_fixed(first / n, 2)} on the first character and "
                    f"{_to_fixed(newline / n, 2)} on newlines (a head spreading evenly would put "
                    f"{_to_fixed(uniform / n, 2)} on any one key)")
        assert expected in head["said"], (expected, head["said"])
    assert not errors


def test_explorer_readout_at_the_diagonal_and_past_it(page_and_errors):
    """A query sees its own position: the cursor's first square (0, 0) reads weight 1.0000, not
    "masked"; ArrowRight moves to key 1, in query 0's future; ArrowDown to (1, 1), whose weight
    is the map's. In the overview, ArrowUp and ArrowLeft move back as Down and Right moved on."""
    page, errors, _ = page_and_errors
    page.fill(EXP + "[data-mg=text]", "To be, or not.")
    page.wait_for_function("document.querySelector('[data-mg-widget=attention]').mgState.chars.length === 14")
    page.focus(EXP + "[data-mg=heatmap]")
    readout = page.inner_text(EXP + "[data-mg=readout]")
    assert '(position 0) → key "T" (position 0): weight 1.0000' in readout, readout
    page.keyboard.press("ArrowRight")
    assert 'cannot see key "o" (position 1): it is in the future (masked)' in page.inner_text(EXP + "[data-mg=readout]")
    page.keyboard.press("ArrowDown")
    weight = page.evaluate("""() => { const w = document.querySelector('[data-mg-widget=attention]'), s = w.mgState;
        return s.maps[+w.querySelector('[data-mg=layer]').value][+w.querySelector('[data-mg=head]').value][1 * 14 + 1]; }""")
    assert f'"o" (position 1) → key "o" (position 1): weight {_to_fixed(weight, 4)}' in page.inner_text(
        EXP + "[data-mg=readout]")
    page.select_option(EXP + "[data-mg=layer]", "2")
    page.select_option(EXP + "[data-mg=head]", "4")
    page.focus(EXP + ".mg-thumb[tabindex='0']")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowLeft")
    assert page.input_value(EXP + "[data-mg=layer]") == "1" and page.input_value(EXP + "[data-mg=head]") == "3"
    assert page.evaluate("[document.activeElement.dataset.layer, document.activeElement.dataset.head]") == ["1", "3"]
    assert not errors


# --------------------------------------------------------------- what each layer predicts
def test_layer_view_matches_pytorch(page_and_errors, reference):
    page, errors, _ = page_and_errors
    model, tok = reference
    lens = viz.layer_logits(model, torch.tensor([tok.encode(LENS_TEXT)]))[:, 0]     # (L + 1, T, V)
    for position in (len(LENS_TEXT) - 1, 7):
        if position != len(LENS_TEXT) - 1:
            page.click(f"[data-mg-widget=layers] .mg-char[data-index='{position}']")
        rows = page.eval_on_selector_all("[data-mg-widget=layers] tbody tr", "rows => rows.map(r => "
                                         "Array.from(r.querySelectorAll('td[data-token]')).map(td => td.dataset.token))")
        assert len(rows) == model.config.n_layer + 1
        probs = lens[:, position].softmax(-1)
        for layer, row in enumerate(rows):
            top = sorted(range(len(tok.chars)), key=lambda i: (-probs[layer, i].item(), i))[:5]
            # within float rounding a neighbour may swap with a near-tie; the set must agree
            assert row[0] == tok.chars[top[0]] and set(row) <= set(tok.chars[i] for i in
                                                                     sorted(range(len(tok.chars)), key=lambda i: -probs[layer, i].item())[:6])
        assert rows[-1][0] == tok.chars[int(lens[-1, position].argmax())]
    page.focus("[data-mg-widget=layers] .mg-char[data-index='7']")
    page.keyboard.press("ArrowRight")
    assert "position 8" in page.inner_text("[data-mg-widget=layers] [data-mg=lens-title]")
    assert not errors


def test_layer_view_names_its_rows_and_ranks_the_next_character(page_and_errors, reference):
    """Each row is named for where the model stopped (the embedding, block 0 ... block 5, the
    last one "(output)"); the last column gives the true next character's probability and rank
    in that row (as PyTorch's logit lens gives them). At the text's last character there is no
    next one: the title says so and the column is gone. ArrowLeft and ArrowUp move back."""
    page, errors, _ = page_and_errors
    model, tok = reference
    lens_view = "[data-mg-widget=layers] "
    page.click(lens_view + ".mg-char[data-index='7']")
    names = page.eval_on_selector_all(lens_view + "tbody th", "ths => ths.map(th => th.textContent)")
    assert names == ["embedding", "block 0", "block 1", "block 2", "block 3", "block 4", "block 5 (output)"]
    probs = viz.layer_logits(model, torch.tensor([tok.encode(LENS_TEXT)]))[:, 0, 7].softmax(-1)   # (L + 1, V)
    nxt = tok.encode(LENS_TEXT[8])[0]
    cells = page.eval_on_selector_all(lens_view + "td.mg-lens-next", "tds => tds.map(td => td.textContent)")
    assert len(cells) == len(names)
    for layer, cell in enumerate(cells):
        percent, rank = re.fullmatch(r"([\d.]+)% \(rank (\d+)\)", cell).groups()
        assert abs(float(percent) - 100 * probs[layer, nxt].item()) <= 0.051, (layer, cell)
        assert int(rank) == 1 + int((probs[layer] > probs[layer, nxt]).sum()), (layer, cell)
    page.focus(lens_view + ".mg-char[data-index='7']")
    page.keyboard.press("ArrowLeft")
    assert "(position 6)" in page.inner_text(lens_view + "[data-mg=lens-title]")
    page.keyboard.press("ArrowUp")
    assert "(position 5)" in page.inner_text(lens_view + "[data-mg=lens-title]")
    page.click(lens_view + f".mg-char[data-index='{len(LENS_TEXT) - 1}']")      # as the page opened
    assert page.inner_text(lens_view + "[data-mg=lens-title]").endswith(", the end of the text:")
    assert page.locator(lens_view + "td.mg-lens-next").count() == 0
    assert page.locator(lens_view + "thead th").count() == 1 + 5
    assert not errors


def test_layer_top_survives_huge_logits_and_breaks_ties_by_the_lower_id(page_and_errors):
    """The lens's softmax subtracts the row's largest logit (exp(1000) would be inf, and the
    probabilities NaN); equal probabilities rank the lower id first, as everywhere in the book."""
    page, errors, _ = page_and_errors
    out = page.evaluate("MiniGPTWeb.layerTop([new Float32Array([1000, 999, 1000, -5])], 0, 4, 3)")
    assert out[0]["ids"] == [0, 2, 1]
    expected = torch.tensor([1000.0, 999.0, 1000.0, -5.0], dtype=torch.float64).softmax(-1)[[0, 2, 1]]
    torch.testing.assert_close(torch.tensor(out[0]["probs"], dtype=torch.float64), expected, atol=1e-12, rtol=0)
    assert not errors


# ------------------------------------------------------------------- inside Jupyter
def test_inside_a_jupyter_output_the_widget_requests_nothing(page_and_errors, tmp_path):
    """In JupyterLab the book's files are not served (/lab/minigpt-web/model.js is Lab's HTML):
    the widget must not ask for them and must say where the live version is."""
    html = widgets.standalone_page([widgets.attention_explorer(ATTENTION_TEXTS)])
    html = html.replace("<body", "<body data-jp-theme-light").replace(
        '<div class="mg-widget"', '<div class="jp-OutputArea-output"><div class="mg-widget"').replace("</body>", "</div></body>")
    page_file = tmp_path / "lab.html"
    page_file.write_text(html, encoding="utf-8")
    with another_tab(page_and_errors) as (lab, errors, requests):
        lab.goto(page_file.as_uri())
        lab.wait_for_function("document.querySelector('.mg-widget').getAttribute('data-mg-mounted') === 'jupyter'")
        assert "kernel_attention_explorer" in lab.inner_text(".mg-fallback")
        assert [u for u in requests if "minigpt-web" in u] == [], requests
    assert not errors


def test_kernel_attention_explorer_drives_like_the_page():
    """The kernel-side explorer (ipywidgets), driven through its controls' callbacks."""
    model, tok = minigpt.load_pretrained("cpu")
    text = "the king, the king"
    explorer = widgets.kernel_attention_explorer(model, tok, {"Romeo": "ROMEO:\nBut soft", "king": text},
                                                 layer=0, head=2)
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    explorer.preset.value = 1                                   # the prepared text
    assert explorer.text.value == text and len(explorer.chars) == len(text)
    maps = model.attention_maps(torch.tensor([tok.encode(text)]))[:, 0]
    draws = explorer.draws
    explorer.layer.value, explorer.head.value = 3, 4
    explorer.query.value, explorer.key.value = 12, 7
    assert explorer.readout_text() == (f'query "{text[12]}" (position 12) → key "{text[7]}" (position 7): '
                                       f"weight {maps[3, 4, 12, 7].item():.4f} (layer 3, head 4)")
    assert explorer.draws == draws + 4                          # one redraw per change, no recompute
    explorer.key.value = 15
    assert "in the future (masked)" in explorer.readout_text()
    explorer.text.value = "To be"                               # the cursor moves onto the new text
    assert explorer.preset.value == -1 and explorer.query.max == 4 and explorer.query.value == 4
    assert explorer.readout_text().startswith('query "e" (position 4)')
    explorer.text.value = "Hello, wörld"
    assert "position 8" in explorer.error.value and explorer.maps is None and explorer.image.value == b""
    assert repr(explorer).startswith("KernelAttentionExplorer(2 prepared texts")


# --------------------------------------------------------- the widgets in Chinese (issue 21)
WIDGET_JS = ["widgets.js", "generator.js", "attention_explorer.js", "layer_lens.js"]
PY_SOURCES = [Path(viz.__file__), *sorted(Path(widgets.__file__).parent.glob("*.py"))]
FIELD = re.compile(r"\{(\w+)\}")


def _js_table(name: str) -> dict:
    """A widget file's ZH table ({english: chinese}), read as JSON from the file's text."""
    source = (STATIC_DIR / name).read_text(encoding="utf-8")
    match = re.search(r"\n  var ZH = (\{\n.*?\n  \});\n", source, re.S)
    assert match, f"{name} has no ZH table"
    return json.loads(match.group(1))


def _js_messages(name: str) -> set:
    """Every literal a widget file passes to tr(...), string concatenations joined."""
    source = (STATIC_DIR / name).read_text(encoding="utf-8")
    messages = set()
    for call in re.finditer(r'(?<![\w.$])tr\(((?:"(?:[^"\\]|\\.)*"\s*\+\s*)*"(?:[^"\\]|\\.)*")', source):
        messages.add("".join(json.loads(part) for part in re.findall(r'"(?:[^"\\]|\\.)*"', call.group(1))))
    return messages


def _called(node: ast.Call) -> str:
    """The name a call calls: f(...) -> "f", x.f(...) -> "f"."""
    return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")


def _py_messages() -> set:
    """Every literal minigpt/viz.py and minigpt/web/*.py pass to tr(...) or tr_figure(...) (ast)."""
    return set().union(*(tr_literals(path.read_text(encoding="utf-8")) for path in PY_SOURCES))


def _catalogue() -> dict:
    return json.loads((Path(minigpt.__file__).parent / "locale" / "zh" / "widgets.json").read_text(encoding="utf-8"))


def test_every_widget_message_has_its_chinese_with_the_same_fields():
    """Each page widget's tr("...") messages are in its file's ZH table, the kernel side's in
    minigpt/locale/zh/widgets.json; every translation keeps its English's {fields} and is
    Chinese; a message both sides say is translated the same on both."""
    catalogue = _catalogue()
    python = _py_messages()
    assert len(python) >= 25 and not python - set(catalogue), sorted(python - set(catalogue))
    tables = {name: _js_table(name) for name in WIDGET_JS}
    for name, table in tables.items():
        said = _js_messages(name)
        assert said and not said - set(table), (name, sorted(said - set(table)))
        assert not set(table) - said - {read_web_asset(asset_path())["info"]["description"]}, \
            (name, "entries nothing says", sorted(set(table) - said))
    for table in [catalogue, *tables.values()]:
        for english, chinese in table.items():
            assert set(FIELD.findall(english)) == set(FIELD.findall(chinese)), (english, chinese)
            assert re.search(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", chinese), chinese   # Chinese words or punctuation
    shared = {english: chinese for table in tables.values() for english, chinese in table.items() if english in catalogue}
    assert len(shared) >= 5
    assert {english: catalogue[english] for english in shared} == shared


def test_the_shipped_models_description_is_translated_in_the_page():
    description = read_web_asset(asset_path())["info"]["description"]
    assert description in _js_table("widgets.js"), "re-exported asset: add its description to widgets.js's ZH"


def test_chapter_widget_labels_are_in_the_catalogue():
    """The labels the chapters give their widgets (example buttons, prepared texts) are written
    through tr(): each has its Chinese in widgets.json."""
    labels = set()
    for notebook in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "widgets" not in source:
                continue
            tree = ast.parse(without_ipython_lines(source))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = _called(node)
                if name == "dict":                                     # dict(label=..., note=...)
                    labels |= {k.value.value for k in node.keywords if k.arg in ("label", "note")
                               and isinstance(k.value, ast.Constant)}
                if name in ("attention_explorer", "kernel_attention_explorer"):   # {label: text}
                    texts = [a for a in node.args if isinstance(a, ast.Dict)]
                    labels |= {k.value for d in texts for k in d.keys if isinstance(k, ast.Constant)}
    assert len(labels) >= 6, labels
    assert not labels - set(_catalogue()), sorted(labels - set(_catalogue()))


def test_kernel_widgets_speak_chinese_under_set_language(chinese):
    """After set_language("zh"): the in-page widgets' HTML (fallback and Jupyter sentences,
    labels) and the kernel explorer's controls, readout and messages are Chinese; the unknown-
    character message names the 65 characters of tinyshakespeare. Shakespeare is not translated."""
    html = widgets.attention_explorer({"Romeo": "ROMEO:\nBut soft"}).data
    assert "罗密欧" in html and "在 Jupyter 里" in html and "这个实时视图" in html and "ROMEO:" in html
    html = widgets.generator("ROMEO:\n", examples=[{"label": "greedy", "prompt": "ROMEO:\n", "temperature": 0.0}]).data
    assert "贪心解码" in html and "在 Jupyter 里" in html
    model, tok = minigpt.load_pretrained("cpu")
    explorer = widgets.kernel_attention_explorer(model, tok, {"Romeo": "ROMEO:\nBut soft"}, layer=0, head=2)
    assert [c.description for c in (explorer.preset, explorer.layer, explorer.head, explorer.query, explorer.key)] == \
        ["文本", "层", "头", "查询 ↓", "键 →"]
    assert explorer.preset.options[0][0] == "罗密欧" and explorer.preset.options[-1][0] == "你自己的文本"
    explorer.query.value, explorer.key.value = 5, 2
    assert explorer.readout_text().startswith('查询 ":"（位置 5）→ 键 "M"（位置 2）：权重 0.')
    explorer.text.value = "ROMEO: 你好"
    message = explorer.error.value
    assert "位置 7" in message and "65 个字符" in message and "tinyshakespeare" in message and "中文" in message
    assert explorer.readout.value == "没有注意力图：请改好上面的文本。"
    assert repr(explorer).startswith("KernelAttentionExplorer(")      # the repr nbval sees stays as it was


def test_kernel_widgets_speak_english_by_default():
    assert minigpt.language() == "en"
    model, tok = minigpt.load_pretrained("cpu")
    explorer = widgets.kernel_attention_explorer(model, tok, ["ROMEO:\nBut soft"])
    assert [c.description for c in (explorer.preset, explorer.layer, explorer.head)] == ["text", "layer", "head"]
    explorer.text.value = "ROMEO: 你好"
    assert "at position 7" in explorer.error.value and "65 characters of tinyshakespeare" in explorer.error.value


def test_the_widgets_follow_the_pages_language(page_and_errors, tmp_path):
    """A page with <html lang="zh-CN"> (the Chinese book's) gets Chinese widgets, including the
    message that Chinese cannot be typed into a 65-character model; lang="en" gets English."""
    base = STATIC_DIR.as_uri() + "/"
    found = {}
    with another_tab(page_and_errors) as (page, errors, _):
        for lang in ("zh-CN", "en"):
            html = widgets.standalone_page([widgets.generator("ROMEO:\n", base=base, max_new_tokens=5),
                                            widgets.attention_explorer(ATTENTION_TEXTS, base=base),
                                            widgets.layer_predictions(LENS_TEXT, base=base)], lang=lang)
            page_file = tmp_path / f"{lang}.html"
            page_file.write_text(html, encoding="utf-8")
            page.goto(page_file.as_uri())
            page.wait_for_function("document.querySelectorAll('[data-mg-mounted=ready]').length === 3", timeout=60_000)
            got = found[lang] = {
                "generate": page.inner_text(GEN + "[data-mg=generate]"),
                "model": page.inner_text(GEN + "[data-mg=model]"),
                "explorer": page.inner_text(EXP + ".mg-card"),
                "lens": page.inner_text("[data-mg-widget=layers] .mg-card"),
                "thumb": page.get_attribute(EXP + ".mg-thumb[data-layer='1'][data-head='3']", "aria-label")}
            page.click(GEN + "[data-mg=generate]")
            page.wait_for_function(RUN_DONE, timeout=60_000)
            got["status"] = page.inner_text(GEN + "[data-mg=status]")
            page.fill(GEN + "[data-mg=prompt]", "ROMEO: 你好")
            page.wait_for_function("document.querySelector('[data-mg=prompt-error]').textContent.length > 0")
            got["prompt error"] = page.inner_text(GEN + "[data-mg=prompt-error]")
            got["no distribution"] = page.inner_text(GEN + "[data-mg=dist-title]")
            page.fill(EXP + "[data-mg=text]", "the king, 国王")
            page.wait_for_function("document.querySelector('[data-mg=text-error]').textContent.length > 0")
            got["explorer error"] = page.inner_text(EXP + "[data-mg=text-error]")
    assert not errors, errors
    zh, en = found["zh-CN"], found["en"]
    assert zh["generate"] == "生成" and en["generate"] == "Generate"
    assert zh["model"].startswith("模型：") and "验证集损失 1.4787" in zh["model"]
    assert en["model"].startswith("Model: minigpt's shipped model")
    for word in ("层", "头", "查询 ↓", "键 →", "注意力权重", "所有的头"):
        assert word in zh["explorer"], word
    assert zh["thumb"] == "第 1 层，第 3 个头" and en["thumb"] == "layer 1, head 3"
    assert "停在" in zh["lens"] and "嵌入" in zh["lens"] and "第 5 块（输出）" in zh["lens"]
    assert zh["status"].startswith("完成：") and "随机种子 0" in zh["status"] and en["status"].startswith("Done: ")
    for message in (zh["prompt error"], zh["explorer error"]):
        assert "tinyshakespeare 里的 65 个字符" in message and "中文和其他文字都不在其中" in message, message
    assert zh["prompt error"].startswith("位置 7 上的字符 \"你\"（U+4F60）")
    assert zh["explorer error"].startswith("位置 10 上的字符 \"国\"")
    assert zh["no distribution"] == "没有分布：上面的提示有错误。"
    assert en["prompt error"].startswith('character "你" (U+4F60) at position 7 is not in this model\'s 65-character')
    assert "65 characters of tinyshakespeare" in en["explorer error"]
    for text in en.values():
        assert not re.search(r"[\u4e00-\u9fff]", text.replace("你", "").replace("国", "")), text


# ------------------------------------------- widgets.js and loader.js, pinned (mutation review)
def _in_language(page, lang: str, expression: str):
    """Evaluate `expression` (a function body, MG = MiniGPTWeb) on the module's page as if its
    <html lang> were `lang`, and put the page's own language back whatever happens."""
    return page.evaluate("""([lang, body]) => { const html = document.documentElement, was = html.lang;
        html.lang = lang;
        try { return (new Function("MG", body))(window.MiniGPTWeb); } finally { html.lang = was; } }""",
                         [lang, expression])


def test_the_widgets_language_and_tr_keep_what_they_cannot_translate(page_and_errors):
    """<html lang> is read without regard to case (ZH-TW is Chinese, as BCP 47 says); a message
    missing from its file's ZH table is shown in English, never lost (widgets.js promises it:
    the check that every message has its entry runs on the source, not on a reader's page); a
    {field} the caller did not give stays as written; a field used twice is filled twice."""
    page, errors, _ = page_and_errors
    assert [_in_language(page, lang, "return MG.language();") for lang in ("zh-CN", "ZH-TW", "zh", "en", "")] == \
        ["zh", "zh", "zh", "en", "en"]
    said = _in_language(page, "zh-CN", """const table = {"{n} of {n}": "{n} 中的 {n}"};
        return [MG.tr(table, "not in the table {n}", {n: 3}), MG.tr(table, "not in the table"),
                MG.tr(table, "{n} of {n}", {n: 7}), MG.tr(table, "kept {n} of {V}", {n: 3})];""")
    assert said == ["not in the table 3", "not in the table", "7 中的 7", "kept 3 of {V}"]
    assert _in_language(page, "en", 'return MG.tr({"{n} of {n}": "{n} 中的 {n}"}, "{n} of {n}", {n: 7});') == "7 of 7"
    assert not errors


def test_the_model_line_names_both_losses_in_the_pages_language(page_and_errors):
    """The widget header: the model, its validation loss and the loss of the page's quantised
    copy (the reader sees what int8 costs), joined with the page's own punctuation."""
    page, errors, _ = page_and_errors
    model = "{name: 'tiny', quantize: 'int8', info: {val_loss: 1.5, val_loss_quantized: 1.5013}}"
    assert _in_language(page, "en", f"return MG.describeModel({model});") == \
        "Model: model tiny; validation loss 1.5000 nats/char; this int8 copy 1.5013"
    assert _in_language(page, "zh-CN", f"return MG.describeModel({model});") == \
        "模型：模型 tiny；验证集损失 1.5000 奈特/字符；本页的 int8 副本 1.5013"
    assert _in_language(page, "en", "return MG.describeModel({name: 'tiny', info: {}});") == "Model: model tiny"
    assert not errors


def test_an_unknown_character_is_named_with_its_code_point_and_place(page_and_errors):
    """The message names the character, its code point as U+ and four hex digits (é is U+00E9,
    as Python's f"U+{ord(ch):04X}" writes it in the kernel's message), its position counted from
    the start of what the reader typed (the part cut from a long prompt added back), and names
    tinyshakespeare's 65 characters only for a model trained on them."""
    page, errors, _ = page_and_errors
    said = _in_language(page, "en", """const error = {character: "é", position: 2};
        const mine = {tokenizer: {vocabSize: 30}, info: {description: "my own model"}};
        const shakespeare = {tokenizer: {vocabSize: 65}, info: {description: "trained on tinyshakespeare"}};
        return [MG.unknownCharacter(error, mine, 5), MG.unknownCharacter(error, mine),
                MG.unknownCharacter({character: "\\n", position: 0}, {tokenizer: {vocabSize: 3}}),
                MG.unknownCharacter(error, shakespeare)];""")
    assert said[0] == 'character "é" (U+00E9) at position 7 is not in this model\'s 30-character vocabulary. ' \
                      'Remove or replace it.'
    assert said[1].startswith('character "é" (U+00E9) at position 2 ')
    assert said[2].startswith('character "\\n" (U+000A) at position 0 ')
    assert said[3].startswith('character "é" (U+00E9) at position 2 is not in this model\'s 65-character vocabulary: '
                              "it knows only the 65 characters of tinyshakespeare")
    assert not errors


def test_a_widget_waiting_for_its_model_says_so_and_asks_for_it_once(page_and_errors):
    """Between its script and its model a widget says "Loading the model into this page…" and
    is marked loading, so the next script's mountAll (each widget script calls it) neither asks
    for the model again nor mounts it twice, nor touches the widgets already mounted; a failed
    load is named in the page's language."""
    page, errors, _ = page_and_errors
    config = json.dumps({"model": "shakespeare_char", "src": "missing/shakespeare_char.js"})
    out = page.evaluate("""(config) => { const MG = window.MiniGPTWeb, real = MG.whenModel, asked = [];
        const node = document.createElement("div");
        node.className = "mg-widget";
        node.setAttribute("data-mg-widget", "layers");
        node.setAttribute("data-mg-config", config);
        node.innerHTML = '<p class="mg-fallback">needs JavaScript</p>';
        document.body.appendChild(node);
        const html = document.documentElement, lang = html.lang;
        MG.whenModel = (src, name, callback) => asked.push([src, callback]);
        try {
          MG.mountAll();
          const waiting = [node.dataset.mgMounted, node.textContent];
          MG.mountAll();
          html.lang = "zh-CN";
          const error = new Error("could not load the model file missing/shakespeare_char.js");
          error.src = "missing/shakespeare_char.js";
          asked[0][1](error, null);
          return {waiting, asked: asked.map(a => a[0]), failed: [node.dataset.mgMounted, node.textContent]};
        } finally { html.lang = lang; MG.whenModel = real; node.remove(); } }""", config)
    assert out["waiting"] == ["loading", "Loading the model into this page…"]
    assert out["asked"] == ["missing/shakespeare_char.js"], "asked for a model more than once (or not at all)"
    assert out["failed"] == ["failed", "这个小部件没能载入它的模型（无法载入模型文件 missing/shakespeare_char.js）。"]
    assert page.evaluate("document.querySelectorAll('[data-mg-mounted=ready]').length") == 3
    assert not errors


def test_the_loader_adds_the_styles_and_each_script_once_in_order(page_and_errors):
    """Three widgets, three inline loaders, one base: widgets.css is linked once and each shared
    script is added once, in the order the widgets list them, each with async off (a script
    added by JavaScript runs whenever it arrives unless async is false: generator.js must not
    run before model.js and widgets.js)."""
    page, errors, _ = page_and_errors
    base = STATIC_DIR.as_uri() + "/"
    styles = page.evaluate("Array.from(document.querySelectorAll('link[rel=stylesheet]')).map(l => l.href)")
    assert styles == [base + "widgets.css"]
    scripts = page.evaluate("Array.from(document.querySelectorAll('script[src]'))"
                            ".filter(s => !s.src.endsWith('shakespeare_char.js')).map(s => [s.src, s.async])")
    names = ["model.js", "sampling.js", "widgets.js", "generator.js", "attention_explorer.js", "layer_lens.js"]
    assert scripts == [[base + name, False] for name in names]
    assert not errors


def test_a_widget_added_after_its_scripts_ran_still_mounts(page_and_errors, tmp_path):
    """A second widget of a kind whose script has already run (two such widgets far apart on a
    page, or one added later) adds no script, so nothing else would mount it: its own loader
    calls mountAll."""
    base = STATIC_DIR.as_uri() + "/"
    html = widgets.standalone_page([widgets.layer_predictions(LENS_TEXT, base=base)])
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    second = widgets.layer_predictions("To be, or not to be", base=base).data
    div, script = second.split("<script>", 1)
    with another_tab(page_and_errors) as (page, errors, _):
        page.goto((tmp_path / "page.html").as_uri())
        page.wait_for_function("document.querySelector('[data-mg-widget=layers]').dataset.mgMounted === 'ready'",
                               timeout=60_000)
        page.evaluate("""([div, code]) => { document.body.insertAdjacentHTML("beforeend", div);
            const script = document.createElement("script"); script.textContent = code;
            document.body.appendChild(script); }""", [div, script.removesuffix("</script>")])
        page.wait_for_function("Array.from(document.querySelectorAll('[data-mg-widget=layers]'))"
                               ".map(w => w.dataset.mgMounted).join() === 'ready,ready'", timeout=10_000)
        assert page.evaluate("document.querySelectorAll('script[src$=\"layer_lens.js\"]').length") == 1
    assert not errors, errors


def test_a_widget_that_throws_half_built_shows_only_why(page_and_errors):
    """A widget whose mount throws after building part of itself is emptied before it says why:
    half a widget, its buttons doing nothing, must not sit above the message."""
    page, errors, _ = page_and_errors
    out = page.evaluate("""() => { const MG = window.MiniGPTWeb, node = document.createElement("div");
        node.className = "mg-widget";
        node.setAttribute("data-mg-widget", "half-built");
        node.setAttribute("data-mg-config", JSON.stringify({model: "shakespeare_char", src: "shakespeare_char.js"}));
        MG.widgets["half-built"] = (into) => { into.appendChild(MG.el("button", {text: "Generate"}));
                                               throw new Error("half way"); };
        document.body.appendChild(node);
        try { MG.mountAll(); return [node.dataset.mgMounted, node.textContent, node.children.length]; }
        finally { delete MG.widgets["half-built"]; node.remove(); } }""")
    assert out == ["failed", "This widget could not start (half way).", 1]
    assert errors and "half way" in errors[-1]          # logged to the console too, for whoever debugs it
    errors.clear()


JUPYTER_OUTPUTS = ['<div class="jp-OutputArea-output">', '<div class="jp-RenderedHTMLCommon">',   # JupyterLab
                   '<div class="output_area"><div class="output_subarea">',                         # Notebook 6
                   '<div class="output_subarea">', '<div data-mime-type="text/html">',              # VS Code
                   '<div class="cell-output-ipywidget-background">']


def test_in_every_jupyter_output_area_the_widget_requests_nothing_and_says_only_its_jupyter_text(
        page_and_errors, tmp_path):
    """Each front end's output container the loader knows (JupyterLab, the classic Notebook, VS
    Code) keeps the widget from asking for files it does not serve, and the widget shows just
    its Jupyter sentence: the fallback's "works in the rendered book" would be wrong there."""
    bodies = []
    for n, opening in enumerate(JUPYTER_OUTPUTS):
        widget = widgets.layer_predictions(LENS_TEXT).data if n % 2 else widgets.generator("ROMEO:\n").data
        bodies.append(opening + widget + "</div>" * opening.count("<div"))
    html = widgets.standalone_page([]).replace("</body>", "".join(bodies) + "</body>")
    (tmp_path / "lab.html").write_text(html, encoding="utf-8")
    with another_tab(page_and_errors) as (page, errors, requests):
        page.goto((tmp_path / "lab.html").as_uri())
        shown = page.evaluate("Array.from(document.querySelectorAll('.mg-widget')).map(w => "
                              "[w.dataset.mgMounted, w.querySelector('.mg-fallback').textContent, w.dataset.mgJupyter])")
    assert len(shown) == len(JUPYTER_OUTPUTS)
    for opening, (mounted, text, jupyter) in zip(JUPYTER_OUTPUTS, shown):
        assert mounted == "jupyter" and text == jupyter and jupyter.startswith("Inside Jupyter"), (opening, text)
    assert [u for u in requests if u != (tmp_path / "lab.html").as_uri()] == [], requests
    assert not errors, errors


@pytest.mark.parametrize("hostname,protocol,jupyter", [
    ("colab.research.google.com", "https:", True), ("abc123-dot-colab.googleusercontent.com", "https:", True),
    ("", "vscode-webview:", True), ("example.org", "https:", False)])
def test_colab_and_vscode_are_told_apart_by_the_pages_address(page_and_errors, tmp_path, hostname, protocol, jupyter):
    """Colab's and VS Code's outputs are not always inside a container the loader knows; their
    address gives them away (Colab serves outputs from *.googleusercontent.com, VS Code's
    webviews are vscode-webview://). The loader runs here with that address in place of the
    page's own: there it requests nothing, elsewhere it adds the styles and the scripts."""
    div = widgets.generator("ROMEO:\n", base="nowhere/").data.split("<script>")[0]
    (tmp_path / "page.html").write_text(widgets.standalone_page([]).replace("</body>", div + "</body>"), encoding="utf-8")
    with another_tab(page_and_errors) as (page, _, _):
        page.goto((tmp_path / "page.html").as_uri())
        page.route("**/nowhere/**", lambda route: route.abort())          # the files are not needed
        mounted, added = page.evaluate("""([code, location]) => {
            (new Function("window", code))({document: document, location: location});
            return [document.querySelector(".mg-widget").dataset.mgMounted || null,
                    Array.from(document.head.querySelectorAll("script[src], link")).map(e => e.src || e.href)]; }""",
            [(STATIC_DIR / "loader.js").read_text(encoding="utf-8"), {"hostname": hostname, "protocol": protocol}])
    if jupyter:
        assert mounted == "jupyter" and added == []
    else:
        assert mounted is None and len(added) == 5 and added[0].endswith("nowhere/widgets.css"), added


def test_a_widget_whose_settings_cannot_be_read_fails_alone(page_and_errors, tmp_path):
    """A hand-edited page whose first widget's data-mg-config is not JSON: mountAll threw, so
    that widget stayed "loading" without saying why and the widget after it never mounted. Now
    the broken one says it could not start, and the next one runs."""
    base = STATIC_DIR.as_uri() + "/"
    broken = widgets.layer_predictions("ROMEO:\nBut soft", base=base).data
    start = broken.index('data-mg-config="') + len('data-mg-config="')
    broken = broken[:start] + "{not json" + broken[broken.index('"', start):]
    html = widgets.standalone_page([widgets.WebWidget("layers", broken, "broken"),
                                    widgets.layer_predictions("To be, or not", base=base)])
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    with another_tab(page_and_errors, console_errors=True) as (page, errors, _):
        page.goto((tmp_path / "page.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.mg-widget[data-mg-mounted=ready]').length === 1")
        states = page.evaluate("Array.from(document.querySelectorAll('.mg-widget')).map("
                               "w => [w.dataset.mgMounted, w.innerText.slice(0, 40)])")
    assert states[0][0] == "failed" and states[0][1].startswith("This widget could not start (")
    assert states[1][0] == "ready"
    assert len(errors) == 1 and "JSON" in errors[0]          # the reason, in the console
