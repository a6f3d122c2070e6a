"""Checkpoints: round trip, atomic layout, export, corrupted files and refused pickles."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import held_by_another_process, random_ids, tiny_model
from minigpt import (CharTokenizer, CheckpointError, TrainConfig, export_model, load_checkpoint,
                     load_model, make_optimizer, save_checkpoint)
import minigpt
from minigpt.checkpoint import _sha256

CHARS = "abcdefghijklmnopqrstuvw"          # 23 characters = the tiny vocab


@pytest.fixture
def tok():
    return CharTokenizer(list(CHARS))


@pytest.fixture
def saved(tmp_path, tok):
    """A run folder with one checkpoint of a tiny GQA/RoPE model; returns (folder, model)."""
    model = tiny_model(n_kv_head=2, pos_encoding="rope")
    save_checkpoint(tmp_path / "run", model, tok, step=7, train_state={"note": "hi"})
    return tmp_path / "run", model


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def test_round_trip(saved, tok):
    folder, model = saved
    ckpt = load_checkpoint(folder)
    assert ckpt.model.config == model.config
    assert_same_weights(ckpt.model, model)
    assert ckpt.tokenizer.chars == tok.chars
    assert ckpt.path == folder / "step-000007"
    assert ckpt.train_state["step"] == 7 and ckpt.train_state["note"] == "hi"
    assert not ckpt.model.training
    assert ckpt.model.lm_head.weight is ckpt.model.wte.weight          # still tied
    idx = random_ids(2, 9)
    assert torch.equal(ckpt.model(idx)[0], model(idx)[0])


def test_load_model_accepts_run_step_and_json_paths(saved):
    folder, model = saved
    for path in (folder, folder / "step-000007", folder / "step-000007" / "minigpt.json", str(folder)):
        loaded, tokenizer = load_model(path)
        assert_same_weights(loaded, model)
        assert tokenizer.vocab_size == 23


def test_atomic_layout_and_keep(tmp_path, tok):
    model = tiny_model()
    cfg = TrainConfig(max_iters=10, batch_size=2)
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    run = tmp_path / "run"
    for step in (1, 2, 3):
        save_checkpoint(run, model, tok, step, optimizer, {"step": step},
                        {"rng.torch": torch.get_rng_state()}, keep=2)
    names = sorted(p.name for p in run.iterdir())
    assert names == ["latest", "step-000002", "step-000003"]        # no temp folders left over
    assert (run / "latest").read_text() == "step-000003\n"
    newest = run / "step-000003"
    assert sorted(p.name for p in newest.iterdir()) == ["minigpt.json", "model.safetensors",
                                                        "trainer.safetensors"]
    meta = json.loads((newest / "minigpt.json").read_text())
    assert meta["format"] == "minigpt-checkpoint" and meta["step"] == 3
    assert meta["files"]["model.safetensors"] == _sha256(newest / "model.safetensors")
    assert meta["files"]["trainer.safetensors"] == _sha256(newest / "trainer.safetensors")
    # the tied head is stored once, under the GPT-2 name
    stored = load_file(newest / "model.safetensors")
    assert "wte.weight" in stored and "lm_head.weight" not in stored
    assert load_checkpoint(run, with_trainer=True).trainer_tensors["rng.torch"].dtype == torch.uint8
    # re-saving the newest step replaces it in place
    save_checkpoint(run, model, tok, 3, keep=2)
    assert sorted(p.name for p in run.iterdir()) == ["latest", "step-000002", "step-000003"]
    assert load_checkpoint(run).train_state["step"] == 3


def test_steps_past_a_million_are_ordered_by_number_not_by_name(tmp_path, tok):
    # 'step-1000000' sorts before 'step-999500' as text: keep=2 must still keep the newest two,
    # and the fallback for a damaged newest checkpoint is the step before it
    from minigpt.run_folder import previous_complete_step
    model, run = tiny_model(), tmp_path / "run"
    for step in (999_000, 999_500, 1_000_000, 1_000_500):
        save_checkpoint(run, model, tok, step, keep=2)
    assert sorted(p.name for p in run.iterdir()) == ["latest", "step-1000000", "step-1000500"]
    assert previous_complete_step(run).name == "step-1000000"
    (run / "latest").unlink()               # killed before `latest` was written: the newest step
    assert load_checkpoint(run).path.name == "step-1000500"


def test_export_fp16_is_loadable(saved, tmp_path):
    folder, model = saved
    out = export_model(model, load_checkpoint(folder).tokenizer, tmp_path / "export", torch.float16,
                       {"val_loss": 1.5})
    assert sorted(p.name for p in out.iterdir()) == ["minigpt.json", "model.safetensors"]
    assert all(t.dtype == torch.float16 for t in load_file(out / "model.safetensors").values())
    ckpt = load_checkpoint(out)
    assert ckpt.train_state["val_loss"] == 1.5 and ckpt.trainer_tensors == {}
    # export rounds each weight to float16 and loading widens it back to float32 exactly, so the
    # loaded weights are known bit for bit (a tolerance would also accept bf16 or int8 rounding)
    original = model.state_dict()
    assert set(ckpt.model.state_dict()) == set(original)
    for name, t in ckpt.model.state_dict().items():
        assert t.dtype == torch.float32
        assert torch.equal(t, original[name].half().float()), name


def test_torch_load_is_never_called(saved, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")
    monkeypatch.setattr(torch, "load", refuse)
    load_checkpoint(saved[0], with_trainer=True)


# ------------------------------------------------------------ broken checkpoints
def step_dir(saved):
    return saved[0] / "step-000007"


def edit_meta(folder, change):
    path = folder / "minigpt.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_flipped_bytes_fail_the_checksum(saved):
    path = step_dir(saved) / "model.safetensors"
    data = bytearray(path.read_bytes())
    for i in (len(data) // 2, len(data) - 3):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors' is corrupted or truncated: its sha256"):
        load_checkpoint(saved[0])


def test_truncated_weights(saved):
    path = step_dir(saved) / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_model(saved[0])


def test_truncated_weights_without_checksum(saved):
    """Even with no recorded checksum a truncated file gives a CheckpointError, not a crash."""
    path = step_dir(saved) / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    edit_meta(step_dir(saved), lambda m: m.pop("files"))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(saved[0])


def test_invalid_json(saved):
    path = step_dir(saved) / "minigpt.json"
    path.write_text(path.read_text()[:50])
    with pytest.raises(CheckpointError, match=r"minigpt.json' is corrupted or truncated \(not valid JSON"):
        load_checkpoint(saved[0])


def test_json_that_is_not_a_checkpoint(saved):
    (step_dir(saved) / "minigpt.json").write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="not a minigpt checkpoint description"):
        load_checkpoint(saved[0])


EDITS = [
    (lambda m: m.update(version=99), r"format version 99 is newer.*upgrade minigpt"),
    (lambda m: m["config"].update(n_embd=64), r"checkpoint mismatch: \S+ has shape .* the config needs"),
    (lambda m: m["config"].update(n_layer=3), r"do not match its config: missing \['blocks.2"),
    (lambda m: m["config"].update(n_head=5), r"invalid config or tokenizer: .*n_embd=32 is not divisible"),
    (lambda m: m["tokenizer"].update(chars="abc"),
     r"tokenizer has 3 characters but the model expects vocab_size=23"),
]
EDIT_IDS = ["newer_format_version", "mismatched_shapes", "mismatched_layer_count",
            "invalid_config_in_json", "tokenizer_and_vocab_disagree"]


def strip_description_record(folder):
    """Rewrite model.safetensors without the description's sha256 in its header, as checkpoints
    written before that record existed (e.g. the shipped model) are."""
    path = folder / "model.safetensors"
    save_file(load_file(path), path)
    edit_meta(folder, lambda m: m["files"].update({"model.safetensors": _sha256(path)}))


@pytest.mark.parametrize("change, message", EDITS, ids=EDIT_IDS)
def test_edited_description_of_a_legacy_checkpoint_is_refused(saved, change, message):
    """Without the record, the loader still refuses what does not fit the weights."""
    strip_description_record(step_dir(saved))
    load_checkpoint(saved[0])                           # unedited, it loads
    edit_meta(step_dir(saved), change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved[0])


@pytest.mark.parametrize("change", [
    lambda m: m["config"].update(norm="post"),           # same shapes, a different model
    lambda m: m["config"].update(attn_impl="manual", pos_encoding="sinusoidal"),
    lambda m: m["train_state"].update(note="edited"),
    lambda m: m.update(step=70),
    lambda m: m["config"].update(n_embd=64),
], ids=["norm_pre_to_post", "pos_encoding", "train_state", "step", "shapes"])
def test_any_edit_of_the_description_is_refused(saved, change):
    edit_meta(step_dir(saved), change)
    with pytest.raises(CheckpointError, match=r"minigpt.json' was edited after the checkpoint was "
                                              r"written.*Restore the original file"):
        load_checkpoint(saved[0])


def test_newer_format_version_is_named(saved):
    edit_meta(step_dir(saved), lambda m: m.update(version=99))
    with pytest.raises(CheckpointError, match=r"format version 99 is newer.*upgrade minigpt"):
        load_checkpoint(saved[0])


def test_nan_weights_are_refused(saved):
    folder = step_dir(saved)
    tensors = load_file(folder / "model.safetensors")
    tensors["ln_f.weight"][0] = float("nan")
    save_file(tensors, folder / "model.safetensors")
    edit_meta(folder, lambda m: m["files"].update({"model.safetensors": _sha256(folder / "model.safetensors")}))
    with pytest.raises(CheckpointError, match="ln_f.weight contains NaN"):
        load_checkpoint(saved[0])


def test_missing_files_and_paths(saved, tmp_path):
    with pytest.raises(CheckpointError, match="the path does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no minigpt checkpoint"):
        load_checkpoint(tmp_path / "empty")
    (saved[0] / "latest").write_text("step-000999\n")
    with pytest.raises(CheckpointError, match=r"points to 'step-000999', which is missing or incomplete"):
        load_checkpoint(saved[0])
    (step_dir(saved) / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors' is missing; the checkpoint is incomplete"):
        load_checkpoint(step_dir(saved))


# ------------------------------------------------------------------ pickles
class Evil:
    """Unpickling this creates the marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_evil(path, marker, zip_format=False):
    if zip_format:
        torch.save({"model": Evil(marker)}, path)      # saving does not run __reduce__'s result
    else:
        path.write_bytes(pickle.dumps({"model": Evil(marker)}, protocol=2))
    assert not marker.exists()


