"""Quick checks of minigpt.viz: the static sampling explorer and the next-token bar chart."""

import json
import re
import shutil
import subprocess

import pytest
import torch

import minigpt
from minigpt import viz

SETTINGS = [(1.0, None, None), (0.7, None, None), (1.5, 5, None), (1.0, None, 0.5),
            (0.8, 10, 0.9), (1.0, 1, None), (0.0, None, None), (2.0, None, 0.05), (1.0, 64, 0.999)]


def _logits(seed=0, V=65, scale=3.0):
    return torch.randn(V, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("temperature,top_k,top_p", SETTINGS)
def test_python_twin_matches_next_token_probs(temperature, top_k, top_p):
    for seed in range(5):
        logits = _logits(seed)
        ours = torch.tensor(viz.explorer_probs(logits.tolist(), temperature, top_k, top_p), dtype=torch.float64)
        ref = minigpt.next_token_probs(logits, temperature, top_k, top_p).double()
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_twin_keeps_the_top_token_when_it_alone_exceeds_p():
    logits = [5.0, 0.0, 0.0, -1.0]                       # the top token has ~0.97 of the mass
    probs = viz.explorer_probs(logits, 1.0, None, 0.5)
    assert probs == [1.0, 0.0, 0.0, 0.0]


def _explorer(**kw):
    tok = minigpt.CharTokenizer(list("\n abcdefgh"))
    logits = torch.linspace(2.0, -2.0, tok.vocab_size)
    samples = [{"temperature": 0.0, "top_k": None, "top_p": None, "text": "greedy </script> text"},
               {"temperature": 1.0, "top_k": 3, "top_p": None, "text": "k3 text"}]
    return viz.sampling_explorer_html(logits, tok.chars, samples=samples, **kw), logits


def test_explorer_html_is_self_contained_and_carries_the_logits():
    explorer, logits = _explorer(n_show=5)
    html = explorer.data
    assert "http" not in html and "src=" not in html and "<link" not in html
    assert html.count('type="range"') == 3
    payload = re.search(r"data = (\{.*?\});\n", html).group(1).replace("<\\/", "</")
    data = json.loads(payload)
    assert data["logits"] == [round(x, 4) for x in logits.tolist()]
    assert data["show"] == [0, 1, 2, 3, 4]
    assert "</script> text" not in html.split("<script>")[1].split("</script>")[0]
    assert html.count("<script>") == 1
    # deterministic, with a stable plain-text repr for nbval
    assert _explorer(n_show=5)[0].data == html
    assert repr(explorer) == "SamplingExplorer(10 tokens, 5 bars, 2 precomputed samples)"
    assert explorer._repr_html_() == html


def test_explorer_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="labels"):
        viz.sampling_explorer_html(torch.zeros(4), ["a", "b"])


NODE = shutil.which("node")


def _run_node(script: str) -> str:
    if NODE is None:                       # a skipped JavaScript test would prove nothing
        pytest.fail("node is not installed: the JavaScript tests need it (apt-get install nodejs).")
    return subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_javascript_filter_matches_python_twin():
    cases = [(seed, *s) for seed in range(3) for s in SETTINGS]
    inputs = [[_logits(seed).tolist(), t, k or 65, p or 1.0] for seed, t, k, p in cases]
    from minigpt.web import STATIC_DIR
    script = (STATIC_DIR / "sampling.js").read_text() + (
        f"var cases = {json.dumps(inputs)};"
        "console.log(JSON.stringify(cases.map(function (c) { return MiniGPTWeb.filterProbs(c[0], c[1], c[2], c[3]); })));")
    out = json.loads(_run_node(script))
    for (seed, t, k, p), js in zip(cases, out):
        py = viz.explorer_probs(_logits(seed).tolist(), t, k, p)
        torch.testing.assert_close(torch.tensor(js, dtype=torch.float64), torch.tensor(py, dtype=torch.float64),
                                   atol=1e-9, rtol=0)


def test_javascript_redraw_runs_against_a_minimal_dom():
    explorer, logits = _explorer(n_show=4)
    script = explorer.data.split("<script>")[1].split("</script>")[0]
    dom = r"""
    var nodes = {};
    function node(name) {
      if (!nodes[name]) { nodes[name] = {value: {T: "1", k: "10", p: "1"}[name], textContent: "",
                                         style: {}, listeners: [],
                                         addEventListener: function (e, f) { this.listeners.push(f); }}; }
      return nodes[name];
    }
    var root = {querySelector: function (sel) { return node(sel.match(/data-mg="(.*)"/)[1]); }};
    var document = {getElementById: function () { return root; }};
    """
    drive = r"""
    nodes.T.value = "0.5"; nodes.k.value = "3"; nodes.p.value = "1";
    nodes.T.listeners[0]();
    console.log(JSON.stringify({w: [0, 1, 2, 3].map(function (r) { return nodes["bar" + r].style.width; }),
                                kept: nodes.kept.textContent, label: nodes.slabel.textContent,
                                kv: nodes.kv.textContent}));
    """
    out = json.loads(_run_node(dom + script + drive))
    probs = viz.explorer_probs([round(x, 4) for x in logits.tolist()], 0.5, 3, None)
    assert out["w"] == [f"{100 * x:.2f}%" for x in probs[:4]]
    assert out["kept"] == "3" and out["kv"] == "3"
    assert out["label"] == "temperature 1, top-k 3"


def test_plot_next_token_probs_draws_k_bars():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    probs = torch.softmax(_logits(1), -1)
    chars = [chr(33 + i) for i in range(65)]
    ax = viz.plot_next_token_probs(probs, chars, k=7)
    assert len(ax.patches) == 7
    assert ax.patches[0].get_height() == pytest.approx(float(probs.max()))
    plt.close("all")


def test_explorer_javascript_comes_from_the_package_files():
    from minigpt.web import STATIC_DIR
    html = _explorer(n_show=5)[0].data
    assert (STATIC_DIR / "sampling.js").read_text()[:200] in html
    assert "__UID__" not in html and "__DATA__" not in html


def test_plot_attention_head_labels_both_axes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    torch.manual_seed(0)
    tok = minigpt.CharTokenizer(list("\n abc"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=5, block_size=16, n_embd=16, n_head=2, n_layer=2))
    ax = viz.plot_attention_head(model, tok, "ab\nc a", layer=1, head=0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "\\n", "c", "␣", "a"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "\\n", "c", "␣", "a"]
    assert "\\n" not in ax.get_title() and "↵" in ax.get_title() and "layer 1, head 0" in ax.get_title()
    with pytest.raises(ValueError, match="head"):
        viz.plot_attention_head(model, tok, "ab", layer=0, head=2)
    plt.close("all")
