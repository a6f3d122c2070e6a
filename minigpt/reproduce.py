"""Numbers that depend on the CPU: print them with the tolerance the book promises.

A long float computation (hundreds of training steps, an evaluation after them) gives results
that differ in the third decimal between CPUs: AVX2, AVX512 and Apple chips sum in different
orders. The book therefore never promises digits for such a number. It shows the reader's own
value next to the value measured when the chapter was written, and checks that the two agree
within a stated tolerance:

    >>> expect("val loss", 1.7519, book=1.7376, tol=0.05)
    val loss ≈ 1.7519 (book: 1.7376 ± 0.05)

The `≈ <number>` part is what varies; the book's test run (nbval) masks it (see
tests/nbval_sanitize.cfg) and relies on the assertion instead.
"""

from __future__ import annotations

import math
import numbers

from .errors import UsageError, is_whole_number


def _is_real(number) -> bool:
    """A real number (an int, a float, a NumPy scalar), but not a bool."""
    return isinstance(number, numbers.Real) and not isinstance(number, bool)


class NumberOutOfToleranceError(AssertionError):
    """A measured number is further from the book's value than the stated tolerance."""


def expect(label: str, value: float, book: float, tol: float, digits: int = 4) -> float:
    """Print `label ≈ value (book: book ± tol)`; raise if |value - book| > tol. Returns value.

    `tol` is absolute, in the units of `value`. It should be set from measurements on several
    CPUs, comfortably above their spread, so that only a real change fails.
    """
    for name, number in (("book", book), ("tol", tol)):      # a NaN book would pass every value
        if not _is_real(number) or not math.isfinite(number):
            raise UsageError(f"expect({label!r}, ...)'s {name} must be a finite number, got {number!r}.")
    if not tol > 0:
        raise UsageError(f"expect({label!r}, ...)'s tol must be a positive number, got {tol!r}.")
    if not is_whole_number(digits, 0) or digits > 17:
        raise UsageError(f"expect({label!r}, ...)'s digits are decimals to print, a whole number in 0..17, "
                         f"got {digits!r}.")
    try:
        value = float(value)
    except (TypeError, ValueError, RuntimeError):         # RuntimeError: a tensor of several elements
        raise UsageError(f"expect({label!r}, ...) needs a number (or a one-element tensor), got {value!r}.") from None
    print(f"{label} ≈ {value:.{digits}f} (book: {book:.{digits}f} ± {tol:g})")
    if not math.isfinite(value) or abs(value - book) > tol:
        raise NumberOutOfToleranceError(
            f"{label} = {value:.{digits}f}, but the book measured {book:.{digits}f} and promises "
            f"agreement within ± {tol:g}. If you changed a setting above, this is expected; "
            f"otherwise something differs from the book's set-up (seed, device, package version).")
    return value
