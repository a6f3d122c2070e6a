"""minigpt.evaluation: `evaluate` and `estimate_loss` refuse input they cannot measure, with one line."""

import pytest
import torch

from minigpt import GPTConfig, MiniGPT, MiniGPTError, evaluate
from minigpt.data import DataError


def tiny(vocab_size=12):
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=vocab_size, block_size=8, n_embd=16, n_head=2, n_layer=1)).eval()


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
