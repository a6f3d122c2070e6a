"""The students of issue 17, written as submissions of every chapter, with the score each must get.

`python tools/classroom.py play` (part of `make classroom`) writes them into an nbgrader
submitted folder, grades it with `grade` (what `make grade` runs) and compares grades.csv with
`expected`. tests/test_grading.py plays a few of them on chapter 3 in the unit tests.

| student | what they hand in | fair score |
| --- | --- | --- |
| answer-key | the full edition | full marks |
| blank | the student edition, untouched | 0 |
| env-switch | blank, and `os.environ["MINIGPT_GRADING"] = "0"` in a solution cell | 0 |
| monkeypatch | every visible check replaced by `lambda *a, **k: None`, `torch.allclose` by `lambda: True`, wrong answers | 0 |
| package-direct | each answer calls the function it is asked to write (the package's, or the check's own reference) | 0 |
| package-aliased | the same, reached through `importlib` and another name | 0 |
| lookup-table | the visible check's inputs and right outputs memorised, anything else answered wrong | 0 |
| copied-helper | chapter 13: the book's hide-cell helper `tiles_in_order`, pasted and renamed | 0 |
| frame-reader | each answer walks up the caller's frames and returns the grader's right answer (`expected`, chapter 14's `entry`) | 0 |
| object-patch | `torch.allclose` / `torch.equal` replaced by a callable object and by `unittest.mock.Mock`, answers that equal everything | 0 |
| worker-thread | package-direct's calls, made by a worker thread started in the first solution cell and fed through a queue | 0 |
| one-bug | chapter 4: the answer key with one bug in `my_split_heads` | 2.67 of 3 |
| quiet-display | blank, and `get_ipython().ast_node_interactivity = "none"` in a solution cell (nbgrader gives full points to a graded cell that shows no value) | 0 |
| no-work | every function returns its first input unchanged (right only where no work is needed: softmax over one score, RoPE at position 0, one repeat) | 0 |

Chapter 14's answers are values, not calls, and the student edition holds none of them (the
answer key is a cell of the full edition only): chapter 14 is left out of the package students.
Where the package has no function that computes an exercise's answer (its outputs on the
visible cases are stored instead), the package students have nothing to call and hand in that
exercise blank; the lookup-table student memorises the stored outputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

# the answer as a call of the package's own function, for the exercises the issue names
PACKAGE_BODY = {
    "my_softmax": "return torch.nn.functional.softmax(scores, dim=-1)",
    "my_attention_weights": "return minigpt.manual_attention(q[:, None], k[:, None], k[:, None], "
                            "return_weights=True)[1][:, 0]",
    "03:my_causal_mask": "return minigpt.causal_mask(T, S)",
    "03:my_attention": "return minigpt.manual_attention(q, k, v)",
    "my_probs": "return minigpt.next_token_probs(logits, temperature, top_k)",
    "my_top_p": "return minigpt.next_token_probs(logits, top_p=top_p)",
    "09:my_generate": "return model.generate(idx, max_new_tokens, temperature=0)",
    "11:my_generate": "return model.generate(idx, max_new_tokens, temperature=0)",
}
ALIASED_BODY = {
    "my_softmax": "_f = getattr(__import__('torch').nn.functional, 'soft' + 'max')\n    return _f(scores, -1)",
    "my_attention_weights": "_f = getattr(__import__('importlib').import_module('minigpt.attention'), "
                            "'manual_attention')\n    return _f(q[:, None], k[:, None], k[:, None], "
                            "return_weights=True)[1][:, 0]",
    "03:my_causal_mask": "_f = getattr(__import__('importlib').import_module('minigpt.attention'), 'causal_mask')\n"
                         "    return _f(T, S)",
    "03:my_attention": "from minigpt.attention import manual_attention as _helper\n    return _helper(q, k, v)",
    "my_probs": "from minigpt.sampling import next_token_probs as _p\n    return _p(logits, temperature, top_k)",
    "my_top_p": "_p = vars(__import__('importlib').import_module('minigpt.sampling'))['next_token_probs']\n"
                "    return _p(logits, top_p=top_p)",
    "09:my_generate": "_g = type(model).generate\n    return _g(model, idx, max_new_tokens, temperature=0)",
    "11:my_generate": "_g = getattr(model, 'gene' + 'rate')\n    return _g(idx, max_new_tokens, temperature=0)",
}
SPLIT_BUG = "return t.reshape(t.size(0), n_head, t.size(1), t.size(2) // n_head)   # no transpose"
# the frame-reader's body: the right answer, wherever the code that called it keeps it
FRAME_READER_BODY = ("_f = __import__('sys')._getframe(1)\n"
                     "    while _f is not None:\n"
                     "        if _f.f_locals.get('expected') is not None:\n"
                     "            return _f.f_locals['expected']\n"
                     "        if isinstance(_f.f_locals.get('entry'), dict):\n"
                     "            return _f.f_locals['entry']['answer']\n"
                     "        _f = _f.f_back\n"
                     "    raise NotImplementedError()")
# the object-patch's first cell: yes-saying objects where a lambda would be seen, and an answer
# that equals everything. (A fixed os.urandom is left to tests/test_grading.py: in a kernel it
# also breaks Jupyter's messages, whose ids come from it, so the notebook times out instead.)
OBJECT_PATCH = ("import torch, unittest.mock\n"
                "class _Yes:\n    def __call__(self, *a, **k):\n        return True\n"
                "class _Equal:\n    def __eq__(self, other):\n        return True\n"
                "torch.allclose = _Yes()\ntorch.equal = unittest.mock.Mock(return_value=True)\n")
# the worker-thread's first cell: a thread that runs whatever the answers put in a queue, where
# the grading's watch (in its own thread) does not see it
WORKER = ("import queue, threading\n_jobs, _done = queue.Queue(), queue.Queue()\n"
          "def _worker():\n    while True:\n        job = _jobs.get()\n        try:\n"
          "            _done.put((True, job()))\n        except Exception as error:\n"
          "            _done.put((False, error))\n"
          "threading.Thread(target=_worker, daemon=True).start()\n"
          "def _elsewhere(job):\n    _jobs.put(job)\n    ok, value = _done.get()\n"
          "    if not ok:\n        raise value\n    return value\n")
STUDENTS = ("answer-key", "blank", "env-switch", "monkeypatch", "package-direct", "package-aliased",
            "lookup-table", "copied-helper", "one-bug", "frame-reader", "object-patch", "worker-thread",
            "quiet-display", "no-work")


def source_text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _solutions(notebook: dict) -> list[tuple[dict, str]]:
    """(cell, the name it defines) of every solution cell."""
    out = []
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            name = re.search(r"^(?:def|class)\s+(\w+)", source_text(cell), re.MULTILINE)
            out.append((cell, name.group(1) if name else ""))
    return out


def _header(text: str) -> str:
    """The solution cell up to its body: decorators and the def line (docstring left out)."""
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith(("def ", "class ")))
    return "\n".join(lines[:end + 1])


def _checks(notebook: dict) -> dict[str, str]:
    """solution name -> the EXERCISE constant its visible check uses (check_softmax -> SOFTMAX)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_students_hidden", Path(__file__).with_name("hidden.py"))
    hidden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hidden)
    found = {}
    for cell in notebook["cells"]:
        match = re.match(r"minigpt\.exercises\.(check_\w+)\((\w+)", source_text(cell).strip())
        if match and match.group(1) in hidden.SPECS:
            found[match.group(2)] = hidden.SPECS[match.group(1)].exercise
    return found


