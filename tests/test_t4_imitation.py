"""`bench/t4_imitation.py`: chapters run on the CPU through the fp16 autocast + gradient scaler
path a T4 takes. The patch is checked in-process (it reaches every minigpt module and really
trains in fp16), and end to end on two one-cell notebooks (the kernel gets it; a failing
chapter fails the run)."""

import json

import nbformat
import pytest
import torch

import minigpt
from bench import t4_imitation
from minigpt import GPTConfig, MiniGPT, TrainConfig, train
from minigpt.device import describe_precision

CPU = torch.device("cpu")


def _tiny_run(data, max_iters=4):
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=16, n_embd=32, n_head=4, n_layer=1))
    cfg = TrainConfig(max_iters=max_iters, batch_size=4, learning_rate=3e-3, warmup_iters=1, eval_interval=2,
                      eval_iters=2, device="cpu")
    return train(model, data, cfg, progress=False)


def test_install_makes_training_use_fp16_autocast_and_an_enabled_scaler(small_data, monkeypatch, tmp_path):
    fp32 = _tiny_run(small_data)
    counts_file = tmp_path / "counts.json"
    counts = t4_imitation.install(monkeypatch.setattr, str(counts_file))
    assert describe_precision(CPU) == "fp16 autocast + gradient scaler"
    assert minigpt.autocast is not t4_imitation.torch.autocast and minigpt.autocast.__name__ == "counting_autocast"
    fp16 = _tiny_run(small_data)
    assert counts["scaler_updates"] == 4                     # one update per step: the scaler ran
    assert counts["autocast_entered"] >= 4 and counts["final_scale"] > 1
    assert json.loads(counts_file.read_text()) == counts     # what the runner reads after the kernel ends
    # fp16's rounding moves the losses a little (so the fp16 kernels ran), and no more than that
    assert fp16.history["loss"] != fp32.history["loss"]
    for a, b in zip(fp16.history["loss"], fp32.history["loss"]):
        assert abs(a - b) < 0.05


def test_monkeypatched_install_is_undone(tmp_path):
    # install() patches through the setter it is given: with a pytest MonkeyPatch, undoing
    # it must leave nothing of the imitation for later tests
    patch = pytest.MonkeyPatch()
    t4_imitation.install(patch.setattr, str(tmp_path / "counts.json"))
    assert describe_precision(CPU) == "fp16 autocast + gradient scaler"
    patch.undo()
    assert describe_precision(CPU) == "fp32"
    assert minigpt.autocast.__name__ == "autocast"


def _one_cell_notebook(path, source):
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(notebook, path)
    return path


TRAINS_IN_FP16 = """
import torch, minigpt
from minigpt.device import describe_precision
assert describe_precision(torch.device("cpu")) == "fp16 autocast + gradient scaler"
data = minigpt.TextData.from_text(minigpt.data.load_shakespeare()[:5000])
model = minigpt.MiniGPT(minigpt.GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=16, n_embd=32,
                                          n_head=4, n_layer=1))
minigpt.train(model, data, minigpt.TrainConfig(max_iters=3, batch_size=4, eval_interval=3, eval_iters=1,
                                               device="cpu"), progress=False)
"""


def test_the_runner_installs_the_imitation_in_the_kernel_and_reports_it(tmp_path, capsys):
    trains = _one_cell_notebook(tmp_path / "trains.ipynb", TRAINS_IN_FP16)
    fails = _one_cell_notebook(tmp_path / "fails.ipynb", "assert 1 + 1 == 3, 'a chapter check that fails'")
    log = tmp_path / "imitation.log"
    assert t4_imitation.main([str(trains), "--log", str(log)]) == 0
    summary = log.read_text().split("\nsummary\n")[1]
    assert "trains.ipynb: nbval passed" in summary and "3 scaler updates, 0 skipped steps" in summary
    assert t4_imitation.main([str(fails)]) == 1
    assert "fails.ipynb: nbval FAILED" in capsys.readouterr().out


def test_an_unknown_chapter_is_a_one_line_error():
    with pytest.raises(SystemExit, match=r"no chapter '99'; give a chapter number \(01, 02, .*16\)"):
        t4_imitation.main(["99"])
