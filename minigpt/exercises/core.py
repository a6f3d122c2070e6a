"""The machinery behind every exercise check: run the student's code, compare, name the mistake.

An `Exercise` knows three things:

* the *reference*: a correct solution (usually the package's own function or class);
* the *cases*: inputs chosen to expose mistakes, edge cases included (T = 1, one head, ...);
* the *mistakes*: a catalogue of buggy variants of the reference, one per common mistake,
  each with the hint a teacher would give.

`Exercise.check(student)` runs the student's solution on every case. When an output differs
from the reference, it runs every catalogued mistake on the same case, and if the student's
output matches one of them, the answer names that mistake. Diagnosing by matching outputs
(rather than by reading the student's code) means any way of making the mistake is caught,
however the code is written.

A solution that still raises `NotImplementedError` (what nbgrader's student edition puts in
place of the solution) answers "not implemented yet" instead of failing.

Grading: a check only *answers*; it never stops the notebook, so a student can run every cell.
With the environment variable MINIGPT_GRADING=1 (set by `make autograde` / an instructor's
`MINIGPT_GRADING=1 nbgrader autograde ...`) a check that did not pass raises `ExerciseFailed`
instead, which is how nbgrader's autograder takes the points away.
"""

from __future__ import annotations

import html
import math
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

PASSED, FAILED, NOT_IMPLEMENTED = "passed", "failed", "not implemented"


class ExerciseFailed(AssertionError):
    """Raised instead of answering when grading (MINIGPT_GRADING=1) and a check did not pass."""


def grading() -> bool:
    """True when checks should raise on anything but a pass (an autograder is running)."""
    return os.environ.get("MINIGPT_GRADING", "").strip() not in ("", "0")


def _answer(result: "CheckResult") -> Optional["CheckResult"]:
    if not grading():
        return result
    if not result.passed:
        raise ExerciseFailed(repr(result))
    # nbgrader reads a grade cell's displayed value as a partial score: print, return nothing
    print(repr(result))
    return None


@dataclass(frozen=True)
class Case:
    """One input to try: `name` is how the answer refers to it ("T = 1: a single query")."""
    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A common mistake: `solution` is a working solution with exactly that mistake made."""
    key: str                        # stable id, e.g. "attention.no_scale"
    hint: str                       # what to tell the student, as a question or a fix
    solution: Any                   # same kind of object the student hands in


@dataclass
class CheckResult:
    """What a check found. Shows itself as one paragraph in a notebook; truthy when passed."""
    exercise: str
    status: str
    message: str
    mistake: Optional[str] = None   # the key of the diagnosed Mistake, if one matched

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = {PASSED: "✓ Passed", FAILED: "✗ Not yet", NOT_IMPLEMENTED: "… Not implemented yet"}
        return f"{mark[self.status]} — {self.exercise}: {self.message}"

    def _repr_html_(self) -> str:
        colour = {PASSED: "#1a7f37", FAILED: "#cf222e", NOT_IMPLEMENTED: "#9a6700"}[self.status]
        return (f'<div style="border-left:4px solid {colour};padding:0.3em 0.8em">'
                f"{html.escape(repr(self))}</div>")


# ------------------------------------------------------------------- seeded test inputs
def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """A normal tensor from its own seeded generator: the same inputs on every run."""
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def qkv(B: int, H: int, T: int, D: int, seed: int, scale: float = 1.0):
    """Queries, keys and values, each (B, H, T, D), drawn one after another from one seed."""
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(B, H, T, D, generator=g) for _ in range(3))


# ------------------------------------------------------------------ comparing outputs
def same(a: Any, b: Any, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """True when a and b agree: tensors by shape and value, sequences element-wise."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape:
            return False
        if a.dtype == torch.bool or b.dtype == torch.bool:
            return bool(torch.equal(a.bool(), b.bool()))
        return bool(torch.allclose(a.detach().double().cpu(), b.detach().double().cpu(),
                                   atol=atol, rtol=rtol, equal_nan=True))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y, atol, rtol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=atol)
        except (TypeError, ValueError):
            return False
    return a == b


def describe_difference(expected: Any, got: Any) -> str:
    """One sentence saying how `got` differs from `expected` (shape first, then values)."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        diff = (got.detach().double().cpu() - expected.detach().double().cpu()).abs()
        diff = torch.nan_to_num(diff, nan=float("inf"))
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        return (f"the shape is right, but values differ: largest difference {diff.max().item():.3g} "
                f"at index {where} (expected {expected[where].item():.4f}, "
                f"got {got[where].item():.4f})")
    if isinstance(expected, (tuple, list)) and isinstance(got, (tuple, list)):
        if len(expected) != len(got):
            return f"expected {len(expected)} outputs, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            if not same(e, g):
                return f"output {i}: {describe_difference(e, g)}"
    return f"expected {expected!r}, got {got!r}"


def _clone(value: Any) -> Any:
    """A fresh copy of the inputs, so a solution that edits them in place can't fool the check."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def call_function(solution: Callable, case: Case) -> Any:
    """How most exercises are run: call the solution on the case's inputs."""
    return solution(*_clone(case.args), **_clone(case.kwargs))


