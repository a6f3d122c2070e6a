"""Plausible wrong input to the public API gets a message that names the problem and the fix
(a MiniGPTError), never a raw error from deep inside torch; and the cases a review found that
silently did the wrong thing (a LoRA model exported, a refused load that changed the model)."""

from __future__ import annotations

import json

import pytest
import torch

import minigpt
from minigpt import CharTokenizer, GPTConfig, MiniGPT, MiniGPTError
from minigpt.lora import add_lora, lora_layers, save_adapters


def tiny(**kw) -> MiniGPT:
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1, **kw)).eval()


IDX = torch.tensor([[1, 2, 3, 4, 5]])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_a_rope_model_runs_in_any_float_dtype(dtype):
    """bfloat16 raised inside torch.complex; float64 was quietly rotated in float32."""
    model = tiny(pos_encoding="rope").to(dtype)
    logits, _ = model(IDX)
    assert logits.dtype == dtype
    assert model.generate(IDX, 3, temperature=0).shape == (1, 8)
    if dtype == torch.float64:
        x = torch.randn(1, 2, 5, 8, dtype=torch.float64)
        cos, sin = minigpt.rope_cos_sin(5, 8)
        cos, sin = cos.double(), sin.double()
        x_even, x_odd = x[..., 0::2], x[..., 1::2]
        by_hand = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), -1).flatten(-2)
        torch.testing.assert_close(minigpt.apply_rope(x, cos, sin), by_hand, atol=1e-12, rtol=0)


@pytest.mark.parametrize("call, said", [
    (lambda: minigpt.sinusoidal_table(8, 5), "dim must be an even whole number"),
    (lambda: minigpt.rope_cos_sin(8, 5), "head_dim must be an even whole number"),
    (lambda: minigpt.apply_rope(torch.randn(1, 1, 5, 4), *minigpt.rope_cos_sin(8, 4)),
     r"cos and sin must be \(T, D/2\) = \(5, 2\)"),
    (lambda: minigpt.sinusoidal_table(-1, 4), "n_positions must be a whole number >= 0"),
    (lambda: minigpt.rope_cos_sin(2.5, 4), "n_positions must be a whole number >= 0"),
    (lambda: minigpt.causal_mask(5, 3), r"causal_mask needs 0 <= T <= S .* got T=5, S=3"),
    (lambda: minigpt.causal_mask(-2), "causal_mask needs 0 <= T <= S"),
    (lambda: minigpt.manual_attention(torch.randn(1, 1, 4, 2), torch.randn(1, 1, 3, 2), torch.randn(1, 1, 3, 2)),
     r"manual_attention: q has T = 4 positions but k and v only S = 3"),
    # flash_attention returned NaN rows here
    (lambda: minigpt.flash_attention(torch.randn(1, 1, 4, 8), torch.randn(1, 1, 2, 8), torch.randn(1, 1, 2, 8)),
     r"flash_attention: q has T = 4 positions but k and v only S = 2"),
    # chapter 12 without repeat_kv: torch said "The size of tensor a (4) must match ... (2)"
    (lambda: minigpt.manual_attention(torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)),
     r"q has 4 heads but k and v have 2; repeat each key/value head 2 times first \(repeat_kv, chapter 12\)"),
    (lambda: minigpt.manual_attention(torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 4), torch.randn(1, 4, 5, 8)),
     r"k and v must be \(B, H, S, D\) with q's B = 1 and D = 8, got q \(1, 4, 5, 8\), k \(1, 4, 5, 4\)"),
    (lambda: minigpt.manual_attention(torch.randn(4, 5, 8), torch.randn(4, 5, 8), torch.randn(4, 5, 8)),
     r"takes q, k, v of shape \(B, H, T, D\), got \(4, 5, 8\), .* becomes H = 1 with t\[:, None\]"),
    (lambda: minigpt.manual_attention(*torch.randn(3, 1, 1, 5, 8), dropout_p=1.5),
     r"dropout_p must be a number in \[0, 1\), got 1.5"),
    (lambda: minigpt.flash_attention(*torch.randn(3, 1, 1, 5, 8), block_q=0),
     r"block_q is a tile length, a whole number >= 1, got 0"),
    (lambda: minigpt.KVCache(1, 2, 0, 8), "KVCache's max_len must be a whole number >= 1, got 0"),
    (lambda: minigpt.KVCache(1, 2.0, 8, 8), "KVCache's n_kv_head must be a whole number >= 1, got 2.0"),
    (lambda: minigpt.kv_cache_nbytes(-1, 1, 2, 8, 8), "n_layer must be a whole number >= 1"),
])
def test_position_tables_masks_and_caches_say_what_they_need(call, said):
    with pytest.raises(MiniGPTError, match=said):
        call()


@pytest.mark.parametrize("targets, said", [
    (IDX.float(), "targets must be a tensor of token ids"),
    ([[1, 2, 3, 4, 5]], "targets must be a tensor of token ids"),
    (torch.tensor([[1, 2, 3, 4, 11]]), "target id 11 is outside the vocabulary 0..10"),
    (torch.tensor([[1, 2, 3]]), "targets must have the same shape as idx"),
    (torch.full((1, 5), -1), r"every target is -1 \(ignored\), so there is nothing to score"),
    (torch.zeros(1, 5, dtype=torch.long, device="meta"), r"targets are on meta but idx is on cpu; .*targets.to"),
])
def test_bad_targets_are_named(targets, said):
    with pytest.raises(MiniGPTError, match=said):
        tiny()(IDX, targets)


def test_int32_targets_and_ignored_positions_are_accepted():
    model = tiny()
    _, loss = model(IDX, torch.tensor([[2, 3, 4, 5, -1]]))
    _, loss32 = model(IDX, torch.tensor([[2, 3, 4, 5, -1]], dtype=torch.int32))
    assert torch.equal(loss, loss32)
    assert minigpt.evaluate(model, torch.arange(11, dtype=torch.int32).repeat(3), batch_size=2) > 0


