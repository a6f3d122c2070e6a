"""minigpt.resume: a resumed run warns when it cannot match the uninterrupted one."""

import warnings

import pytest
import torch

from minigpt import GPTConfig, MiniGPT, TrainConfig, load_checkpoint, train
from minigpt.resume import THREADS_KEY, ResumeWarning


def model_for(data):
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=16, n_embd=32, n_head=4,
                             n_layer=1, dropout=0.0))


def cfg(max_iters=4):
    return TrainConfig(max_iters=max_iters, batch_size=4, learning_rate=3e-3, warmup_iters=1,
                       eval_interval=100, eval_iters=1, checkpoint_interval=2, device="cpu")


@pytest.fixture
def threads():
    """Sets torch's thread count for one test and gives the previous one back."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_a_checkpoint_records_the_thread_count(small_data, tmp_path, threads):
    threads(1)
    train(model_for(small_data), small_data, cfg(2), tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run").train_state[THREADS_KEY] == 1


def test_resume_with_another_thread_count_warns_in_one_line(small_data, tmp_path, threads):
    threads(1)
    train(model_for(small_data), small_data, cfg(), tmp_path / "run", stop_at=2, progress=False)
    threads(2)
    with pytest.warns(ResumeWarning, match=r"with 2 CPU thread\(s\), but its checkpoint was trained with 1: "
                                           r"the losses will differ .*torch\.set_num_threads\(1\)") as caught:
        result = train(model_for(small_data), small_data, cfg(), tmp_path / "run", resume=True, progress=False)
    assert result.steps == 4
    assert all("\n" not in str(w.message) for w in caught)


def test_resume_with_the_same_thread_count_is_silent(small_data, tmp_path, threads):
    threads(1)
    train(model_for(small_data), small_data, cfg(), tmp_path / "run", stop_at=2, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        assert train(model_for(small_data), small_data, cfg(), tmp_path / "run", resume=True,
                     progress=False).steps == 4


TEXT = "the king and the queen, the knight and the knave; " * 40


def bpe_data(merges_from):
    """TEXT encoded by a 270-token BPE whose merges were learned on `merges_from`."""
    from minigpt import BPETokenizer
    from minigpt.data import TextData
    return TextData.from_text(TEXT, tokenizer=BPETokenizer.train(merges_from, 270))


def test_a_bpe_run_resumes_and_another_merge_table_is_refused_in_one_line(tmp_path):
    data = bpe_data(TEXT)
    train(model_for(data), data, cfg(), tmp_path / "run", stop_at=2, progress=False)
    result = train(model_for(data), data, cfg(), tmp_path / "run", resume=True, progress=False)
    assert result.steps == 4
    train(model_for(data), data, cfg(), tmp_path / "other", stop_at=2, progress=False)
    other = bpe_data("a queen's knave: quick, quiet, quaint. " * 40)
    from minigpt.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match=r"tokenizer differs .*BPETokenizer, 270 tokens, against "
                                              r"BPETokenizer, 270\)") as caught:
        train(model_for(data), other, cfg(), tmp_path / "other", resume=True, progress=False)
    assert "\n" not in str(caught.value)


def test_the_thread_count_matters_only_to_a_run_on_the_cpu(small_data, tmp_path, threads):
    # a GPU run's numbers do not depend on torch's CPU threads: no warning there
    from minigpt.resume import check_resumable
    threads(1)
    train(model_for(small_data), small_data, cfg(), tmp_path / "run", stop_at=2, progress=False)
    threads(2)
    checkpoint = load_checkpoint(tmp_path / "run", with_trainer=True)
    model = model_for(small_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        check_resumable(checkpoint, model, small_data, cfg(), tmp_path / "run", torch.device("cuda"))
    with pytest.warns(ResumeWarning, match="with 2 CPU thread"):
        check_resumable(checkpoint, model, small_data, cfg(), tmp_path / "run", torch.device("cpu"))


def test_the_data_fingerprint_sees_another_split_of_the_same_text(shakespeare):
    # resuming with another validation fraction trains on other rows: it must be noticed
    from minigpt.data import TextData
    from minigpt.resume import data_fingerprint
    text = shakespeare[:5000]
    assert data_fingerprint(TextData.from_text(text, 0.1)) == data_fingerprint(TextData.from_text(text, 0.1))
    assert data_fingerprint(TextData.from_text(text, 0.1)) != data_fingerprint(TextData.from_text(text, 0.2))
