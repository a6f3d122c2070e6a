"""The machinery behind every exercise check: run the student's code, compare, name the mistake.

An `Exercise` knows three things:

* the *reference*: the right answer, the package's own public function or class (called
  through a thin adapter where the exercise's signature differs);
* the *cases*: inputs chosen to expose mistakes, edge cases included (T = 1, one head, ...);
* the *mistakes*: a catalogue of buggy variants of the reference, one per common mistake,
  each with the hint a teacher would give.

`Exercise.check(student)` runs the student's solution on every case. When an output differs
from the reference, it runs every catalogued mistake on the same case, and if the student's
output matches one of them, the answer names that mistake. Diagnosing by matching outputs
(rather than by reading the student's code) means any way of making the mistake is caught,
however the code is written.

The package holds no worked solution. Where it has no public function that computes an
exercise's answer (split heads, a sliding cache, BPE's encode, ...), and for the mistakes
whose code would contain the answer (a subclass of the solution, a function whose default
switches compute it), the code lives in the repository's `grading/solutions.py`, outside the
installed package, and the package ships only its *outputs on the visible cases*
(`expected/<stored>.pt`, written by `python tools/classroom.py expected`): such an exercise has
`reference=None` and such a mistake `solution=None`. The visible check compares with those
outputs; the hidden tests (`grading/hidden.py`) run the code itself on inputs drawn when they
grade.

A solution that still raises `NotImplementedError` (what nbgrader's student edition puts in
place of the solution) answers "not implemented yet" instead of failing.

A check only *answers*; it never stops the notebook, so a student can run every cell. It is
practice feedback, not the grade: a student's kernel can reach and replace it. Graded courses
score the hidden tests that `tools/classroom.py` adds at generation time (`grading/hidden.py`:
inputs drawn at grading time, references loaded privately, forbidden calls watched), which read
no environment variable. MINIGPT_GRADING=1 still makes a check that did not pass raise
`ExerciseFailed` instead of answering, for an instructor's own nbgrader course that uses the
visible checks as its tests; it is not what `make grade` relies on.
"""

from __future__ import annotations

import copy
import html
import math
import numbers
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..language import language, tr

PASSED, FAILED, NOT_IMPLEMENTED, RECORDED = "passed", "failed", "not implemented", "recorded"
EXPECTED = Path(__file__).resolve().parent / "expected"     # the stored outputs (package data)


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
    """A common mistake: `solution` is a working solution with exactly that mistake made, or
    None when that code would contain the answer: its outputs on the visible cases are then
    stored with the exercise's (`Exercise.stored`) and its code is in grading/solutions.py."""
    key: str                        # stable id, e.g. "attention.no_scale"
    hint: str                       # what to tell the student, as a question or a fix
    solution: Any = None            # same kind of object the student hands in
    # A mistake that shows as a crash: a student's error of one of these types is put down to
    # it on a case where `solution` crashes too (however the student's code words the error).
    raises: tuple = ()


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
        mark = {PASSED: "✓ Passed", FAILED: "✗ Not yet", NOT_IMPLEMENTED: "… Not implemented yet",
                RECORDED: "✎ Recorded"}
        return tr("{mark} — {exercise}: {message}", mark=tr(mark[self.status]),
                  exercise=exercise_title(self.exercise), message=self.message)

    def _repr_html_(self) -> str:
        colour = {PASSED: "#1a7f37", FAILED: "#cf222e", NOT_IMPLEMENTED: "#9a6700",
                  RECORDED: "#0969da"}[self.status]
        return (f'<div style="border-left:4px solid {colour};padding:0.3em 0.8em">'
                f"{html.escape(repr(self))}</div>")


def exercise_title(name: str) -> str:
    """An exercise's name, or "question 11.3", in the reader's language."""
    number = re.fullmatch(r"question (\S+)", name)
    return tr("question {number}", number=number.group(1)) if number else tr(name)


