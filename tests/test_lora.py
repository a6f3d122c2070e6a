"""minigpt.lora: adapters that start at zero, train alone, merge exactly, and save alone."""

import json

import pytest
import torch

from minigpt import GPTConfig, MiniGPT, MiniGPTError
from minigpt.cli import main
from minigpt.lora import (ADAPTER_FILE, ADAPTER_META, LoRALinear, add_lora, load_adapters, lora_layers,
                          lora_parameter_count, merge_lora, save_adapters)

ALL = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    config = GPTConfig(**{**dict(vocab_size=11, block_size=16, n_embd=16, n_head=2, n_layer=2, dropout=0.0), **kw})
    return MiniGPT(config).eval()


def random_adapters(model, seed=1):
    """Trained adapters stand-in: B is zero at first, which would hide any bug in B's use."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def ids(seed=2, T=16):
    return torch.randint(0, 11, (3, T), generator=torch.Generator().manual_seed(seed))


def test_fresh_adapters_leave_the_model_unchanged():
    model = tiny()
    x = ids()
    before = model(x)[0]
    add_lora(model, rank=4, alpha=8, targets=ALL)
    assert torch.equal(model(x)[0], before)
    assert len(lora_layers(model)) == 4 * 2
    for layer in lora_layers(model).values():
        assert torch.count_nonzero(layer.lora_A) > 0 and torch.count_nonzero(layer.lora_B) == 0


def test_only_adapter_parameters_require_grad_and_their_count():
    model = add_lora(tiny(), rank=4, alpha=8, targets=("attn.c_attn", "mlp.c_fc"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A" in n or ".lora_B" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 2          # A and B, two targets, two layers
    C, r = 16, 4
    per_layer = r * (C + 3 * C) + r * (C + 4 * C)   # c_attn C -> 3C, c_fc C -> 4C: r * (in + out)
    assert lora_parameter_count(model) == 2 * per_layer
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * per_layer


def test_training_step_moves_only_the_adapters():
    """An optimizer handed every parameter, as a user would, still moves only the adapters:
    add_lora's freezing (no gradient) is what keeps the base weights, not a filtered list."""
    model = add_lora(tiny(), rank=2, alpha=4, targets=ALL).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = ids()
    _, loss = model(x[:, :-1], x[:, 1:])
    loss.backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(".lora_B" in n for n in moved)            # B starts at zero and gets the gradient
    # lora_A moves too, though its gradient is zero while B is: AdamW's weight decay shrinks it
    assert all(".lora_A" in n or ".lora_B" in n for n in moved), sorted(moved)