def test_an_empty_batch_and_a_changed_config_are_refused_before_torch_sees_them():
    with pytest.raises(MiniGPTError, match=r"idx has no rows \(B = 0\)"):
        tiny()(torch.zeros(0, 5, dtype=torch.long))
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1)
    config.n_head = 3                                    # changed after it was checked
    with pytest.raises(MiniGPTError, match="n_head"):
        MiniGPT(config)


def test_generate_names_a_generator_that_is_not_one():
    for temperature in (1.0, 0.0):                       # greedy ignored it silently
        with pytest.raises(MiniGPTError, match=r"generator must be a torch.Generator or None, got 42; .*"
                                               r"torch.Generator\(\).manual_seed\(seed\)"):
            tiny().generate(IDX, 2, temperature=temperature, generator=42)


def test_a_misspelt_attention_implementation_is_refused():
    model = tiny()
    x = torch.randn(1, 5, 16)
    with pytest.raises(MiniGPTError, match="impl='flsh' is unknown; choose one of 'manual', 'sdpa', 'flash'"):
        model.blocks[0].attn(x, impl="flsh")


def test_device_helpers_take_a_string_like_the_rest_of_the_package():
    model = tiny()
    assert minigpt.device.autocast_dtype("cpu") is None
    assert minigpt.device.describe("cpu").startswith("cpu")
    assert isinstance(minigpt.make_optimizer(model, minigpt.TrainConfig(), "cpu"), torch.optim.AdamW)


def test_a_model_with_lora_adapters_or_a_non_float_dtype_is_not_written(tmp_path):
    model, tok = tiny(), minigpt.CharTokenizer(list("abcdefghijk"))
    for dtype, said in [(torch.int8, "dtype must be a floating-point torch.dtype"),
                        ("float16", "dtype must be a floating-point torch.dtype")]:
        with pytest.raises(MiniGPTError, match=said):
            minigpt.export_model(model, tok, tmp_path / "e", dtype=dtype)
    add_lora(model, 2)
    with pytest.raises(MiniGPTError, match=r"this model has LoRA adapters .*merge_lora\(model\)"):
        minigpt.export_model(model, tok, tmp_path / "e")
    with pytest.raises(MiniGPTError, match="this model has LoRA adapters"):
        minigpt.save_checkpoint(tmp_path / "run", model, tok, step=1)
    assert not (tmp_path / "e").exists() and not (tmp_path / "run").exists()


def test_refused_adapters_leave_the_base_model_as_it_was(tmp_path):
    adapted = tiny()
    add_lora(adapted, 2)
    save_adapters(adapted, tmp_path / "ad")
    meta = json.loads((tmp_path / "ad" / "lora.json").read_text())
    meta["lora"]["rank"] = 4                             # edited by hand: the tensors are rank 2
    (tmp_path / "ad" / "lora.json").write_text(json.dumps(meta))
    base = tiny()
    with pytest.raises(MiniGPTError, match=r"has shape \(2, 16\) but this base model needs \(4, 16\)"):
        minigpt.lora.load_adapters(base, tmp_path / "ad")
    assert not lora_layers(base) and all(p.requires_grad for p in base.parameters())


@pytest.mark.parametrize("call, said", [
    (lambda data: minigpt.get_batch(data, 8.0, 4), r"block_size must be a positive whole number, got 8.0"),
    (lambda data: minigpt.get_batch(data, 8, -1), r"batch_size must be a positive whole number, got -1"),
    (lambda data: minigpt.get_batch(data, 0, 4), r"block_size must be a positive whole number, got 0"),
    (lambda data: minigpt.TextData.from_text("abcabc" * 20, val_fraction="0.1"),
     r"val_fraction must be a number between 0 and 1, got '0.1'"),
    (lambda data: minigpt.CharTokenizer(list("ab")).decode(torch.tensor([1.7, 0.2])),
     r"decode expects integer token ids, got a torch.float32 tensor"),
    (lambda data: minigpt.next_token_probs([1.0, 2.0]), r"logits must be a floating-point tensor"),
])
def test_data_and_sampling_helpers_say_what_they_need(call, said):
    with pytest.raises(MiniGPTError, match=said):
        call(torch.arange(50) % 7)


def test_the_last_review_items_say_what_they_need(tmp_path):
    model, tok = tiny(), minigpt.CharTokenizer(list("abcdefghijk"))
    with pytest.raises(MiniGPTError, match=r"text must be a non-empty string"):
        minigpt.viz.plot_attention_head(model, tok, "", 0, 0)
    with pytest.raises(MiniGPTError, match=r"layer must be a whole number in 0..0 and head in 0..1, got layer=0.0"):
        minigpt.viz.plot_attention_head(model, tok, "abc", 0.0, 0)
    with pytest.raises(MiniGPTError, match=r"step must be a whole number >= 0 .*got 3.0"):
        minigpt.save_checkpoint(tmp_path / "run", model, tok, step=3.0)
    cache = minigpt.KVCache(1, 2, 8, 8)
    with pytest.raises(MiniGPTError, match=r"append expects k and v of shape \(B, Hkv, T, D\) = \(1, 2, T, 8\)"):
        cache.append(torch.zeros(1, 3, 1, 8), torch.zeros(1, 3, 1, 8))
    bpe = minigpt.BPETokenizer.train("the king, the queen. " * 20, 260)
    with pytest.raises(MiniGPTError, match=r"lone surrogate U\+D800 at position 4"):
        bpe.encode("the \ud800 king")