def test_the_evil_pickle_really_is_evil(tmp_path):
    marker = tmp_path / "proof"
    write_evil(tmp_path / "evil.pt", marker)
    pickle.loads((tmp_path / "evil.pt").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [False, True])
@pytest.mark.parametrize("loader", [load_checkpoint, load_model])
def test_pickle_files_are_refused(tmp_path, loader, zip_format):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    write_evil(evil, marker, zip_format)
    with pytest.raises(CheckpointError, match=r"is a pickle \(torch.save\) file.*never unpickles"):
        loader(evil)
    with pytest.raises(CheckpointError, match="holds no minigpt checkpoint"):
        loader(tmp_path)                               # a folder with only the .pt in it
    assert not marker.exists()


def test_pickle_disguised_as_safetensors_is_refused(saved, tmp_path):
    folder = step_dir(saved)
    marker = tmp_path / "pwned"
    write_evil(folder / "model.safetensors", marker)
    edit_meta(folder, lambda m: m["files"].update({"model.safetensors": _sha256(folder / "model.safetensors")}))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(saved[0])
    assert not marker.exists()


def test_other_files_are_not_checkpoints(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="is not a minigpt checkpoint"):
        load_checkpoint(path)


def test_checkpoint_files_follow_the_umask_not_owner_only(tmp_path):
    """safetensors creates files readable by their owner alone; a checkpoint on a shared server
    must be readable by the others that the umask allows (0644 under the usual 022)."""
    import os
    import stat

    from conftest import tiny_model
    from minigpt import CharTokenizer, save_checkpoint

    old = os.umask(0o022)
    try:
        model = tiny_model()
        tok = CharTokenizer([chr(ord("a") + i) for i in range(model.config.vocab_size)])
        folder = save_checkpoint(tmp_path / "run", model, tok, step=1)
    finally:
        os.umask(old)
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


