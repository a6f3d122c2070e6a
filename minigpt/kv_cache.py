"""The key/value cache of chapter 11: one pre-allocated buffer per attention layer."""

from __future__ import annotations

import torch

from .device import as_device
from .errors import MiniGPTError, is_whole_number


class KVCacheOverflowError(MiniGPTError, RuntimeError):
    """More positions appended than the cache was allocated for."""


class KVCacheShapeError(MiniGPTError, ValueError):
    """Keys or values whose batch, head or channel sizes are not the cache's."""


def _check_sizes(owner: str, **sizes) -> None:
    """Every size of a cache is a whole number >= 1 (torch would fail deep inside, or not at all)."""
    for name, size in sizes.items():
        if not is_whole_number(size, 1):
            raise KVCacheShapeError(f"{owner}{name} must be a whole number >= 1, got {size!r}; a cache is one "
                                    "(batch_size, n_kv_head, max_len, head_dim) buffer per layer (n_layer).")


class KVCache:
    """Pre-allocated keys and values for one attention layer.

    Writing into a fixed (B, Hkv, max_len, D) buffer avoids re-allocating the whole
    cache with torch.cat at every generated token.
    """

    def __init__(self, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 device=None, dtype=torch.float32):
        _check_sizes("KVCache's ", batch_size=batch_size, n_kv_head=n_kv_head, max_len=max_len, head_dim=head_dim)
        device = None if device is None else as_device(device, "KVCache")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:   # an integer cache truncates
            raise KVCacheShapeError(f"KVCache's dtype must be a floating-point torch dtype such as torch.float32 "
                                    f"or torch.bfloat16, got {dtype!r}.")
        self.k = torch.empty(batch_size, n_kv_head, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.size(2)

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Store k/v (B, Hkv, T, D) after the cached ones; return all keys and values so far."""
        B, H, _, D = self.k.shape
        if k.dim() != 4 or v.shape != k.shape or (k.size(0), k.size(1), k.size(3)) != (B, H, D):
            raise KVCacheShapeError(f"append expects k and v of shape (B, Hkv, T, D) = ({B}, {H}, T, {D}) for "
                                    f"this cache, got {tuple(k.shape)} and {tuple(v.shape)}.")
        if not (k.is_floating_point() and v.is_floating_point()):
            raise KVCacheShapeError(f"append expects floating-point keys and values (they are activations), got "
                                    f"{k.dtype} and {v.dtype}.")
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise KVCacheOverflowError(f"KV cache overflow: {end} positions > capacity {self.max_len}; "
                                       "allocate it with max_len >= prompt + new tokens, or reset() it.")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    @property
    def nbytes(self) -> int:
        """Bytes held by the keys and values buffers (the full capacity, used or not)."""
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def reset(self) -> None:
        self.length = 0


def kv_cache_nbytes(n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                    dtype=torch.float32) -> int:
    """Bytes of a whole model's KV cache: n_layer `KVCache`s of this shape, counted by `nbytes`.

    The caches are built on PyTorch's "meta" device, which records shapes and dtypes but
    allocates nothing, so even a 7B model's cache can be sized on a laptop. Equal to
    2 (keys and values) * n_layer * batch_size * n_kv_head * max_len * head_dim * bytes per element.
    """
    _check_sizes("", n_layer=n_layer)
    one_layer = KVCache(batch_size, n_kv_head, max_len, head_dim, device="meta", dtype=dtype)
    return n_layer * one_layer.nbytes