@pytest.mark.parametrize("call, said", [
    (lambda data: minigpt.get_batch(data.tolist(), 8, 4),
     r"get_batch needs one split's token ids as a 1-D integer tensor .* got a list"),
    (lambda data: minigpt.get_batch(data.view(2, 25), 8, 4), r"got a 2-D torch.int64 tensor"),
    (lambda data: minigpt.get_batch(data, 8, 4, device="gpu"), r"get_batch's device 'gpu' is not one torch knows"),
    (lambda data: minigpt.estimate_loss(tiny(), data, 4, 2),
     r"estimate_loss needs a TextData \(both splits\), got Tensor; .* use evaluate\(model, tokens\)"),
    (lambda data: minigpt.estimate_loss(tiny(), minigpt.TextData(minigpt.CharTokenizer(list("ab")), data, data[:0]),
                                        4, 2), r"the split has 0 tokens"),
    (lambda data: minigpt.train(tiny(), "to be or not to be", minigpt.TrainConfig()),
     r"train's data must be a minigpt.TextData .* got str"),
    (lambda data: minigpt.train(tiny(), data, minigpt.TrainConfig()), r"train's data must be a minigpt.TextData"),
    (lambda data: minigpt.train(tiny(), minigpt.TextData.from_text("abcdefghijk" * 30), {"max_iters": 5}),
     r"train's cfg must be a minigpt.TrainConfig, got dict"),
    (lambda data: minigpt.CausalSelfAttention(tiny().config)(torch.randn(5, 16)),
     r"CausalSelfAttention takes x of shape \(B, T, C\) with C = n_embd = 16, got \(5, 16\); one sequence"),
    (lambda data: minigpt.Block(tiny().config)(torch.randn(2, 5, 32)),
     r"Block takes x of shape \(B, T, C\) with C = n_embd = 16, got \(2, 5, 32\)\.$"),
    (lambda data: minigpt.load_pretrained("cuda" if not torch.cuda.is_available() else "tpu"),
     r"device 'cuda' was requested but PyTorch sees no CUDA GPU|unknown device 'tpu'"),
])
def test_a_second_review_s_wrong_arguments_get_one_line(call, said):
    """Each of these ended in an AttributeError, TypeError or RuntimeError from torch before."""
    with pytest.raises(MiniGPTError, match=said):
        call(torch.arange(50) % 7)


def test_make_optimizer_takes_the_config_s_own_device_auto():
    model = tiny()
    optimizer = minigpt.make_optimizer(model, minigpt.TrainConfig(), minigpt.TrainConfig().device)   # "auto"
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_export_and_add_lora_name_arguments_of_the_wrong_kind(tmp_path):
    model, tok = tiny(), minigpt.CharTokenizer(list("abcdefghijk"))
    with pytest.raises(MiniGPTError, match=r"export_model takes \(model, tokenizer, folder\).* got \(MiniGPT, NoneType, "):
        minigpt.export_model(model, None, tmp_path / "out")
    with pytest.raises(MiniGPTError, match=r"got \(MiniGPT, PosixPath, CharTokenizer\)"):
        minigpt.export_model(model, tmp_path / "out", tok)                   # folder and tokenizer swapped
    assert not (tmp_path / "out").exists()
    with pytest.raises(MiniGPTError, match=r"targets must be module names such as .*; got None"):
        add_lora(tiny(), targets=None)


@pytest.mark.parametrize("value, minimum, whole", [
    (3, None, True), (0, 0, True), (-1, None, True), (-1, 0, False), (1, 1, True), (0, 1, False),
    (True, None, False), (False, 0, False), (4.0, None, False), ("4", None, False), (None, None, False),
    (torch.tensor(4), None, False),
])
def test_is_whole_number_is_the_one_test_every_count_goes_through(value, minimum, whole):
    from minigpt.errors import is_whole_number
    assert is_whole_number(value, minimum) is whole


@pytest.mark.parametrize("call, said", [
    # each of these passed a bool or a float through a check written by hand before
    (lambda: minigpt.CharDataset("to be or not", True), r"block_size must be a positive integer, got True"),
    (lambda: minigpt.web.widgets.layer_predictions("to be", top_k=True),
     r"top_k must be a whole number from 1 to 10, got True"),
    (lambda: minigpt.web.widgets.layer_predictions("to be", position=1.5),
     r"position must be a whole number in 0..4 for this text, got 1.5"),
    (lambda: minigpt.TrainConfig(seed=True), r"TrainConfig.seed must be an integer from 0 to 2\*\*63 - 1, got True"),
])
def test_a_bool_or_a_float_is_not_a_count(call, said):
    import minigpt.web.widgets  # noqa: F401  (the widgets are not imported by `import minigpt`)
    with pytest.raises(MiniGPTError, match=said):
        call()


def test_changing_n_head_moves_a_following_n_kv_head_but_not_a_chosen_one():
    """`config.n_head = 4` left n_kv_head at 2: the next model had grouped-query attention
    (c_attn (32, 16) instead of (48, 16)) although nobody asked for it."""
    config = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=1)
    config.n_head = 4
    assert config.n_kv_head == 4 and MiniGPT(config).blocks[0].attn.c_attn.weight.shape == (48, 16)
    chosen = GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=4, n_kv_head=2, n_layer=1)
    chosen.n_head = 8
    assert chosen.n_kv_head == 2


