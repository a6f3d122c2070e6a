"""minigpt.evaluation: `evaluate` and `estimate_loss` refuse input they cannot measure, with one line."""

import pytest
import torch

from minigpt import GPTConfig, MiniGPT, MiniGPTError, evaluate
from minigpt.data import DataError


def tiny(vocab_size=12, dropout=0.0):
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1,
                             dropout=dropout)).eval()


@pytest.mark.parametrize("tokens", [torch.tensor([1]), torch.tensor([], dtype=torch.long)])
def test_evaluate_on_fewer_than_two_tokens_names_the_minimum(tokens):
    with pytest.raises(DataError, match=rf"evaluate needs at least 2 tokens .*got {len(tokens)}"):
        evaluate(tiny(), tokens)


def test_evaluate_on_two_tokens_measures_the_one_target():
    model = tiny()
    logits, _ = model(torch.tensor([[3]]))
    expected = torch.nn.functional.cross_entropy(logits[0], torch.tensor([5])).item()
    assert evaluate(model, torch.tensor([3, 5])) == pytest.approx(expected, rel=1e-6)


def test_evaluate_refuses_a_batch_of_sequences():
    with pytest.raises(MiniGPTError, match=r"1-D tensor of token ids \(e\.g\. data\.val\), got \(2, 5\)"):
        evaluate(tiny(), torch.zeros(2, 5, dtype=torch.long))


def test_the_old_import_paths_still_work():
    import importlib
    import minigpt
    from minigpt import evaluation
    train = importlib.import_module("minigpt.train")   # `minigpt.train` is also the function
    assert train.evaluate is evaluation.evaluate is minigpt.evaluate
    assert train.estimate_loss is evaluation.estimate_loss is minigpt.estimate_loss


@pytest.mark.parametrize("kw, message", [
    (dict(batch_size=0), r"batch_size must be a positive integer, got 0; 64 is usual"),
    (dict(batch_size=2.5), r"batch_size must be a positive integer, got 2\.5"),
    (dict(block_size=0), r"block_size must be a positive integer, got 0"),
    (dict(block_size=-5), r"block_size must be a positive integer, got -5"),
    (dict(block_size=9), r"block_size 9 is longer than the model's block_size \(8\); pass block_size=8 or less"),
])
def test_evaluate_refuses_sizes_it_cannot_use_in_one_line(kw, message):
    # before: batch_size 0 was range()'s ValueError, block_size 0 silently meant the model's own,
    # -5 a reshape error, and a too-long window the model's advice to crop the input
    with pytest.raises(MiniGPTError, match=message) as info:
        evaluate(tiny(), torch.arange(40) % 12, **kw)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kw, message", [
    (dict(batch_size=0, eval_iters=1), r"batch_size must be a positive integer, got 0"),
    (dict(batch_size=2, eval_iters=0), r"eval_iters must be a positive integer, got 0; 20 is usual"),
])
def test_estimate_loss_refuses_counts_that_measure_nothing(kw, message):
    # before: batch_size 0 returned NaN for both splits, eval_iters 0 an empty torch.stack
    from minigpt import estimate_loss
    from minigpt.data import TextData
    data = TextData.from_text("to be or not to be, that is the question " * 4)
    model = MiniGPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1))
    with pytest.raises(MiniGPTError, match=message):
        estimate_loss(model, data, **kw)


def test_evaluate_measures_in_eval_mode_and_gives_the_mode_back():
    # with dropout 0.5 a training-mode pass is random: evaluate must switch it off, then
    # leave the model in the mode it found
    model = tiny(vocab_size=4, dropout=0.5).train()
    tokens = torch.randint(0, 4, (100,))
    first, second = evaluate(model, tokens), evaluate(model, tokens)
    assert model.training
    assert first == second == evaluate(model.eval(), tokens)


def test_estimate_loss_draws_its_batches_from_its_seed(small_data):
    from minigpt import estimate_loss
    model = tiny(vocab_size=small_data.tokenizer.vocab_size)
    assert estimate_loss(model, small_data, 4, 2, seed=0) == estimate_loss(model, small_data, 4, 2, seed=0)
    assert estimate_loss(model, small_data, 4, 2, seed=0) != estimate_loss(model, small_data, 4, 2, seed=1)
