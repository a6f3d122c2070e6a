"""Exercises that answer back: each `check_*` runs your code and names the likely mistake.

    import minigpt
    minigpt.exercises.check_causal_attention(my_attention)

Every chapter's checks live in their own module (`ch03_causal_mask.py`, ...); `core.py` holds
the machinery. Chapter modules are imported on first use: `minigpt.exercises.check_softmax`
imports chapter 2's module only, and `EXERCISES` (every exercise, in chapter order, so the
tests can prove that each catalogued mistake is recognised by name) imports them all. A new
chapter module `chNN_topic.py` is found by its name; nothing here lists them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

from .core import Case, CheckResult, Exercise, Mistake, check_answer

_CHAPTER_MODULE = re.compile(r"ch\d\d_\w+")


def chapter_modules() -> list[str]:
    """The names of the chapter modules (`ch02_attention`, ...), in chapter order."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if _CHAPTER_MODULE.fullmatch(m.name))


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def _registry() -> list[Exercise]:
    exercises: list[Exercise] = []
    for name in chapter_modules():
        for value in vars(_load(name)).values():       # definition order within a chapter
            if isinstance(value, Exercise) and all(value is not e for e in exercises):
                exercises.append(value)
    return exercises


def __getattr__(name: str):
    """A chapter's public name (check_softmax, SOFTMAX, QUESTIONS, ...), imported on first use."""
    if name == "EXERCISES":
        value = _registry()
    elif name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        for module_name in chapter_modules():
            module = _load(module_name)
            value = vars(module).get(name)
            # defined in this chapter (not a module or function it imports from elsewhere)
            if value is None or isinstance(value, ModuleType):
                continue
            if not (inspect.isfunction(value) or inspect.isclass(value)) or value.__module__ == module.__name__:
                break
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    names = set(globals()) | {"EXERCISES"}
    for module_name in chapter_modules():
        names |= {n for n in vars(_load(module_name)) if not n.startswith("_")}
    return sorted(names)