@pytest.mark.parametrize("change, said", [
    # a checkpoint nobody could load ("the tokenizer has 3 characters but ...") was written
    ({"tokenizer": minigpt.CharTokenizer(list("abc"))},
     r"the tokenizer has 3 tokens but the model's vocab_size is 11: a checkpoint of the two could never be loaded"),
    # these failed halfway through the write, with a traceback and a .step-*.tmp folder left behind
    ({"train_state": {"loss": torch.tensor(1.5)}},
     r"train_state\['loss'\] is of type Tensor, which minigpt.json cannot hold; .* \(use .item\(\)"),
    ({"tokenizer": None}, r"the tokenizer must be a minigpt CharTokenizer or BPETokenizer .* got NoneType"),
    ({"optimizer": "adamw"}, r"optimizer must be a torch.optim.Optimizer .* got str"),
    ({"trainer_tensors": {"x": 3}}, r"trainer_tensors holds tensors only; 'x' is of type int"),
    ({"keep": 2.0}, r"keep must be a whole number >= 1 .* or None \(keep every one\), got 2.0"),
    ({"keep": 0}, r"keep must be a whole number >= 1"),                         # kept every folder, silently
])
def test_save_checkpoint_refuses_what_it_could_not_write_or_load_before_writing(tmp_path, change, said):
    args = {"tokenizer": minigpt.CharTokenizer(list("abcdefghijk")), "step": 1, **change}
    with pytest.raises(MiniGPTError, match=said):
        minigpt.save_checkpoint(tmp_path / "run", tiny(), **args)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_failure_inside_save_checkpoint_leaves_no_half_written_folder(tmp_path, monkeypatch):
    import minigpt.checkpoint as checkpoint

    def broken(*args, **kwargs):
        raise KeyboardInterrupt                       # Ctrl-C in the middle of the write
    monkeypatch.setattr(checkpoint, "_write_json", broken)
    with pytest.raises(KeyboardInterrupt):
        minigpt.save_checkpoint(tmp_path / "run", tiny(), minigpt.CharTokenizer(list("abcdefghijk")), 1)
    assert list((tmp_path / "run").iterdir()) == []


def test_export_model_refuses_a_tokenizer_of_another_vocabulary(tmp_path):
    with pytest.raises(MiniGPTError, match=r"the tokenizer has 3 tokens but the model's vocab_size is 11"):
        minigpt.export_model(tiny(), minigpt.CharTokenizer(list("abc")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_prompt_is_named_as_empty_not_as_a_wrong_dtype():
    """torch.tensor([tokenizer.encode("")]) is a float32 (1, 0) tensor; the message said
    "convert with idx.long()", which does not help."""
    with pytest.raises(MiniGPTError, match=r"idx has no tokens \(T = 0\)"):
        tiny().generate(torch.tensor([minigpt.CharTokenizer(list("abcdefghijk")).encode("")]), 3)


def test_the_ladder_s_sample_cuts_the_prompt_off_by_tokens_not_characters():
    """With a BPE tokenizer the prompt "the king" is fewer tokens than characters; cutting 8
    characters' worth of tokens returned '' instead of the 5 new tokens."""
    from minigpt.ladder import sample
    from minigpt.sampling import draw_next_token
    text = "the king, the queen. " * 40
    tok = minigpt.BPETokenizer.train(text, 262)
    data = minigpt.TextData(tok, torch.tensor(tok.encode(text)), torch.tensor(tok.encode(text))[:50])
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_embd=16, n_head=2, n_layer=1))
    prompt_ids = tok.encode("the king")
    assert len(prompt_ids) < len("the king")
    new = sample(model, data, max_new_tokens=5, prompt="the king")
    generator = torch.Generator().manual_seed(0)
    idx = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(5):
            probs = minigpt.next_token_probs(model.eval()(idx)[0][:, -1], 0.8)
            idx = torch.cat((idx, draw_next_token(probs, generator)), dim=1)
    assert new == tok.decode(idx[0, len(prompt_ids):])


@pytest.mark.parametrize("probs, k, said", [
    # logits were drawn as "probability" bars on a 0..1 axis, the negative ones clipped away
    (torch.randn(11, generator=torch.Generator().manual_seed(0)), 5, r"these are not probabilities \(smallest -?\d"),
    (torch.full((2, 11), 1 / 11), 5, r"draws one distribution: a tensor of shape \(V,\) or \(1, V\), got \(2, 11\)"),
    (torch.full((11,), 1 / 11), -3, r"k is the number of bars, a whole number >= 1, got -3"),
])
def test_plot_next_token_probs_takes_one_distribution(probs, k, said):
    import matplotlib
    matplotlib.use("Agg")
    with pytest.raises(MiniGPTError, match=said):
        minigpt.viz.plot_next_token_probs(probs, list("abcdefghijk"), k=k)


@pytest.mark.parametrize("call, said", [
    (lambda: minigpt.pick_device(0), r"device must be a name such as 'auto', 'cpu', .* got 0; GPU 0 is 'cuda:0'"),  # was "auto"
    (lambda: minigpt.pick_device(1), r"got 1; GPU 1 is 'cuda:1'"),                 # was 'int' has no attribute 'lower'
    (lambda: minigpt.rope_cos_sin(4, 4, base=0), r"base must be a number > 1 .* got 0"),      # was NaN tables
])
def test_a_device_number_and_a_rope_base_of_zero_are_refused(call, said):
    with pytest.raises(MiniGPTError, match=said):
        call()


@pytest.mark.parametrize("call, said", [
    # a KeyError with the bare name before
    (lambda: minigpt.PRESETS["Tiny"], r"no preset 'Tiny'; the presets are 'seed', .*'tiny'"),
    # "cannot build a vocabulary from an empty text" for text that was not empty
    (lambda: minigpt.TextData.from_text(b"to be or not" * 20), r"a vocabulary is built from a str, got bytes; decode"),
    (lambda: minigpt.CharDataset(list("to be or not"), 4), r"got list; join a list of characters first"),
    # torch's randint() signature dump before
    (lambda: minigpt.get_batch(torch.arange(50) % 7, 8, 4, generator=42),
     r"generator must be a torch.Generator or None, got 42; .* torch.Generator\(\).manual_seed\(42\)"),
])
def test_a_third_review_s_wrong_arguments_get_one_line(call, said):
    with pytest.raises(MiniGPTError, match=said):
        call()


