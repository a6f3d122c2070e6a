"""minigpt.kv_cache: overflowing a cache is a one-line user error, not a bare RuntimeError."""

import pytest
import torch

from minigpt import MiniGPTError
from minigpt.kv_cache import KVCache, KVCacheOverflowError


def test_overflow_is_a_minigpt_error_that_says_how_to_fix_it():
    cache = KVCache(batch_size=1, n_kv_head=2, max_len=4, head_dim=3)
    k = torch.zeros(1, 2, 3, 3)
    cache.append(k, k)
    with pytest.raises(KVCacheOverflowError, match=r"6 positions > capacity 4; allocate it with max_len") as err:
        cache.append(k, k)
    assert isinstance(err.value, MiniGPTError) and isinstance(err.value, RuntimeError)
    assert cache.length == 3                       # the failed append stored nothing
    cache.reset()
    cache.append(k, k)
    assert cache.length == 3


def test_values_of_another_length_than_the_keys_are_refused():
    # broadcasting one value over three keys would fill the cache with copies, silently
    from minigpt.kv_cache import KVCacheShapeError
    cache = KVCache(1, 1, 8, 4)
    with pytest.raises(KVCacheShapeError):
        cache.append(torch.ones(1, 1, 3, 4), torch.ones(1, 1, 1, 4))
    assert cache.length == 0
