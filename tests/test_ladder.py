"""The loss ladder: each rung builds, trains through minigpt.train, and reports its numbers."""

from dataclasses import replace

import pytest
import torch

import minigpt
from minigpt.ladder import RUNGS, Rung, RungModel, build_rung, format_table, run_ladder, sample


@pytest.fixture
def data(small_data):
    return small_data                    # the first 20,000 characters, shared with other tests


def tiny_configs(vocab_size):
    model = minigpt.GPTConfig(vocab_size=vocab_size, block_size=16, n_embd=16, n_head=2,
                              n_layer=2, dropout=0.0)
    training = minigpt.TrainConfig(max_iters=8, batch_size=4, learning_rate=3e-3, warmup_iters=2,
                                   eval_interval=8, eval_iters=1, checkpoint_interval=8,
                                   device="cpu")
    return model, training


def test_rungs_have_the_right_parts(data):
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    bigram = build_rung("bigram", config)
    assert bigram.wpe is None and len(bigram.layers) == 0
    assert bigram.wte.weight is not bigram.lm_head.weight          # untied: a bigram is not symmetric
    one_head = build_rung("one head", config)
    assert one_head.wte.weight is one_head.lm_head.weight          # the GPT rungs tie, as MiniGPT
    assert build_rung("one head", config).layers[0].n_head == 1
    assert build_rung("multi-head", config).layers[0].n_head == 2
    assert isinstance(build_rung("+ MLP", config).layers[1], minigpt.MLP)
    assert isinstance(build_rung("+ LayerNorm/residuals", config).layers[0], minigpt.Block)
    full = build_rung("full model", config, full_layers=3)
    assert isinstance(full, minigpt.MiniGPT) and full.config.n_layer == 3
    assert build_rung("full model", config).config.n_layer == config.n_layer == 2
    sizes = [sum(p.numel() for p in build_rung(n, config).parameters()) for n in RUNGS]
    assert sizes == sorted(sizes)                  # every rung adds parameters
    with pytest.raises(ValueError, match="unknown rung"):
        build_rung("nope", config)
    with pytest.raises(ValueError, match="residual_norm"):
        RungModel(config, mlp=False, residual_norm=True)


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope"])
def test_one_block_rung_matches_minigpt(data, pos_encoding):
    """Rung 5 with n_layer blocks is exactly MiniGPT's computation (same weights), whatever
    the position encoding: a learned table, the sinusoidal table, or RoPE inside attention."""
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    config = replace(config, pos_encoding=pos_encoding)
    rung = RungModel(config).eval()
    gpt = minigpt.MiniGPT(config).eval()
    state = {k.replace("blocks.", "layers."): v for k, v in gpt.state_dict().items()}
    rung.load_state_dict(state)
    idx = torch.randint(config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rung(idx)[0], gpt(idx)[0])


def test_run_ladder_is_deterministic(data):
    config, training = tiny_configs(data.tokenizer.vocab_size)
    kwargs = dict(config=config, train_config=training, rungs=("bigram", "+ MLP", "full model"),
                  full_layers=2, sample_tokens=20, val_tokens=500)
    first = run_ladder(data, **kwargs)
    second = run_ladder(data, **kwargs)
    assert [r.name for r in first] == ["bigram", "+ MLP", "full model"]
    assert first == second
    for r in first:
        assert isinstance(r, Rung) and r.params > 0 and len(r.sample) == 20
        assert 0 < r.val_loss < 5.0
    text = format_table(first)
    assert "bigram" in text and "val loss" in text


def test_the_counted_rung_follows_the_default_device(data):
    """The unigram rung is counted, not trained: with TrainConfig's default device "auto" it
    once did `.to("auto")` and raised."""
    config, training = tiny_configs(data.tokenizer.vocab_size)
    (rung,) = run_ladder(data, config, replace(training, device="auto"), rungs=("unigram",),
                         sample_tokens=5, val_tokens=200)
    assert rung.name == "unigram" and 0 < rung.val_loss < 5.0


def test_sample_is_seeded(data):
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    torch.manual_seed(0)
    model = build_rung("multi-head", config)
    text = sample(model, data, 30, seed=3)
    torch.manual_seed(99)                          # the global generator plays no part
    assert sample(model, data, 30, seed=3) == text
    # another seed, other text: 30 draws from an untrained model's near-uniform distribution
    # over the text's 58 characters all agree with probability about 58^-30
    assert sample(model, data, 30, seed=4) != text


@pytest.mark.parametrize("pos_encoding", ["sinusoidal", "rope"])
def test_ladder_runs_with_fixed_positions(data, pos_encoding):
    config, training = tiny_configs(data.tokenizer.vocab_size)
    config = replace(config, pos_encoding=pos_encoding)
    rung = build_rung("one head", config)
    assert rung.wpe is None                                    # no learned table sneaks in
    assert (rung.pos_table is not None) == (pos_encoding == "sinusoidal")
    assert (rung.rope_cos is not None) == (pos_encoding == "rope")
    table = run_ladder(data, config, training, rungs=("bigram", "one head", "full model"),
                       sample_tokens=5, val_tokens=300)
    assert [r.name for r in table] == ["bigram", "one head", "full model"]
    assert all(0 < r.val_loss < 5.0 for r in table)


