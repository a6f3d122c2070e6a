"""GPT-2's weights in MiniGPT: convert a Hugging Face `GPT2LMHeadModel` into our model.

MiniGPT already uses GPT-2's parameter names, so the conversion is mostly renaming
(`transformer.h.N` -> `blocks.N`) plus three differences in how the tensors are stored:

* GPT-2's linear layers are `Conv1D` modules whose weight is (in, out); `nn.Linear` keeps
  (out, in). Every `c_attn`, `c_proj` and `c_fc` weight is transposed.
* The LM head is tied to the token embedding in both models: one matrix, stored once.
* GPT-2's MLP uses the tanh approximation of GELU ("gelu_new"), which MiniGPT selects
  with `GPTConfig(gelu="tanh")`. Its LayerNorm epsilon, 1e-5, is PyTorch's default.

`transformers` is only needed by `from_hf_model` (and by whoever builds the Hugging Face
model); `from_hf_state_dict` works on any mapping of tensors, e.g. a `model.safetensors`
file read with `safetensors.torch.load_file`. Install the extra with
`pip install "minigpt[gpt2]"`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from .config import ConfigError, GPTConfig
from .errors import MiniGPTError, is_whole_number
from .model import MiniGPT

# Conv1D layers: stored (in, out) by GPT-2, (out, in) by nn.Linear
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# GPT-2 activations MiniGPT can run (GPT2Config.activation_function -> GPTConfig.gelu)
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "exact"}
# buffers some GPT-2 checkpoints carry (the causal mask); MiniGPT builds its own
IGNORED_BUFFERS = ("attn.bias", "attn.masked_bias")


class GPT2WeightsError(MiniGPTError, ValueError):
    """Tensors that are not GPT-2 weights for the given config (names, shapes, an untied head)."""


def config_from_hf(hf_config: Any, attn_impl: str = "sdpa") -> GPTConfig:
    """The GPTConfig that computes what a Hugging Face `GPT2Config` describes.

    Raises ConfigError for GPT-2 variants MiniGPT does not implement (another activation,
    an MLP width other than 4C, a different LayerNorm epsilon, unscaled attention).
    """
    get = lambda name, default=None: getattr(hf_config, name, default)  # noqa: E731
    sizes = {name: get(name) for name in ("vocab_size", "n_positions", "n_embd", "n_head", "n_layer")}
    missing = [name for name, value in sizes.items() if not is_whole_number(value)]
    if missing:
        raise ConfigError(f"{type(hf_config).__name__} is not a GPT-2 config: {', '.join(missing)} must be "
                          "integers (pass hf_model.config, a transformers.GPT2Config).")
    activation = get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"GPT-2 activation_function={activation!r} is not supported; "
                          f"MiniGPT runs {sorted(ACTIVATIONS)}.")
    n_embd = get("n_embd")
    n_inner = get("n_inner")
    if n_inner is not None and n_inner != 4 * n_embd:
        raise ConfigError(f"GPT-2 n_inner={n_inner} is not supported: MiniGPT's MLP is 4 * n_embd "
                          f"= {4 * n_embd} wide.")
    eps = get("layer_norm_epsilon", 1e-5)
    if eps != 1e-5:
        raise ConfigError(f"GPT-2 layer_norm_epsilon={eps} is not supported: MiniGPT's LayerNorm "
                          "uses PyTorch's default 1e-5 (GPT-2's value).")
    if not get("scale_attn_weights", True) or get("scale_attn_by_inverse_layer_idx", False):
        raise ConfigError("this GPT-2 config changes the attention scale (scale_attn_weights=False or "
                          "scale_attn_by_inverse_layer_idx=True); MiniGPT divides by sqrt(head size) only.")
    if not get("tie_word_embeddings", True):
        raise ConfigError("this GPT-2 config unties the LM head from the token embedding; "
                          "MiniGPT always ties them.")
    return GPTConfig(vocab_size=get("vocab_size"), block_size=get("n_positions"), n_embd=n_embd,
                     n_head=get("n_head"), n_layer=get("n_layer"), dropout=get("resid_pdrop", 0.0),
                     pos_encoding="learned", norm="pre", attn_impl=attn_impl, bias=True,
                     gelu=ACTIVATIONS[activation])


def convert_state_dict(hf_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 tensor names and layouts -> MiniGPT's (without lm_head, which is wte)."""
    if not isinstance(hf_state, Mapping):
        raise GPT2WeightsError(f"expected a mapping of tensor names to tensors (a state dict), got "
                               f"{type(hf_state).__name__}.")
    out = {}
    for name, tensor in hf_state.items():
        if not isinstance(name, str):
            raise GPT2WeightsError(f"a state dict's keys are tensor names, got the key {name!r}; pass "
                                   "model.state_dict() or safetensors.torch.load_file(path).")
        if not isinstance(tensor, torch.Tensor):
            raise GPT2WeightsError(f"{name!r} is a {type(tensor).__name__}, not a tensor; pass a state "
                                   "dict (model.state_dict(), or safetensors.torch.load_file(path)).")
        if tensor.is_meta:
            raise GPT2WeightsError(f"{name!r} is a meta tensor (a shape without values); load the weights "
                                   "first, e.g. GPT2LMHeadModel.from_pretrained(...) without device_map='meta'.")
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        if ".".join(key.split(".")[-2:]) in IGNORED_BUFFERS or key == "lm_head.weight":
            continue
        if key.startswith("h."):
            key = "blocks." + key[len("h."):]
        if key.endswith(CONV1D_WEIGHTS):
            if tensor.dim() != 2:        # .t() would fail inside torch without naming the tensor
                raise GPT2WeightsError(f"{name!r} has shape {tuple(tensor.shape)}; GPT-2's Conv1D weights "
                                       "are 2-D (in, out). These are not GPT-2 weights.")
            tensor = tensor.t()
        out[key] = tensor.contiguous()
    return out