def test_an_unknown_preset_is_still_a_key_error():
    with pytest.raises(KeyError):
        minigpt.PRESETS["Tiny"]
    assert minigpt.PRESETS.get("Tiny") is None and "book" in minigpt.PRESETS


def test_train_refuses_float16_weights_and_a_callback_it_cannot_call_before_any_step():
    """float16 weights: AdamW's eps is 0 there and the first step gave NaN, which the message
    blamed on the learning rate (even at 1e-6). callback="print" failed after the steps ran."""
    data = minigpt.TextData.from_text("abcdefghijk" * 40)
    config = minigpt.TrainConfig(max_iters=2, device="cpu")
    with pytest.raises(MiniGPTError, match=r"the model's weights are float16, which AdamW cannot update .*model.float\(\)"):
        minigpt.train(tiny().half(), data, config, progress=False)
    with pytest.raises(MiniGPTError, match=r"callback must be a function that takes one dict \(or None\), got 'print'"):
        minigpt.train(tiny(), data, config, progress=False, callback="print")
    assert minigpt.train(tiny().bfloat16(), data, config, progress=False).history["step"]      # bfloat16 trains


def test_expect_names_a_value_that_is_not_a_number():
    with pytest.raises(ValueError, match=r"expect\('x', \.\.\.\) needs a number \(or a one-element tensor\), got None"):
        minigpt.expect("x", None, book=1.0, tol=0.1)


@pytest.mark.parametrize("call, who", [
    (lambda: minigpt.device.describe("gpu"), "describe"),
    (lambda: minigpt.device.autocast("gpu"), "autocast"),
    (lambda: minigpt.KVCache(1, 2, 8, 8, device="gpu"), "KVCache"),
    (lambda: minigpt.causal_mask(3, device="gpu"), "causal_mask"),
])
def test_a_device_name_torch_does_not_know_is_named_with_its_caller(call, who):
    """torch's own "Expected one of cpu, cuda, ... device type at start of device string: gpu"."""
    with pytest.raises(MiniGPTError, match=rf"{who}'s device 'gpu' is not one torch knows; use 'cpu', 'cuda'"):
        call()


def test_attention_plots_take_numpy_weights_and_name_layers_that_are_not_there():
    """np.eye(2) ended in "'numpy.ndarray' object has no attribute 'detach'"; layers=[3] in an
    IndexError and layers=[] in matplotlib's "Number of rows must be a positive integer"."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy
    ax = minigpt.viz.plot_attention(numpy.eye(2), ["a", "b"])
    assert ax.images[0].get_array().shape == (2, 2)
    with pytest.raises(MiniGPTError, match=r"plot_attention takes attention weights as a tensor .* got str"):
        minigpt.viz.plot_attention("weights", ["a", "b"])
    maps = torch.rand(2, 2, 4, 4)
    with pytest.raises(MiniGPTError, match=r"layers must be a non-empty list of numbers in 0..1 \(these maps have 2\), got \[3\]"):
        minigpt.viz.plot_attention_grid(maps, list("abcd"), layers=[3])
    with pytest.raises(MiniGPTError, match=r"heads must be a non-empty list of numbers in 0..1 .* got \[\]"):
        minigpt.viz.plot_attention_grid(maps, list("abcd"), heads=[])
    plt.close("all")


def test_attention_memory_takes_a_device_name_and_names_a_length_that_is_not_one():
    """"cpu" ended in "'str' object has no attribute 'type'", T=16.0 in the child process's traceback."""
    from minigpt.memory import attention_memory
    with pytest.raises(MiniGPTError, match=r"attention_memory's T is a sequence length, a whole number >= 1, got 16.0"):
        attention_memory("cpu", T=16.0)
    with pytest.raises(MiniGPTError, match=r"attention_memory's device 'gpu' is not one torch knows"):
        attention_memory("gpu")


@pytest.mark.parametrize("call, said", [
    (lambda: minigpt.estimate_loss(tiny(), minigpt.TextData.from_text("abcdefghijk" * 30), 4, 2, seed="0"),
     r"estimate_loss's seed must be a whole number >= 0 \(it picks the batches\), got '0'"),
    (lambda: minigpt.make_optimizer(tiny(), {"learning_rate": 1e-3}, "cpu"),
     r"make_optimizer's cfg must be a minigpt.TrainConfig .* got dict; a dict d becomes TrainConfig\(\*\*d\)"),
    (lambda: __import__("minigpt.gpt2").gpt2.from_hf_state_dict({}, None),
     r"from_hf_state_dict needs the GPTConfig the weights were made for, got NoneType"),
])
def test_the_last_arguments_of_the_wrong_kind_get_one_line(call, said):
    with pytest.raises(MiniGPTError, match=said):
        call()


def test_adapters_refuse_a_new_model_of_the_same_shape_as_their_base(tmp_path):
    """The config alone could not tell a trained base from MiniGPT(same config): the adapters
    loaded onto random weights without a word. A few mean |w| numbers now can, and they do not
    move when the base changes dtype."""
    import copy
    from minigpt.lora import base_fingerprint, load_adapters
    base = tiny()
    with torch.no_grad():                       # "trained": LayerNorms and embedding moved off their init
        for name, p in base.named_parameters():
            if ".ln_" in f".{name}" or name == "wte.weight":
                p.mul_(1.7).add_(0.1)
    trained_base = copy.deepcopy(base)
    save_adapters(add_lora(base, rank=2), tmp_path / "adapters")
    with pytest.raises(MiniGPTError, match=r"trained on the same shape of model but other weights .* not a new MiniGPT"):
        load_adapters(tiny(), tmp_path / "adapters")
    assert lora_layers(load_adapters(trained_base, tmp_path / "adapters"))
    plain, half = base_fingerprint(tiny()), base_fingerprint(tiny().bfloat16())
    assert all(abs(plain[k] - half[k]) <= 0.01 * abs(plain[k]) for k in plain)