# ------------------------------------------------------------------------ exercises
@dataclass
class Exercise:
    """One exercise: its reference solution, the cases to try and the mistakes to recognise.

    `run(solution, case)` produces the output to compare (by default it calls the solution
    with the case's arguments); exercises about classes (a KV cache, an MLP) pass a `run`
    that builds the object and drives it.
    """
    name: str                                  # shown to the student, e.g. "causal attention"
    reference: Any
    cases: Callable[[], list[Case]]            # built on demand (seeded), so import stays cheap
    mistakes: list[Mistake] = field(default_factory=list)
    run: Callable[[Any, Case], Any] = call_function
    atol: float = 1e-5
    rtol: float = 1e-4
    success: str = ""                          # one sentence on what passing shows

    def check(self, solution: Any) -> CheckResult:
        """Run `solution` on every case; pass, or say what differs and the likely mistake."""
        return _answer(self._check(solution))

    def _check(self, solution: Any) -> CheckResult:
        cases = self.cases()
        for case in cases:
            expected = self.run(self.reference, case)
            try:
                got = self.run(solution, case)
            except NotImplementedError:
                return CheckResult(self.name, NOT_IMPLEMENTED,
                                   "fill in the cell above (replace `raise NotImplementedError()` "
                                   "with your code), run it, then run this check again.")
            except Exception as err:  # the student's code failed: report it, don't crash the notebook
                where = _student_frame(err)
                return CheckResult(self.name, FAILED,
                                   f"on {case.name}, your code raised {type(err).__name__}: {err}"
                                   f"{where}. Compare the shapes you build with the ones in the text.")
            if got is None and expected is not None:
                return CheckResult(self.name, FAILED,
                                   f"on {case.name}, your code returned None: did you forget `return`?")
            if same(got, expected, self.atol, self.rtol):
                continue
            mistake = self.diagnose(got, case)
            message = f"on {case.name}, {describe_difference(expected, got)}."
            if mistake is not None:
                message += f" Likely mistake: {mistake.hint}"
            else:
                message += (" This is not one of the common mistakes this check knows; compare your "
                            "code with the text line by line, printing shapes as you go.")
            return CheckResult(self.name, FAILED, message, mistake.key if mistake else None)
        names = "; ".join(case.name for case in cases)
        success = f" {self.success}" if self.success else ""
        return CheckResult(self.name, PASSED,
                           f"all {len(cases)} cases agree with the package ({names}).{success}")

    def diagnose(self, got: Any, case: Case) -> Optional[Mistake]:
        """The first catalogued mistake whose output on `case` equals the student's, if any."""
        for mistake in self.mistakes:
            try:
                wrong = self.run(mistake.solution, case)
            except Exception:  # a mistake that cannot even run on this case explains nothing here
                continue
            if same(got, wrong, self.atol, self.rtol):
                return mistake
        return None


def _student_frame(err: BaseException) -> str:
    """' (line N of your cell)' for the innermost frame that comes from a notebook cell."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if ("ipykernel" in frame.filename or frame.filename.startswith("<")) and frame.line:
            return f" (line {frame.lineno} of your cell: `{(frame.line or '').strip()}`)"
    return ""


def check_answer(question: str, given: Any, expected: Any, explanation: str,
                 wrong: Optional[dict] = None) -> CheckResult:
    """For questions with one right value (a shape, a count, a choice).

    `wrong` maps tempting wrong answers to the hint for each; `explanation` says why the
    right answer is right and is shown once the answer is correct.
    """
    return _answer(_check_answer(question, given, expected, explanation, wrong))


def _check_answer(question: str, given: Any, expected: Any, explanation: str,
                  wrong: Optional[dict] = None) -> CheckResult:
    if callable(given):     # an answer written as a function (an nbgrader solution cell)
        try:
            given = given()
        except NotImplementedError:
            return CheckResult(question, NOT_IMPLEMENTED,
                               "fill in the cell above, run it, then run this check again.")
    if isinstance(given, list):     # a shape typed as a list is still a shape
        given = tuple(given)
    if given is ... or given is None:
        return CheckResult(question, NOT_IMPLEMENTED, "replace `...` with your answer and run the cell again.")
    if same(given, expected):
        return CheckResult(question, PASSED, f"{given!r} is right. {explanation}")
    for value, hint in (wrong or {}).items():
        if same(given, value):
            return CheckResult(question, FAILED, f"{given!r} is not it. {hint}", mistake=f"{question}:{value!r}")
    return CheckResult(question, FAILED, f"{given!r} is not it. Re-read the section and try again.")
