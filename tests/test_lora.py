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


def test_a_failed_adapter_write_is_one_line_and_leaves_nothing_behind(tmp_path, monkeypatch):
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
    assert list(tmp_path.iterdir()) == []                # no folder, no temporary beside it
    monkeypatch.undo()
    save_adapters(model, tmp_path / "a")                 # the next try finds an empty folder
    assert (tmp_path / "a" / ADAPTER_META).is_file()


@pytest.mark.parametrize("training", [False, True])
def test_merging_keeps_the_model_s_mode(training):
    from minigpt.lora import merge_lora
    model = tiny(dropout=0.5).train(training)
    add_lora(model, rank=2, alpha=4)
    assert merge_lora(model).training is training


# ------------------------------------------------ saved adapters that always load back
def put_lora(model, name, rank, alpha):
    """Replace the layer `name` with a LoRALinear by hand, as chapter 16 teaches (add_lora never
    runs, so the model gets no lora_settings); returns the model."""
    parent, _, child = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    setattr(owner, child, LoRALinear(model.get_submodule(name), rank, alpha))
    return model


def hand_adapted(names, rank=2, alpha=4.0, base=None):
    """A copy of `base` (a fresh tiny() by default) with LoRA layers put in by hand at `names`."""
    import copy
    model = copy.deepcopy(base if base is not None else tiny())
    for name in names:
        put_lora(model, name, rank, alpha)
    random_adapters(model)
    return model


@pytest.mark.parametrize("names, targets", [
    (["blocks.0.attn.c_attn", "blocks.1.attn.c_attn"], ["attn.c_attn"]),
    (["blocks.0.attn.c_attn"], ["blocks.0.attn.c_attn"]),          # one block of two: "attn.c_attn" would add both
    (["blocks.1.mlp.c_fc", "blocks.0.attn.c_proj", "blocks.1.attn.c_proj"],      # no suffix fits: full names
     ["blocks.0.attn.c_proj", "blocks.1.attn.c_proj", "blocks.1.mlp.c_fc"]),
])
def test_hand_built_lora_layers_are_saved_as_they_are_and_load_back(tmp_path, names, targets):
    """save_adapters describes the LoRA layers themselves (rank, alpha, and targets that adapt
    exactly them), not model.lora_settings, which hand-built layers lack: it wrote "lora": {},
    and load_adapters refused its own folder ("not a valid adapter description ('rank')")."""
    base = tiny()
    model = hand_adapted(names, base=base)
    save_adapters(model, tmp_path / "ad")
    meta = json.loads((tmp_path / "ad" / ADAPTER_META).read_text())
    assert meta["lora"]["rank"] == 2 and meta["lora"]["alpha"] == 4.0
    assert sorted(meta["lora"]["targets"]) == sorted(targets)
    import copy
    loaded = load_adapters(copy.deepcopy(base), tmp_path / "ad")
    assert sorted(lora_layers(loaded)) == sorted(names)
    x = ids()
    assert torch.equal(loaded(x)[0], model(x)[0])