def test_adapters_load_onto_their_base_with_another_dropout(tmp_path):
    """Refused before: "trained on another base model (dropout=0.1, not 0.0)", though the
    weights are the same."""
    import copy
    from minigpt.lora import load_adapters
    base = tiny(dropout=0.1)
    other_dropout = MiniGPT(GPTConfig(**{**base.config.to_dict(), "dropout": 0.0}))
    other_dropout.load_state_dict(copy.deepcopy(base.state_dict()))
    save_adapters(add_lora(base, rank=2), tmp_path / "adapters")
    assert lora_layers(load_adapters(other_dropout, tmp_path / "adapters"))


def test_what_a_review_of_the_new_checks_found_they_refused_wrongly(tmp_path):
    """k/v that broadcast (a batch or a head of 1: multi-query), numpy and tensor dropout_p,
    a numpy RoPE base, a bfloat16 softmax (sums to 1 within 1e-2, not 1e-3) and a negative
    layer index all worked before the checks came, and work again; a train_state key that is
    not a name is named as such."""
    import matplotlib
    matplotlib.use("Agg")
    import numpy
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
    torch.testing.assert_close(minigpt.manual_attention(q, k, v),
                               minigpt.manual_attention(q, k.expand(2, 4, 5, 8), v.expand(2, 4, 5, 8)))
    # numpy and tensor numbers mean what the Python float means (same seed, same mask)
    for given in (numpy.float32(0.1), torch.tensor(0.1)):
        for attend, kwargs in ((minigpt.manual_attention, dict(training=True)), (minigpt.flash_attention, {})):
            torch.manual_seed(3)
            expected = attend(q, q, q, dropout_p=0.1, **kwargs)
            torch.manual_seed(3)
            torch.testing.assert_close(attend(q, q, q, dropout_p=given, **kwargs), expected)
    torch.testing.assert_close(minigpt.rope_cos_sin(8, 16, numpy.float32(10000)), minigpt.rope_cos_sin(8, 16, 10000.0))
    logits = torch.randn(65, generator=torch.Generator().manual_seed(0)) * 20
    minigpt.viz.plot_next_token_probs(torch.softmax(logits.bfloat16(), -1), [chr(33 + i) for i in range(65)])
    minigpt.viz.plot_attention_grid(torch.rand(2, 2, 4, 4), list("abcd"), layers=[-1])
    with pytest.raises(MiniGPTError, match=r"train_state's keys are names \(str\), got \(1, 2\)"):
        minigpt.save_checkpoint(tmp_path / "run", tiny(), minigpt.CharTokenizer(list("abcdefghijk")), 1,
                                train_state={(1, 2): 3})


# ---------------------------------------- a device torch knows but this machine lacks
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("call, who", [
    (lambda device: minigpt.KVCache(1, 2, 4, 8, device=device), "KVCache"),
    (lambda device: minigpt.causal_mask(3, device=device), "causal_mask"),
    (lambda device: minigpt.get_batch(torch.arange(50) % 7, 8, 2, device=device), "get_batch"),
    (lambda device: minigpt.describe(device), "describe"),
    (lambda device: minigpt.autocast(device).__enter__(), "autocast"),
    (lambda device: minigpt.device.autocast_dtype(device), "autocast"),
    (lambda device: __import__("minigpt.memory").memory.attention_memory(device, T=16), "attention_memory"),
])
def test_cuda_named_on_a_machine_without_one_is_said_in_one_line(call, who):
    """device='cuda' copied from a Colab notebook onto a laptop: these helpers raised torch's
    "Torch not compiled with CUDA enabled" (an AssertionError) or "Cannot access accelerator
    device when none is available" from deep inside, where pick_device, TrainConfig and
    load_pretrained already said it in one line."""
    with pytest.raises(MiniGPTError, match=rf"^{who}'s device 'cuda': PyTorch sees no CUDA GPU on this machine "
                                           r"\(is this a CPU-only torch build\?\); use 'cpu', or the device "
                                           r"minigpt.pick_device\(\) returns\.$"):
        call("cuda")
    if not torch.backends.mps.is_available() and who != "autocast":      # MPS autocasts to nothing
        with pytest.raises(MiniGPTError, match=rf"^{who}'s device 'mps' is not available on this machine"):
            call("mps")
    assert minigpt.device.autocast_dtype("mps") is None     # the precision rule reads the kind only


@pytest.mark.parametrize("kwargs, message", [
    (dict(tol="0.05"), r"tol must be a finite number, got '0\.05'"),        # was "'>' not supported"
    (dict(book="1.0"), r"book must be a finite number, got '1\.0'"),        # was "Unknown format code 'f'"
    (dict(book=float("nan")), r"book must be a finite number, got nan"),    # passed every value
    (dict(tol=float("inf")), r"tol must be a finite number, got inf"),      # passed every value
    (dict(tol=True), r"tol must be a finite number, got True"),
    (dict(tol=0), r"tol must be a positive number, got 0"),
    (dict(digits=-1), r"digits are decimals to print, a whole number in 0\.\.17, got -1"),   # a format error
    (dict(digits=2.0), r"digits are decimals to print, a whole number in 0\.\.17, got 2\.0"),
    (dict(value=[1.0]), r"needs a number \(or a one-element tensor\), got \[1\.0\]"),
    (dict(value=torch.ones(2)), r"needs a number \(or a one-element tensor\), got tensor"),  # torch's RuntimeError
])
def test_expect_names_each_argument_it_cannot_use(kwargs, message):
    """expect() is the book's one way to check a measured number: a setting it cannot use is a
    UsageError that names it, and a NaN book or an infinite tolerance (which no value could
    fail) is refused rather than passing everything."""
    call = {**dict(value=1.0, book=1.0, tol=0.1), **kwargs}
    with pytest.raises(minigpt.errors.UsageError, match=rf"^expect\('x', \.\.\.\)('s)? {message}"):
        minigpt.expect("x", **call)
    assert minigpt.expect("x", torch.tensor(1.05), 1, 0.1, digits=0) == pytest.approx(1.05)   # ints and tensors