def test_positions_change_the_output(data):
    """Each encoding really is used: shuffling two earlier tokens changes a later logit only
    when the model knows positions."""
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    idx = torch.tensor([[1, 2, 3, 4]])
    swapped = torch.tensor([[2, 1, 3, 4]])

    def rung_with_large_weights(**kwargs):
        torch.manual_seed(0)
        rung = RungModel(mlp=False, residual_norm=False, **kwargs)
        with torch.no_grad():                   # init weights are tiny; make differences visible
            for p in rung.parameters():
                p.mul_(30)
        return rung

    for pos_encoding in ("learned", "sinusoidal", "rope"):
        rung = rung_with_large_weights(config=replace(config, pos_encoding=pos_encoding))
        a, b = rung(idx)[0][0, -1], rung(swapped)[0][0, -1]
        assert (a - b).abs().max() > 1e-3 * a.abs().max(), pos_encoding
    blind = rung_with_large_weights(config=replace(config, pos_encoding="rope"), positions=False)
    torch.testing.assert_close(blind(idx)[0][0, -1], blind(swapped)[0][0, -1])


def test_rope_needs_attention():
    config = minigpt.GPTConfig(vocab_size=10, block_size=8, n_embd=8, n_head=2, n_layer=1,
                               pos_encoding="rope")
    with pytest.raises(ValueError, match="rope.*need attention on"):
        RungModel(config, attention=False, mlp=True, residual_norm=False)


def test_sample_restores_the_training_mode(data):
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    model = build_rung("+ MLP", config).train()
    sample(model, data, 5)
    assert model.training
    model.eval()
    sample(model, data, 5)
    assert not model.training


def test_rung_rejects_too_long_input(data):
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    with pytest.raises(ValueError, match="exceeds block_size=16; crop"):
        build_rung("bigram", config)(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("name", [n for n in RUNGS if n != "full model"])
def test_rungs_ignore_targets_of_minus_one_as_minigpt_does(data, name):
    """A target of -1 is skipped by the loss (MiniGPT.forward's convention), not an IndexError."""
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    torch.manual_seed(0)
    rung = build_rung(name, config).eval()
    idx = torch.randint(config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(2))
    targets[0, 1] = targets[1, 4] = -1
    logits, loss = rung(idx, targets)
    kept = targets != -1
    expected = torch.nn.functional.cross_entropy(logits[kept], targets[kept])
    torch.testing.assert_close(loss, expected)
    with pytest.raises(minigpt.MiniGPTError, match=r"targets must have the same shape as idx \(2, 6\)"):
        rung(idx, targets[:, :3])


def test_rung_errors_are_one_line_minigpt_errors(data):
    config, _ = tiny_configs(data.tokenizer.vocab_size)
    with pytest.raises(minigpt.MiniGPTError, match="unknown rung 'nope'"):
        build_rung("nope", config)
    with pytest.raises(minigpt.ConfigError, match="residual_norm builds full Blocks"):
        RungModel(config, mlp=False, residual_norm=True)


def test_a_block_rung_uses_gpt2_s_init_for_the_residual_projections():
    torch.manual_seed(0)
    cfg = minigpt.GPTConfig(vocab_size=65, block_size=32, n_embd=64, n_head=4, n_layer=4, dropout=0.0)
    rung = build_rung("+ LayerNorm/residuals", cfg)
    assert abs(rung.layers[0].mlp.c_proj.weight.std().item() - 0.02 / 2 ** 0.5) < 0.0015


def test_the_unigram_rung_gives_an_unseen_character_a_finite_loss():
    from minigpt.ladder import UnigramModel
    unigram = UnigramModel(minigpt.GPTConfig(vocab_size=4, block_size=8, n_embd=8, n_head=1, n_layer=1))
    unigram.count(torch.tensor([0, 1, 1, 2]))                   # id 3 never seen: add-one smoothing
    assert torch.isfinite(unigram.log_probs).all()
    assert torch.isfinite(unigram(torch.tensor([[0, 1]]), torch.tensor([[3, 1]]))[1])


def test_run_ladder_scores_the_first_val_tokens_only(small_data):
    from minigpt.ladder import UnigramModel
    rung = run_ladder(small_data, rungs=("unigram",), val_tokens=200, sample_tokens=1)[0]
    unigram = UnigramModel(minigpt.GPTConfig(vocab_size=small_data.tokenizer.vocab_size, block_size=32, n_embd=64,
                                             n_head=4, n_layer=4)).count(small_data.train)
    assert rung.val_loss == pytest.approx(minigpt.evaluate(unigram, small_data.val[:200], batch_size=256), abs=1e-6)
    assert rung.val_loss != pytest.approx(minigpt.evaluate(unigram, small_data.val, batch_size=256), abs=1e-3)