def join(*sentences: str) -> str:
    """Sentences one after the other: a space between them in English, none in Chinese."""
    return ("" if language() == "zh" else " ").join(s for s in sentences if s)


# ------------------------------------------------------------------- seeded test inputs
def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """A normal tensor from its own seeded generator: the same inputs on every run."""
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def qkv(B: int, H: int, T: int, D: int, seed: int, scale: float = 1.0):
    """Queries, keys and values, each (B, H, T, D), drawn one after another from one seed."""
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(B, H, T, D, generator=g) for _ in range(3))


# ------------------------------------------------------------------ comparing outputs
# Dtypes are compared strictly: an answer must have the reference's dtype. A bool or integer
# tensor is never "close" to a float one, and float64 is refused too, although its values
# may be right: every tensor the book's model sees is float32, and a float64 one either
# promotes everything it touches (twice the memory, a fraction of the speed on a GPU) or
# stops nn.Linear with "mat1 and mat2 must have the same dtype". The answer says so, and
# says whether the values would have been right. Complex answers and tensors on the meta
# device (a shape with no values) fail with a message of their own.
def _kind(t: torch.Tensor) -> str:
    if t.dtype == torch.bool:
        return "bool"
    if t.is_complex():
        return "complex"
    return "floating-point" if t.is_floating_point() else "integer"


def _values(t: torch.Tensor) -> torch.Tensor:
    """The values as a CPU tensor comparable across dtypes (float64, or int64 for integers)."""
    t = t.detach().cpu()
    return t.long() if _kind(t) in ("bool", "integer") else t.double()


