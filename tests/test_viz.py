"""Quick checks of minigpt.viz: the plots, and what each layer predicts (layer_logits)."""

import pytest
import torch

import minigpt
from minigpt import viz

def _logits(seed=0, V=65, scale=3.0):
    return torch.randn(V, generator=torch.Generator().manual_seed(seed)) * scale


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


def test_plot_attention_head_labels_bpe_tokens_not_characters():
    # a BPE token spans several characters: one label per token (was an IndexError)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from minigpt.bpe import BPETokenizer
    tok = BPETokenizer.train("the king, the king, the queen. " * 20, 270)
    text = "the king, the queen"
    ids = tok.encode(text)
    assert len(ids) < len(text)
    torch.manual_seed(0)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_embd=16, n_head=2,
                                              n_layer=1))
    ax = viz.plot_attention_head(model, tok, text, layer=0, head=1)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == len(ids) and "".join(labels).replace("␣", " ") == text
    assert len(ax.patches) == len(ids)               # one outline per query row
    plt.close("all")


def test_attention_plots_refuse_shapes_and_labels_that_do_not_fit():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    maps = torch.softmax(torch.randn(2, 1, 3, 5, 5), dim=-1)      # (L, B, H, T, T)
    with pytest.raises(minigpt.MiniGPTError, match=r"5x5 matrix but 4 token labels; pass one label per position"):
        viz.plot_attention(maps[0, 0, 0], list("abcd"))
    with pytest.raises(minigpt.MiniGPTError, match=r"\(L, H, T, T\) or \(L, B, H, T, T\), got \(3, 5, 5\); .*maps\[None\]"):
        viz.plot_attention_grid(maps[0, 0], list("abcde"))
    fig = viz.plot_attention_grid(maps[0, 0][None], list("abcde"))      # one layer, as the hint says
    assert len(fig.axes) == 3
    plt.close("all")


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_layer_logits_is_the_head_on_each_residual(norm):
    """layer_logits: n_layer + 1 rows; row 0 is the head on the embedding, row l + 1 the head
    on block l's output (rebuilt here by hand), the last row the model's own logits; the model
    is left in the mode it was in."""
    torch.manual_seed(0)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=11, block_size=16, n_embd=16, n_head=2, n_layer=3,
                                              dropout=0.1, norm=norm))
    idx = torch.randint(11, (2, 7))
    lens = viz.layer_logits(model, idx)
    assert lens.shape == (4, 2, 7, 11) and model.training
    model.eval()
    with torch.no_grad():
        x = model.wte(idx) + model.wpe.weight[:7]
        expected = [model.lm_head(model.ln_f(x))]
        for block in model.blocks:
            x = block(x)
            expected.append(model.lm_head(model.ln_f(x)))
        torch.testing.assert_close(lens, torch.stack(expected))
        torch.testing.assert_close(lens[-1], model(idx)[0])


def test_the_old_html_explorer_is_gone():
    """One way of shipping widgets: minigpt.web. viz keeps plots only."""
    for name in ("sampling_explorer_html", "explorer_probs", "SamplingExplorer", "explorer_javascript"):
        assert not hasattr(viz, name), name


@pytest.mark.filterwarnings("ignore:Glyph")       # the CJK font is pretended: this machine may have none
def test_figures_speak_chinese_only_with_a_font_that_draws_it(chinese, monkeypatch):
    """Under set_language("zh") a figure's words are Chinese when matplotlib has a CJK font
    (drawn with it), and stay English without one (boxes would be worse than English)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    probs = torch.softmax(_logits(2), -1)
    chars = [chr(33 + i) for i in range(65)]
    monkeypatch.setattr(viz, "cjk_font", lambda: None)
    ax = viz.plot_next_token_probs(probs, chars, k=5)
    assert ax.get_ylabel() == "probability" and viz.figure_font() == {}
    monkeypatch.setattr(viz, "cjk_font", lambda: "Noto Sans CJK SC")
    ax = viz.plot_next_token_probs(probs, chars, k=5)
    assert ax.get_ylabel() == "概率"
    assert ax.yaxis.label.get_fontfamily()[0] == "Noto Sans CJK SC"
    fig = viz.plot_attention_grid(torch.rand(2, 2, 4, 4), list("abcd"))
    assert fig.axes[0].get_title() == "头 0" and fig.axes[0].get_ylabel() == "层 0"
    assert fig.texts[0].get_text() == "行：查询的位置，列：键的位置；文本：abcd"
    plt.close("all")
    minigpt.set_language("en")
    assert viz.tr_figure("layer {layer}", layer=2) == "layer 2" and viz.figure_font() == {}


def test_plot_attention_draws_rows_as_queries_on_a_fixed_0_to_1_scale():
    """Row i of the picture is query i (not the transpose), and the colours mean the same
    weight in every plot: the scale is 0..1, not stretched to this matrix's range."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    weights = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])     # from 0.1 to 0.7
    ax = viz.plot_attention(weights, list("abc"))
    image = ax.images[0]
    assert torch.equal(torch.as_tensor(image.get_array().data), weights)
    assert image.get_clim() == (0.0, 1.0)
    plt.close("all")


def test_plot_attention_head_outlines_each_rows_strongest_key():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    torch.manual_seed(0)
    tok = minigpt.CharTokenizer(list("\n abc"))
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=5, block_size=16, n_embd=16, n_head=2, n_layer=2)).eval()
    text = "abcab ca"
    ax = viz.plot_attention_head(model, tok, text, layer=1, head=1)
    weights = model.attention_maps(torch.tensor([tok.encode(text)]))[1, 0, 1]
    corners = [(p.get_x(), p.get_y()) for p in ax.patches]
    assert corners == [(int(weights[i].argmax()) - 0.5, i - 0.5) for i in range(len(text))]
    assert any(x != y for x, y in corners)          # not all on the diagonal: the check can fail
    plt.close("all")


def test_plot_attention_grid_puts_each_layer_and_head_in_its_cell():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    maps = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))      # (L, H, T, T)
    fig = viz.plot_attention_grid(maps, list("abcd"), layers=[2, 0], heads=[1, 0])
    for r, layer in enumerate([2, 0]):
        for c, head in enumerate([1, 0]):
            ax = fig.axes[2 * r + c]
            assert torch.equal(torch.as_tensor(ax.images[0].get_array().data), maps[layer, head]), (layer, head)
    plt.close("all")


def test_plot_next_token_probs_keeps_k_bars_of_a_given_order():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    probs = torch.softmax(_logits(3), -1)
    chars = [chr(33 + i) for i in range(65)]
    order = probs.argsort(descending=True).tolist()[:10][::-1]          # worst of the ten first
    ax = viz.plot_next_token_probs(probs, chars, k=4, order=order)
    assert [p.get_height() for p in ax.patches] == pytest.approx(probs[order[:4]].tolist())
    assert [t.get_text() for t in ax.get_xticklabels()] == [chars[i] for i in order[:4]]
    assert ax.get_ylim() == (0.0, 1.0)
    plt.close("all")


def test_layer_logits_leaves_a_model_in_eval_mode_in_eval_mode():
    torch.manual_seed(0)
    model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=11, block_size=16, n_embd=16, n_head=2, n_layer=1,
                                              dropout=0.1)).eval()
    viz.layer_logits(model, torch.randint(11, (1, 5)))
    assert not model.training and not any(m.training for m in model.modules())
