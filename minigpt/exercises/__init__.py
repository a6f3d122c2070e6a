"""Exercises that answer back: each `check_*` runs your code and names the likely mistake.

    import minigpt
    minigpt.exercises.check_causal_attention(my_attention)

Every chapter's checks live in their own module (`ch03_causal_mask.py`, ...); `core.py` holds
the machinery. `EXERCISES` lists every exercise, so the tests can prove that each catalogued
mistake is recognised by name.
"""

from .core import Case, CheckResult, Exercise, Mistake, check_answer
from .ch03_causal_mask import CAUSAL_ATTENTION, check_causal_attention
# chapter modules: add one import line each, in chapter order

EXERCISES = [CAUSAL_ATTENTION]