def from_hf_state_dict(hf_state: Mapping[str, torch.Tensor], config: GPTConfig) -> MiniGPT:
    """A MiniGPT holding the weights of a Hugging Face GPT-2 state dict.

    `config` says what the tensors cannot (the number of heads, the activation): build it
    with `config_from_hf(hf_model.config)`, or by hand for the released checkpoints, e.g.
    GPT-2 small: GPTConfig(vocab_size=50257, block_size=1024, n_embd=768, n_head=12,
    n_layer=12, dropout=0.0, gelu="tanh"). Keys may carry the `transformer.` prefix
    (GPT2LMHeadModel) or not (GPT2Model, the files on the Hugging Face hub).
    """
    if not isinstance(config, GPTConfig):
        raise ConfigError(f"from_hf_state_dict needs the GPTConfig the weights were made for, got "
                          f"{type(config).__name__}; build it with config_from_hf(hf_model.config).")
    if config.pos_encoding != "learned" or config.norm != "pre" or not config.bias:
        raise ConfigError("GPT-2 weights need GPTConfig(pos_encoding='learned', norm='pre', "
                          f"bias=True); got pos_encoding={config.pos_encoding!r}, "
                          f"norm={config.norm!r}, bias={config.bias}.")
    if config.n_kv_head != config.n_head:
        raise ConfigError(f"GPT-2 has one key/value head per query head; set n_kv_head={config.n_head} "
                          f"(or leave it None), not {config.n_kv_head}.")
    tensors = convert_state_dict(hf_state)
    head = hf_state.get("lm_head.weight")
    if head is not None and "wte.weight" in tensors and head.shape != tensors["wte.weight"].shape:
        raise GPT2WeightsError(f"lm_head.weight has shape {tuple(head.shape)} but the token embedding "
                               f"{tuple(tensors['wte.weight'].shape)}; MiniGPT ties the two, so both must be "
                               "(vocab_size, n_embd).")
    if head is not None and "wte.weight" in tensors and not torch.equal(head, tensors["wte.weight"]):
        raise GPT2WeightsError("lm_head.weight differs from the token embedding (an untied head); "
                         "MiniGPT ties the two, so these weights cannot be loaded.")
    with torch.device("meta"):          # shapes only: no random init of weights overwritten next
        model = MiniGPT(config)
    model = model.to_empty(device="cpu")
    model.wte.weight = model.lm_head.weight     # to_empty gave the tied pair two tensors: re-tie
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise GPT2WeightsError(f"the state dict does not look like GPT-2 with {config.n_layer} layers: "
                         f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
                         f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}.")
    wrong = [f"{k} {tuple(tensors[k].shape)} (MiniGPT: {tuple(shape)})"
             for k, shape in expected.items() if tensors[k].shape != shape]
    if wrong:
        raise GPT2WeightsError(f"shapes do not match the config ({config.n_embd} wide, vocabulary "
                         f"{config.vocab_size}, {config.block_size} positions): {wrong[:3]}.")
    model.load_state_dict(dict(tensors, **{"lm_head.weight": tensors["wte.weight"]}), strict=True)
    return model.eval()


def from_hf_model(hf_model: Any, attn_impl: str = "sdpa", dtype: Optional[torch.dtype] = torch.float32) -> MiniGPT:
    """Convert a Hugging Face `GPT2LMHeadModel` (or `GPT2Model`) into MiniGPT, in eval mode.

    e.g. `from_hf_model(GPT2LMHeadModel.from_pretrained("gpt2"))` for the 124M model.
    The weights are copied in `dtype` (float32 by default; None keeps the source dtype).
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise MiniGPTError(f"dtype must be a floating-point torch.dtype (torch.float32, torch.bfloat16, "
                           f"torch.float16) or None, got {dtype!r}.")
    if not (hasattr(hf_model, "config") and callable(getattr(hf_model, "state_dict", None))):
        hint = (f"; load it first: GPT2LMHeadModel.from_pretrained({hf_model!r})" if isinstance(hf_model, str)
                else "; for a state dict use from_hf_state_dict(state, config)" if isinstance(hf_model, Mapping)
                else "")
        raise MiniGPTError(f"from_hf_model takes a loaded Hugging Face GPT-2 model (GPT2LMHeadModel or GPT2Model), "
                           f"got {type(hf_model).__name__}{hint}.")
    config = config_from_hf(hf_model.config, attn_impl)
    state = hf_model.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model = from_hf_state_dict(state, config)
    return model.to(next(iter(state.values())).dtype)
