"""GPT-2 weights in MiniGPT: a randomly initialised Hugging Face GPT2LMHeadModel, converted,
must compute the same logits and the same greedy continuations. Offline: the model is built
from a config, nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from minigpt import ConfigError, GPTConfig
from minigpt import MiniGPTError
from minigpt.gpt2 import GPT2WeightsError, config_from_hf, from_hf_model, from_hf_state_dict

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'minigpt[gpt2]'); "
                           "the GPT-2 conversion tests need it to build a reference model")
if not transformers.utils.is_torch_available():
    # transformers imports without its torch models when it finds a torch it does not support
    # (transformers 5 needs torch >= 2.6); our conversion itself needs no transformers
    pytest.skip(f"transformers {transformers.__version__} cannot build torch models with torch "
                f"{torch.__version__}: install a transformers that supports it (e.g. <5 for torch 2.5)",
                allow_module_level=True)

VOCAB, POSITIONS = 101, 48


def hf_config(**overrides):
    # initializer_range 0.2 (GPT-2 uses 0.02) spreads the random logits apart, so that greedy
    # decoding does not hinge on near-ties that float rounding could flip. No BOS/EOS tokens:
    # Hugging Face's generate would stop early at EOS, ours never stops.
    values = dict(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=64, n_layer=2, n_head=4,
                  initializer_range=0.2, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    values.update(overrides)
    return transformers.GPT2Config(**values)


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(hf_config()).eval()
    with torch.no_grad():     # GPT-2 initialises biases and LayerNorms to 0/1: give them values
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def test_config_matches_gpt2(hf_model):
    config = from_hf_model(hf_model).config
    assert (config.vocab_size, config.block_size, config.n_embd, config.n_head, config.n_layer) == (
        VOCAB, POSITIONS, 64, 4, 2)
    assert (config.pos_encoding, config.norm, config.bias, config.gelu) == ("learned", "pre", True, "tanh")


@pytest.mark.parametrize("attn_impl", ["sdpa", "manual"])
@pytest.mark.parametrize("batch, length", [(1, 1), (2, 7), (3, POSITIONS)])
def test_logits_match(hf_model, attn_impl, batch, length):
    model = from_hf_model(hf_model, attn_impl=attn_impl)
    ids = torch.randint(VOCAB, (batch, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        expected = hf_model(ids).logits
        logits, _ = model(ids)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_exact_gelu_would_be_detected(hf_model):
    """The 1e-5 tolerance is tight enough to see the activation: erf GELU differs from tanh."""
    model = from_hf_model(hf_model)
    state = {f"transformer.{k}": v for k, v in hf_model.transformer.state_dict().items()}
    wrong = from_hf_state_dict(state, GPTConfig(**dict(model.config.to_dict(), gelu="exact")))
    ids = torch.randint(VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (wrong(ids)[0] - hf_model(ids).logits).abs().max() > 1e-4


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_matches(hf_model, use_cache):
    model = from_hf_model(hf_model)
    prompt = torch.randint(VOCAB, (2, 5), generator=torch.Generator().manual_seed(2))
    new = POSITIONS - 5          # fill the whole context: every position's embedding is used
    expected = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                                 do_sample=False)
    ours = model.generate(prompt, new, temperature=0, use_cache=use_cache)
    assert torch.equal(ours, expected)


def test_hub_layout_state_dict(hf_model):
    """The files on the hub hold GPT2Model keys (no `transformer.` prefix, no lm_head) and,
    in older ones, the causal-mask buffers `attn.bias` / `attn.masked_bias`."""
    state = dict(hf_model.transformer.state_dict())
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, POSITIONS, POSITIONS).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    model = from_hf_state_dict(state, config_from_hf(hf_model.config))
    ids = torch.randint(VOCAB, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], hf_model(ids).logits, rtol=0, atol=1e-5)


def test_conv1d_weights_are_transposed(hf_model):
    model = from_hf_model(hf_model)
    hf_block = hf_model.transformer.h[1]
    assert torch.equal(model.blocks[1].attn.c_attn.weight, hf_block.attn.c_attn.weight.t())
    assert torch.equal(model.blocks[1].mlp.c_proj.weight, hf_block.mlp.c_proj.weight.t())
    assert model.lm_head.weight is model.wte.weight


def test_mismatched_config_is_a_clear_error(hf_model):
    state = hf_model.state_dict()
    config = config_from_hf(hf_model.config)
    with pytest.raises(GPT2WeightsError, match="does not look like GPT-2 with 3 layers"):
        from_hf_state_dict(state, GPTConfig(**dict(config.to_dict(), n_layer=3)))
    with pytest.raises(GPT2WeightsError, match="shapes do not match"):
        from_hf_state_dict(state, GPTConfig(**dict(config.to_dict(), vocab_size=VOCAB + 1)))
    with pytest.raises(ConfigError, match="pos_encoding='learned'"):
        from_hf_state_dict(state, GPTConfig(**dict(config.to_dict(), pos_encoding="rope")))


@pytest.mark.parametrize("overrides, message", [
    (dict(activation_function="relu"), "activation_function='relu' is not supported"),
    (dict(n_inner=100), "n_inner=100 is not supported"),
    (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon=1e-06 is not supported"),
    (dict(scale_attn_by_inverse_layer_idx=True), "changes the attention scale"),
])
def test_unsupported_gpt2_variants(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config_from_hf(hf_config(**overrides))


def test_input_errors_are_minigpt_errors(hf_model):
    """Bad input is a MiniGPTError (one line in the CLI) and still the ValueError it always was."""
    state = hf_model.state_dict()
    config = config_from_hf(hf_model.config)
    untied = dict(state, **{"lm_head.weight": state["lm_head.weight"] + 1})
    cases = [
        (lambda: from_hf_state_dict(untied, config), "an untied head"),
        (lambda: from_hf_state_dict(dict(state, **{"transformer.wte.weight": "weights"}), config),
         "'transformer.wte.weight' is a str, not a tensor"),
        (lambda: from_hf_state_dict([1, 2], config), "expected a mapping of tensor names to tensors"),
        (lambda: config_from_hf(object()), "object is not a GPT-2 config: vocab_size, n_positions"),
        (lambda: from_hf_state_dict(state, GPTConfig(**dict(config.to_dict(), n_layer=3))), "3 layers"),
    ]
    for call, message in cases:
        with pytest.raises(MiniGPTError, match=message) as info:
            call()
        assert isinstance(info.value, ValueError)


def test_a_dtype_given_as_a_string_is_named(hf_model):
    """dtype="float16" ended in torch's "Invalid device string: 'float16'"."""
    with pytest.raises(MiniGPTError, match=r"dtype must be a floating-point torch.dtype .* got 'float16'"):
        from_hf_model(hf_model, dtype="float16")


