"""The model shipped inside the package."""

import pytest
import torch

from minigpt import TextData, evaluate, load_pretrained, pretrained_info


@pytest.fixture(scope="module")
def pretrained():
    return load_pretrained("cpu")


def test_loads_with_vocab_65(pretrained):
    model, tokenizer = pretrained
    assert tokenizer.vocab_size == 65 == model.config.vocab_size
    assert model.device == torch.device("cpu") and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert tokenizer.chars == sorted(tokenizer.chars) and "\n" in tokenizer.stoi


def test_greedy_generation_is_deterministic(pretrained):
    model, tokenizer = pretrained
    idx = torch.tensor([tokenizer.encode("ROMEO:\n")])
    a = model.generate(idx, 40, temperature=0)
    b = model.generate(idx, 40, temperature=0)
    c = model.generate(idx, 40, temperature=0, use_cache=False)
    assert torch.equal(a, b) and torch.equal(a, c)
    text = tokenizer.decode(a[0])
    assert text.startswith("ROMEO:\n") and len(text) == 47
    # a trained model writes mostly letters and spaces, not noise
    assert sum(ch.isalpha() or ch in " \n,.'" for ch in text[7:]) >= 35, text


def test_validation_loss_is_low(pretrained, shakespeare):
    model, tokenizer = pretrained
    data = TextData.from_text(shakespeare)
    assert data.tokenizer.chars == tokenizer.chars
    loss = evaluate(model, data.val[:20_000])
    assert loss < 1.60, loss


def test_pretrained_info():
    info = pretrained_info()
    assert info["train_config"]["max_iters"] > 0
    assert info["step"] == info["train_config"]["max_iters"]


def test_every_model_loader_returns_a_model_and_its_tokenizer():
    """One return type for the loaders of a whole model: (MiniGPT, CharTokenizer), never a bare model."""
    from minigpt import CharTokenizer, MiniGPT, load_model
    from minigpt.pretrained import pretrained_path
    from minigpt.web.export import asset_path, load_web_model
    for loaded in (load_pretrained("cpu"), load_model(pretrained_path(), "cpu"), load_web_model(asset_path())):
        assert isinstance(loaded, tuple) and len(loaded) == 2
        model, tokenizer = loaded
        assert isinstance(model, MiniGPT) and isinstance(tokenizer, CharTokenizer)
        assert tokenizer.vocab_size == model.config.vocab_size == 65