def test_layers_added_by_hand_after_add_lora_are_saved_too(tmp_path):
    """model.lora_settings says what add_lora was asked; a layer put in by hand afterwards makes
    it out of date, and a description taken from it would leave that layer's adapter unloadable."""
    base = tiny()
    model = hand_adapted(["blocks.0.mlp.c_fc"], rank=4, alpha=8.0, base=add_lora(tiny(), rank=4, alpha=8))
    save_adapters(model, tmp_path / "ad")
    loaded = load_adapters(base, tmp_path / "ad")
    assert "blocks.0.mlp.c_fc" in lora_layers(loaded) and len(lora_layers(loaded)) == 5
    x = ids()
    assert torch.equal(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize("build, message", [
    (lambda: put_lora(hand_adapted(["blocks.0.attn.c_attn"], rank=2), "blocks.0.attn.c_proj", 4, 4.0),
     r"do not share one rank and alpha \(blocks.0.attn.c_attn: rank 2, alpha 4; blocks.0.attn.c_proj: rank 4"),
    (lambda: put_lora(hand_adapted(["blocks.0.attn.c_attn"], rank=2, alpha=4.0), "blocks.1.attn.c_attn", 2, 8.0),
     "do not share one rank and alpha.*merge_lora"),
    (lambda: put_lora(tiny(), "lm_head", 2, 4.0), "could not be loaded back.*'lm_head' shares its weight"),
])
def test_adapters_that_could_not_be_loaded_back_are_refused_before_anything_is_written(tmp_path, build, message):
    """lora.json holds one rank and one alpha, and load_adapters rebuilds the layers with
    add_lora: layers of different ranks were saved anyway and then refused at load time as
    "trained on another base model" (or "not a valid adapter description"). Now save_adapters
    refuses them and writes nothing."""
    with pytest.raises(MiniGPTError, match=message) as info:
        save_adapters(build(), tmp_path / "ad")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["a new folder", "an empty folder", "the current folder",
                                   "an empty folder whose parent takes no temporary"])
def test_an_interrupted_save_leaves_the_folder_as_it_was(tmp_path, monkeypatch, where):
    """Both files are written into a temporary folder and renamed into place: a Ctrl-C between
    adapters.safetensors and lora.json left the first alone in the folder, so saving again was
    refused ("not an empty folder") and loading said "no lora.json". The save after the
    interruption must succeed and load back."""
    import minigpt.checkpoint
    model = add_lora(tiny(), rank=2, alpha=4)
    random_adapters(model)
    target = tmp_path / "ad"
    if where != "a new folder":
        target.mkdir()
    if where == "the current folder":
        monkeypatch.chdir(target)
    if where.endswith("takes no temporary"):      # a shared folder handed to a user who cannot write beside it
        (tmp_path / "blocker").write_text("")
        monkeypatch.setattr("minigpt.lora.temporary_path", lambda *a: tmp_path / "blocker" / "tmp")
    real_write_json = minigpt.checkpoint._write_json

    def interrupted(path, obj):
        raise KeyboardInterrupt
    monkeypatch.setattr("minigpt.checkpoint._write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_adapters(model, "." if where == "the current folder" else target)
    assert target.exists() is (where != "a new folder")
    assert not target.exists() or list(target.iterdir()) == []
    assert {p.name for p in tmp_path.iterdir()} <= {"ad", "blocker"}         # no temporary left beside it
    monkeypatch.setattr("minigpt.checkpoint._write_json", real_write_json)
    save_adapters(model, "." if where == "the current folder" else target)
    assert sorted(p.name for p in target.iterdir()) == [ADAPTER_FILE, ADAPTER_META]
    assert torch.equal(load_adapters(tiny(), target)(ids())[0], model(ids())[0])


def _edited(tmp_path, edit):
    save_adapters(add_lora(tiny(), rank=2, alpha=4), tmp_path / "ad")
    path = tmp_path / "ad" / ADAPTER_META
    meta = json.loads(path.read_text())
    text = edit(meta)
    path.write_text(text if isinstance(text, str) else json.dumps(meta))
    return tmp_path / "ad"


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(version="1"), r"'version' must be a whole number, got '1'"),
    (lambda m: m.update(version=7), r"adapter format version 7, newer than this minigpt reads \(1\); upgrade minigpt"),
    (lambda m: m.update(files=["x"]), r"'files' must be an object giving the sha256 of adapters.safetensors, got \['x'\]"),
    (lambda m: m.pop("files"), r"'files' must be .*, got nothing"),
    (lambda m: m["lora"].update(rank=0), r"'lora.rank' must be a positive integer, got 0"),
    (lambda m: m["lora"].update(rank="2"), r"'lora.rank' must be a positive integer, got '2'"),
    (lambda m: m["lora"].update(alpha=-1), r"'lora.alpha' must be a positive number, got -1"),
    (lambda m: m["lora"].update(targets="attn.c_attn"), r"'lora.targets' must be a list of module names"),
    (lambda m: m.update(lora=[]), r"'lora' must be an object with rank, alpha and targets, got \[\]"),
    (lambda m: m.update(base_config=3), r"'base_config' must be an object"),
    (lambda m: m.update(base_fingerprint={"wte.weight": "big"}), r"'base_fingerprint' must be an object of numbers"),
    (lambda m: m["lora"].update(targets=["attn.c_atn"]), r"not a valid adapter description for this model: .*'attn.c_atn'"),
    (lambda m: "[]", r"is not a minigpt adapter description"),
    (lambda m: '{"format": "minigpt-lora-adapters", "lora": ', r"corrupted or truncated \(not valid JSON"),
])
def test_a_damaged_lora_json_names_the_field_in_one_line(tmp_path, edit, message):
    """An edited or damaged lora.json is the file's fault, said so with the field: it raised a
    TypeError ("version": "1"), an AttributeError ("files": [...]) or, for "rank": 0, "LoRA rank
    must be a positive integer ...; try rank=8.", which blames an argument the caller never passed."""
    folder = _edited(tmp_path, edit)
    base = tiny()
    with pytest.raises(MiniGPTError, match=message) as info:
        load_adapters(base, folder)
    assert str(folder / ADAPTER_META) in str(info.value) and "\n" not in str(info.value)
    assert not lora_layers(base)


