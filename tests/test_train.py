"""TrainConfig, the LR schedule, the optimizer groups, train(): exact resume, divergence, overfitting."""

import importlib
import math
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from minigpt import (CheckpointError, ConfigError, GPTConfig, MiniGPT, TextData, TrainConfig,
                     TrainingDivergedError, evaluate, estimate_loss, get_batch, load_checkpoint,
                     make_optimizer, train)


def model_for(data, seed=0, **overrides):
    values = dict(vocab_size=data.tokenizer.vocab_size, block_size=16, n_embd=32, n_head=4,
                  n_layer=1, dropout=0.1)
    values.update(overrides)
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(**values))


def small_cfg(**overrides):
    values = dict(max_iters=12, batch_size=4, learning_rate=3e-3, warmup_iters=3, eval_interval=6,
                  eval_iters=2, checkpoint_interval=6, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


# ------------------------------------------------------------------ TrainConfig
@pytest.mark.parametrize("field,value", [
    ("max_iters", 0), ("batch_size", -2), ("eval_interval", 1.5), ("eval_iters", True),
    ("checkpoint_interval", 0),
])
def test_train_config_positive_integers(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be a positive integer"):
        TrainConfig(**{field: value})


def test_train_config_takes_numpy_numbers_from_a_sweep():
    import json
    import numpy as np
    config = TrainConfig(max_iters=np.int64(10), learning_rate=np.float32(1e-3), seed=np.uint32(3),
                         micro_batch_size=np.int64(4), batch_size=np.int64(8), autocast=np.False_)
    assert type(config.max_iters) is int and type(config.learning_rate) is float
    assert config.autocast is False
    assert (config.max_iters, config.seed, config.micro_batch_size) == (10, 3, 4)
    json.dumps(config.to_dict())                         # a checkpoint can hold it


def test_train_config_other_invalid_values():
    with pytest.raises(ValueError, match=r"warmup_iters must be >= 0"):
        TrainConfig(warmup_iters=-1)
    for lr in (0, -1e-3, 1.0, 5):
        with pytest.raises(ValueError, match=r"learning_rate must be in \(0, 1\).*typical values"):
            TrainConfig(learning_rate=lr)
    with pytest.raises(ValueError, match=r"TrainConfig.grad_clip must be a number >= 0, got -1"):
        TrainConfig(grad_clip=-1)
    with pytest.raises(ValueError, match=r"TrainConfig.weight_decay must be a number >= 0, got -0.1"):
        TrainConfig(weight_decay=-0.1)
    for min_lr in (-1e-4, 2e-3, "1e-4"):
        with pytest.raises(ValueError, match=r"TrainConfig.min_lr must be between 0 and learning_rate=0.001"):
            TrainConfig(learning_rate=1e-3, min_lr=min_lr)
    TrainConfig(learning_rate=1e-3, min_lr=0.0)          # a floor of zero is fine


@pytest.mark.parametrize("field,value,message", [
    ("grad_clip", float("nan"), r"grad_clip must be a number >= 0, got nan"),   # nan would disable clipping
    ("grad_clip", float("inf"), r"grad_clip must be a number >= 0, got inf"),
    ("weight_decay", float("nan"), r"weight_decay must be a number >= 0, got nan"),
    ("weight_decay", "0.1", r"weight_decay must be a number >= 0, got '0.1'"),
    ("beta1", 1.0, r"beta1 must be in \[0, 1\), got 1.0"),
    ("beta2", -1, r"beta2 must be in \[0, 1\), got -1"),
    ("beta2", float("nan"), r"beta2 must be in \[0, 1\), got nan"),
    ("learning_rate", float("nan"), r"learning_rate must be in \(0, 1\), got nan"),
    ("learning_rate", True, r"learning_rate must be in \(0, 1\), got True"),
    ("min_lr", float("nan"), r"min_lr must be between 0 and learning_rate"),
    ("warmup_iters", 2.5, r"warmup_iters must be >= 0, got 2.5"),
    ("warmup_iters", False, r"warmup_iters must be >= 0, got False"),
    ("seed", 2**70, r"seed must be an integer from 0 to 2\*\*63 - 1, got 1180591620717411303424"),
    ("seed", -1, r"seed must be an integer from 0 to 2\*\*63 - 1"),
    ("seed", 1.5, r"seed must be an integer"),
    ("device", "gpu", r"device must be one of auto, cpu, cuda, mps .*got 'gpu'"),
    ("device", 0, r"device must be one of"),
    ("compile", "yes", r"compile must be True or False, got 'yes'"),
    ("autocast", 1, r"autocast must be True or False, got 1"),
])
def test_train_config_rejects_bad_values(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_train_config_stores_a_torch_device_as_its_name(small_data, tmp_path):
    cfg = small_cfg(device=torch.device("cpu"), max_iters=2)
    assert cfg.device == "cpu" and TrainConfig.from_dict(cfg.to_dict()) == cfg
    result = train(model_for(small_data), small_data, cfg, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run").train_state["train_config"]["device"] == "cpu"
    assert result.steps == 2


def test_train_config_dict_round_trip():
    cfg = small_cfg(min_lr=1e-5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_train_config_from_dict_rejects_unknown_keys_and_suggests_the_field():
    with pytest.raises(ConfigError, match=r"unknown TrainConfig field\(s\) 'max_iter' \(did you mean "
                                          r"'max_iters'\?\), 'zzz'; known fields are max_iters, "):
        TrainConfig.from_dict({"max_iter": 10, "zzz": 1})
    with pytest.raises(ConfigError, match="expects a dict, got list"):
        TrainConfig.from_dict([("max_iters", 3)])


# ------------------------------------------------------------------ LR schedule
def test_lr_schedule_warmup_peak_and_cosine_floor():
    cfg = TrainConfig(max_iters=110, learning_rate=1e-3, min_lr=1e-4, warmup_iters=10)
    lrs = [cfg.lr_at(s) for s in range(130)]
    assert lrs[0] == pytest.approx(1e-4)                   # (0 + 1) / 10 of the peak
    assert lrs[4] == pytest.approx(5e-4)
    assert lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)   # the peak
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))                   # rising warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))                   # then decaying
    assert lrs[60] == pytest.approx((1e-3 + 1e-4) / 2)     # half-way through the cosine
    assert lrs[110] == pytest.approx(1e-4) and lrs[129] == pytest.approx(1e-4)   # the floor
    assert max(lrs) == pytest.approx(1e-3) and min(lrs) == pytest.approx(1e-4)


def test_lr_schedule_defaults():
    cfg = TrainConfig(max_iters=100, learning_rate=2e-3, warmup_iters=0)
    assert cfg.final_lr == pytest.approx(2e-4)             # min_lr=None: a tenth of the peak
    assert cfg.lr_at(0) == pytest.approx(2e-3)
    assert cfg.lr_at(100) == pytest.approx(2e-4)


def test_make_optimizer_groups(small_data):
    model = model_for(small_data, bias=True)
    opt = make_optimizer(model, small_cfg(weight_decay=0.1), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = lambda group: {id(p) for p in group["params"]}        # noqa: E731
    names = {id(p): n for n, p in model.named_parameters()}
    assert ids(decay) | ids(no_decay) == set(names) and not ids(decay) & ids(no_decay)
    for pid in ids(no_decay):
        assert names[pid].endswith(".bias") or ".ln_" in names[pid] or names[pid].startswith("ln_f"), names[pid]
    for name in ("blocks.0.ln_1.weight", "blocks.0.ln_1.bias", "ln_f.weight", "blocks.0.attn.c_attn.bias",
                 "blocks.0.mlp.c_fc.bias"):
        assert id(dict(model.named_parameters())[name]) in ids(no_decay), name
    for name in ("wte.weight", "wpe.weight", "blocks.0.attn.c_attn.weight", "blocks.0.mlp.c_proj.weight"):
        assert id(dict(model.named_parameters())[name]) in ids(decay), name


# -------------------------------------------------------------------- evaluate
def test_evaluate_covers_every_token_including_the_tail(small_data):
    model = model_for(small_data).eval()
    tokens = small_data.val[:203]                         # 202 targets = 12 windows of 16 + 10
    got = evaluate(model, tokens, batch_size=5)
    total, count = 0.0, 0
    for start in range(0, 202, 16):
        x = tokens[start:min(start + 16, 202)][None]
        y = tokens[start + 1:min(start + 17, 203)][None]
        total += F.cross_entropy(model(x)[0][0], y[0], reduction="sum").item()
        count += y.numel()
    assert count == 202
    assert got == pytest.approx(total / count, rel=1e-5)


def test_estimate_loss_is_deterministic_and_restores_mode(small_data):
    model = model_for(small_data).train()
    a = estimate_loss(model, small_data, batch_size=4, eval_iters=2, seed=3)
    b = estimate_loss(model, small_data, batch_size=4, eval_iters=2, seed=3)
    assert a == b and set(a) == {"train", "val"} and model.training
    assert abs(a["val"] - math.log(small_data.tokenizer.vocab_size)) < 0.3


# ------------------------------------------------------------ reads of the device
@pytest.fixture
def device_reads(monkeypatch):
    """Counts the values minigpt's own code reads out of tensors (item, tolist, float, int,
    bool). On a GPU each such read is a host sync: the CPU waits for every queued kernel, and
    the GPU then idles until the next ones arrive. Not counted: torch's own reads (the CPU
    optimizer's step counters: on a GPU they are CPU tensors, or absent with fused AdamW), and
    the model's token-id range check (MiniGPT.check_token_ids), which reads CPU tensors here, is
    skipped while training on a GPU, and runs once per data split in the estimates (tested below)."""
    reads = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        def counted(self, *args, _original=getattr(torch.Tensor, name), _name=name, **kwargs):
            frame = sys._getframe(1)
            caller = frame.f_globals.get("__name__", "")
            if caller.startswith("minigpt") and frame.f_code.co_name != "check_token_ids":
                reads.append((caller, _name))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


@pytest.mark.parametrize("grad_clip", [1.0, 0.0])
def test_a_training_step_reads_the_device_once(small_data, device_reads, grad_clip):
    # the loss and the gradient norm are read together; the evaluations (steps 0 and the
    # last) cost the same in both runs, so the difference is what the 8 extra steps read
    counts = {}
    for steps in (4, 12):
        device_reads.clear()
        result = train(model_for(small_data), small_data,
                       small_cfg(max_iters=steps, eval_interval=100, grad_clip=grad_clip), progress=False)
        assert len(result.history["loss"]) == len(result.history["grad_norm"]) == steps
        counts[steps] = len(device_reads)
    assert counts[12] - counts[4] == 8, device_reads


def test_an_estimate_reads_the_device_once_per_split(small_data, device_reads, monkeypatch):
    # the losses are read together, and the token ids are checked once per split (on the CPU,
    # where the split lives) instead of once per batch on the model's device
    model = model_for(small_data)
    checked = []
    real_check = model.check_token_ids
    monkeypatch.setattr(model, "check_token_ids", lambda ids: checked.append(ids) or real_check(ids))
    for eval_iters in (1, 5):
        device_reads.clear()
        checked.clear()
        estimate_loss(model, small_data, batch_size=4, eval_iters=eval_iters)
        assert len(device_reads) == 2, device_reads
        assert [len(ids) for ids in checked] == [len(small_data.train), len(small_data.val)]
    device_reads.clear()
    checked.clear()
    evaluate(model, small_data.val[:500], batch_size=2)      # 31 windows in 16 batches, one read
    assert len(device_reads) == 1 and len(checked) == 1, device_reads
    assert not model._ids_checked                              # the per-call check is back on


def test_an_estimate_still_refuses_ids_outside_the_vocabulary(small_data):
    from minigpt.model import ModelInputError
    model = model_for(small_data, vocab_size=10)                # the text has ids up to 57
    with pytest.raises(ModelInputError, match=r"token id \d+ is outside the vocabulary 0\.\.\d+"):
        estimate_loss(model, small_data, batch_size=4, eval_iters=2)
    with pytest.raises(ModelInputError, match="outside the vocabulary"):
        evaluate(model, small_data.val)
    assert not model._ids_checked


# ----------------------------------------------------------------------- train
def test_train_records_history(small_data):
    records = []
    model = model_for(small_data)
    result = train(model, small_data, small_cfg(), progress=False, callback=records.append)
    assert result.steps == 12 and result.checkpoint is None and result.model is model
    h = result.history
    assert h["step"] == list(range(1, 13)) and len(h["loss"]) == len(h["grad_norm"]) == 12
    assert h["lr"] == [small_cfg().lr_at(s) for s in range(12)]
    assert [r["step"] for r in records] == [0, 6, 12] and records == h["eval"]
    assert all(math.isfinite(x) for x in h["loss"])
    assert result.tokens_per_second > 0


@pytest.mark.parametrize("grad_clip", [0.05, 0.0])
def test_each_step_applies_the_schedules_rate_and_clips_the_gradient(small_data, monkeypatch, grad_clip):
    """What the optimizer is handed at each step, not what train() records: the learning rate
    lr_at(step) in every parameter group, and gradients clipped to grad_clip (0: unclipped,
    their norm the recorded one)."""
    seen = []
    original_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        seen.append(([group["lr"] for group in self.param_groups], norm))
        return original_step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    cfg = small_cfg(grad_clip=grad_clip)
    h = train(model_for(small_data), small_data, cfg, progress=False).history
    assert len(seen) == 12
    for s, (rates, norm) in enumerate(seen):
        assert len(rates) == 2 and rates == [cfg.lr_at(s)] * 2, s     # decay and no-decay groups
        if grad_clip:
            assert h["grad_norm"][s] > grad_clip and norm == pytest.approx(grad_clip, rel=1e-4), s
        else:
            assert norm == pytest.approx(h["grad_norm"][s], rel=1e-5), s


def test_step_seconds_leave_out_evaluations_checkpoints_and_the_last_check(small_data, tmp_path, monkeypatch):
    # step speed is compared between recipes whose evaluations differ. On a fake clock every
    # training forward takes 1 s and every evaluation and checkpoint write 10 s: the step time
    # must be the 12 steps' 12 s, without the final check of the weights (a 13th forward)
    import types
    train_module = importlib.import_module("minigpt.train")     # `minigpt.train` is also the function
    now = [0.0]
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def taking(seconds, real):
        def wrapped(*args, **kwargs):
            now[0] += seconds
            return real(*args, **kwargs)
        return wrapped
    monkeypatch.setattr(train_module, "estimate_loss", taking(10.0, train_module.estimate_loss))
    monkeypatch.setattr(train_module, "save_checkpoint", taking(10.0, train_module.save_checkpoint))
    model = model_for(small_data)
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *args: taking(1.0 if model.training else 0.0, real_forward)(*args))
    result = train(model, small_data, small_cfg(), tmp_path / "run", progress=False)
    # evaluations at steps 0, 6 and 12; checkpoints at 6 and 12
    assert result.step_seconds == 12.0 and result.elapsed == 12.0 + 1.0 + 5 * 10.0
    evals = result.history["eval"]
    assert [(r["step"], r["step_seconds"], r["elapsed"]) for r in evals] == [
        (0, 0.0, 0.0), (6, 6.0, 16.0), (12, 12.0, 12.0 + 3 * 10.0)]


def test_exact_resume(small_data, tmp_path):
    """train 2N steps == train N, stop, resume to 2N: same losses, bitwise-equal weights."""
    cfg = small_cfg()                                    # dropout 0.1: the RNG state must resume too
    full = train(model_for(small_data), small_data, cfg, tmp_path / "full", progress=False)

    first = train(model_for(small_data), small_data, cfg, tmp_path / "split", stop_at=6, progress=False)
    assert first.steps == 6 and first.checkpoint == tmp_path / "split" / "step-000006"
    assert (tmp_path / "split" / "latest").read_text().strip() == "step-000006"
    # a differently initialised model: resume must overwrite everything from the checkpoint
    second = train(model_for(small_data, seed=999), small_data, cfg, tmp_path / "split", resume=True,
                   progress=False)
    assert second.steps == 12
    assert second.history["loss"] == full.history["loss"]
    assert second.history["lr"] == full.history["lr"]
    strip = lambda evals: [{k: v for k, v in e.items() if k not in ("elapsed", "step_seconds")}   # noqa: E731
                           for e in evals]
    assert strip(second.history["eval"]) == strip(full.history["eval"])
    full_state, resumed_state = full.model.state_dict(), second.model.state_dict()
    for name, tensor in full_state.items():
        assert torch.equal(tensor, resumed_state[name]), name
    # the final checkpoints are identical too
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "split")
    assert a.train_state["step"] == b.train_state["step"] == 12
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name


def test_resume_with_another_config_is_refused(small_data, tmp_path):
    train(model_for(small_data), small_data, small_cfg(max_iters=2), tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="cannot resume: the checkpoint .* was trained with"):
        train(model_for(small_data, n_embd=64), small_data, small_cfg(), tmp_path / "run", resume=True,
              progress=False)


def test_existing_checkpoint_without_resume_is_an_error(small_data, tmp_path):
    train(model_for(small_data), small_data, small_cfg(max_iters=2), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"already holds a checkpoint; pass resume=True \(CLI: --resume\)"):
        train(model_for(small_data), small_data, small_cfg(max_iters=2), tmp_path / "run", progress=False)


def test_resume_into_an_empty_folder_starts_fresh(small_data, tmp_path):
    result = train(model_for(small_data), small_data, small_cfg(max_iters=2), tmp_path / "new",
                   resume=True, progress=False)
    assert result.steps == 2 and (tmp_path / "new" / "latest").exists()


def test_train_argument_errors(small_data):
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        train(model_for(small_data), small_data, small_cfg(), resume=True, progress=False)
    wrong = TextData.from_text("abcdefghij" * 30)
    with pytest.raises(ValueError, match=r"the data's tokenizer has 10 tokens but the model's vocab_size is"):
        train(model_for(small_data), wrong, small_cfg(), progress=False)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(small_data, tmp_path, monkeypatch):
    model = model_for(small_data)
    real_forward = model.forward
    calls = {"train": 0}

    def forward(idx, targets=None):
        logits, loss = real_forward(idx, targets)
        if model.training:
            calls["train"] += 1
            if calls["train"] > 8 and loss is not None:        # steps 9, 10, ... return NaN
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(model, "forward", forward)
    cfg = small_cfg(checkpoint_interval=4)
    # the weights after 8 updates give a NaN loss: they are not good, so step 8 is never saved
    # and the message names step 4, the newest checkpoint whose weights passed the check
    with pytest.raises(TrainingDivergedError, match=r"the loss became nan at step 8 .*"
                                                    r"last good checkpoint is .*step-000004.*Lower learning_rate"):
        train(model, small_data, cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "step-000008").exists()
    ckpt = load_checkpoint(tmp_path / "run", with_trainer=True)
    assert ckpt.train_state["step"] == 4
    assert all(torch.isfinite(t).all() for t in ckpt.model.state_dict().values())
    assert torch.isfinite(ckpt.model(small_data.val[:16][None])[0]).all()
    # and the run can be resumed from it once the problem is gone
    monkeypatch.undo()
    result = train(model_for(small_data), small_data, cfg, tmp_path / "run", resume=True, progress=False)
    assert result.steps == 12


def test_absurd_learning_rate_diverges(small_data):
    """With no clipping and a huge learning rate an update blows up the weights; training must
    stop at the first non-finite loss or gradient after it, not go on. The same model with a
    sane learning rate trains: the divergence comes from the update, not from the start."""
    def blown_up():
        model = model_for(small_data, dropout=0.0)
        with torch.no_grad():
            # scaling lm_head would scale wte too (they are tied) and make the very first loss
            # NaN. This makes the MLP's output ~5e16: the first loss is finite (4.05), but one
            # AdamW step at lr 0.9 (each weight moves by ~lr) lifts it to ~3e20 (its square is
            # beyond float32) and the loss turns NaN; at lr 3e-3 it stays ~6e16
            model.blocks[0].ln_2.weight.mul_(1e18)
        return model
    evals = []
    with pytest.raises(TrainingDivergedError, match=r"the (loss|gradient norm) became (nan|inf) at step [1-9]"):
        train(blown_up(), small_data, small_cfg(learning_rate=0.9, warmup_iters=0, grad_clip=0.0, max_iters=30),
              progress=False, callback=evals.append)
    assert evals[0]["step"] == 0 and math.isfinite(evals[0]["train"])     # fine before any update
    result = train(blown_up(), small_data, small_cfg(warmup_iters=0, grad_clip=0.0, max_iters=30),
                   progress=False)                                         # lr 3e-3
    assert result.steps == 30 and all(math.isfinite(loss) for loss in result.history["loss"])


def test_tiny_model_overfits_one_batch(small_data):
    model = model_for(small_data, block_size=32, dropout=0.0)
    x, y = get_batch(small_data.train, 32, 4, torch.Generator().manual_seed(0))
    opt = make_optimizer(model, small_cfg(learning_rate=1e-2, weight_decay=0.0), torch.device("cpu"))
    model.train()
    losses = []
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 3.0
    assert losses[-1] < 0.1, losses[-10:]


def test_evaluation_honours_train_config_autocast(small_data, monkeypatch):
    """TrainConfig(autocast=False) must evaluate in float32 too (on CPUs autocast is a no-op,
    so the flag that reaches device.autocast is what is checked)."""
    train_module = importlib.import_module("minigpt.train")
    evaluation_module = importlib.import_module("minigpt.evaluation")
    seen = []
    real = train_module.autocast
    spy = lambda device, enabled=True: seen.append(enabled) or real(device, enabled)  # noqa: E731
    monkeypatch.setattr(train_module, "autocast", spy)              # the training steps
    monkeypatch.setattr(evaluation_module, "autocast_context", spy)  # estimate_loss, evaluate
    model = model_for(small_data)
    estimate_loss(model, small_data, batch_size=2, eval_iters=1, autocast=False)
    evaluate(model, small_data.val[:40], autocast=False)
    assert seen and not any(seen)
    seen.clear()
    train(model, small_data, small_cfg(autocast=False, max_iters=2, eval_interval=1), progress=False)
    assert seen and not any(seen)                  # training steps and both evaluations
    seen.clear()
    evaluate(model, small_data.val[:40])
    assert seen and all(seen)                      # the default is unchanged


def test_a_context_longer_than_a_split_is_refused_before_any_work(small_data):
    from minigpt.data import DataError
    model = model_for(small_data, block_size=4096)            # the validation split has 2,000 tokens
    with pytest.raises(DataError, match=r"the validation split has 2,000 tokens, too few for windows of "
                                        r"block_size=4,096"):
        train(model, small_data, small_cfg(), progress=False)


def test_the_mps_generator_is_saved_and_restored(monkeypatch):
    """On MPS, dropout draws its masks from the MPS generator: a resumed run must restore it as
    it restores CUDA's. Recorded through stand-ins for torch.mps, so it runs without a Mac."""
    from minigpt.train import _restore_rng, _rng_tensors
    state, restored = torch.arange(8, dtype=torch.uint8), []
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: state.clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda tensor: restored.append(tensor))
    batches = torch.Generator().manual_seed(0)
    saved = _rng_tensors(batches, torch.device("mps"))
    assert torch.equal(saved["rng.mps"], state) and "rng.cuda" not in saved
    _restore_rng(saved, batches, torch.device("mps"))
    assert len(restored) == 1 and torch.equal(restored[0], state)
    assert "rng.mps" not in _rng_tensors(batches, torch.device("cpu"))