# ------------------------------------------------------------ writing refuses what loading would
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_when_saved_and_exported(tmp_path, tok, value):
    model = tiny_model()
    with torch.no_grad():
        model.blocks[1].mlp.c_fc.weight[3, 4] = value
    with pytest.raises(CheckpointError, match=r"blocks\.1\.mlp\.c_fc\.weight contains NaN or inf"):
        save_checkpoint(tmp_path / "run", model, tok, step=1)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.mlp\.c_fc\.weight contains NaN or inf"):
        export_model(model, tok, tmp_path / "exported")
    assert not (tmp_path / "run").exists() and not (tmp_path / "exported").exists()


def test_a_float16_overflow_is_refused_at_export(tmp_path, tok):
    model = tiny_model()
    with torch.no_grad():
        model.ln_f.weight[0] = 1e5                 # float16's largest value is 65504
    with pytest.raises(CheckpointError, match=r"ln_f\.weight holds values up to 1e\+05, beyond torch\.float16's "
                                              r"range \(65504\).*drop --fp16"):
        export_model(model, tok, tmp_path / "half", torch.float16)
    assert not (tmp_path / "half").exists()
    export_model(model, tok, tmp_path / "full")    # float32 holds it
    assert load_model(tmp_path / "full")[0].ln_f.weight[0] == 1e5