def _values_agree(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    if _kind(a) in ("bool", "integer") or _kind(b) in ("bool", "integer"):
        return bool(torch.equal(_values(a), _values(b)))
    return bool(torch.allclose(_values(a), _values(b), atol=atol, rtol=rtol, equal_nan=True))


def _comparable(got: torch.Tensor, expected: torch.Tensor) -> bool:
    return (got.device.type != "meta" and expected.device.type != "meta" and not got.is_complex()
            and got.dtype == expected.dtype and got.shape == expected.shape)


def _is_number(x: Any) -> bool:
    """A real number, NumPy's included (np.float64, np.int64), never a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def same(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """True when the answer `got` agrees with `expected`: tensors by device, dtype, shape and
    value (floats to the tolerances, NaN only where NaN is expected; integers and bools exactly),
    sequences and dicts element-wise, numbers by value (a bool only where a bool is expected)."""
    if isinstance(got, torch.Tensor) or isinstance(expected, torch.Tensor):
        if not (isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor)):
            return False
        return _comparable(got, expected) and _values_agree(got, expected, atol, rtol)
    if isinstance(got, (tuple, list)) and isinstance(expected, (tuple, list)):
        return len(got) == len(expected) and all(same(g, e, atol, rtol) for g, e in zip(got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k], atol, rtol) for k in got)
    if isinstance(got, bool) or isinstance(expected, bool):
        return isinstance(got, bool) and isinstance(expected, bool) and got == expected
    if _is_number(got) and _is_number(expected):
        if isinstance(expected, numbers.Integral):      # an id or a count: a whole number, not 5.0
            return isinstance(got, numbers.Integral) and int(got) == int(expected)
        got, expected = float(got), float(expected)
        return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol) or (
            math.isnan(got) and math.isnan(expected))
    if _is_number(got) != _is_number(expected):     # a number for a string, a string for a number
        return False
    if type(got) is not type(expected):             # an object that "equals" everything is no answer
        return False
    try:
        return bool(got == expected)
    except Exception:   # e.g. a numpy array against a string: not equal, whatever it is
        return False


def _format(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        if x.numel() != 1 or x.device.type == "meta":
            return tr("a {dtype} tensor of shape {shape}", dtype=x.dtype, shape=tuple(x.shape))
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, float):
        return repr(x)
    return "NaN" if math.isnan(x) else f"{x:.4f}"


def _tensor_form_difference(expected: torch.Tensor, got: torch.Tensor) -> Optional[str]:
    """What is wrong with `got` before its values can be compared (device, shape, dtype), or None."""
    if got.device.type == "meta":
        return tr("your tensor is on the meta device: it has a shape, {shape}, but no values. Build "
                  "the answer from the inputs (they are on the CPU)", shape=tuple(got.shape))
    if got.shape != expected.shape:
        return tr("expected shape {expected}, got {got}", expected=tuple(expected.shape), got=tuple(got.shape))
    if got.dtype == expected.dtype:
        return None
    if got.is_complex():
        return tr("your tensor is complex ({got}); the answer is a real {expected} tensor. A complex "
                  "value usually comes from a power or log of a negative number, or from "
                  "torch.view_as_complex: keep the computation real", got=got.dtype, expected=expected.dtype)
    kinds = {"bool": "a bool tensor (True/False)", "integer": "an integer tensor",
             "floating-point": "a floating-point tensor"}
    values = tr("its values would agree with the package's" if _values_agree(got, expected, 1e-5, 1e-4)
                else "its values differ too")
    if _kind(got) == _kind(expected) == "floating-point":
        return tr("expected {expected}, got {got} ({values}): the model computes in {expected}, so "
                  "build the answer in it (e.g. .to({expected}))", expected=expected.dtype, got=got.dtype,
                  values=values)
    return tr("expected {kind} of dtype {expected}, got {got} ({values})", kind=tr(kinds[_kind(expected)]),
              expected=expected.dtype, got=got.dtype, values=values)


def _value_difference(expected: torch.Tensor, got: torch.Tensor) -> str:
    """Where the values of two tensors of the same shape and dtype differ, in words."""
    e, g = _values(expected), _values(got)
    if expected.dim() == 0:
        return tr("expected {expected}, got {got}", expected=_format(expected), got=_format(got))
    if _kind(expected) in ("bool", "integer"):
        wrong = e != g
        where = tuple(int(i) for i in torch.unravel_index(wrong.flatten().nonzero()[0, 0], wrong.shape))
        return tr("{wrong} of {total} entries differ, the first at index {where}: expected {expected}, "
                  "got {got}", wrong=int(wrong.sum()), total=wrong.numel(), where=where,
                  expected=_format(expected[where]), got=_format(got[where]))
    for bad, name in ((g.isnan() & ~e.isnan(), "NaN"), (g.isinf() & ~e.isinf(), "inf")):
        if bad.any():
            where = tuple(int(i) for i in torch.unravel_index(bad.flatten().nonzero()[0, 0], bad.shape))
            return tr("got {name} in {bad} of {total} entries, the first at index {where} (expected "
                      "{expected})", name=name, bad=int(bad.sum()), total=bad.numel(), where=where,
                      expected=_format(expected[where]))
    diff = torch.nan_to_num((g - e).abs(), nan=float("inf"))
    where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    return tr("the shape is right, but values differ: largest difference {diff} at index {where} "
              "(expected {expected}, got {got})", diff=f"{diff.max().item():.3g}", where=where,
              expected=f"{expected[where].item():.4f}", got=f"{got[where].item():.4f}")


def describe_difference(expected: Any, got: Any) -> str:
    """One sentence saying how `got` differs from `expected` (form first: type, device, shape,
    dtype; then values)."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            what = tr("a {kind} of {n} items", kind=type(got).__name__, n=len(got)) \
                if isinstance(got, (tuple, list)) else type(got).__name__
            return tr("expected a tensor of shape {shape}, got {what}", shape=tuple(expected.shape), what=what)
        return _tensor_form_difference(expected, got) or _value_difference(expected, got)
    if isinstance(expected, (tuple, list)) and isinstance(got, (tuple, list)):
        if len(expected) != len(got):
            return tr("expected {expected} outputs, got {got}", expected=len(expected), got=len(got))
        for i, (e, g) in enumerate(zip(expected, got)):
            if not same(g, e):
                return tr("output {i}: {difference}", i=i, difference=describe_difference(e, g))
    if isinstance(expected, dict) and isinstance(got, dict) and expected.keys() == got.keys():
        for key in expected:
            if not same(got[key], expected[key]):
                return f"{key}: {describe_difference(expected[key], got[key])}"
    if isinstance(got, torch.Tensor) and got.device.type == "meta":
        return tr("your tensor is on the meta device: it has a shape but no values")
    if isinstance(expected, (tuple, list)) and isinstance(got, torch.Tensor):
        return tr("expected a {kind} of {n} items, got {got}: return a {kind} (e.g. with .tolist())",
                  kind=type(expected).__name__, n=len(expected), got=_format(got))
    if _is_number(expected) and isinstance(got, torch.Tensor) and got.numel() == 1 and got.device.type != "meta":
        return tr("expected the number {expected}, got a tensor holding {got}: return a Python number "
                  "(e.g. with .item())", expected=_format(expected), got=_format(got))
    if _is_number(expected) and isinstance(got, numbers.Complex) and not isinstance(got, numbers.Real):
        return tr("expected the real number {expected}, got the complex number {got}: keep the "
                  "computation real", expected=_format(expected), got=repr(got))
    if (isinstance(expected, numbers.Integral) and not isinstance(expected, bool)
            and _is_number(got) and not isinstance(got, numbers.Integral)):
        return tr("expected the whole number {expected}, got the {kind} {got}: return an int "
                  "(e.g. int(x) or tensor.item() of an integer tensor)", expected=expected,
                  kind=type(got).__name__, got=_format(float(got)))
    return tr("expected {expected}, got {got}", expected=_format(expected), got=_format(got))


class WrongForm(Exception):
    """Raised by a check's own `run` when the answer cannot even be read (a bool where a number
    is due, a tensor with no values): the message is shown as is, not as a crash of your code."""


def require_tensor_like(got: Any, like: torch.Tensor) -> torch.Tensor:
    """`got`, when it is a tensor of like's shape and dtype holding real, non-NaN values; else
    WrongForm saying what is wrong (for a check's `run` that computes on the answer)."""
    if not isinstance(got, torch.Tensor):
        raise WrongForm(describe_difference(like, got))
    problem = _tensor_form_difference(like, got)
    if problem:
        raise WrongForm(problem)
    if got.is_floating_point() and got.isnan().any():
        raise WrongForm(tr("your output holds NaN in {bad} of {total} entries", bad=int(got.isnan().sum()),
                           total=got.numel()))
    return got


def require_number(value: Any, what: str) -> float:
    """`value` as a float when it is a real number (an int, a float or a one-element real
    tensor, never a bool); else WrongForm naming `what`."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.device.type != "meta" \
            and value.dtype != torch.bool and not value.is_complex():
        value = value.item()
    if isinstance(value, torch.Tensor) and value.device.type == "meta":
        raise WrongForm(tr("{what} is a tensor on the meta device: it has a shape but no values", what=tr(what)))
    if isinstance(value, torch.Tensor):
        raise WrongForm(tr("{what} is a {dtype} tensor of shape {shape}; it must be a real number",
                           what=tr(what), dtype=value.dtype, shape=tuple(value.shape)))
    if not _is_number(value):
        raise WrongForm(tr("{what} is a {kind} ({value}); it must be a real number", what=tr(what),
                           kind=type(value).__name__, value=repr(value)))
    if math.isnan(value):
        raise WrongForm(tr("{what} is NaN", what=tr(what)))
    return float(value)


def _sentence(text: str) -> str:
    """`text` without the full stop it may end with, so that ours does not double it."""
    return text.rstrip().rstrip(".。") if not text.rstrip().endswith("...") else text.rstrip()


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
class StaleOutputs(RuntimeError):
    """The stored outputs of an exercise do not belong to its cases (a packaging error)."""


_STORED: dict = {}


def stored_outputs(name: str) -> dict:
    """The stored outputs `expected/<name>.pt`: {"cases": [case names], "reference": [output
    per case] or None, "mistakes": {key: [{"output": value} or {"raises": [type, message]}]}}."""
    if name not in _STORED:
        path = EXPECTED / f"{name}.pt"
        if not path.is_file():
            raise StaleOutputs(f"the stored outputs {path.name} are missing from the package: "
                               f"run `python tools/classroom.py expected` in the repository")
        _STORED[name] = torch.load(path, map_location="cpu", weights_only=True)
    return _STORED[name]


@dataclass
class Exercise:
    """One exercise: its reference solution, the cases to try and the mistakes to recognise.

    `run(solution, case)` produces the output to compare (by default it calls the solution
    with the case's arguments); exercises about classes (a KV cache, an MLP) pass a `run`
    that builds the object and drives it. `reference=None` (and a mistake's `solution=None`)
    means the outputs on the cases are stored in `expected/<stored>.pt` (see the module's
    docstring).
    """
    name: str                                  # shown to the student, e.g. "causal attention"
    reference: Any
    cases: Callable[[], list[Case]]            # built on demand (seeded), so import stays cheap
    mistakes: list[Mistake] = field(default_factory=list)
    run: Callable[[Any, Case], Any] = call_function
    atol: float = 1e-5
    rtol: float = 1e-4
    success: str = ""                          # one sentence on what passing shows
    stored: str = ""                           # the name of the stored outputs (the constant's name)

    def check(self, solution: Any) -> CheckResult:
        """Run `solution` on every case; pass, or say what differs and the likely mistake."""
        return _answer(self._check(solution))

    def _outputs(self, cases: list[Case]) -> Optional[dict]:
        """The stored outputs, checked against the cases they were made for (None if none)."""
        if not self.stored:
            return None
        data = stored_outputs(self.stored)
        if data["cases"] != [case.name for case in cases]:
            raise StaleOutputs(f"the stored outputs of {self.name!r} were made for other cases: "
                               f"run `python tools/classroom.py expected` in the repository")
        return data

    def expected(self, case: Case, index: Optional[int] = None, data: Optional[dict] = None) -> Any:
        """The right output on `case`: the reference's, or the stored one for the visible case
        number `index`."""
        if self.reference is not None:
            return self.run(self.reference, case)
        if index is None:
            raise StaleOutputs(f"{self.name!r} has no reference in the package: its right outputs "
                               f"are known for the visible cases only")
        data = data if data is not None else self._outputs(self.cases())
        return data["reference"][index]

    def _check(self, solution: Any) -> CheckResult:
        cases = self.cases()
        data = self._outputs(cases)
        for index, case in enumerate(cases):
            # the student's code first, on its own copy of the inputs: the right answer is not
            # yet in any frame it could read, and changing the inputs in place changes nothing
            try:
                got = self.run(solution, copy.deepcopy(case))
            except NotImplementedError as err:
                if _raised_by_torch(err):   # e.g. an operator the meta device has no kernel for
                    return self._raised(err, case, index)
                return CheckResult(self.name, NOT_IMPLEMENTED,
                                   tr("fill in the cell above (replace `raise NotImplementedError()` "
                                      "with your code), run it, then run this check again."))
            except WrongForm as err:
                return CheckResult(self.name, FAILED, tr("on {case}, {problem}.", case=tr(case.name),
                                                         problem=_sentence(str(err))))
            except Exception as err:  # the student's code failed: report it, don't crash the notebook
                return self._raised(err, case, index)
            expected = self.expected(case, index, data)
            if got is None and expected is not None:
                return CheckResult(self.name, FAILED,
                                   tr("on {case}, your code returned None: did you forget `return`?",
                                      case=tr(case.name)))
            if same(got, expected, self.atol, self.rtol):
                continue
            mistake = self.diagnose(got, case, index)
            message = tr("on {case}, {problem}.", case=tr(case.name),
                         problem=_sentence(describe_difference(expected, got)))
            if mistake is not None:
                message = join(message, tr("Likely mistake: {hint}", hint=tr(mistake.hint)))
            else:
                message = join(message, tr("This is not one of the common mistakes this check knows; compare "
                                           "your code with the text line by line, printing shapes as you go."))
            return CheckResult(self.name, FAILED, message, mistake.key if mistake else None)
        names = tr("; ").join(tr(case.name) for case in cases)
        return CheckResult(self.name, PASSED,
                           join(tr("all {n} cases agree with the package ({names}).", n=len(cases), names=names),
                                tr(self.success) if self.success else ""))

    def _raised(self, err: Exception, case: Case, index: Optional[int] = None) -> CheckResult:
        """The answer when the student's code raised: the error, where, and what it suggests."""
        text = _sentence(f"{type(err).__name__}: {err}")       # Python's own words, as Python says them
        message = tr("on {case}, your code raised {error}{where}.", case=tr(case.name), error=text,
                     where=_student_frame(err))
        mistake = self.diagnose_error(err, case, index)
        if mistake is not None:
            hint = tr("Likely mistake: {hint}", hint=tr(mistake.hint))
        elif isinstance(err, TypeError) and case.kwargs and "keyword argument" in str(err):
            names = ", ".join(f"{name}=..." for name in case.kwargs)
            hint = tr("The check passes these arguments by keyword ({names}): give your function's "
                      "parameters exactly these names.", names=names)
        elif "view size is not compatible" in str(err):
            hint = tr("After a transpose the tensor's memory is no longer laid out in the new order, so "
                      ".view() cannot regroup it: call .contiguous() first (or use .reshape()), as in "
                      "y.transpose(1, 2).contiguous().view(B, T, C).")
        elif isinstance(err, TypeError) and "argument" in str(err):
            hint = tr("Check that your function takes the arguments the exercise names, in that order.")
        else:
            hint = tr("Compare the shapes you build with the ones in the text.")
        message = join(message, hint)
        return CheckResult(self.name, FAILED, message, mistake.key if mistake else None)

    def _mistake_records(self, case: Case, index: Optional[int]):
        """(mistake, {"output": ...} or {"raises": [type name, message]}) for every catalogued
        mistake that can be judged on `case`: by running its code, or from the stored outputs
        of visible case `index` when the package holds no code for it."""
        data = None
        for mistake in self.mistakes:
            if mistake.solution is None:
                if index is None or not self.stored:
                    continue
                data = data if data is not None else stored_outputs(self.stored)
                yield mistake, data["mistakes"][mistake.key][index]
                continue
            try:
                yield mistake, {"output": self.run(mistake.solution, case)}
            except Exception as wrong:
                yield mistake, {"raises": [type(wrong).__name__, str(wrong)]}

    def diagnose(self, got: Any, case: Case, index: Optional[int] = None) -> Optional[Mistake]:
        """The first catalogued mistake whose output on `case` equals the student's, if any
        (`index`: the visible case's number, for the mistakes known by their stored outputs)."""
        for mistake, record in self._mistake_records(case, index):
            # a mistake that cannot even run on this case explains nothing here
            if "output" in record and same(got, record["output"], self.atol, self.rtol):
                return mistake
        return None

    def diagnose_error(self, err: Exception, case: Case, index: Optional[int] = None) -> Optional[Mistake]:
        """The first catalogued mistake that raises the same error (type and message, or a type
        it names in `raises`) on `case`: some mistakes show only as a crash (a cache that
        overflows, an index past the table)."""
        for mistake, record in self._mistake_records(case, index):
            if "raises" in record:
                kind, message = record["raises"]
                if (type(err).__name__ == kind and str(err) == message) or isinstance(err, mistake.raises):
                    return mistake
        return None


def _raised_by_torch(err: BaseException) -> bool:
    """True when a NotImplementedError comes from inside torch (an operator the meta device has
    no kernel for), not from a `raise NotImplementedError()` line (the student edition's stub)."""
    frames = traceback.extract_tb(err.__traceback__)
    line = (frames[-1].line or "") if frames else ""
    if "NotImplementedError" in line:
        return False
    return bool(line) or bool(str(err))


def _student_frame(err: BaseException) -> str:
    """' (line N of your cell)' for the innermost frame that comes from a notebook cell."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if ("ipykernel" in frame.filename or frame.filename.startswith("<")) and frame.line:
            return tr(" (line {line} of your cell: `{code}`)", line=frame.lineno, code=(frame.line or "").strip())
    return ""


def check_answer(question: str, given: Any, expected: Any, explanation: str,
                 wrong: Optional[dict] = None, form: str = "") -> CheckResult:
    """For questions with one right value (a shape, a count, a choice).

    `wrong` maps tempting wrong answers to the hint for each; `explanation` says why the
    right answer is right and is shown once the answer is correct; `form` says what a right
    answer looks like ("one letter, 'a' to 'd'"), shown with any other wrong answer.
    """
    return _answer(_check_answer(question, given, expected, explanation, wrong, form))


def read_answer(question: str, given: Any) -> tuple[Any, Optional[CheckResult]]:
    """A question's answer as a plain value, or the result to show when there is none yet:
    a function is called (an nbgrader solution cell), a list or torch.Size is a shape, a
    0-d tensor is its number."""
    if callable(given):     # an answer written as a function (an nbgrader solution cell)
        try:
            given = given()
        except NotImplementedError:
            return None, CheckResult(question, NOT_IMPLEMENTED, not_implemented_message())
        except Exception as err:
            return None, CheckResult(question, FAILED, raised_message(err))
    if isinstance(given, (list, torch.Size)):     # a shape typed as a list is still a shape
        given = tuple(given)
    if isinstance(given, tuple):    # a shape of 0-d tensors (tuple(torch.tensor([2, 8]))) is a shape too
        given = tuple(_plain_number(v) for v in given)
    given = _plain_number(given)    # a count computed with torch is still a count
    if given is ... or given is None:
        return None, CheckResult(question, NOT_IMPLEMENTED,
                                 tr("replace `...` with your answer and run the cell again."))
    return given, None


def _plain_number(value: Any) -> Any:
    """A 0-d tensor's number; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.device.type != "meta":
        return value.item()
    return value


def _check_answer(question: str, given: Any, expected: Any, explanation: str,
                  wrong: Optional[dict] = None, form: str = "") -> CheckResult:
    given, unanswered = read_answer(question, given)
    if unanswered is not None:
        return unanswered
    if same(given, expected):
        return CheckResult(question, PASSED, join(tr("{given} is right.", given=repr(given)), tr(explanation)))
    for value, hint in (wrong or {}).items():
        if same(given, value):
            return CheckResult(question, FAILED, join(tr("{given} is not it.", given=repr(given)), tr(hint)),
                               mistake=f"{question}:{value!r}")
    shape = tr("The answer is {form}.", form=_sentence(tr(form))) if form else ""
    return CheckResult(question, FAILED, join(tr("{given} is not it.", given=repr(given)), shape,
                                              tr("Re-read the section and try again.")))


def not_implemented_message() -> str:
    """What a question's check says while its answer cell still raises NotImplementedError."""
    return tr("fill in the cell above, run it, then run this check again.")


def raised_message(err: BaseException) -> str:
    """What a question's check says when the answer function raised."""
    return tr("your function raised {error}{where}.", error=_sentence(f"{type(err).__name__}: {err}"),
              where=_student_frame(err))