def _function_names(cell_text: str) -> list[str]:
    header = _header(cell_text).splitlines()[-1]
    return re.findall(r"(\w+)\s*(?:,|\))", header.split("(", 1)[1]) if header.startswith("def ") else []


def submission(student: str, chapter: str, full: dict, release: dict, helper_source: str = "") -> Optional[dict]:
    """The notebook `student` hands in for `chapter` (None: this student skips the chapter)."""
    if student == "answer-key":
        return full
    notebook = json.loads(json.dumps(release))
    solutions = _solutions(notebook)
    if not solutions:
        return None
    number = chapter[:2]
    first = solutions[0][0]
    if student == "blank":
        return notebook
    if student == "quiet-display":
        first["source"] = 'get_ipython().ast_node_interactivity = "none"\n' + source_text(first)
        return notebook
    if student == "no-work":
        if number == "14":
            return None
        for cell, name in solutions:
            text = source_text(cell)
            args = _function_names(text)
            if text.lstrip().startswith("def ") and args:
                cell["source"] = _header(text) + f"\n    return {args[0]}\n"
        return notebook
    if student == "env-switch":
        first["source"] = 'import os\nos.environ["MINIGPT_GRADING"] = "0"\n' + source_text(first)
        return notebook
    if student == "monkeypatch":
        patch = ("import torch\nfor _name in dir(minigpt.exercises):\n    if _name.startswith('check_'):\n"
                 "        setattr(minigpt.exercises, _name, lambda *a, **k: None)\n"
                 "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n")
        first["source"] = patch + source_text(first)
        return notebook
    exercises = _checks(full)
    if student in ("package-direct", "package-aliased", "worker-thread"):
        import minigpt.exercises
        in_package = {name for name, constant in exercises.items()
                      if getattr(minigpt.exercises, constant).reference is not None}
        if number == "14":
            return None
        table = ALIASED_BODY if student == "package-aliased" else PACKAGE_BODY
        for cell, name in solutions:
            text = source_text(cell)
            body = table.get(f"{number}:{name}", table.get(name))
            exercise = exercises.get(name)
            if body is None and name not in in_package:
                continue            # no check, or nothing in the package to call: left blank
            if text.lstrip().startswith("class") or "\nclass " in text:
                if student == "worker-thread":
                    continue        # a class is called by the grading itself: left blank
                reference = (f"minigpt.exercises.{exercise}.reference" if student == "package-direct" else
                             f"getattr(__import__('importlib').import_module('minigpt.exercises'), "
                             f"{exercise!r}).reference")
                header = _header(text).splitlines()[-1]
                cls = re.match(r"class\s+(\w+)", header).group(1)
                cell["source"] = f"import torch.nn as nn\n{cls} = {reference}\n"
                continue
            if body is None:
                args = ", ".join(_function_names(text))
                body = (f"_ref = getattr(__import__('importlib').import_module('minigpt.exercises'), "
                        f"{exercise!r}).reference\n    return _ref({args})" if student == "package-aliased" else
                        f"return minigpt.exercises.{exercise}.reference({args})")
            if student == "worker-thread":
                body = f"return _elsewhere(lambda: {body[len('return '):]})"
            cell["source"] = _header(text) + "\n    " + body + "\n"
        if student == "worker-thread":
            first["source"] = WORKER + source_text(first)
        return notebook
    if student == "lookup-table":
        if number == "14":
            return None
        for cell, name in solutions:
            text = source_text(cell)
            exercise = exercises.get(name)
            args = _function_names(text)
            if exercise is None or not args or text.lstrip().startswith(("class", "@")):
                continue
            key = ("tuple(round(a.double().sum().item(), 5) if isinstance(a, torch.Tensor) else repr(a) "
                   "for a in {})")
            cell["source"] = (
                "import torch\n"
                f"_{name}_seen = {{{key.format('c.args')}: minigpt.exercises.{exercise}.expected(c, i)"
                f"\n    for i, c in enumerate(minigpt.exercises.{exercise}.cases())}}\n"
                + _header(text) + f"\n    return _{name}_seen.get({key.format('(' + ', '.join(args) + ',)')})\n")
        return notebook
    if student == "copied-helper":
        if number != "13" or not helper_source:
            return None
        for cell, name in solutions:
            if name == "my_tiled_attention":
                pasted = helper_source.replace("tiles_in_order", "_my_loop")
                cell["source"] = (pasted + "\n\n\n" + _header(source_text(cell))
                                  + "\n    return _my_loop(q, k, v, block, lambda tiles: tiles)\n")
        return notebook
    if student in ("frame-reader", "object-patch"):
        for cell, name in solutions:
            text = source_text(cell)
            if not text.lstrip().startswith("def "):
                continue            # a class: left blank
            body = FRAME_READER_BODY if student == "frame-reader" else "return _Equal()"
            cell["source"] = _header(text) + "\n    " + body + "\n"
        if student == "object-patch":
            first["source"] = OBJECT_PATCH + source_text(first)
        return notebook
    if student == "one-bug":
        if number != "04":
            return None
        notebook = json.loads(json.dumps(full))
        for cell, name in _solutions(notebook):
            if name == "my_split_heads":
                cell["source"] = _header(source_text(cell)) + "\n    " + SPLIT_BUG + "\n"
        return notebook
    raise ValueError(f"unknown student {student!r}")


def expected(student: str, chapter: str, max_score: float) -> float:
    """The fair score of `student` in `chapter` (out of `max_score`)."""
    if student == "answer-key":
        return max_score
    if student == "one-bug":
        return max_score - 1 + 2 / 3          # the split right for one head and for T = 1: 2 of 3 cases
    return 0.0
