"""The one base class of every error a user can cause and fix.

`python -m minigpt` prints an error derived from `MiniGPTError` as one line (exit status 2):
it names the problem and the fix. Anything else that escapes is a bug in minigpt and keeps
its traceback, so a real bug never hides behind a one-line "error:".

The errors that check a value also derive from `ValueError` (a wrong value is a ValueError
in Python), so `except ValueError` in a notebook keeps working.
"""

from __future__ import annotations

import numbers


class MiniGPTError(Exception):
    """An error caused by the user's input (a value, a file, a folder), not by minigpt's code."""


class UsageError(MiniGPTError, ValueError):
    """A request that cannot work as given (e.g. an output folder that would overwrite work)."""


class CheckpointError(MiniGPTError, RuntimeError):
    """A checkpoint or run folder that is missing, corrupted, truncated, unsafe, does not fit,
    cannot be written, or is in use by another training run."""


class ModelInputError(MiniGPTError, ValueError):
    """Token ids, targets, activations or generation settings the model cannot take (shape,
    range, device)."""


def is_whole_number(value, minimum=None) -> bool:
    """True for a plain `int` of at least `minimum` (any int when `minimum` is None).

    Every count the package checks (sizes, steps, ranks, versions) goes through this one test.
    `bool` is excluded although Python counts it as an int: `n_layer=True` is a slip, not a 1.
    Floats such as 4.0 are refused too: a size that arrived as a float is a sign of a bug
    upstream (a division), and torch would fail on it deep inside, far from the cause.
    """
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def plain_number(value):
    """A numpy (or other) integer as a Python int, a numpy float as a Python float, a numpy
    bool as a Python bool; anything else unchanged.

    The config dataclasses pass their fields through this before checking them: a sweep written
    with `np.arange` or `np.linspace` hands over `np.int64(256)`, which is a whole number to
    the reader but not an `int` to `is_whole_number`, and not JSON to a checkpoint; a mask of
    settings hands over `np.False_` for a switch such as `bias`. A bool stays a bool, so
    `n_layer=True` (or `np.True_`) is still refused as a count.
    """
    if isinstance(value, (bool, int, float)):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):   # numpy 2, 1
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value