def test_a_kv_cache_holds_floating_point_keys_only():
    """dtype="float16" (a string) ended in torch.empty's "argument 'dtype' must be torch.dtype";
    dtype=torch.long made a cache that stored 0.7 as 0 without a word."""
    with pytest.raises(MiniGPTError, match=r"KVCache's dtype must be a floating-point torch dtype .* got 'float16'"):
        minigpt.KVCache(1, 2, 4, 8, dtype="float16")
    with pytest.raises(MiniGPTError, match=r"KVCache's dtype must be a floating-point torch dtype .* got torch.int64"):
        minigpt.KVCache(1, 2, 4, 8, dtype=torch.long)
    with pytest.raises(MiniGPTError, match=r"got 'bfloat16'"):
        minigpt.kv_cache_nbytes(32, 1, 32, 4096, 128, dtype="bfloat16")
    cache = minigpt.KVCache(1, 2, 4, 8)
    with pytest.raises(MiniGPTError, match=r"append expects floating-point keys and values .* got torch.int64"):
        cache.append(torch.ones(1, 2, 1, 8, dtype=torch.long), torch.ones(1, 2, 1, 8))
    k, _ = cache.append(torch.full((1, 2, 1, 8), 0.7), torch.full((1, 2, 1, 8), 0.7))
    assert k.dtype == torch.float32 and float(k[0, 0, 0, 0]) == pytest.approx(0.7)


@pytest.mark.parametrize("seed", ["42", 1.5, True, -1, 2**64, None])
def test_set_seed_refuses_what_is_not_a_seed(seed):
    """set_seed("42"), 1.5 (torch read it as 1) and True were taken quietly; 2**70 ended in torch's
    "Overflow when unpacking long long" and None in int()'s TypeError."""
    with pytest.raises(minigpt.errors.UsageError, match=r"^set_seed takes a whole number from 0 to 2\*\*64 - 1, got "):
        minigpt.set_seed(seed)
    minigpt.set_seed(2**64 - 1)                 # the largest seed torch's generators hold
    minigpt.set_seed(0)


def test_gpt2_loaders_name_what_they_were_given():
    """from_hf_model("gpt2") ended in "'str' object has no attribute 'config'"; a 3-D Conv1D weight
    in torch's "t() expects a tensor with <= 2 dimensions"; meta tensors in load_state_dict's
    "Cannot copy out of meta tensor"; an integer key in "'int' object has no attribute
    'startswith'"; a head of another shape was called "an untied head"; load_pretrained("gpt2")
    said only that 'gpt2' is an unknown device."""
    from minigpt import gpt2
    with pytest.raises(MiniGPTError, match=r"from_hf_model takes a loaded Hugging Face GPT-2 model .* got str; "
                                           r"load it first: GPT2LMHeadModel.from_pretrained\('gpt2'\)"):
        gpt2.from_hf_model("gpt2")
    with pytest.raises(MiniGPTError, match=r"got dict; for a state dict use from_hf_state_dict\(state, config\)"):
        gpt2.from_hf_model({})
    config = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16)
    good = {"transformer." + k.replace("blocks.", "h."): (v.t() if k.endswith(gpt2.CONV1D_WEIGHTS) else v)
            for k, v in MiniGPT(config).state_dict().items() if k != "lm_head.weight"}
    assert isinstance(gpt2.from_hf_state_dict(good, config), MiniGPT)
    name = "transformer.h.0.attn.c_attn.weight"
    with pytest.raises(MiniGPTError, match=rf"'{name}' has shape \(1, 16, 48\); GPT-2's Conv1D weights are 2-D"):
        gpt2.from_hf_state_dict({**good, name: good[name][None]}, config)
    with pytest.raises(MiniGPTError, match=r"is a meta tensor \(a shape without values\); load the weights first"):
        gpt2.from_hf_state_dict({k: v.to("meta") for k, v in good.items()}, config)
    with pytest.raises(MiniGPTError, match=r"a state dict's keys are tensor names, got the key 0"):
        gpt2.from_hf_state_dict({**good, 0: torch.zeros(1)}, config)
    with pytest.raises(MiniGPTError, match=r"lm_head.weight has shape \(11, 16\) but the token embedding \(10, 16\)"):
        gpt2.from_hf_state_dict({**good, "lm_head.weight": torch.zeros(11, 16)}, config)
    with pytest.raises(MiniGPTError, match=r"load_pretrained takes the device .* got 'gpt2'; for GPT-2's weights use "
                                           r"minigpt.gpt2.from_hf_model"):
        minigpt.load_pretrained("gpt2")


def _tiny_model(n_layer=1):
    return MiniGPT(GPTConfig(vocab_size=10, block_size=8, n_layer=n_layer, n_head=2, n_embd=16))


