"""Exercises that answer back: each `check_*` runs your code and names the likely mistake.

    import minigpt
    minigpt.exercises.check_causal_attention(my_attention)

Every chapter's checks live in their own module (`ch03_causal_mask.py`, ...); `core.py` holds
the machinery. `EXERCISES` lists every exercise, so the tests can prove that each catalogued
mistake is recognised by name.
"""

from .core import Case, CheckResult, Exercise, Mistake, check_answer
from .ch02_attention import ATTENTION_WEIGHTS, SOFTMAX, check_attention_weights, check_softmax
from .ch03_causal_mask import CAUSAL_ATTENTION, CAUSAL_MASK, check_causal_attention, check_causal_mask
from .ch04_heads import (MERGE_HEADS, MULTI_HEAD_ATTENTION, SPLIT_HEADS, check_merge_heads,
                         check_multi_head_attention, check_split_heads)
from .ch05_positions import ROPE, ROPE_ATTENTION, SINUSOIDAL, check_rope, check_rope_attention, check_sinusoidal
from .ch06_blocks import LAYER_NORM, MLP_EXERCISE, PRE_LN_BLOCK, check_layer_norm, check_mlp, check_pre_ln_block
from .ch07_gpt import DROPOUT, FORWARD, check_dropout, check_gpt_forward
from .ch08_training import DECAY_GROUPS, GRAD_CLIP, LR_SCHEDULE, check_decay_groups, check_grad_clip, check_lr_schedule
from .ch09_decoding import (GREEDY_LOOP, SAMPLING_FILTER, TOP_P, check_greedy_generate, check_sampling_filter,
                            check_top_p)
from .ch10_inside import ATTENTION_MAPS, OFFSET_SCORE, check_attention_maps, check_offset_scores
from .ch11_kv_cache import CACHED_GENERATE, SLIDING_CACHE, check_cached_generate, check_sliding_cache
from .ch12_gqa import GQA_ATTENTION, REPEAT_KV, check_grouped_attention, check_repeat_kv
from .ch13_flash import ONLINE_SOFTMAX, TILED_ATTENTION, check_online_softmax, check_tiled_attention
from .ch14_self_test import QUESTIONS, check_self_test
# chapter modules: add one import line each, in chapter order

EXERCISES = [SOFTMAX, ATTENTION_WEIGHTS, CAUSAL_ATTENTION, CAUSAL_MASK, SPLIT_HEADS, MERGE_HEADS,
             MULTI_HEAD_ATTENTION,
             SINUSOIDAL, ROPE, ROPE_ATTENTION, MLP_EXERCISE, LAYER_NORM, PRE_LN_BLOCK, DROPOUT, FORWARD,
             LR_SCHEDULE, GRAD_CLIP, DECAY_GROUPS,
             SAMPLING_FILTER, TOP_P, GREEDY_LOOP, ATTENTION_MAPS, OFFSET_SCORE,
             SLIDING_CACHE, CACHED_GENERATE, REPEAT_KV, GQA_ATTENTION, ONLINE_SOFTMAX, TILED_ATTENTION]