def test_trainer_tensors_come_back_under_the_name_they_were_saved_with(tmp_path, tok):
    rng = {"rng.torch": torch.get_rng_state()}
    save_checkpoint(tmp_path / "run", tiny_model(), tok, step=2, trainer_tensors=rng)
    ckpt = load_checkpoint(tmp_path / "run", with_trainer=True)
    assert torch.equal(ckpt.trainer_tensors["rng.torch"], rng["rng.torch"])


# ------------------------------------------------------------------------- devices
def test_load_model_takes_the_same_device_names_as_everything_else(saved):
    model, _ = load_model(saved[0], "auto")
    assert model.device == minigpt.pick_device("auto")
    assert load_checkpoint(saved[0], device=None).model.device == minigpt.pick_device("auto")
    if not torch.cuda.is_available():
        with pytest.raises(minigpt.UsageError, match="device 'cuda' was requested"):
            load_model(saved[0], "cuda")
    with pytest.raises(minigpt.UsageError, match="unknown device 'gpu'"):
        load_model(saved[0], "gpu")


# ----------------------------------------------------------------------- run lock
def test_a_deleted_lock_file_does_not_let_a_second_run_in(tmp_path):
    """A first process holds the run and is writing a step folder; someone deletes `.lock` by
    hand. A second process must still be refused, so that its start-up cleanup never removes
    the first one's half-written folder."""
    import contextlib

    from minigpt.run_folder import clean_temporary_files, run_lock, temporary_path
    run = tmp_path / "run"
    run.mkdir()

    @contextlib.contextmanager
    def training_run():                            # the first run, midway through writing a step
        with run_lock(run):
            half_written = temporary_path(run, "step-000004")
            half_written.mkdir()
            (half_written / "model.safetensors").write_bytes(b"half")
            yield
    with held_by_another_process(training_run) as pid:
        (run / ".lock").unlink()
        with pytest.raises(CheckpointError, match="is in use by another training run"):
            with run_lock(run):
                clean_temporary_files(run)          # what a second run does once it holds the lock
        assert (run / f".step-000004.tmp-{pid}" / "model.safetensors").read_bytes() == b"half"
    with run_lock(run):                            # the holder is gone: the kernel released the lock
        assert clean_temporary_files(run) == [run / f".step-000004.tmp-{pid}"]


# ------------------------------------------------- what a mutation review found untested
def _saved_with_trainer(run, tok):
    model = tiny_model()
    optimizer = make_optimizer(model, TrainConfig(max_iters=10, batch_size=2), torch.device("cpu"))
    return save_checkpoint(run, model, tok, 1, optimizer, {"step": 1}, {"rng.torch": torch.get_rng_state()})