def test_merged_model_gives_the_adapted_logits():
    model = add_lora(tiny(), rank=3, alpha=5, targets=ALL)
    random_adapters(model)
    x = ids()
    merged = merge_lora(model)
    assert type(merged) is MiniGPT and not lora_layers(merged)
    assert set(merged.state_dict()) == set(tiny().state_dict())
    torch.testing.assert_close(merged(x)[0], model(x)[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(merged(x)[0], tiny()(x)[0], atol=1e-3)     # the update is really in W


def test_the_algebra_of_one_layer():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    layer = LoRALinear(base, rank=2, alpha=6)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    expected = x @ base.weight.T + base.bias + (6 / 2) * x @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.merged_weight(), base.weight + 3 * layer.lora_B @ layer.lora_A)


def test_adapters_only_checkpoint_round_trip(tmp_path):
    model = add_lora(tiny(), rank=4, alpha=8, targets=("attn.c_attn", "attn.c_proj"))
    random_adapters(model)
    save_adapters(model, tmp_path / "ad")
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == [ADAPTER_FILE, ADAPTER_META]
    size = (tmp_path / "ad" / ADAPTER_FILE).stat().st_size
    assert size < 4 * lora_parameter_count(model) + 2000          # the adapters alone, float32
    loaded = load_adapters(tiny(), tmp_path / "ad")               # the same base, fresh
    x = ids()
    assert torch.equal(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize("bad, message", [
    (dict(rank=0), "rank must be a positive integer"),
    (dict(rank=-2), "rank must be a positive integer"),
    (dict(rank=2.5), "rank must be a positive integer"),
    (dict(alpha=0), "alpha must be a positive number"),
    (dict(targets=("attn.c_atn",)), "match no linear layer"),
    (dict(targets=("wte",)), "match no linear layer"),
    (dict(targets=("lm_head",)), "'lm_head' shares its weight with 'wte.weight'"),
    (dict(rank=17), r"LoRA rank 17 is larger than 'blocks.0.attn.c_attn' is wide \(16\).*rank <= 16"),
])
def test_bad_requests_are_one_line_errors(bad, message):
    with pytest.raises(MiniGPTError, match=message) as info:
        add_lora(tiny(), **{**dict(rank=2, alpha=4), **bad})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("base, rank, alpha, message", [
    (torch.nn.Linear(4, 3), 0, 1.0, "rank must be a positive integer"),
    (torch.nn.Linear(4, 3), -2, 1.0, "rank must be a positive integer"),
    (torch.nn.Linear(4, 3), 8.0, 16.0, "rank must be a positive integer"),
    (torch.nn.Linear(4, 3), 2, 0, "alpha must be a positive number"),
    (torch.nn.Conv1d(4, 3, 1), 2, 4.0, "wraps an nn.Linear, got Conv1d"),
])
def test_a_lora_layer_built_by_hand_checks_its_arguments(base, rank, alpha, message):
    # chapter 16 builds LoRALinear directly, past add_lora's checks
    with pytest.raises(MiniGPTError, match=message) as info:
        LoRALinear(base, rank, alpha)
    assert "\n" not in str(info.value)


def test_adapters_for_another_base_shape_are_refused(tmp_path):
    save_adapters(add_lora(tiny(), rank=2, alpha=4), tmp_path / "ad")
    with pytest.raises(MiniGPTError, match="n_embd=16, not 32.*trained on") as info:
        load_adapters(tiny(n_embd=32), tmp_path / "ad")
    assert "\n" not in str(info.value)


def test_twice_adapted_and_nothing_to_merge_are_errors(tmp_path):
    model = add_lora(tiny(), rank=2, alpha=4)
    with pytest.raises(MiniGPTError, match="already has LoRA adapters"):
        add_lora(model, rank=2, alpha=4)
    with pytest.raises(MiniGPTError, match="no LoRA adapters to merge"):
        merge_lora(tiny())
    with pytest.raises(MiniGPTError, match="no LoRA adapters to save"):
        save_adapters(tiny(), tmp_path / "x")


def test_corrupted_adapter_file_is_refused(tmp_path):
    save_adapters(add_lora(tiny(), rank=2, alpha=4), tmp_path / "ad")
    f = tmp_path / "ad" / ADAPTER_FILE
    f.write_bytes(f.read_bytes()[:-8])
    with pytest.raises(MiniGPTError, match="corrupted or truncated"):
        load_adapters(tiny(), tmp_path / "ad")


def test_cli_lora_fine_tune_smoke(tmp_path, capsys):
    from minigpt.pretrained import load_pretrained
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 120
    (tmp_path / "t.txt").write_text(text)
    out = tmp_path / "run"
    rc = main(["train", "--init-from", "pretrained", "--lora-rank", "2", "--text", str(tmp_path / "t.txt"),
               "--max-iters", "2", "--batch-size", "2", "--eval-interval", "2", "--out", str(out),
               "--no-progress", "--sample-tokens", "0", "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "LoRA rank 2, alpha 4" in printed and "18,432 trainable parameters" in printed
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["lora"] == {"rank": 2, "alpha": 4.0, "targets": ["attn.c_attn", "attn.c_proj"]}
    base, _ = load_pretrained("cpu")
    x = torch.randint(0, 65, (1, 32), generator=torch.Generator().manual_seed(0))
    before = base(x)[0]
    adapted = load_adapters(base, out)
    assert not torch.equal(adapted(x)[0], before)                   # two steps moved B off zero


@pytest.mark.parametrize("argv, message", [
    (["--lora-rank", "4"], "add --init-from pretrained"),
    (["--init-from", "pretrained", "--n-layer", "2"], "keeps the pretrained model (its shape and dropout)"),
    (["--init-from", "pretrained", "--lora-alpha", "4"], "add --lora-rank"),
])
def test_cli_fine_tune_flag_errors(argv, message, capsys, tmp_path):
    assert main(["train", "--out", str(tmp_path / "o"), "--max-iters", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_interrupted_cli_lora_fine_tune_keeps_its_adapters(tmp_path, capsys, monkeypatch):
    # a LoRA run writes no step checkpoints: Ctrl-C (which stops at a step boundary) once lost
    # every step trained; now the adapters trained so far are written to --out
    import dataclasses
    import importlib
    from minigpt.pretrained import load_pretrained
    train_module = importlib.import_module("minigpt.train")
    real_train = train_module.train

    def interrupted_after_two_steps(model, data, cfg, **kw):
        real_train(model, data, dataclasses.replace(cfg, max_iters=2, eval_interval=2), **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "train", interrupted_after_two_steps)
    (tmp_path / "t.txt").write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n" * 120)
    out = tmp_path / "run"
    rc = main(["train", "--init-from", "pretrained", "--lora-rank", "2", "--text", str(tmp_path / "t.txt"),
               "--max-iters", "500", "--batch-size", "2", "--out", str(out), "--no-progress",
               "--sample-tokens", "0", "--device", "cpu"])
    assert rc == 130
    assert f"the adapters trained until the interruption -> {out}" in capsys.readouterr().out
    base, _ = load_pretrained("cpu")
    x = torch.randint(0, 65, (1, 32), generator=torch.Generator().manual_seed(0))
    before = base(x)[0]
    assert not torch.equal(load_adapters(base, out)(x)[0], before)     # the two steps are kept


def test_same_outputs_as_peft_lora():
    """peft's LoRA on the same tiny model, with our initialisation copied over."""
    peft = pytest.importorskip("peft")
    model = tiny()
    ours = add_lora(tiny(), rank=4, alpha=8, targets=ALL)
    random_adapters(ours)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(ALL), bias="none")
    theirs = peft.inject_adapter_in_model(cfg, model)
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            peft_layer = theirs.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
    x = ids()
    torch.testing.assert_close(theirs(x)[0], ours(x)[0], rtol=1e-5, atol=1e-5)
    trainable = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert trainable == lora_parameter_count(ours)


def test_training_an_adapted_model_into_a_run_folder_is_refused(tmp_path):
    from minigpt import TextData, TrainConfig, train
    data = TextData.from_text("abcdefghij" * 40)
    torch.manual_seed(0)
    model = add_lora(MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=8, n_embd=8,
                                       n_head=2, n_layer=1)), rank=2, alpha=4)
    cfg = TrainConfig(max_iters=2, batch_size=2, eval_interval=2, eval_iters=1, device="cpu")
    with pytest.raises(MiniGPTError, match="save_adapters"):
        train(model, data, cfg, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    result = train(model, data, cfg, progress=False)          # without out_dir: the adapters learn
    assert any(torch.count_nonzero(l.lora_B) > 0 for l in lora_layers(result.model).values())


def test_an_adapter_folder_loaded_as_a_model_says_what_it_is(tmp_path, capsys):
    from minigpt import load_model
    save_adapters(add_lora(tiny(), rank=2, alpha=4), tmp_path / "ad")
    with pytest.raises(MiniGPTError, match="holds LoRA adapters alone.*load_adapters"):
        load_model(tmp_path / "ad")
    assert main(["sample", "--checkpoint", str(tmp_path / "ad"), "--max-new-tokens", "2"]) == 2
    assert "LoRA adapters alone" in capsys.readouterr().err


def test_a_failed_adapter_write_is_one_line_and_leaves_the_folder_empty(tmp_path, monkeypatch):
    # safetensors reports a full or read-only disk as its own SafetensorError, which escaped as
    # a traceback and left the folder non-empty, so the next try was refused
    from safetensors import SafetensorError
    model = add_lora(tiny(), rank=2)

    def full_disk(tensors, path, metadata=None):
        path.write_bytes(b"half")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr("minigpt.checkpoint._save_tensors", full_disk)
    with pytest.raises(MiniGPTError, match="could not write adapters to .*No space left on device"):
        save_adapters(model, tmp_path / "a")
    assert list((tmp_path / "a").iterdir()) == []
    monkeypatch.undo()
    save_adapters(model, tmp_path / "a")                 # the next try finds an empty folder
    assert (tmp_path / "a" / ADAPTER_META).is_file()


@pytest.mark.parametrize("training", [False, True])
def test_merging_keeps_the_model_s_mode(training):
    from minigpt.lora import merge_lora
    model = tiny(dropout=0.5).train(training)
    add_lora(model, rank=2, alpha=4)
    assert merge_lora(model).training is training