# ------------------------------------------------- what a mutation review found untested
def test_an_infinite_loss_stops_the_run_even_with_finite_gradients(small_data, monkeypatch):
    real_forward = MiniGPT.forward
    calls = []

    def forward(self, idx, targets=None):
        logits, loss = real_forward(self, idx, targets)
        if self.training and loss is not None:
            calls.append(1)
            if len(calls) == 3:                      # the third training step's loss: + inf
                loss = loss + float("inf")
        return logits, loss
    monkeypatch.setattr(MiniGPT, "forward", forward)
    with pytest.raises(TrainingDivergedError, match="the loss became inf at step 2"):
        train(model_for(small_data, dropout=0.0), small_data, small_cfg(), progress=False)


def test_the_last_step_is_evaluated_when_max_iters_is_not_a_multiple_of_eval_interval(small_data):
    result = train(model_for(small_data), small_data, small_cfg(max_iters=5, eval_interval=3), progress=False)
    assert [e["step"] for e in result.history["eval"]] == [0, 3, 5]


def test_stop_at_past_max_iters_stops_at_max_iters(small_data):
    result = train(model_for(small_data), small_data, small_cfg(max_iters=4), stop_at=7, progress=False)
    assert result.steps == 4 and len(result.history["lr"]) == 4


def test_an_evaluation_records_the_rate_of_the_update_before_it(small_data):
    h = train(model_for(small_data), small_data, small_cfg(), progress=False).history
    for record in h["eval"][1:]:
        assert record["lr"] == h["lr"][record["step"] - 1]


def test_the_final_check_leaves_no_trace_in_the_global_random_state(small_data, tmp_path):
    # with an out_dir, train() runs one more forward pass to check the weights it saves; the
    # dropout masks it draws must not move torch's global generator (docstring: "no trace")
    states = []
    for out in (None, tmp_path / "run"):
        model = model_for(small_data, dropout=0.1)
        train(model, small_data, small_cfg(max_iters=3, eval_interval=3), out, progress=False)
        states.append(torch.get_rng_state())
    assert torch.equal(*states)
