"""MiniGPT: shapes, initial loss, causality, implementation agreement, attention maps, input checks."""

import math

import pytest
import torch
from torch.testing import assert_close

from conftest import ALL_COMBOS, ALL_IMPLS, ALL_NORMS, ALL_POS, TINY, random_ids, tiny_config, tiny_model
from minigpt import MiniGPTError
from minigpt.model import ModelInputError, ModelInputTypeError

V = TINY["vocab_size"]


def test_forward_shapes_and_loss():
    model = tiny_model()
    idx = random_ids(3, 11)
    logits, loss = model(idx)
    assert logits.shape == (3, 11, V) and loss is None
    logits, loss = model(idx, random_ids(3, 11, seed=1))
    assert logits.shape == (3, 11, V)
    assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss)


def test_loss_matches_cross_entropy_and_ignores_minus_one():
    model = tiny_model()
    idx, targets = random_ids(2, 9), random_ids(2, 9, seed=1)
    logits, loss = model(idx, targets)
    assert_close(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)))
    masked = targets.clone()
    masked[:, :4] = -1
    _, loss_masked = model(idx, masked)
    assert_close(loss_masked, torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, V),
                                                                targets[:, 4:].reshape(-1)))


def test_targets_shape_must_match():
    with pytest.raises(ModelInputError, match=r"targets must have the same shape as idx \(2, 5\)"):
        tiny_model()(random_ids(2, 5), random_ids(2, 4))


@pytest.mark.parametrize("vocab", [23, 65])
def test_initial_loss_is_close_to_uniform(vocab):
    torch.manual_seed(0)
    model = tiny_model(vocab_size=vocab, block_size=32)
    idx = random_ids(8, 32, vocab)
    _, loss = model(idx, random_ids(8, 32, vocab, seed=1))
    assert abs(loss.item() - math.log(vocab)) < 0.1, (loss.item(), math.log(vocab))


def test_weights_are_tied_and_counted_once():
    model = tiny_model()
    assert model.lm_head.weight is model.wte.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values())
    assert model.num_parameters(exclude_positions=True) == model.num_parameters() - 16 * 32


@pytest.mark.parametrize("n_layer", [1, 8])
def test_residual_projections_use_gpt2_init(n_layer):
    """Every c_proj weight (attention and MLP) starts with std 0.02/sqrt(2 n_layer), the other
    weights with 0.02; biases start at zero. Widths large enough that the sample std is within 5%."""
    from minigpt import GPTConfig, MiniGPT
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=500, block_size=64, n_embd=256, n_head=4,
                              n_layer=n_layer, dropout=0.0))
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    projections = [n for n, _ in model.named_parameters() if n.endswith("c_proj.weight")]
    assert len(projections) == 2 * n_layer
    for name, param in model.named_parameters():
        if name.endswith("c_proj.weight"):
            expected = residual_std
        elif name.endswith("weight") and param.dim() == 2:     # other Linear and Embedding weights
            expected = 0.02
        else:
            if name.endswith("bias") and "ln_" not in name:
                assert torch.count_nonzero(param) == 0, name
            continue
        assert abs(param.std().item() - expected) < 0.05 * expected, (name, param.std().item(), expected)


