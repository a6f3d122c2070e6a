"""GPTConfig: defaults, (de)serialisation, and a clear ConfigError for every bad value."""

import pytest

from minigpt import ConfigError, GPTConfig, MiniGPT


def test_defaults_match_the_seed():
    c = GPTConfig()
    assert (c.vocab_size, c.block_size, c.n_embd, c.n_head, c.n_layer) == (256, 128, 256, 8, 6)
    assert c.dropout == 0.1 and c.pos_encoding == "learned" and c.norm == "pre"
    assert c.n_kv_head == c.n_head          # None means plain multi-head attention
    assert c.head_dim == 32


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("field,value", [
    ("vocab_size", 0), ("block_size", -1), ("n_embd", 32.0), ("n_head", True), ("n_layer", 0),
    ("n_kv_head", 0), ("block_size", "16"),
])
def test_non_positive_integers_are_rejected(field, value):
    with pytest.raises(ConfigError, match=rf"GPTConfig\.{field} must be a positive integer"):
        GPTConfig(**{field: value})


def test_numpy_numbers_from_a_sweep_are_stored_as_python_numbers():
    import json
    import numpy as np
    config = GPTConfig(n_layer=np.int64(2), n_embd=np.int32(64), n_head=np.int64(4),
                       dropout=np.float32(0.25), block_size=np.arange(8, 40, 8)[3])
    assert (config.n_layer, config.n_embd, config.block_size, config.n_kv_head) == (2, 64, 32, 4)
    assert type(config.n_layer) is int and type(config.dropout) is float
    json.dumps(config.to_dict())                         # a checkpoint can hold it
    config.n_head = np.int64(2)                          # n_kv_head still follows
    assert config.n_kv_head == 2 and type(config.n_head) is int
    with pytest.raises(ConfigError, match="n_layer must be a positive integer, got True"):
        GPTConfig(n_layer=np.bool_(True))           # a switch is not a count, numpy's or not
    switched = GPTConfig(bias=np.array([True, False])[1])
    assert switched.bias is False and json.dumps(switched.to_dict())


@pytest.mark.parametrize("value", [1.0, -0.1, 2, "0.1"])
def test_dropout_must_be_in_unit_interval(value):
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
        GPTConfig(dropout=value)


@pytest.mark.parametrize("field,value,fix", [
    ("pos_encoding", "absolute", r"choose one of 'learned', 'sinusoidal', 'rope'"),
    ("norm", "middle", r"choose 'pre'.*or 'post'"),
    ("attn_impl", "cuda", r"choose one of 'manual', 'sdpa', 'flash'"),
])
def test_unknown_choices_name_the_allowed_values(field, value, fix):
    with pytest.raises(ConfigError, match=fix):
        GPTConfig(**{field: value})


def test_n_embd_not_divisible_by_n_head_suggests_head_counts():
    with pytest.raises(ConfigError, match=r"n_embd=30 is not divisible by n_head=4") as info:
        GPTConfig(n_embd=30, n_head=4)
    assert "Pick n_head from [1, 2, 3, 5, 6, 10, 15, 30]" in str(info.value)


@pytest.mark.parametrize("n_kv_head", [3, 8])
def test_n_kv_head_must_divide_n_head(n_kv_head):
    with pytest.raises(ConfigError, match=r"must divide n_head=4.*Pick n_kv_head from \[1, 2, 4\]"):
        GPTConfig(n_embd=32, n_head=4, n_kv_head=n_kv_head)


def test_rope_needs_an_even_head_size():
    with pytest.raises(ConfigError, match=r"head size must be even.*= 3\. Change n_embd or n_head"):
        GPTConfig(n_embd=12, n_head=4, pos_encoding="rope")
    GPTConfig(n_embd=12, n_head=4, pos_encoding="learned")   # fine without RoPE


def test_sinusoidal_needs_an_even_width():
    with pytest.raises(ConfigError, match=r"sinusoidal.*even n_embd.*got 15"):
        GPTConfig(n_embd=15, n_head=3, pos_encoding="sinusoidal")


def test_replace_n_head_keeps_a_default_n_kv_head_following_it():
    # dataclasses.replace passes every field on: a defaulted n_kv_head must not keep the old
    # head count (that would silently make grouped-query attention, or refuse the copy)
    import json
    from dataclasses import replace
    mha = GPTConfig(n_embd=64, n_head=4)
    assert replace(mha, n_head=8).n_kv_head == 8 and replace(mha, n_head=2).n_kv_head == 2
    assert replace(replace(mha, n_head=8), n_head=1).n_kv_head == 1
    gqa = GPTConfig(n_embd=64, n_head=8, n_kv_head=2)          # asked for: it stays
    assert replace(gqa, n_head=4).n_kv_head == 2
    assert replace(GPTConfig(n_embd=64, n_head=4, n_kv_head=4), n_head=8).n_kv_head == 4
    assert mha == GPTConfig(n_embd=64, n_head=4, n_kv_head=4)  # still just the number 4
    assert repr(mha.n_kv_head) == "4" and json.dumps(mha.to_dict()["n_kv_head"]) == "4"


def test_dict_round_trip():
    c = GPTConfig(vocab_size=65, block_size=32, n_embd=48, n_head=6, n_kv_head=2, n_layer=1,
                  dropout=0.0, pos_encoding="rope", norm="post", attn_impl="flash", bias=False)
    d = c.to_dict()
    assert d["n_kv_head"] == 2 and d["pos_encoding"] == "rope"
    assert GPTConfig.from_dict(d) == c


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match=r"unknown GPTConfig field\(s\) \['n_heads'\]; known fields"):
        GPTConfig.from_dict({"n_heads": 4})


def test_from_dict_validates_values():
    with pytest.raises(ConfigError, match="n_kv_head"):
        GPTConfig.from_dict({"n_embd": 32, "n_head": 4, "n_kv_head": 3})


def test_model_needs_a_config_object():
    with pytest.raises(TypeError, match=r"MiniGPT expects a GPTConfig, got dict"):
        MiniGPT({"vocab_size": 10})


@pytest.mark.parametrize("value", ["no", 0, None, "False"])
def test_bias_must_be_a_bool(value):
    with pytest.raises(ConfigError, match=rf"GPTConfig.bias must be True or False, got {value!r}"):
        GPTConfig(bias=value)


@pytest.mark.parametrize("value", [True, False, float("nan")])
def test_dropout_rejects_bools_and_nan(value):
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
        GPTConfig(dropout=value)


def test_config_error_is_a_user_facing_error():
    from minigpt.errors import MiniGPTError
    assert issubclass(ConfigError, MiniGPTError)