def test_export_web_refuses_an_adapted_model_and_settings_json_cannot_hold(tmp_path):
    """A LoRA-adapted model was written with its lora_A/lora_B beside the unmerged weights: the
    page's model.js reads only the base names, so it ran the base model without a word, and
    load_web_model called the file damaged. info={"val_loss": tensor} and name=5 failed in
    json.dumps and re.match after every check had passed."""
    from minigpt.lora import add_lora, merge_lora
    from minigpt.web import export_web, load_web_model
    tok = CharTokenizer(list("abcdefghij"))
    adapted = add_lora(_tiny_model(), rank=2)
    with pytest.raises(MiniGPTError, match=r"this model has LoRA adapters \(blocks\.0\.attn\.c_attn\.lora_A, \.\.\.\): "
                                           r"a web asset holds a plain model\. Merge them first"):
        export_web(adapted, tok, tmp_path / "lora.js")
    with pytest.raises(MiniGPTError, match=r"info\['val_loss'\] is a Tensor, which JSON cannot hold: .* "
                                           r"pass float\(value\) or value\.item\(\)"):
        export_web(_tiny_model(), tok, tmp_path / "a.js", info={"val_loss": torch.tensor(1.5)})
    with pytest.raises(MiniGPTError, match=r"info must be a dict such as \{'val_loss': 1\.48\}, got list"):
        export_web(_tiny_model(), tok, tmp_path / "a.js", info=[1.5])
    with pytest.raises(MiniGPTError, match=r"name must be a string \(1-64 letters, digits, '_' or '-'\), got 5"):
        export_web(_tiny_model(), tok, tmp_path / "a.js", name=5)
    assert list(tmp_path.iterdir()) == []                            # nothing half-written
    merged = merge_lora(adapted).eval()
    model, _ = load_web_model(export_web(merged, tok, tmp_path / "merged.js", quantize="float32",
                                         info={"val_loss": 1.5}))
    idx = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(model(idx)[0], merged(idx)[0], rtol=0, atol=1e-6)


def test_the_page_widgets_name_texts_they_cannot_use():
    """A single string given as the explorers' texts was split into one-character texts (a
    dropdown of letters); layer_predictions(None) failed inside the f-string of its own error;
    generator(prompt=None) and examples=None in 'not iterable'; an empty prompt was accepted
    although the page refuses to generate from it."""
    from minigpt.web import widgets as W
    for call in (lambda: W.attention_explorer("To be or not"),
                 lambda: W.KernelAttentionExplorer(_tiny_model(), CharTokenizer(list("abcdefghij")), "abcd")):
        with pytest.raises(MiniGPTError, match=r"^texts must be a list of texts \(or \{label: text\}\), got one "
                                               r"string '.*'; pass it in a list: \[text\]\.$"):
            call()
    with pytest.raises(MiniGPTError, match=r"^each prepared text must be a string, got int 5\.$"):
        W.attention_explorer(["To be", 5])
    with pytest.raises(MiniGPTError, match=r"^give at least one prepared text"):
        W.attention_explorer({})
    for value in (None, 5):
        with pytest.raises(MiniGPTError, match=rf"^text must be a string, got {type(value).__name__} {value}\.$"):
            W.layer_predictions(value)
    with pytest.raises(MiniGPTError, match=r"^prompt must be a string, got NoneType None\.$"):
        W.generator(prompt=None)
    with pytest.raises(MiniGPTError, match=r"^the prompt is empty: give at least one character to continue"):
        W.generator(prompt="")
    with pytest.raises(MiniGPTError, match=r"^examples must be a list of dicts .* got None\.$"):
        W.generator(examples=None)
    page = W.standalone_page(W.generator())                      # one widget is a page of one
    assert page.count('class="mg-widget') == 1 and page.startswith("<!DOCTYPE html>")


def test_the_kernel_explorer_refuses_a_bpe_model_and_layers_that_are_not_numbers():
    """A BPE model (chapter 15) ended in "'BPETokenizer' object has no attribute 'stoi'" while the
    explorer was being made; layer=0.5 in a traitlets TraitError, layer="0" in "'<=' not
    supported"."""
    pytest.importorskip("ipywidgets")
    from minigpt import BPETokenizer
    from minigpt.web import widgets as W
    with pytest.raises(MiniGPTError, match=r"^the explorer labels its maps with characters, and this tokenizer is a "
                                           r"BPETokenizer: use a character-level model"):
        W.KernelAttentionExplorer(_tiny_model(), BPETokenizer([]), ["abcd"])
    tok = CharTokenizer(list("abcdefghij"))
    for layer in (0.5, "0", True):
        with pytest.raises(MiniGPTError, match=rf"^layer must be in 0\.\.1 and head in 0\.\.1, got layer={layer!r}, head=0"):
            W.KernelAttentionExplorer(_tiny_model(n_layer=2), tok, ["abcd"], layer=layer)
    assert W.KernelAttentionExplorer(_tiny_model(n_layer=2), tok, ["abcd"], layer=1).layer.value == 1


def test_the_attention_plots_label_square_maps_with_strings():
    """plot_attention(torch.rand(3, 4), list("abc")) was drawn with 3 labels for 4 columns (the
    mislabelling its row check was there to stop); tokens=None ended in len()'s TypeError in all
    three plots; maps with a batch of size 0 in an IndexError."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with pytest.raises(MiniGPTError, match=r"plot_attention expects one \(T, T\) matrix, got shape \(3, 4\)"):
        minigpt.viz.plot_attention(torch.rand(3, 4), list("abc"))
    labels = r"tokens are the labels, a list of strings \(or one string, a character a position\), got NoneType"
    with pytest.raises(MiniGPTError, match=rf"plot_attention's {labels}"):
        minigpt.viz.plot_attention(torch.rand(3, 3), None)
    with pytest.raises(MiniGPTError, match=rf"plot_attention_grid's {labels}"):
        minigpt.viz.plot_attention_grid(torch.rand(1, 2, 3, 3), None)
    with pytest.raises(MiniGPTError, match=rf"plot_next_token_probs's {labels}"):
        minigpt.viz.plot_next_token_probs(torch.full((3,), 1 / 3), None)
    with pytest.raises(MiniGPTError, match=r"got maps of shape \(1, 0, 2, 4, 4\), with nothing to draw"):
        minigpt.viz.plot_attention_grid(torch.rand(1, 0, 2, 4, 4), list("abcd"))
    assert minigpt.viz.plot_attention(torch.eye(3), "abc").images                 # one string: a char a label
    plt.close("all")
