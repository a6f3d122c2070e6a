"""Model configuration.

`GPTConfig` keeps the seed's field names and defaults (a 6-layer, 8-head, 256-wide
character model with a 128-character context) and adds the switches the book's later
chapters flip: grouped-query attention, the positional encoding, Pre-LN versus Post-LN,
and which attention implementation runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from .errors import MiniGPTError, is_whole_number, plain_number

POS_ENCODINGS = ("learned", "sinusoidal", "rope")
NORMS = ("pre", "post")
ATTN_IMPLS = ("manual", "sdpa", "flash")
GELUS = ("exact", "tanh")


class ConfigError(MiniGPTError, ValueError):
    """A configuration value (or combination of values) that cannot work."""


class _SameAsNHead(int):
    """`n_kv_head` when it was left at None: the number n_head, marked as following it.

    It is an int like any other (arithmetic, comparisons, JSON give plain numbers); the mark
    lets `dataclasses.replace(config, n_head=8)` recompute it from the new n_head. A plain
    number would carry the old head count over and silently make the copy grouped-query
    attention (or refuse it: "n_kv_head=4 must divide n_head=2") although nobody asked for GQA.
    """


@dataclass
class GPTConfig:
    vocab_size: int = 256      # characters in the vocabulary (65 for tinyshakespeare)
    block_size: int = 128      # longest context the model sees, in tokens
    n_embd: int = 256          # width of the residual stream, C
    n_head: int = 8            # query heads per attention layer
    n_layer: int = 6           # number of Transformer blocks
    dropout: float = 0.1       # on attention weights, residual branches and embeddings
    n_kv_head: Optional[int] = None  # key/value heads; None = n_head (MHA, also after replace(n_head=..)), 1 = MQA
    pos_encoding: str = "learned"    # "learned" (seed, GPT-2) | "sinusoidal" | "rope"
    norm: str = "pre"                # "pre" (GPT-2, seed) | "post" (original Transformer)
    attn_impl: str = "sdpa"          # "manual" | "sdpa" | "flash"; all compute the same thing
    bias: bool = True                # biases in Linear and LayerNorm layers, as in GPT-2
    gelu: str = "exact"              # MLP activation: "exact" (erf) | "tanh" (GPT-2's approximation)

    def __post_init__(self) -> None:
        if self.n_kv_head is None or isinstance(self.n_kv_head, _SameAsNHead):
            self.n_kv_head = _SameAsNHead(self.n_head) if isinstance(self.n_head, int) else self.n_head
        self.validate()

    def __setattr__(self, name: str, value: Any) -> None:
        """`config.n_head = 4` on a config whose n_kv_head follows n_head moves n_kv_head too,
        as `dataclasses.replace` does: otherwise the model built next would silently have
        grouped-query attention with the old head count as its key/value heads. A numpy number
        is stored as the Python number it stands for (`plain_number`)."""
        value = plain_number(value)
        super().__setattr__(name, value)
        if name == "n_head" and isinstance(self.__dict__.get("n_kv_head"), _SameAsNHead) and is_whole_number(value):
            super().__setattr__("n_kv_head", _SameAsNHead(value))

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        for name in ("vocab_size", "block_size", "n_embd", "n_head", "n_layer", "n_kv_head"):
            value = getattr(self, name)
            if not is_whole_number(value, 1):
                raise ConfigError(f"GPTConfig.{name} must be a positive integer, got {value!r}.")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}.")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"GPTConfig.bias must be True or False, got {self.bias!r}.")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ConfigError(
                f"GPTConfig.pos_encoding={self.pos_encoding!r} is unknown; "
                f"choose one of {', '.join(map(repr, POS_ENCODINGS))}.")
        if self.norm not in NORMS:
            raise ConfigError(
                f"GPTConfig.norm={self.norm!r} is unknown; choose 'pre' (LayerNorm before each "
                f"sub-layer, GPT-2) or 'post' (after the residual add, original Transformer).")
        if self.attn_impl not in ATTN_IMPLS:
            raise ConfigError(
                f"GPTConfig.attn_impl={self.attn_impl!r} is unknown; "
                f"choose one of {', '.join(map(repr, ATTN_IMPLS))}.")
        if self.gelu not in GELUS:
            raise ConfigError(
                f"GPTConfig.gelu={self.gelu!r} is unknown; choose 'exact' (erf GELU) or 'tanh' "
                f"(the approximation GPT-2 was trained with).")
        if self.n_embd % self.n_head != 0:
            divisors = [h for h in range(1, min(self.n_embd, 64) + 1) if self.n_embd % h == 0]
            raise ConfigError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; each head gets "
                f"n_embd / n_head channels. Pick n_head from {divisors} or change n_embd.")
        if self.n_kv_head > self.n_head or self.n_head % self.n_kv_head != 0:
            options = [k for k in range(1, self.n_head + 1) if self.n_head % k == 0]
            raise ConfigError(
                f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (each key/value head "
                f"is shared by n_head / n_kv_head query heads). Pick n_kv_head from {options}.")
        if self.pos_encoding == "rope" and self.head_dim % 2 != 0:
            raise ConfigError(
                f"pos_encoding='rope' rotates channel pairs, so the head size must be even; "
                f"n_embd / n_head = {self.head_dim}. Change n_embd or n_head.")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2 != 0:
            raise ConfigError(
                f"pos_encoding='sinusoidal' needs an even n_embd (sine/cosine pairs), "
                f"got {self.n_embd}.")

    # ------------------------------------------------------------ derived sizes
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    # --------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown GPTConfig field(s) {unknown}; known fields are {sorted(known)}.")
        return cls(**values)