def test_the_training_state_is_read_only_when_asked_for_and_checked_when_it_is(tmp_path, tok):
    folder = _saved_with_trainer(tmp_path / "run", tok)
    assert load_checkpoint(tmp_path / "run").trainer_tensors == {}
    trainer = folder / "trainer.safetensors"
    damaged = bytearray(trainer.read_bytes())
    damaged[-1] ^= 0xFF
    trainer.write_bytes(bytes(damaged))
    load_model(tmp_path / "run")                 # the weights alone are fine: sampling still works
    with pytest.raises(CheckpointError):          # resuming from a damaged optimizer/RNG state is not
        load_checkpoint(tmp_path / "run", with_trainer=True)


def test_saving_an_earlier_step_keeps_it_whatever_keep_says(tmp_path, tok):
    # a run resumed from an earlier step writes steps below the newest: keep=2 must never delete
    # the folder it has just written and pointed `latest` at
    model = tiny_model()
    for step in (200, 300, 100):
        save_checkpoint(tmp_path / "run", model, tok, step, keep=2)
    assert (tmp_path / "run" / "step-000100").is_dir()
    assert load_checkpoint(tmp_path / "run").path.name == "step-000100"


def test_a_failed_write_of_latest_leaves_the_old_pointer(tmp_path, tok, monkeypatch):
    from pathlib import Path
    model = tiny_model()
    save_checkpoint(tmp_path / "run", model, tok, 1)
    real_write_text = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):       # a full disk in the middle of the write
        if "latest" in self.name:
            real_write_text(self, text[:3], *args, **kwargs)
            raise OSError(28, "No space left on device")
        return real_write_text(self, text, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(CheckpointError, match="No space left on device; the earlier checkpoint 'step-000001' is intact"):
        save_checkpoint(tmp_path / "run", model, tok, 2)
    monkeypatch.undo()
    assert (tmp_path / "run" / "latest").read_text() == "step-000001\n"
    assert load_checkpoint(tmp_path / "run").path.name == "step-000001"
    assert not list((tmp_path / "run").glob(".latest.tmp-*"))   # the half-written pointer is removed


def test_cleaning_removes_every_kind_of_temporary(tmp_path):
    from minigpt.run_folder import clean_temporary_files
    for name in (".step-000100.old-123", ".step-000100.tmp-123"):
        (tmp_path / name).mkdir()
    (tmp_path / "step-000100").mkdir()
    assert sorted(p.name for p in clean_temporary_files(tmp_path)) == [".step-000100.old-123", ".step-000100.tmp-123"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-000100"]


def test_a_resave_of_the_same_step_that_fails_halfway_keeps_the_step(tmp_path, tok, monkeypatch):
    """Re-saving a step moves the saved one aside, then renames the new one in. When that second
    rename failed (a full disk) the step moved aside kept its temporary name: `latest` named a
    folder that was gone, and the next resume deleted the only copy as a leftover."""
    from pathlib import Path
    from minigpt.run_folder import clean_temporary_files
    model, run = tiny_model(), tmp_path / "run"
    save_checkpoint(run, model, tok, 5)
    before = load_checkpoint(run).model
    real_rename, calls = Path.rename, []

    def rename(self, target):
        calls.append(self.name)
        if len(calls) == 2:                 # the new step into place
            raise OSError(28, "No space left on device")
        return real_rename(self, target)
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(run, tiny_model(seed=1), tok, 5)
    monkeypatch.undo()
    assert calls[0] == "step-000005" and sorted(p.name for p in run.iterdir()) == ["latest", "step-000005"]
    assert clean_temporary_files(run) == []
    assert_same_weights(load_checkpoint(run).model, before)


@pytest.mark.parametrize("into", ["new", "existing"])
def test_an_export_stopped_by_ctrl_c_leaves_no_temporary_file(tmp_path, tok, monkeypatch, into):
    model, out = tiny_model(), tmp_path / "exported"
    if into == "existing":
        export_model(model, tok, out)
    monkeypatch.setattr(minigpt.checkpoint.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        export_model(model, tok, out, overwrite=True)
    monkeypatch.undo()
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ([] if into == "new" else ["exported", "exported/minigpt.json", "exported/model.safetensors"]), left