@pytest.mark.parametrize("name", [ADAPTER_META, ADAPTER_FILE])
def test_load_adapters_takes_the_path_of_a_file_in_the_folder(tmp_path, name):
    """As load_model takes a checkpoint's minigpt.json, load_adapters takes the folder's
    lora.json (or adapters.safetensors): it said "'ad/lora.json' holds no LoRA adapters (no
    lora.json)"."""
    model = add_lora(tiny(), rank=2, alpha=4)
    random_adapters(model)
    save_adapters(model, tmp_path / "ad")
    loaded = load_adapters(tiny(), str(tmp_path / "ad" / name))
    assert torch.equal(loaded(ids())[0], model(ids())[0])


@pytest.mark.parametrize("call, message", [
    (lambda d, m: merge_lora("x"), r"^merge_lora takes a MiniGPT model, got str\.$"),
    (lambda d, m: lora_parameter_count("x"), r"^lora_parameter_count takes a model \(a MiniGPT or another"),
    (lambda d, m: lora_layers(None), r"^lora_layers takes a model"),
    (lambda d, m: save_adapters(None, d), r"^save_adapters takes \(model, folder\): a MiniGPT model, then the "
                                          r"adapters' folder \(a path\); got \(NoneType, PosixPath\)\.$"),
    (lambda d, m: save_adapters(m, None), r"got \(MiniGPT, NoneType\)"),
    (lambda d, m: load_adapters(None, d), r"^load_adapters takes \(model, folder\).*got \(NoneType, PosixPath\)\.$"),
    (lambda d, m: load_adapters(d, m), r"got \(PosixPath, MiniGPT\); swap the two\.$"),
    (lambda d, m: load_adapters(str(d), tiny()), r"got \(str, MiniGPT\); swap the two\.$"),
])
def test_a_model_or_folder_of_the_wrong_kind_is_a_one_line_usage_error(tmp_path, call, message):
    """Every function that takes a model checks it, as add_lora does: a string, None or swapped
    arguments failed deep inside torch or pathlib ("'str' object has no attribute 'named_modules'",
    "expected str, bytes or os.PathLike object, not MiniGPT")."""
    from minigpt.errors import UsageError
    model = add_lora(tiny(), rank=2, alpha=4)
    save_adapters(model, tmp_path / "ad")
    with pytest.raises(UsageError, match=message):
        call(tmp_path / "ad", model)