@pytest.mark.parametrize("impl,pos,norm", ALL_COMBOS)
def test_causality(impl, pos, norm):
    """Changing a future token never changes the logits of earlier positions."""
    model = tiny_model(attn_impl=impl, pos_encoding=pos, norm=norm, dropout=0.0, n_kv_head=2)
    idx = random_ids(2, 16)
    logits = model(idx)[0]
    for t in (15, 9, 3):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        new = model(changed)[0]
        assert_close(new[:, :t], logits[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(new[:, t:], logits[:, t:])     # the change is visible from t on


@pytest.mark.parametrize("pos", ALL_POS)
@pytest.mark.parametrize("norm", ALL_NORMS)
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_implementations_agree_at_model_level(pos, norm, n_kv_head):
    ref = tiny_model(attn_impl="manual", pos_encoding=pos, norm=norm, n_kv_head=n_kv_head)
    idx = random_ids(2, 16)
    expected = ref(idx)[0]
    for impl in ("sdpa", "flash"):
        other = tiny_model(seed=99, attn_impl=impl, pos_encoding=pos, norm=norm, n_kv_head=n_kv_head)
        other.load_state_dict(ref.state_dict())
        assert_close(other(idx)[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl, training, expected", [
    ("manual", False, "manual_attention"), ("sdpa", False, "scaled_dot_product_attention"),
    ("flash", False, "flash_attention"), ("manual", True, "manual_attention"),
    ("flash", True, "flash_attention"),
    ("sdpa", True, "dropout_attention"),    # on a CPU, SDPA with dropout runs the fewer-pass formula
])
def test_every_layer_runs_the_implementation_its_config_names(monkeypatch, impl, training, expected):
    """The comparisons above hold only if a model with attn_impl="flash" really runs
    flash_attention: a layer that ignored its config would compare manual with manual."""
    import minigpt.attention as attention
    calls = []

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return wrapper
    for name in ("manual_attention", "flash_attention", "dropout_attention"):
        monkeypatch.setattr(attention, name, counted(name, getattr(attention, name)))
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        counted("scaled_dot_product_attention", attention.F.scaled_dot_product_attention))
    model = tiny_model(attn_impl=impl, dropout=0.1).train(training)
    model(random_ids(2, 16))
    assert calls == [expected] * model.config.n_layer


def test_positional_encodings_make_order_matter():
    for pos in ALL_POS:
        model = tiny_model(pos_encoding=pos)
        idx = random_ids(1, 8)
        flipped = idx.flip(1)
        # the last position sees the same multiset of tokens, but in another order
        assert not torch.allclose(model(idx)[0][:, -1], model(flipped)[0][:, -1], atol=1e-4)


def test_dropout_is_active_only_in_training():
    model = tiny_model(dropout=0.3)
    idx = random_ids(2, 16)
    assert torch.equal(model(idx)[0], model(idx)[0])            # eval: deterministic
    model.train()
    assert not torch.allclose(model(idx)[0], model(idx)[0])


@pytest.mark.parametrize("impl", ALL_IMPLS)
def test_attention_maps(impl):
    model = tiny_model(attn_impl=impl, n_kv_head=2, dropout=0.2).train()
    idx = random_ids(3, 10)
    maps = model.attention_maps(idx)
    assert maps.shape == (2, 3, 4, 10, 10)                     # (n_layer, B, n_head, T, T)
    assert_close(maps.sum(-1), torch.ones(2, 3, 4, 10))
    upper = torch.ones(10, 10, dtype=torch.bool).triu(1)
    assert (maps[..., upper] == 0).all()
    assert (maps[..., ~upper] > 0).all()
    assert model.training                                       # mode restored
    assert torch.equal(model.attention_maps(idx), maps)         # no dropout in the maps


# -------------------------------------------------------------- input checks
def test_idx_must_be_a_tensor():
    with pytest.raises(ModelInputTypeError, match=r"idx must be a LongTensor.*got list"):
        tiny_model()([[1, 2, 3]])


def test_idx_dtype():
    with pytest.raises(ModelInputTypeError, match=r"token ids as int64 \(torch.long\), int32, int16 or uint8, "
                                                  r"got dtype torch.float32; convert with idx.long\(\)"):
        tiny_model()(torch.zeros(1, 4))
    with pytest.raises(ModelInputTypeError, match=r"got dtype torch.int8"):     # an integer, but not one of those
        tiny_model()(torch.zeros(1, 4, dtype=torch.int8))
    # smaller integer types are accepted
    model = tiny_model()
    assert_close(model(random_ids(1, 5).int())[0], model(random_ids(1, 5))[0])


def test_idx_shape():
    model = tiny_model()
    with pytest.raises(ModelInputError, match=r"1-D tensor of length 4.*idx\[None\]"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ModelInputError, match=r"shape \(B, T\), got \(1, 2, 3\)"):
        model(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ModelInputError, match=r"no tokens \(T = 0\)"):
        model(torch.zeros(1, 0, dtype=torch.long))


@pytest.mark.parametrize("bad", [V, V + 10, -1])
def test_out_of_vocab_ids(bad):
    idx = random_ids(1, 5)
    idx[0, 2] = bad
    with pytest.raises(ModelInputError, match=rf"token id {bad} is outside the vocabulary 0\.\.{V - 1}"):
        tiny_model()(idx)


def test_idx_on_another_device():
    model = tiny_model().to("meta")          # any device other than the idx's one
    with pytest.raises(ModelInputError, match=r"idx is on cpu but the model is on meta.*idx.to\(model.device\)"):
        model(random_ids(1, 5))


def test_sequence_longer_than_block_size():
    with pytest.raises(ModelInputError, match=r"sequence of 17 tokens exceeds block_size=16; crop"):
        tiny_model()(random_ids(1, 17))
    tiny_model()(random_ids(1, 16))          # exactly block_size is fine


def test_input_errors_are_minigpt_errors_and_keep_their_builtin_types():
    """The CLI prints a MiniGPTError as one line; `except ValueError/TypeError` keeps working."""
    assert issubclass(ModelInputError, MiniGPTError) and issubclass(ModelInputError, ValueError)
    assert issubclass(ModelInputTypeError, ModelInputError) and issubclass(ModelInputTypeError, TypeError)
    import minigpt
    with pytest.raises(ModelInputTypeError, match=r"MiniGPT expects a GPTConfig, got dict"):
        minigpt.MiniGPT(dict(TINY))


def test_a_post_ln_block_normalises_after_each_residual_sum():
    # Post-LN (chapter 6's comparison): h = ln_1(x + attn(x)), out = ln_2(h + mlp(h)), with
    # LayerNorm gains and biases far from 1 and 0 so that a norm in the wrong place shows
    from minigpt.model import Block
    torch.manual_seed(0)
    block = Block(tiny_config(norm="post")).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.5)
        x = torch.randn(2, 5, block.ln_1.weight.numel())                    # (B, T, C)
        h = block.ln_1(x + block.attn(x))
        assert_close(block(x), block.ln_2(h + block.mlp(h)))