@pytest.mark.parametrize("overrides, message", [
    (dict(n_inner=512), "n_inner=512 is not supported"),                # wider than 4 * n_embd, too
    (dict(scale_attn_weights=False), "changes the attention scale"),
    (dict(tie_word_embeddings=False), "unties the LM head"),
])
def test_more_unsupported_gpt2_variants(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config_from_hf(hf_config(**overrides))


def test_config_takes_gpt2_s_dropout_activation_and_the_attention_asked_for(hf_model):
    """resid_pdrop becomes the dropout (it matters once the converted model is fine-tuned),
    "gelu" is the exact GELU, and from_hf_model builds the attention implementation asked for."""
    assert config_from_hf(hf_config(resid_pdrop=0.25)).dropout == 0.25
    assert config_from_hf(hf_config(activation_function="gelu")).gelu == "exact"
    assert config_from_hf(hf_config(activation_function="gelu_pytorch_tanh")).gelu == "tanh"
    assert from_hf_model(hf_model, attn_impl="manual").config.attn_impl == "manual"
    assert config_from_hf(hf_model.config, attn_impl="flash").attn_impl == "flash"


def test_exact_gelu_gpt2_logits_match():
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_config(activation_function="gelu", n_layer=1)).eval()
    model = from_hf_model(hf)
    ids = torch.randint(VOCAB, (2, 11), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], hf(ids).logits, rtol=0, atol=1e-5)


def test_grouped_query_attention_is_refused_naming_n_kv_head(hf_model):
    config = config_from_hf(hf_model.config)
    with pytest.raises(ConfigError, match=r"one key/value head per query head; set n_kv_head=4 .* not 2"):
        from_hf_state_dict(hf_model.state_dict(), GPTConfig(**dict(config.to_dict(), n_kv_head=2)))


def test_from_hf_model_returns_the_dtype_asked_for(hf_model):
    model = from_hf_model(hf_model, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.equal(model.wte.weight, hf_model.transformer.wte.weight.to(torch.bfloat16))
    assert {p.dtype for p in from_hf_model(hf_model).parameters()} == {torch.float32}
