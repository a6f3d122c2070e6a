"""The hidden tests of the classroom edition: what decides a student's points.

`tools/classroom.py student` writes, into every graded check cell of the source edition,

    minigpt.exercises.check_softmax(my_softmax)          # the visible check (practice feedback)
    ### BEGIN HIDDEN TESTS
    <load this file by its path> .grade("check_softmax", my_softmax, points=1.0, namespace=globals())
    ### END HIDDEN TESTS

nbgrader strips the hidden block from the student edition and restores it at autograde, and it
reads the value the block's last line displays as the cell's (partial) score.

Design, and why:

* **Nothing the student controls decides the grade.** This file is loaded by file path under a
  fresh random module name (never from `sys.modules`, which the student's cells can fill), and
  it loads its own fresh copy of the `minigpt` package the same way (`load_package`): the
  references, the run adapters, the comparison (`core.same`) and the mistake catalogue all come
  from that copy, so `minigpt.exercises.check_x = ...` or `minigpt.manual_attention = ...` in
  a cell changes nothing here. The package holds no worked solution: the references it lacks
  and the mistakes whose code would contain them are in `grading/solutions.py`, loaded by path
  too, with the private copy (`load_solutions`); the package keeps only their outputs on the
  visible cases. Chapter 14's answer key is read from the full edition's notebook file
  (`answer_key`), never from the student's kernel. No environment variable is read: graded
  with or without MINIGPT_GRADING, a wrong answer scores 0 (the hidden block even removes that
  variable so the visible check never raises and costs the partial credit).
* **Inputs the student never saw.** Every case of the exercise is redrawn at grading time
  (`redraw`: float tensors get noise, token ids are redrawn, models get their weights moved;
  masks, shapes and settings stay, so each case keeps its point) from a seed taken from
  `os.urandom`, printed in the feedback so that an instructor can reproduce the run with
  `seed=`. Exercises whose inputs are only integers, or a model's shape, draw new ones
  (`CUSTOM_DRAWS`; chapter 8's weight-decay groups get models of new depths, heads, biases
  and positions). A lookup table of the visible check's inputs therefore scores 0 (a table
  of parameter names for every model shape the draw can make would still pass: that one is
  a rule written out, and the review patterns do not flag it).
* **The student's code runs apart, before the right answer exists.** Each case runs the
  student's code first, on its own deep copy of the inputs, in a thread of its own
  (`_run_apart`, started with `_thread`, so that no trace function of an earlier cell's runs in
  it), and makes its result plain there (`_plain`: exact tensors, numbers, strings, lists)
  before the reference runs. Nothing in that thread leads to the grading: its frames are the
  thread's entry, the run adapter and the student's code, and the entry's code (with
  `_plain` and `OperatorsSeen`) is compiled with globals of its own (`_APART_SOURCE`), so that
  no frame walk, function's `__globals__` or class's namespace reaches this module, the
  watcher, the exercise's reference or the comparison. What the thread tells the grading, it
  tells through calls the watcher sees, not through objects the student's code could change.
  The hidden block binds no name in the notebook (the loaded module once sat in its globals).
  Changing the inputs in place changes nothing the reference sees. Chapter 14's answer, when it
  is a function, runs in such a thread too, before the key is read.
* **Nothing of the notebook's runs in the grading's own thread.** The grading reads the
  notebook's objects (the answer, what an earlier cell put in torch's namespaces, its threads,
  IPython's display), and reading an attribute can run code of the notebook's (a property,
  `__getattr__`, a metaclass), as can a finalizer. While `grade` runs, a profiler of its own
  thread (`Guard`) stops any code of the notebook's at its call, before its first line runs,
  and the grade is 0. (A signal handler is the exception: Python runs it inside the Guard's
  own code too, where no profiler watches; a handler of the notebook's is refused instead.)
  `core.same` compares a value that is not a tensor, number or container only with one of
  exactly its type (an object whose `__eq__` says yes to everything is no answer).
* **The student's own work.** While the student's code runs, `sys.setprofile` watches every
  Python and C call in its thread (`Watcher`; starting a thread is itself reported, and so is a
  thread a library starts to run the student's code), and a dispatch mode (`OperatorsSeen`) sees the forbidden torch operators
  that make no Python call (TorchScript, `torch.ops.aten._softmax`). Work done where the
  profiler is not scores 0 too: starting a process (a DataLoader's workers included), handing
  work to a thread pool or an event loop, or a thread started in an earlier cell that runs the
  notebook's code (`other_threads`; fed through a queue). A thread that runs only the standard
  library's code may be a pool fed without `submit` or a harmless one: the feedback names it
  for review (`REVIEW_MARK`) and the score stands. A call to a function the exercise asks the student to write,
  under any name, alias or import path, is recognised by *what* runs, not by the name used:
  Python functions by their source file and qualified name (`minigpt/attention.py`,
  `manual_attention`), C functions (torch's softmax, SDPA) by their name, the chapter's own
  helper that computes the answer (`layer_norm` in chapter 6, `my_dropout` in chapter 7, ...)
  by its definition (`_definition`: the book's code, under whatever name, container or
  decorator the notebook keeps it; a student's own, different function of that name is their
  work), and code pasted from the package or from a helper
  the book hides (`hide-cell`, chapter 13's `tiles_in_order`) by its bytecode (`fingerprint`;
  only functions of 6 lines or more, so that an honest short answer that happens to equal the
  package's is never called a copy; a copy with a few statements added or changed, 95% or more
  of its instructions in common, is marked for review and its score stands: `near_copy`).
  Anything under `minigpt/exercises/` (the checks' adapters
  and mistakes) or in `grading/solutions.py` (the worked solutions) is always forbidden to
  call. `SPECS` lists, per exercise, what else is. A forbidden call makes the exercise 0 with
  a line naming what was used.
* **Partial credit that is fair.** Points are split evenly over the cases; every failing case
  is reported with the difference and, when the catalogue knows it, the mistake. A case that
  an answer doing no work also gets right (an input returned unchanged, or ones or zeros:
  softmax over one score, RoPE at position 0, one repeat of a key) counts only beside a case
  that takes work (`_answered_by_no_work`), so `return x` earns nothing.
* **The score nbgrader reads is the one printed.** nbgrader takes a graded cell's points from
  the value the cell shows, and gives full points to a cell that shows none. A notebook that
  changed IPython's display (`ast_node_interactivity`, the text/plain formatter, the display
  hook) or added a transformer of every cell's code makes `grade` raise (`ScoreNotShown`: the
  cell fails and scores 0); a `%precision` is reset before the score shows. `make grade` then
  counts a cell only when the value it showed is the score it printed (`_shown_scores`). For a
  module built on earlier answers (chapter 4's `MyAttentionFromScratch` uses `my_split_heads`
  and `my_merge_heads`), the references are injected into the notebook's namespace while it
  is graded, so one bug costs one exercise, not two.

Limits, stated honestly: the hidden test runs *in the student's kernel*, after their cells.
Python offers no wall inside one process: a student who knows this file could, from a cell,
rewrite torch's C functions' Python wrappers, IPython's display formatter, the profiler hook
or nbgrader's output. What is checked (`tampering`): Python's import system holds no finder or hook with the
notebook's code, and the grading's private copy of the package only the package's code (a
finder in `sys.meta_path` could otherwise swap its comparison while the copy loads, before
anything is snapshotted); the torch, `torch.nn.functional`,
`torch.Tensor`, `torch.nn.Module`, `math` and `builtins` namespaces hold only their own
library's objects (`_foreign`: a lambda, a partial, a callable object such as a
`unittest.mock.Mock`, a class of the notebook, a built-in of another module, and for the
names the grading calls, such as `torch.allclose`, `torch.equal` and `torch.randn`, another
genuine function put under that name, are reported and score 0; so are a class statement's
class whatever its `__module__` claims, and a descriptor whose `__get__` is the notebook's,
callable or not); every class of `torch.nn`
runs torch's own code, each method its own class's (`nn.LayerNorm.forward` made to return
zeros makes every model's logits 0; `enum.Enum.__deepcopy__` under `nn.Parameter` is another
library's genuine function, and `nn.Identity.forward` under `nn.Linear` another class's: wrong
there all the same); no torch function or dispatch mode is left on (a mode answers for
`torch.allclose`; torch's own DeviceContext is allowed), no hook is on every nn.Module, and no
kernel registered from the notebook (or through `torch.library`) answers for one of torch's
operators; deepcopy's tables hand no `nn.Parameter` back uncopied, and the student's copy of a
case shares no memory with the case (the reference would run on what the student's code
changed in place); `os.urandom` is the
operating system's (the seed of the fresh inputs), and so are the standard library's
functions the grading calls (`copy.deepcopy`, `ast.literal_eval`, ...), and no module of the
standard library the grading calls into (GRADING_USES: `site`, `os.path`, `inspect`, ...) holds
the notebook's code, which would run inside the grading unwatched; `sys.setprofile` is
the real one, the student's code never called it (or `settrace`, cProfile's `enable`, or
torch's calls that switch dispatch modes off) and the watcher is still installed after it
ran, and it calls no forbidden operator's C function by itself
(`torch.ops.aten._softmax.default._op`) nor anything while torch's Python dispatch is switched
off around it (`_DisableTorchDispatch`, under which the operators' watch sees nothing), nor
asks for that watch itself (`torch._C._get_dispatch_stack_at`: handed the mode, it could blind it);
the answer is a function or a class the notebook wrote (a `functools.partial` can be
re-pointed after it was handed in); it calls no function of torch's reference implementations
(`torch._refs`, `torch._decomp`, `torch._prims`) or of the libraries installed beside the book
(transformers, peft, accelerate), which compute attention, softmax, RoPE, sampling filters and
LoRA layers (importing them is no call), nor a graph torch.fx generated outside torch.compile
(a forbidden function traced with `make_fx` in an earlier cell, its operators decomposed); `sys.getprofile` called by the answer raises (the profile hook *is* the watcher, and its
records could be emptied), which also removes the watcher, and that is seen once the answer
has returned; this module's globals, the private package's comparison and the
exercise's run adapter, the watcher's own state, the module the reference computes with, and
the code of every function among them
(`f.__code__ = ...` keeps the object) are the same after each case's run as before
(`_snapshot`, kept from before the answer ran apart: the private package's comparison and run
adapters are still within its reach), checked before any of the grading's code runs again;
the answer calls nothing that finds objects no reference leads to (`gc.get_objects`,
`gc.get_referrers`, `sys._current_frames`, a class's `__subclasses__`: the grading's objects
are in the heap and in its own thread's frames); no IPython formatter (the plain-text one, the mimebundle one
that can supply it, ...) has a printer for floats but IPython's or sympy's, known by their
code's file, and in a kernel the standard output is ipykernel's own stream (a wrapper could
rewrite "Score: 0 / 1" on its way out). `tools/classroom.py grade` also reads the cells each
student wrote and marks for review the notebooks that use what only such tricks need. A
replaced `minigpt.exercises.check_*` is reported too (it does not change the grade). What is
not checked: a process started in an earlier cell and fed through a pipe (the review patterns
name the modules it needs), code of the notebook's compiled under a file name of a library's
that the Guard then takes for the library's (the review patterns name `compile` and `exec`),
the private package's objects the answer's thread does reach (the run adapter's module: a
change that the answer puts back before it returns is not seen, and changes nothing the
comparison in the grading's thread does), a TorchScript function compiled in an
earlier cell and called inside `_DisableTorchDispatch` (neither makes a call the profiler sees,
and the operators' watch is off: the review patterns name both), a student who edits torch's
compiled functions through ctypes, compiles code under a file name of torch's or of a frozen standard module
("<frozen zipimport>": the watcher takes such frames for the library's), replaces
`importlib.util`'s loader functions before a hidden block runs (the block loads this file with
them, so a forged `grade` would run instead; the review patterns name `importlib`, `setattr`
and `exec`; a `__import__` of the notebook's in builtins runs while this file loads, before the
Guard is on), registers a `sys.monitoring` tool inside the answer itself (Python 3.12 and later;
one registered in an earlier cell is refused: `_monitoring_tools`), sets a timer whose signal
handler fires again and again (Python runs the handler between any two lines of the grading's
thread, inside the Guard's own code too, and from the moment the hidden block starts to load
this file; a handler of the notebook's installed when grading starts is refused:
`_signal_handlers_of_the_notebook`) or forges kernel messages; and the files the
grading reads itself: code run by `make grade` can open the full edition's notebooks (chapter
14's key, the hidden helpers) as this file does. The instructor guide says so, and the
feedback of every graded cell (seed, case lines) makes a forged score stand out on review.
"""

from __future__ import annotations

import _lsprof
import builtins
import contextlib
import copy
import copyreg
import dis
import functools
import importlib.util
import inspect
import io
import math
import os
import re
import sys
import sysconfig
import threading
import time
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minigpt"
NOTEBOOKS = ROOT / "notebooks"

# torch's C functions that compute a softmax / a whole attention (names as the profiler sees them)
SOFTMAX_C = frozenset({"softmax", "_softmax", "log_softmax", "_log_softmax", "special_softmax",
                       "special_log_softmax", "softmin", "_sparse_softmax", "_masked_softmax", "_safe_softmax"})
ATTENTION_C = frozenset({"scaled_dot_product_attention", "_scaled_dot_product_attention_math",
                         "_scaled_dot_product_flash_attention_for_cpu", "_native_multi_head_attention",
                         "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention"})
SOFTMAX_PY = (("torch/nn/functional.py", "softmax"), ("torch/nn/functional.py", "log_softmax"),
              ("torch/nn/functional.py", "softmin"))
ATTENTION_PY = (("torch/nn/functional.py", "multi_head_attention_forward"),
                ("torch/nn/modules/activation.py", "MultiheadAttention"))
EXERCISES_PY = ("minigpt/exercises/", "*")
# Python code that computes what any exercise asks for, forbidden in every one: torch's reference
# implementations of its operators (softmax, layer_norm, ... written in Python: `torch._refs.softmax`
# reaches no operator called softmax), and the libraries installed beside the book that hold
# attention, RoPE, sampling filters and LoRA layers (transformers, peft, accelerate, kernels)
_FX_GENERATED = "<eval_with_key>"          # the file name of the code torch.fx generates for a graph
LIBRARIES_PY = tuple((folder, "*") for folder in ("torch/_refs/", "torch/_decomp/", "torch/_prims/", "transformers/",
                                                  "peft/", "accelerate/", "kernels/"))
SOLUTIONS_PY = ("grading/solutions.py", "*")
SOLUTIONS = Path(__file__).resolve().with_name("solutions.py")
SELF_TEST_NOTEBOOK = NOTEBOOKS / "14_self_test.ipynb"


class Spec:
    """What grading one check needs to know beyond the package's Exercise. (A plain class: this
    file is loaded without a `sys.modules` entry, which dataclasses need.)"""

    def __init__(self, exercise: str, forbid_py: tuple = (), forbid_c: frozenset = frozenset(), what: str = "",
                 inject: Optional[dict] = None, copied: tuple = (), atol: float = 0.0):
        self.exercise = exercise            # the Exercise's name in minigpt.exercises
        self.forbid_py = forbid_py          # (path suffix, qualified name or "*") of Python functions
        self.forbid_c = forbid_c            # names of torch's C functions
        self.what = what                    # how the feedback names the forbidden thing
        self.inject = inject or {}          # notebook name -> "solutions:name" (grading/solutions.py)
        self.copied = copied                # ("chapter stem", "helper name") of the full edition
        self.atol = atol                    # a looser tolerance than the check's, where fresh inputs need it


def _attention_only(what: str = "the package's attention (minigpt.attention) or torch's SDPA") -> dict:
    return dict(forbid_py=(("minigpt/attention.py", "*"),) + ATTENTION_PY, forbid_c=ATTENTION_C, what=what)


SPECS: dict[str, Spec] = {
    # torch's attention computes a softmax too (over a one-element value and an identity mask)
    # (logsumexp is the normaliser itself here; chapter 13's online softmax may merge tiles with it)
    "check_softmax": Spec("SOFTMAX", forbid_py=SOFTMAX_PY + ATTENTION_PY + (("minigpt/", "*"),),
                          forbid_c=SOFTMAX_C | ATTENTION_C | {"logsumexp"},
                          what="a softmax you did not write (torch.softmax, Tensor.softmax, F.softmax, "
                               "nn.Softmax, logsumexp, torch's attention or the package)"),
    "check_attention_weights": Spec("ATTENTION_WEIGHTS", **_attention_only()),
    "check_causal_mask": Spec("CAUSAL_MASK", **_attention_only("the package's causal_mask (minigpt.attention)")),
    "check_causal_attention": Spec("CAUSAL_ATTENTION", **_attention_only()),
    "check_split_heads": Spec("SPLIT_HEADS", **_attention_only(), copied=(("04_multi_head_attention", "split_heads"),)),
    "check_merge_heads": Spec("MERGE_HEADS", **_attention_only()),
    "check_multi_head_attention": Spec(
        "MULTI_HEAD_ATTENTION", **_attention_only(),
        inject={"my_split_heads": "solutions:split_heads", "my_merge_heads": "solutions:merge_heads"},
        copied=(("04_multi_head_attention", "MyMultiHeadAttention"),)),
    "check_sinusoidal": Spec("SINUSOIDAL", forbid_py=(("minigpt/positions.py", "*"),),
                             what="the package's positions (minigpt.positions)",
                             copied=(("05_positions", "my_sinusoidal"),)),
    "check_rope": Spec("ROPE", forbid_py=(("minigpt/positions.py", "*"),),
                       what="the package's RoPE (minigpt.positions.apply_rope / rope_cos_sin)",
                       copied=(("05_positions", "my_rope"),)),
    "check_rope_attention": Spec("ROPE_ATTENTION", forbid_py=(("minigpt/attention.py", "CausalSelfAttention"),),
                                 what="the package's attention module"),
    "check_mlp": Spec("MLP_EXERCISE", forbid_py=(("minigpt/model.py", "MLP"),), what="the package's MLP"),
    # the other normalisations compute it too, over a reshaped x: group_norm with one group,
    # instance_norm, batch_norm over a transposed x, rms_norm of the centred x
    "check_layer_norm": Spec("LAYER_NORM", forbid_py=tuple(("torch/nn/functional.py", name) for name in (
                                 "layer_norm", "group_norm", "instance_norm", "batch_norm", "rms_norm"))
                             + (("torch/nn/modules/normalization.py", "*"), ("torch/nn/modules/batchnorm.py", "*"),
                                ("torch/nn/modules/instancenorm.py", "*"), ("minigpt/model.py", "*")),
                             forbid_c=frozenset({"layer_norm", "native_layer_norm", "group_norm", "native_group_norm",
                                                 "instance_norm", "batch_norm", "native_batch_norm",
                                                 "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                                                 "_batch_norm_impl_index", "_batch_norm_with_update",
                                                 "_batch_norm_no_update", "rms_norm", "_fused_rms_norm"}),
                             what="a normalisation you did not write (F.layer_norm, nn.LayerNorm, group, "
                                  "instance, batch or RMS norm, or the package)",
                             copied=(("06_layernorm_residuals_preln", "layer_norm"),),
                             # nearly flat rows lost ~5e-5 to float32 rounding in a correct answer
                             # when they sat around 0.7 (29 of 40 fresh draws at the check's 1e-5);
                             # they are centred near 0 now, and 1e-4 stays as a margin: every
                             # catalogued mistake is off by more than 1e-2 there
                             atol=1e-4),
    "check_pre_ln_block": Spec("PRE_LN_BLOCK", forbid_py=(("minigpt/model.py", "Block.forward"),),
                               what="the block's own forward (block(x))",
                               copied=(("06_layernorm_residuals_preln", "pre_ln_block"),)),
    "check_dropout": Spec("DROPOUT", forbid_py=(("minigpt/dropout.py", "*"), ("torch/nn/functional.py", "dropout"),
                                                ("torch/nn/modules/dropout.py", "*")),
                          forbid_c=frozenset({"dropout", "native_dropout", "feature_dropout", "dropout_"}),
                          what="a dropout you did not write (F.dropout, nn.Dropout or minigpt.dropout)",
                          copied=(("07_the_whole_gpt", "my_dropout"),)),
    "check_gpt_forward": Spec("FORWARD", forbid_py=tuple(("minigpt/model.py", f"MiniGPT.{name}") for name in (
                                  "forward", "_hidden", "_next_logits", "attention_maps", "generate")),
                              what="the model's own forward (model(idx), or its helpers model._hidden, "
                                   "model._next_logits)"),
    "check_lr_schedule": Spec("LR_SCHEDULE", forbid_py=(("minigpt/train.py", "*"),),
                              what="the package's schedule (TrainConfig.lr_at)"),
    "check_grad_clip": Spec("GRAD_CLIP", forbid_py=(("torch/nn/utils/clip_grad.py", "*"), ("minigpt/train.py", "*")),
                            what="a clipping you did not write (torch.nn.utils.clip_grad_norm_ or the package)"),
    "check_decay_groups": Spec("DECAY_GROUPS", forbid_py=(("minigpt/train.py", "*"),),
                               what="the package's optimizer set-up (make_optimizer)"),
    "check_sampling_filter": Spec("SAMPLING_FILTER", forbid_py=(("minigpt/sampling.py", "*"),
                                                                ("minigpt/model.py", "MiniGPT.generate")),
                                  what="the package's sampling (next_token_probs)",
                                  copied=(("09_decoding", "top_k_by_hand"),)),
    "check_top_p": Spec("TOP_P", forbid_py=(("minigpt/sampling.py", "*"), ("minigpt/model.py", "MiniGPT.generate")),
                        what="the package's sampling (next_token_probs)",
                        copied=(("09_decoding", "top_p_by_hand"),)),
    "check_greedy_generate": Spec("GREEDY_LOOP", forbid_py=(("minigpt/sampling.py", "*"),
                                                            ("minigpt/model.py", "MiniGPT.generate")),
                                  what="the package's generation (model.generate / next_token_probs)"),
    "check_attention_maps": Spec("ATTENTION_MAPS", forbid_py=(("minigpt/model.py", "MiniGPT.attention_maps"),
                                                              ("minigpt/attention.py", "manual_attention")),
                                 what="the package's attention maps (model.attention_maps / manual_attention)"),
    "check_offset_scores": Spec("OFFSET_SCORE", what="the package's offset scores",
                                copied=(("10_inside_the_model", "measure"),)),
    "check_sliding_cache": Spec("SLIDING_CACHE", forbid_py=(("minigpt/kv_cache.py", "*"),),
                                what="the package's KV cache"),
    "check_cached_generate": Spec("CACHED_GENERATE", forbid_py=(("minigpt/sampling.py", "*"),
                                                                ("minigpt/model.py", "MiniGPT.generate")),
                                  what="the package's generation (model.generate)",
                                  copied=(("11_kv_cache", "generate_cached"),)),
    "check_repeat_kv": Spec("REPEAT_KV", forbid_py=(("minigpt/attention.py", "*"),),
                            what="the package's grouped attention (minigpt.attention)"),
    "check_grouped_attention": Spec("GQA_ATTENTION", forbid_py=(("minigpt/attention.py", "CausalSelfAttention"),
                                                                ("minigpt/attention.py", "repeat_kv")),
                                    what="the package's grouped attention (CausalSelfAttention with n_kv_head)",
                                    copied=(("12_gqa_mqa", "grouped_attention"),)),
    "check_online_softmax": Spec("ONLINE_SOFTMAX", forbid_py=SOFTMAX_PY + (("minigpt/attention.py", "*"),),
                                 forbid_c=SOFTMAX_C | ATTENTION_C,
                                 what="a softmax over the whole row (torch.softmax / F.softmax) or the package"),
    "check_tiled_attention": Spec("TILED_ATTENTION", **_attention_only(),
                                  copied=(("13_flash_attention", "tiles_in_order"), ("13_flash_attention", "tiled_attention"))),
    "check_merge": Spec("MERGE", forbid_py=(("minigpt/bpe.py", "*"),),
                        what="the package's BPE (minigpt.bpe.merge_pair / BPETokenizer)",
                        copied=(("15_subword_tokens", "merge_by_hand"),)),
    "check_encode": Spec("ENCODE", forbid_py=(("minigpt/bpe.py", "*"),),
                         what="the package's BPE (minigpt.bpe: BPETokenizer.encode / merge_pair)",
                         copied=(("15_subword_tokens", "encode_by_hand"),)),
    "check_lora_forward": Spec("LORA_FORWARD", forbid_py=(("minigpt/lora.py", "*"),),
                               what="the package's LoRA (minigpt.lora: LoRALinear)",
                               copied=(("16_fine_tuning_lora", "LoRAByHand"),)),
    "check_lora_merge": Spec("LORA_MERGE", forbid_py=(("minigpt/lora.py", "*"),),
                             what="the package's LoRA merge (minigpt.lora: merge_lora / merged_weight)"),
}
SELF_TEST = "check_self_test"


# ----------------------------------------------------------------------- a fresh package
def load_package() -> tuple[types.ModuleType, set]:
    """A private copy of `minigpt`, loaded from its files under a random name, and the ids of
    its modules' globals (the watcher never examines the grading's own frames). The copy is
    taken out of `sys.modules` once loaded, so that student code cannot look it up by name."""
    name = f"_minigpt_grading_{os.urandom(6).hex()}"
    spec = importlib.util.spec_from_file_location(name, PACKAGE / "__init__.py",
                                                  submodule_search_locations=[str(PACKAGE)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    try:
        spec.loader.exec_module(package)
        # every submodule the exercises need, loaded while the private name resolves
        chapters = sorted(f"exercises.{p.stem}" for p in (PACKAGE / "exercises").glob("ch[0-9][0-9]_*.py"))
        for sub in ["exercises", "exercises.core", *chapters]:
            importlib.import_module(f"{name}.{sub}")
    finally:
        ours = {key: mod for key, mod in sys.modules.items() if key == name or key.startswith(name + ".")}
        for key in ours:
            del sys.modules[key]
    return package, {id(vars(mod)) for mod in ours.values()} | {id(globals())}


def exercise_named(package: types.ModuleType, name: str) -> Any:
    """An object defined in one of the private package's chapter modules (loaded by load_package)."""
    for key, module in vars(package.exercises).items():
        if key.startswith("ch") and isinstance(module, types.ModuleType) and name in vars(module):
            return vars(module)[name]
    raise KeyError(f"no {name} in the exercises' chapter modules")


def load_solutions(package: types.ModuleType) -> types.ModuleType:
    """grading/solutions.py (the worked solutions, not installed with the package), loaded by its
    path under a random name and run with the private package as its `minigpt`."""
    spec = importlib.util.spec_from_file_location(f"_minigpt_solutions_{os.urandom(6).hex()}", SOLUTIONS)
    module = importlib.util.module_from_spec(spec)
    module.minigpt = package
    spec.loader.exec_module(module)
    return module


def attribute(solutions: types.ModuleType, path: str) -> Any:
    """'solutions:split_heads' -> that object of the private grading/solutions.py."""
    where, _, name = path.partition(":")
    if where != "solutions":
        raise ValueError(f"an injected reference comes from grading/solutions.py, not {where!r}")
    return getattr(solutions, name)


# --------------------------------------------------------------------------- fresh inputs
def redraw(value: Any, g: torch.Generator) -> Any:
    """The same kind of input with new values: what the student's code has never been run on."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.numel() == 0:
            return value.clone()
        if value.is_floating_point():
            finite = torch.isfinite(value)
            kept = value[finite].double()
            spread = kept.std().item() if kept.numel() > 1 else (kept.abs().mean().item() if kept.numel() else 1.0)
            noise = torch.randn(value.shape, generator=g, dtype=torch.float64)
            out = (value.double() + 0.25 * max(spread, 1e-3) * noise).to(value.dtype)
            return torch.where(finite, out, value)
        high = max(int(value.max().item()) + 1, 2)
        return torch.randint(0, high, value.shape, generator=g, dtype=value.dtype)
    if isinstance(value, nn.Module):
        module = copy.deepcopy(value)
        with torch.no_grad():
            for p in module.parameters():
                size = max(p.abs().mean().item(), 0.02)
                p.add_(0.2 * size * torch.randn(p.shape, generator=g, dtype=p.dtype))
        return module
    if isinstance(value, tuple):
        return tuple(redraw(v, g) for v in value)
    if isinstance(value, list):
        return [redraw(v, g) for v in value]
    if isinstance(value, dict):
        return {k: redraw(v, g) for k, v in value.items()}
    return value


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=g).item())


def _draw_masks(core, g, visible=()):
    """One shape of each kind the visible check has, with new sizes every time (T = S = 1 is left
    to the visible check: a single True cannot be drawn anew)."""
    T = _randint(g, 2, 9)
    S = _randint(g, 3, 10)
    T2 = _randint(g, 2, S - 1)
    S3 = _randint(g, 2, 9)
    S3 += S3 >= S                     # 2..10 but not S: the second and fourth cases differ
    return [core.Case(f"T=S={T} (training: queries and keys are the same positions)", (T, T)),
            core.Case(f"T=1, S={S} (generation with a cache: one new query)", (1, S)),
            core.Case(f"T={T2}, S={S} (new queries after cached keys)", (T2, S)),
            core.Case(f"T=1, S={S3} (one new query)", (1, S3))]


def _draw_tables(core, g, visible=()):
    sizes = [(_randint(g, 2, 150), 2 * _randint(g, 1, 24)) for _ in range(3)] + [(1, 2 * _randint(g, 1, 8))]
    return [core.Case(f"{P} positions, dim = {dim}", (P, dim)) for P, dim in sizes]


def _draw_schedules(core, g, visible=()):
    cases = []
    for warmup in (_randint(g, 2, 15), 0, 1):
        peak = round(0.1 + 0.9 * torch.rand(1, generator=g).item(), 3)
        floor = round(peak * 0.2 * torch.rand(1, generator=g).item(), 4) if warmup != 1 else 0.0
        steps = warmup + _randint(g, 5, 60)
        cases.append(core.Case(f"peak {peak}, floor {floor}, {warmup} warm-up steps, {steps} steps", (3,),
                               dict(learning_rate=peak, min_lr=floor, warmup_iters=warmup, max_iters=steps)))
    return cases


def _draw_token_lists(core, g, visible=()):
    """New token lists over a small alphabet (so pairs repeat), each with a pair it holds."""
    cases = []
    for n in (_randint(g, 6, 14), _randint(g, 6, 14), _randint(g, 3, 6)):
        ids = [97 + _randint(g, 0, 2) for _ in range(n)]
        i = _randint(g, 0, n - 2)
        cases.append(core.Case(f"{n} tokens over 3 letters", (ids, (ids[i], ids[i + 1]), _randint(g, 256, 400))))
    a = 97 + _randint(g, 0, 2)
    run = _randint(g, 3, 7)
    cases.append(core.Case(f"{run} equal tokens (overlapping pairs)", ([a] * run + [120], (a, a), 256)))
    return cases


def _draw_merge_tables(core, g, visible=()):
    """New texts over a small alphabet, each with a merge table learned (most frequent pair
    first, ties to the smaller pair) on another text of the same letters."""
    def learn(ids, n_merges):
        merges = []
        for new in range(256, 256 + n_merges):
            counts: dict = {}
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
            if not counts:
                break
            best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
            merges.append((best[0], best[1], new))
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return merges

    cases = []
    for _ in range(4):
        letters = [97 + _randint(g, 0, 3) for _ in range(_randint(g, 20, 40))]
        text = bytes(97 + _randint(g, 0, 3) for _ in range(_randint(g, 5, 15)))
        merges = learn(letters, _randint(g, 3, 8))
        cases.append(core.Case(f"{len(text)} bytes, {len(merges)} merges", (text, merges)))
    return cases


def _draw_models(core, g, visible=()):
    """New model shapes for the weight-decay groups: depth, width, heads, key/value heads,
    biases and positions drawn anew, so a table of the visible check's parameter names is no
    answer (the check builds a MiniGPT of each config); and a new weight_decay for each, so an
    answer must use its argument."""
    GPTConfig = type(visible[0].args[0])     # the private package's, as the visible cases build it
    cases = []
    for bias in (True, False):
        n_head = (1, 2, 4)[_randint(g, 0, 2)]
        n_kv_head = (None, 1, n_head)[_randint(g, 0, 2)]
        positions = ("learned", "sinusoidal", "rope")[_randint(g, 0, 2)]
        config = GPTConfig(vocab_size=_randint(g, 5, 40), block_size=_randint(g, 4, 16),
                           n_embd=4 * n_head * _randint(g, 1, 3),
                           n_head=n_head, n_kv_head=n_kv_head, n_layer=_randint(g, 1, 8), dropout=0.0,
                           bias=bias, pos_encoding=positions)
        weight_decay = _randint(g, 1, 50) / 100       # not the visible check's 0.1 and 0.05 alone
        cases.append(core.Case(f"a {config.n_layer}-layer MiniGPT, {'with' if bias else 'without'} biases, "
                               f"{positions} positions, {n_head} head(s), n_kv_head={n_kv_head}, "
                               f"weight_decay={weight_decay}", (config, weight_decay)))
    return cases


CUSTOM_DRAWS: dict[str, Callable] = {
    "check_decay_groups": _draw_models,
    "check_merge": _draw_token_lists,
    "check_encode": _draw_merge_tables,
    "check_causal_mask": _draw_masks,
    "check_sinusoidal": _draw_tables,
    "check_lr_schedule": _draw_schedules,
}


# ------------------------------------------------------------------------- the watcher
def _package_dirs() -> tuple:
    """The folders `minigpt` is loaded from: this checkout's, and an installed copy's if the
    notebook imports another one (a wheel in site-packages)."""
    module = sys.modules.get("minigpt")
    origin = getattr(module, "__file__", None) if module is not None else \
        getattr(importlib.util.find_spec("minigpt"), "origin", None)
    dirs = {os.path.abspath(PACKAGE)} | ({os.path.dirname(os.path.abspath(origin))} if origin else set())
    return tuple(sorted(dirs))


def _suffix_match(filename: str, suffix: str) -> bool:
    """True when code from `filename` is what `suffix` names: a file ending so ("torch/nn/
    functional.py", "grading/solutions.py"), or for "minigpt/..." a file of the package's own
    folder. (A plain "/minigpt/" in the path is not enough: the checkout itself is usually called
    minigpt, and its .venv, torch included, lies inside it.)"""
    filename = filename.replace(os.sep, "/")
    if suffix.startswith("minigpt/") and suffix.endswith("/"):         # a folder of the package
        rest = suffix[len("minigpt/"):]
        path = os.path.abspath(filename).replace(os.sep, "/")
        if any(path.startswith(folder.replace(os.sep, "/") + "/" + rest) for folder in _PACKAGE_DIRS):
            return True
        # another copy of the package (a folder named minigpt elsewhere), but not a checkout's
        # .venv or site-packages that merely lie below a folder of that name
        inside = path.rsplit("/minigpt/", 1)[1] if "/minigpt/" in path else None
        return inside is not None and inside.startswith(rest) and not inside.startswith(".") \
            and "site-packages/" not in inside and "dist-packages/" not in inside
    return filename.endswith(suffix) if not suffix.endswith("/") else f"/{suffix}" in filename


_PACKAGE_DIRS = _package_dirs()


def _qualname_match(qualname: str, wanted: str) -> bool:
    return wanted == "*" or qualname == wanted or qualname.startswith(wanted + ".")


def fingerprint(code: types.CodeType) -> Optional[tuple]:
    """What a pasted copy of a function keeps whatever its names: its instructions, with the
    global and attribute names they use, but not its local names, line numbers or strings.
    None for functions of under 6 lines (the def line included): short ones are too easy to
    write alike by chance, and an honest student must never be called a copier."""
    lines = {line for _, _, line in code.co_lines() if line is not None}
    if len(lines) < 6:
        return None
    return _instructions(code, local_names=False)


# the share of instructions a function has in common with forbidden code (difflib's ratio) from
# which it is marked for review as a near copy. Measured: the book's own worked solutions reach
# at most 0.90 (chapter 15's my_merge against the package's merge_pair), a copy of the package
# with `_pad = 0` added to every function 0.98-1.00. The score stands either way: an honest
# answer may be written much like the package's, and a person decides.
NEAR_COPY = 0.95


def near_copy(code: types.CodeType, fingerprints: dict) -> Optional[str]:
    """What forbidden code `code` is close to without being a copy (see NEAR_COPY), or None."""
    import difflib
    mine = fingerprint(code)
    if mine is None:
        return None
    for mark, what in fingerprints.items():
        ratio = difflib.SequenceMatcher(None, mine, mark, autojunk=False).ratio()
        if ratio >= NEAR_COPY:
            return f"{_qualname(code)} has {ratio:.0%} of its instructions in common with " + \
                what.replace("a copy of ", "", 1)
    return None


def _instructions(code: types.CodeType, local_names: bool) -> tuple:
    """The instructions of `code` as (operation, argument), the same however the cell that
    defined it was compiled: CPython 3.11 compiles `math.sqrt(...)` with LOAD_ATTR when the
    same compilation holds `import math` and with LOAD_METHOD otherwise (IPython compiles a
    cell one statement at a time), so both read the same, and jump targets, which move with
    that, are left out. Local names and strings are kept only when `local_names`."""
    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    ops = []
    for ins in dis.get_instructions(code):
        name = {"LOAD_METHOD": "LOAD_ATTR"}.get(ins.opname, ins.opname)
        if name in ("CACHE", "NOP", "PRECALL", "PUSH_NULL", "RESUME"):
            continue
        arg = ins.argval
        if ins.opcode in jumps or isinstance(arg, types.CodeType) or not local_names and (
                "FAST" in name or "DEREF" in name or isinstance(arg, str) and name == "LOAD_CONST"):
            arg = None
        ops.append((name, repr(arg)))
    return tuple(ops)


_COMPREHENSIONS = ("<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>")


def _with_qualnames(code: types.CodeType, prefix: str = ""):
    """(code object, qualified name) for every function and class body compiled into `code`,
    named as Python 3.11's co_qualname names them ("Block.forward", "f.<locals>.g"), which
    Python 3.10 does not record: a function's children live in its `<locals>`; a class body's
    (not CO_OPTIMIZED) and a comprehension's sit directly under it, as CPython names them."""
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            qualname = prefix + const.co_name
            yield const, qualname
            function = const.co_flags & inspect.CO_OPTIMIZED and const.co_name not in _COMPREHENSIONS
            inside = ".<locals>." if function else "."
            yield from _with_qualnames(const, qualname + inside)


@functools.lru_cache(maxsize=None)
def _qualnames_in(filename: str) -> dict:
    """(first line, name, instructions) -> qualified name for the code compiled from one source
    file (the instructions tell apart two lambdas on one line; `_instructions`, because IPython
    compiles a cell one statement at a time and this compiles it whole)."""
    import linecache
    try:        # linecache: a file, or a notebook cell's source, which IPython keeps there
        top = compile("".join(linecache.getlines(filename)), filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return {}
    return {(code.co_firstlineno, code.co_name, _instructions(code, local_names=True)): name
            for code, name in _with_qualnames(top)}


def _qualname(code: types.CodeType) -> str:
    """code.co_qualname (Python 3.11+); on 3.10, found again in the code's source file."""
    qualname = getattr(code, "co_qualname", None)
    if qualname is None:
        where = (code.co_firstlineno, code.co_name, _instructions(code, local_names=True))
        qualname = _qualnames_in(code.co_filename).get(where, code.co_name)
    return qualname


def forbidden_fingerprints(spec: Spec) -> dict:
    """fingerprint -> what it is, for the package functions this exercise forbids and the
    full edition's answer-bearing helpers it names that the book hides (`hide-cell`).

    Not fingerprinted, on purpose: the worked solutions (grading/solutions.py, which students
    never get) and the helpers a chapter teaches in the open. The answer key is the same code
    as the worked solutions, and a student who learned from the chapter may write its helper
    again, line for line: calling them is caught (by module, or as the notebook's own object),
    a renamed copy is not."""
    found = {}
    for suffix, qualname in spec.forbid_py:
        if not suffix.startswith("minigpt/") or suffix.endswith("/"):
            continue
        path = PACKAGE / suffix[len("minigpt/"):]
        if not path.is_file():
            continue
        for code, code_qualname in _with_qualnames(compile(path.read_text(encoding="utf-8"), str(path), "exec")):
            if _qualname_match(code_qualname, qualname):
                mark = fingerprint(code)
                if mark:
                    found[mark] = f"a copy of the package's {code_qualname} ({suffix})"
    for chapter, helper in spec.copied:
        for code, _, hidden in _book_definitions(chapter, helper):
            mark = fingerprint(code) if hidden else None
            if mark:
                found[mark] = f"a copy of the book's helper {helper} (chapter {chapter[:2]})"
    return found


def _book_definitions(chapter: str, name: str):
    """(code object, qualified name, hidden) for the function or class `name` as the full
    edition's notebook of `chapter` defines it, and for everything defined inside it (a
    class's methods); `hidden`: the cell is `hide-cell`, so the student edition only runs it."""
    import json
    path = NOTEBOOKS / f"{chapter}.ipynb"
    if not path.is_file():
        return
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or not (f"def {name}(" in text or f"class {name}" in text):
            continue
        hidden = "hide-cell" in cell.get("metadata", {}).get("tags", [])
        for code, qualname in _with_qualnames(compile(text, chapter, "exec", dont_inherit=True)):
            if qualname.split(".")[0] == name:
                yield code, qualname, hidden


def _definition(code: types.CodeType, qualname: Optional[str] = None) -> tuple:
    """What makes two compilations of a function the same definition: its qualified name, its
    instructions with every name and constant they use, and its nested functions' (compared
    the same way), but not its file or line numbers, which differ between the notebook file
    and the kernel's cell. The qualified name is the code's own (`qualname` when the caller
    knows it, else `_qualname`: Python 3.11's co_qualname, which `__qualname__ = ...` does not
    change, or on 3.10 the name found again in the cell's source), without the functions it
    was defined inside: the book's `layer_norm` pasted into a function is still the book's,
    while the student's own module's `forward` is not the book module's `forward`."""
    qualname = (qualname or _qualname(code)).rsplit(".<locals>.", 1)[-1]
    nested = tuple(_definition(c, c.co_name) for c in code.co_consts if isinstance(c, types.CodeType))
    return (qualname, code.co_argcount, code.co_kwonlyargcount, _instructions(code, local_names=True), nested)


# a line of the feedback that `tools/classroom.py grade` copies into grades.csv's note: what the
# grading saw but cannot judge (the score stands)
REVIEW_MARK = "⚠ for review: "
THREAD_STARTS = ("start_new_thread", "start_joinable_thread", "start_new")    # _thread's
# starting a process (subprocess, multiprocessing, os.system): the process runs what it likes
# where nothing watches; the C functions, by the module that holds them
PROCESS_STARTS = {"_posixsubprocess": {"fork_exec"}, "_winapi": {"CreateProcess"},
                  "posix": {"fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve"},
                  "nt": {"system", "spawnv", "spawnve", "execv", "execve", "startfile"}}
# handing work to threads that already run (a pool made in an earlier cell): the grading watches
# its own thread and the threads started while it watches, not those
THREAD_POOLS_PY = (("concurrent/futures/thread.py", "ThreadPoolExecutor.submit"),
                   ("concurrent/futures/process.py", "ProcessPoolExecutor.submit"),
                   ("concurrent/futures/_base.py", "Executor.map"),
                   ("multiprocessing/pool.py", "*"), ("asyncio/threads.py", "to_thread"),
                   ("asyncio/base_events.py", "BaseEventLoop.run_in_executor"),
                   ("asyncio/base_events.py", "BaseEventLoop.call_soon_threadsafe"),
                   ("asyncio/tasks.py", "run_coroutine_threadsafe"))
# what switches the watch off for a while (the profiler, torch's dispatch modes), called by the
# student's code itself: setting the profiler back afterwards would hide what ran meanwhile
WATCH_OFF_C = frozenset({"setprofile", "settrace", "setprofile_all_threads", "settrace_all_threads",
                         "_set_torch_dispatch_mode", "_unset_dispatch_mode", "_pop_torch_dispatch_stack", "_pop_mode"})
WATCH_OFF_PY = frozenset({"setprofile", "settrace", "setprofile_all_threads", "settrace_all_threads",
                          "_disable_current_modes", "_pop_mode_temporarily", "_pop_mode"})
# what hands the student's code the watcher itself (the profile hook is the Watcher): its records
# could then be replaced or emptied. An answer has no use for them.
WATCH_READ = frozenset({"getprofile", "gettrace"})
# what hands the student's code the operators' watch (the dispatch mode on its thread's stack),
# which it could then blind: torch's C functions, and torch's Python functions around them
MODE_READ_C = frozenset({"_get_dispatch_stack_at", "_get_dispatch_mode"})
MODE_READ_PY = frozenset({"_get_current_dispatch_mode", "_get_current_dispatch_mode_stack"})
# the thread machinery between a call that starts a thread and the code that asked for it
_THREAD_MACHINERY = ("/threading.py", "/concurrent/futures/", "/multiprocessing/", "/asyncio/")


# C functions that find objects no reference leads to: other threads' frames, the heap's objects
OBJECT_FINDERS = frozenset({("sys", "_current_frames"), ("sys", "_current_exceptions"), ("gc", "get_objects"),
                            ("gc", "get_referrers"), ("gc", "get_referents")})
_THREAD_START = threading.Thread.start.__code__
# a class's own namespace and bases, read through `type`'s descriptors (a metaclass of the
# notebook's could answer `cls.__dict__` or `cls.__mro__` with code of its own)
_TYPE_DICT = type.__dict__["__dict__"].__get__
_TYPE_MRO = type.__dict__["__mro__"].__get__
# calling an operator through torch.ops from Python (torch.ops.aten._softmax.default(...)): the
# profiler sees these calls in every thread it watches, the dispatch mode only in its own
_OP_CALLS = frozenset(c.__call__.__code__ for c in (torch._ops.OpOverload, torch._ops.OpOverloadPacket)
                      if isinstance(getattr(c.__call__, "__code__", None), types.CodeType))


def _operator_functions(names) -> list:
    """(name, C function) of every overload of torch's operators of these names."""
    found = []
    for name in names:
        packet = getattr(torch.ops.aten, name, None)
        for overload in (packet.overloads() if packet is not None else ()):
            op = getattr(getattr(packet, overload, None), "_op", None)
            if op is not None:
                found.append((name, op))
    return found


def _python_key_excluded() -> bool:
    return torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python)


# torch's folder's parent (the libraries beside torch: torch re-exports typing_extensions'
# helpers) and the standard library's folder, each ending in a separator
_TORCH_HOME = os.path.dirname(os.path.dirname(os.path.abspath(torch._C.__file__))) + os.sep
_STDLIB = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep
# the private package's and this folder's files: the grading's own code
_GRADING_HOMES = (os.path.join(str(PACKAGE), ""), os.path.join(str(ROOT / "grading"), ""))


def _library_folders() -> tuple:
    """The folders that hold installed code, each ending in a separator: torch's, the standard
    library's and every site-packages or dist-packages folder Python reads (Jupyter and IPython
    may live in another one than torch, in a user's site or a system one). Code from anywhere
    else (a notebook cell, a file beside it) is the student's."""
    import site
    folders = [_TORCH_HOME, _STDLIB]
    try:
        folders += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:          # an old virtualenv's site module has neither
        pass
    folders += [p for p in sys.path if os.path.basename(p.rstrip("/" + os.sep)) in ("site-packages", "dist-packages")]
    return tuple(dict.fromkeys(os.path.join(os.path.abspath(d), "") for d in folders if d))


# ---------------------------------------------------------------------- the student's thread
# The student's code runs in a thread of its own, started for each case with `_thread` (so that
# no hook of `threading`'s, a trace function set in an earlier cell among them, runs in it).
# Nothing in that thread leads back to the grading: its stack is the thread's entry below, the
# exercise's run adapter (the private package's) and the student's code, and the entry's frame
# holds the case and the adapter once it has installed the watcher. The code that runs there
# (the entry, the dispatch mode that sees torch's operators, the function that makes the answer
# plain) is compiled from the text below with globals of its own, which hold torch, numbers and
# these functions only: a frame walk, a function's __globals__ or a class's methods reached from
# that thread do not reach this module, the watcher, the exercise's reference or the comparison.
# What the thread's code must tell the grading, it tells the watcher by calls the watcher sees
# (`forbidden_operator`, the end marker), never in an object the student's code could reach.
_APART_SOURCE = '''
import numbers

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def plain(value):
    """The answer as plain values, taken as soon as the student's code returns and before the
    right answer is computed: tensors detached, copied and of class torch.Tensor; numbers,
    strings and bytes as exact int / float / str / bytes; lists, tuples and dicts rebuilt as
    such. A subclass could answer comparisons its own way, and a tensor the student's code
    still holds could be changed after it returned. Anything else is kept; core.same compares
    it only with a value of exactly its type."""
    if isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():     # a subclass's __torch_function__ stays out
            copied = torch.Tensor.detach(value)           # already a torch.Tensor for the usual subclasses
            if type(copied) is not torch.Tensor:          # as_subclass only where it must: before torch 2.6
                copied = torch.Tensor.as_subclass(copied, torch.Tensor)   # it fails inside a dispatch mode
            return copied.clone()
    if isinstance(value, bool):                 # (bool cannot be subclassed)
        return value
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, numbers.Integral):     # int subclasses, NumPy's integers
        return int.__int__(int(value))
    if isinstance(value, numbers.Real):         # NumPy's floats that are not float subclasses
        return float.__float__(float(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes(memoryview(value))
    if isinstance(value, list):
        return [plain(v) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in tuple.__iter__(value))
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in dict.items(value)}
    return value


def short(err):
    """An error of the student's code as one line of plain text, written in the student's thread
    (its __str__ is the student's code, watched like the rest of it)."""
    try:
        text = str.__str__(str(err)).strip().splitlines()
        return str.__str__(type(err).__name__) + ": " + (text[0][:200] if text else "")
    except Exception:
        return "an error whose message could not be read"


def forbidden_operator(name):
    """Called by OperatorsSeen when a forbidden operator runs: the watcher records the call (the
    mode keeps no record the student's code could empty)."""


class OperatorsSeen(TorchDispatchMode):
    """Sees which of the given torch operators run (by the operator's name: `_softmax` for
    torch.softmax, F.softmax and torch.ops.aten._softmax alike), however they were reached:
    from Python, TorchScript or a C++ composite. Nothing is changed: every operator runs as it
    would. With no names it is never entered and costs nothing."""

    def __init__(self, names):
        super().__init__()
        self.names = names

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.names:
            forbidden_operator(name)
        return func(*args, **(kwargs or {}))


class _Off:
    """What `with` enters where there is nothing to enter (no forbidden operator, no default device)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def entry(box, out, done):
    """The thread: install the watcher, run the case, put what came of it in `out` as plain
    values, tell the watcher it is still installed (`end()`, a call it sees only then), and
    release `done`. `box` is emptied first, so that only this frame held the watcher, and it is
    deleted before the student's code runs."""
    try:
        setprofile, watcher, names, device, grad, threads, end, run, args = box
        box.clear()
        torch.set_grad_enabled(grad)        # (thread-local in torch, like the default device)
        if threads:
            torch.set_num_threads(threads)
        operators = OperatorsSeen(names) if names else _Off()
        with (torch.device(device) if device is not None else _Off()), operators:
            if watcher is not None:
                setprofile(watcher)
            del watcher, operators
            try:
                out.append(("returned", plain(run(*args))))
            except NotImplementedError:
                out.append(("not implemented", ""))
            except Exception as err:
                out.append(("raised", short(err)))
            except KeyboardInterrupt:
                out.append(("interrupted", ""))
            except BaseException as err:    # SystemExit and the like: this case fails
                out.append(("raised", short(err)))
            end()
            setprofile(None)
    finally:
        done.release()
'''
_APART: dict = {"__name__": "grading_student_thread", "__builtins__": builtins}
exec(compile(_APART_SOURCE, __file__ + ":student_thread", "exec"), _APART)
_OPERATOR_SEEN = _APART["forbidden_operator"].__code__
_ENTRY = _APART["entry"].__code__


class NotebookCodeRan(BaseException):
    """Raised by the guard when code of the notebook was about to run in the grading's own thread
    (a BaseException: the grading's `except Exception` clauses do not swallow it)."""


def _function_of(value: Any) -> Optional[types.FunctionType]:
    """The Python function that `value` (a function, or a method, staticmethod, classmethod or
    partial of one) runs, or None. Reads only what these built-in types hold: no code of the
    notebook's runs."""
    kind = type(value)
    if kind in (staticmethod, classmethod, types.MethodType):
        value = value.__func__
    elif kind is functools.partial:
        value = value.func
    return value if type(value) is types.FunctionType else None


def _notebooks_function(value: Any, homes: tuple) -> bool:
    """True when `value` runs a Python function whose code is not from `homes` (_function_of)."""
    function = _function_of(value)
    return function is not None and _outside(function.__code__.co_filename, homes)


def _class_of_the_notebook(kind: type, homes: tuple) -> bool:
    """True when a class of `kind` (its bases included) holds a function of the notebook's, read
    through `type`'s own descriptors (no metaclass of the notebook's answers)."""
    return any(_notebooks_function(v, homes) for klass in _TYPE_MRO(kind)[:-1] for v in _TYPE_DICT(klass).values())


def _genuine_builtin(function: Any, module: str, name: str) -> bool:
    """True when `function` is the C function `module.name` itself: a built-in function's module
    is the C module that made it, which no Python code can forge."""
    return type(function) is types.BuiltinFunctionType and type(function.__self__) is types.ModuleType \
        and vars(function.__self__).get("__name__") == module and function.__name__ == name


class Guard:
    """The profiler of the grading's own thread while `grade` runs: it stops any code of the
    notebook from running there. The grading reads the notebook's objects (the answer, what an
    earlier cell put in torch's namespaces, the threads it started, IPython's display), and
    reading an attribute can run code a class of the notebook defines (a property, __getattr__,
    a metaclass's __instancecheck__), as can a finalizer or a signal handler that fires while the
    grading runs. Such code would run with the grading's frames above it (the seed, the private
    package, the reference) and nothing watching. The profiler sees every Python function's call
    before its first line runs; raising there makes the call fail before anything of it ran, and
    the grade is 0. The answer itself runs in a thread of its own, under the Watcher."""

    def __init__(self, own: set):
        self.own = own
        # torch's and the standard library's folders and the grading's own to begin with: the
        # other library folders are found (by the standard library's site and sysconfig) once
        # the guard is on, since the notebook may have replaced what finds them
        self.homes = (_TORCH_HOME, _STDLIB) + _GRADING_HOMES
        self._seen: dict[int, tuple] = {}       # id(code) -> (code, verdict): the code kept alive
        self.ran: Optional[str] = None
        self.ran_code: Optional[types.CodeType] = None
        self.package = None         # the private copy, once loaded (what tampering() checks in it)

    def _notebooks(self, frame) -> Optional[str]:
        """What names the code `frame` runs when it is the notebook's, else None."""
        globals_ = frame.f_globals
        if id(globals_) in self.own:
            return None
        code = frame.f_code
        known = self._seen.get(id(code))
        if known is not None and known[0] is code:
            verdict = known[1]
        else:
            filename = code.co_filename
            verdict = None
            if not filename.startswith(_FX_GENERATED) and _outside(filename, self.homes):
                # what the standard library generates from text ("<string>"): a named tuple's
                # __new__, a dataclass's methods in their class's module (a library's)
                name = dict.get(globals_, "__name__") if type(globals_) is dict else None
                module = sys.modules.get(name) if type(name) is str else None
                generated = type(name) is str and name.startswith("namedtuple_") or (
                    module is not None and type(module) is types.ModuleType and vars(module) is globals_
                    and _abspath(str(vars(module).get("__file__") or "?")).startswith(self.homes))
                if not (filename == "<string>" and generated):
                    verdict = f"{code.co_qualname if hasattr(code, 'co_qualname') else code.co_name} ({filename})"
            self._seen[id(code)] = (code, verdict)
        return verdict

    def __call__(self, frame, event, arg):
        if event == "call":
            verdict = self._notebooks(frame)
            if verdict is not None:
                if self.ran is None:
                    self.ran, self.ran_code = verdict, frame.f_code
                raise NotebookCodeRan(verdict)

    @contextlib.contextmanager
    def on(self):
        self.on_again()
        try:
            self.homes = tuple(dict.fromkeys(self.homes + _library_folders()))
            self._seen.clear()
            yield self
        finally:
            sys.setprofile(None)

    def where_it_was(self) -> list[str]:
        """Where the code that ran is kept, when a module's namespace (or a class's there) holds
        it: what the notebook replaced, so that the grading called it. Reads modules' and
        classes' namespaces only, nothing of the notebook's runs."""
        found = []
        if self.ran_code is None:
            return found
        def holds(value) -> bool:
            function = _function_of(value)
            return function is not None and function.__code__ is self.ran_code
        what = f"code of the notebook ({getattr(self.ran_code, 'co_qualname', self.ran_code.co_name)})"
        for module_name, module in list(sys.modules.items()):
            if type(module) is not types.ModuleType:
                continue
            # a library's module (the notebook's own, __main__, defines such code, it replaced nothing)
            file = vars(module).get("__file__")
            if not (module_name in sys.builtin_module_names
                    or type(file) is str and _abspath(file).startswith(self.homes)):
                continue
            for name, value in list(vars(module).items()):
                if holds(value):
                    found.append(f"{module_name}.{name} was replaced by {what}")
                elif type(value) is type and vars(value).get("__module__") == module_name:
                    found += [f"{module_name}.{name}.{attribute} was replaced by {what}"
                              for attribute, member in list(_TYPE_DICT(value).items()) if holds(member)]
        return sorted(set(found))[:3]

    def on_again(self) -> None:
        setprofile = sys.setprofile
        if not _genuine_builtin(setprofile, "sys", "setprofile"):
            self.ran = self.ran or "sys.setprofile, replaced (the grading installs its guard with it)"
            raise NotebookCodeRan(self.ran)
        setprofile(self)


def _run_apart(watcher: Optional["Watcher"], run: Callable, args: tuple) -> tuple[str, Any]:
    """Run `run(*args)` (the run adapter on the student's answer and case, or chapter 14's
    answer) in a thread of its own, watched by `watcher`; return what came of it as (kind,
    plain value): "returned", "raised" (a line of text), "not implemented", or "lost" when the
    thread left no single outcome (its records were tampered with)."""
    import _thread
    start, lock = getattr(_thread, "start_new_thread", None), getattr(_thread, "allocate_lock", None)
    setprofile = sys.setprofile
    if not (_genuine_builtin(start, "_thread", "start_new_thread") and _genuine_builtin(lock, "_thread", "allocate_lock")
            and _genuine_builtin(setprofile, "sys", "setprofile")):
        raise NotebookCodeRan("_thread's or sys's functions, replaced (the grading starts the student's thread with them)")
    out: list = []
    done = lock()
    done.acquire()
    end = [].copy                       # a C function no other code holds: its call is the end marker
    if watcher is not None:
        watcher.expect_end(end)
    try:        # (torch 2.5's raises once set_default_device(None) has run: read it from a new tensor then)
        device = torch.get_default_device()
    except (AttributeError, TypeError):
        device = torch.empty(0).device
    box = [setprofile, watcher, watcher.c if watcher is not None else frozenset(),
           None if device is None or device.type == "cpu" else device, torch.is_grad_enabled(),
           torch.get_num_threads(), end, run, args]
    ident = start(_APART["entry"], (box, out, done))
    del box
    try:
        done.acquire()
    except BaseException:               # Ctrl-C, nbgrader's timeout, the Guard: stop the student's code too
        import ctypes
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
        done.acquire(timeout=5)
        raise
    for _ in range(5000):               # the thread is gone a moment after it released `done`
        if ident not in sys._current_frames():
            break
        time.sleep(0.001)
    if type(out) is not list or len(out) != 1 or type(out[0]) is not tuple or len(out[0]) != 2 \
            or type(out[0][0]) is not str or out[0][0] not in ("returned", "raised", "not implemented", "interrupted"):
        return "lost", None
    kind, value = out[0]
    if kind == "interrupted":
        raise KeyboardInterrupt
    if kind != "returned" and type(value) is not str:
        return "lost", None
    return kind, value


class Watcher:
    """A profiler that records calls to forbidden code while the student's code runs.

    The grading's own frames (the private package's and this file's) are examined only when
    the student's code called them, directly or not: a run adapter may call anything, but
    `model.generate` on a model the grading built is the package's generate all the same.
    The references injected into the notebook (chapter 4) may always run."""

    def __init__(self, spec: Spec, own_globals: set, allowed: tuple = ()):
        self.py = tuple(spec.forbid_py) + (EXERCISES_PY, SOLUTIONS_PY) + THREAD_POOLS_PY
        self.c = spec.forbid_c
        self.fingerprints = forbidden_fingerprints(spec)
        self.own = own_globals | {id(_APART)}
        self.allowed = {id(getattr(inspect.unwrap(f), "__code__", None)) for f in allowed}
        self.libraries = _library_folders()
        # the chapter's own helper that computes the answer, as the book defines it: whatever
        # name, closure, container or decorator it is reached through, what runs is code with the
        # book's definition (a renamed copy is left to the fingerprint). A student who wrote a
        # function of that name themselves (their own `layer_norm`) did the work.
        self.book = {}
        for chapter, name in spec.copied:
            for code, qualname, _ in _book_definitions(chapter, name):
                # the helper and a class's methods; what is defined inside them (a lambda, a
                # comprehension, which an honest answer may hold alike) is part of their definition
                if "<" not in qualname:
                    self.book[_definition(code, qualname)] = f"the chapter's own {name} (the exercise asks you to write it)"
        # the C functions behind a forbidden operator's overloads (`torch.ops.aten._softmax.default._op`
        # has no __name__ to recognise it by)
        self._ops = {id(op): name for name, op in _operator_functions(self.c)}
        self.used: dict[str, None] = {}
        self._seen: dict[int, Optional[str]] = {}
        # the end marker of the case that runs (_run_apart), and whether the thread's entry was
        # seen to call it: the watcher was still installed then (changed for every case: not in
        # this object's own namespace, which is compared before and after each case)
        self.end = types.SimpleNamespace(marker=None, seen=False)
        self.review: list[str] = []       # threads that run only the standard library's code (other_threads)
        self.near_copies: dict[str, None] = {}     # forbidden code the student's is close to (near_copy)
        self.homes = _GRADING_HOMES

    def _verdict(self, code: types.CodeType) -> Optional[str]:
        key = id(code)
        if key in self._seen:
            return self._seen[key]
        filename = code.co_filename
        verdict = self.book.get(_definition(code)) if self.book and not self._library_file(filename) else None
        for suffix, qualname in self.py if verdict is None else ():
            if _suffix_match(filename, suffix) and _qualname_match(_qualname(code), qualname):
                where = filename.replace(os.sep, "/").split("site-packages/")[-1]
                where = where[where.find("minigpt/"):] if "minigpt/" in where else where
                where = where[where.rfind("grading/"):] if "grading/" in where else where
                stdlib = _STDLIB.replace(os.sep, "/")
                where = where[len(stdlib):] if where.startswith(stdlib) else where    # asyncio/tasks.py
                verdict = f"{_qualname(code)} ({where})"
                break
        if verdict is None and self.fingerprints:
            verdict = self.fingerprints.get(fingerprint(code))
            if verdict is None and not self._library_file(filename) and _outside(filename, self.homes):
                near = near_copy(code, self.fingerprints)
                if near:
                    self.near_copies[near] = None
        self._seen[key] = verdict
        return verdict

    def _library_verdict(self, frame) -> Optional[str]:
        """A function of LIBRARIES_PY, or code torch.fx generated (a GraphModule traced in an
        earlier cell, from a forbidden function with its operators decomposed, runs only the
        allowed ones), called by the student's code: not imported (torch imports parts of
        torch._decomp lazily, from inside an honest answer's operators too), and not a graph
        torch.compile runs for an honest answer (torch/_dynamo/ among the callers)."""
        code = frame.f_code
        traced = code.co_filename.startswith(_FX_GENERATED)
        key = ("library", id(code))
        if key not in self._seen:
            self._seen[key] = "code that torch.fx traced (a GraphModule: what it was traced from ran unwatched)" \
                if traced else next((f"{_qualname(code)} ({suffix}{code.co_filename.replace(os.sep, '/').split(suffix, 1)[-1]})"
                                     for suffix, _ in LIBRARIES_PY if _suffix_match(code.co_filename, suffix)), None)
        if self._seen[key] is None:
            return None
        caller = frame.f_back
        while caller is not None:
            filename = caller.f_code.co_filename
            if filename == "<frozen importlib._bootstrap>" or traced and _suffix_match(filename, "torch/_dynamo/"):
                return None
            if self._is_students(caller) and not filename.startswith(_FX_GENERATED):
                return self._seen[key]
            caller = caller.f_back
        return None

    def _library_file(self, filename: str) -> bool:
        """True for code of an installed library or of the standard library (whose frozen
        modules, such as `os`, are compiled under names like "<frozen os>")."""
        return filename.startswith("<frozen ") or _abspath(filename).startswith(self.libraries)

    def _students_code(self, code: types.CodeType, globals_: Optional[dict]) -> bool:
        """True for the student's code: not the grading's (its module globals), not a library's."""
        return id(globals_) not in self.own and not self._library_file(code.co_filename)

    def _is_students(self, frame) -> bool:
        """True when `frame` runs the student's code."""
        return frame is not None and self._students_code(frame.f_code, frame.f_globals)

    def _direct(self, frame, called: bool = False) -> bool:
        """True when the student's code itself made this call (`called`: a C call made from
        `frame`; otherwise `frame` is the function called, its caller made it)."""
        return self._is_students(frame if called else frame.f_back)

    def _students_function(self, function) -> bool:
        """True when `function` (a partial, a bound method, a decorated function) is the
        student's code."""
        while isinstance(function, functools.partial):
            function = function.func
        function = inspect.unwrap(getattr(function, "__func__", function))
        code = getattr(function, "__code__", None)
        return code is not None and self._students_code(code, getattr(function, "__globals__", None))

    def other_threads(self) -> tuple[list[str], list[str]]:
        """The threads other than this one that run the student's code or will, and those that
        run only the standard library's code. A worker started in an earlier cell and fed through
        a queue or a shared list does the work where the profiler (installed in the answer's
        own thread) does not see it: one that runs the notebook's
        code, or whose target is the notebook's, is reported. One that runs only the standard
        library (a thread pool, an event loop, a queue pump made in an earlier cell) may be fed
        the same way, and may as well be a library's pool: it is named for review. The kernel's
        own threads and other libraries' (tqdm's monitor) run their library's code."""
        students, stdlib_only = [], []
        threads = {t.ident: t for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():       # _thread's threads too
            if ident == threading.get_ident():
                continue
            thread = threads.get(ident)
            name = thread.name if thread is not None else f"a thread started with _thread, {ident}"
            targets = [getattr(thread, "_target", None), getattr(thread, "function", None), type(thread).run] \
                if thread is not None else []
            files = []
            while frame is not None:
                if self._is_students(frame):
                    break
                files.append(frame.f_code.co_filename)
                frame = frame.f_back
            if frame is not None or any(self._students_function(t) for t in targets if t is not None):
                students.append(f"a thread your notebook started earlier ({name}), which runs your code "
                                "beside the grading's (the grading watches only the code it calls)")
            elif all(f.startswith("<frozen ") or _abspath(f).startswith(_STDLIB)
                     and "site-packages" not in f and "dist-packages" not in f for f in files):
                stdlib_only.append(name)
        return students, stdlib_only

    def _asked_by_student(self, frame) -> bool:
        """True when the first frame above the thread machinery is the student's code (a
        library that starts a helper thread of its own, as tqdm does, is not)."""
        while frame is not None and any(part in frame.f_code.co_filename.replace(os.sep, "/")
                                        for part in _THREAD_MACHINERY):
            frame = frame.f_back
        return self._is_students(frame)

    def _student(self, frame) -> bool:
        """True when a frame of the student's code is among the callers of `frame` (the student's
        thread holds nothing of the grading's below them)."""
        frame = frame.f_back
        while frame is not None:
            if self._is_students(frame):
                return True
            frame = frame.f_back
        return False

    def _library_class(self, kind: type) -> bool:
        """True when no class of `kind` holds code of the notebook's and its metaclass is `type`."""
        return type(kind) is type and not _class_of_the_notebook(kind, self.libraries)

    def _reaches_notebook_code(self, start: list, steps: int = 4, limit: int = 500) -> bool:
        """True when a function of the notebook's is among `start` or what it holds, a few steps
        deep: containers' items, methods' objects, partials' parts, functions' closures, and the
        attributes of objects whose classes are all a library's. Nothing of the notebook's runs."""
        seen: set = set()
        layer = list(start)
        for _ in range(steps):
            following: list = []
            for value in layer:
                if id(value) in seen or len(seen) > limit:
                    continue
                seen.add(id(value))
                kind = type(value)
                if _notebooks_function(value, self.libraries):
                    return True
                if kind in (tuple, list, set, frozenset):
                    following += list(value)
                elif kind is dict:
                    following += list(value.values())
                elif kind is types.MethodType:
                    following += [value.__self__, value.__func__]
                elif kind is functools.partial:
                    following += [value.func, *value.args, *value.keywords.values()]
                elif kind is types.FunctionType:
                    following += [c.cell_contents for c in value.__closure__ or () if c.cell_contents is not None]
                elif kind is types.SimpleNamespace:
                    following += list(vars(value).values())
                elif kind.__flags__ & _HEAP_TYPE:
                    if not self._library_class(kind):
                        return True
                    try:                # (every class of it is a library's: their descriptor)
                        inner = object.__getattribute__(value, "__dict__")
                    except AttributeError:
                        continue
                    if type(inner) is dict:
                        following += list(inner.values())
            layer = following
        return False

    def _library_threads_own(self, thread) -> bool:
        """True for a thread a library starts that runs only that library's code (tqdm's
        monitor): a subclass of threading.Thread with a `run` of its own, no target, and no
        function of the notebook's among what it holds. A plain Thread runs its target, which a
        library may take from the notebook, or be fed later (logging's QueueListener), where the
        watch of the answer's thread does not reach."""
        kind = type(thread)
        if kind is threading.Thread or not issubclass(kind, threading.Thread) or not self._library_class(kind):
            return False
        if not any("run" in _TYPE_DICT(klass) for klass in _TYPE_MRO(kind) if klass is not threading.Thread):
            return False
        try:
            inner = object.__getattribute__(thread, "__dict__")
        except AttributeError:
            return False
        return type(inner) is dict and inner.get("_target") is None and not self._reaches_notebook_code([inner])

    def expect_end(self, end) -> None:
        """The end marker of the next case (_run_apart): a C function only its thread's entry calls."""
        self.end.marker, self.end.seen = end, False

    def __call__(self, frame, event, arg):
        # Nothing here touches an object the student's code made (no getattr on it, no isinstance
        # that could ask its __class__): code of the student's that ran inside the profiler would
        # run unwatched, with this frame, and so the watcher, as its caller.
        if event == "call":
            code = frame.f_code
            if code is _OPERATOR_SEEN:          # OperatorsSeen saw a forbidden operator
                name = frame.f_locals.get("name")
                self.used[f"torch's operator {name if type(name) is str else '?'}"] = None
                return
            if id(code) in self.allowed:
                return
            if id(frame.f_globals) in self.own and (
                    not self._student(frame) or _suffix_match(code.co_filename, EXERCISES_PY[0])):
                return          # the grading's own code, or its run adapters' instruments
            verdict = self._verdict(code) or self._library_verdict(frame)
            if verdict:
                self.used[verdict] = None
            if code in _OP_CALLS and self.c:
                op = frame.f_locals.get("self")
                if type(op) is torch._ops.OpOverload:
                    op = op._overloadpacket
                name = op.__name__ if type(op) is torch._ops.OpOverloadPacket else ""
                if name in self.c:
                    self.used[f"torch's operator {name}"] = None
            if code.co_name in WATCH_OFF_PY and self._direct(frame):
                self.used[f"{code.co_name} (it switches off what the grading watches)"] = None
            # a thread a library starts while the answer runs (logging's QueueListener, IPython's
            # background jobs): the watch is the answer's thread's only, and what the library's
            # thread runs, the notebook's code among it, is unseen. (One the student's code starts
            # is refused at its C call, below.)
            if code is _THREAD_START and not self._asked_by_student(frame) \
                    and not self._library_threads_own(frame.f_locals.get("self")):
                self.used["a thread that runs your code or is fed it (a library's, started while your "
                          "answer ran: the grading watches only your answer's thread)"] = None
            if code.co_name in WATCH_READ and self._direct(frame):         # threading's
                self._refuse(f"threading.{code.co_name}")
            if code.co_name in MODE_READ_PY and self._direct(frame):
                self.used[f"{code.co_name} (it hands your code the grading's watch of torch's operators)"] = None
        elif event == "c_call":
            if arg is self.end.marker and frame.f_code is _ENTRY:
                self.end.seen = True
                return
            # what the C function is: its name, and the module that made it (never the object it
            # is bound to when that is not a module: that object may be the student's)
            kind = type(arg)
            name = arg.__name__ if kind is types.BuiltinFunctionType else ""
            owner = arg.__self__ if kind is types.BuiltinFunctionType else None
            module = vars(owner).get("__name__", "") if type(owner) is types.ModuleType else ""
            if name in WATCH_OFF_C and self._direct(frame, called=True):
                self.used[f"{name} (it switches off what the grading watches)"] = None
            if name in WATCH_READ and module == "sys" and self._direct(frame, called=True):
                self._refuse(f"sys.{name}")
            if name in MODE_READ_C and self._direct(frame, called=True):
                self.used[f"{name} (it hands your code the grading's watch of torch's operators)"] = None
            # a profiler of the student's own (cProfile) takes the hook from the watcher: what runs
            # until the watcher is put back is unseen (and putting it back is not seen either)
            if name == "enable" and issubclass(type(owner), _lsprof.Profiler) and self._direct(frame, called=True):
                self.used["a profiler's enable (cProfile: it switches off what the grading watches)"] = None
            if name in THREAD_STARTS and module == "_thread":
                if self._asked_by_student(frame):
                    self.used["a thread of your own (the grading runs your code in its thread)"] = None
                elif frame.f_code is not _THREAD_START:     # a library's, not through threading.Thread.start
                    self.used["a thread a library started while your answer ran (the grading watches only "
                              "your answer's thread)"] = None
            if name in PROCESS_STARTS.get(module, ()):     # whoever asks (a DataLoader's workers too)
                self.used[f"a process of your own ({module}.{name}: nothing watches what it runs)"] = None
            # what finds objects no reference leads to: the grading's, in the interpreter's other
            # threads and its heap (an answer has no use for them)
            if (module, name) in OBJECT_FINDERS or name == "__subclasses__":
                self.used[f"{module + '.' if module else ''}{name} (it finds the grading's objects)"] = None
            if name in self.c and (id(frame.f_globals) not in self.own or self._student(frame)
                                   or not self._library_file(frame.f_code.co_filename)):
                self.used[f"torch's {name} (a C function)"] = None
            if id(arg) in self._ops:
                self.used[f"torch's operator {self._ops[id(arg)]}"] = None
            # the operators' watch (a dispatch mode) is skipped where the Python dispatch key is
            # excluded (`with torch._C._DisableTorchDispatch():`): the student's code has no call to make there
            if self.c and _python_key_excluded() and self._direct(frame, called=True):
                self.used["torch's dispatch switched off around your code (_DisableTorchDispatch: it hides "
                          "the operators it runs)"] = None

    def _refuse(self, what: str) -> None:
        """The student's code asked for the watcher itself: recorded, and refused by raising
        here, which makes Python remove the profiler (an exception in a profile function does).
        The records could be emptied once the answer holds the watcher; a watcher that is gone
        is seen after the answer has returned, when nothing of the student's runs any more."""
        self.used[f"{what} (it hands your code the grading's call watcher)"] = None
        raise PermissionError(f"{what} is not available while your answer is graded")

    def run(self, run: Callable, args: tuple) -> tuple[str, Any]:
        """Run the student's code in a thread of its own (_run_apart), watched; add what the
        thread's watch cannot see: threads of the notebook's that run beside it, and a watcher
        that was switched off (its end marker unseen)."""
        threads, pools = self.other_threads()
        try:
            return _run_apart(self, run, args)
        finally:
            after, more_pools = self.other_threads()
            for thread in threads + after:
                self.used[thread] = None
            self.review[:] = sorted(set(self.review + pools + more_pools))
            if not self.end.seen:
                self.used["something that switched off the grading's call watcher (sys.setprofile)"] = None


# ---------------------------------------------------------------------- tampering checks
# Names the grading itself calls in these namespaces (comparing answers, drawing inputs,
# seeding): each must still be the function of that name, so that swapping in another genuine
# torch function (`torch.equal = torch.is_same_size`, `torch.randn = torch.zeros`) is seen too.
# (Not every name: torch has a few genuine aliases whose __name__ differs, such as
# `torch.to_dlpack`, and they change from one release to the next.)
SAME_NAME = {"torch": ("allclose", "equal", "isclose", "isnan", "isinf", "isfinite", "where", "randn",
                       "randint", "rand", "randn_like", "rand_like", "manual_seed", "zeros", "ones",
                       "tensor", "arange", "unravel_index"),
             "math": None}          # None: every name (math's functions all carry their own name)


def _module_file(module_name: str) -> str:
    module = sys.modules.get(module_name)
    return _abspath(getattr(module, "__file__", None) or "") if module is not None else ""


def _attribute(obj: Any, name: str) -> Any:
    """getattr that treats any error as a missing attribute (torch.classes answers every name)."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


_ABSOLUTE: dict = {}      # an absolute path -> os.path.abspath of it (its normal form)


def _abspath(path: str) -> str:
    """os.path.abspath, remembered for absolute paths: the guard and tampering() ask it of the
    same few thousand code files ~25,000 times per grade. (A relative path, "<string>" among
    them, is read against the working directory, which a cell may change: never remembered.)"""
    if type(path) is not str:
        return os.path.abspath(path)
    known = _ABSOLUTE.get(path)
    if known is None:
        known = os.path.abspath(path)
        if os.path.isabs(path):
            _ABSOLUTE[path] = known
    return known


def _outside(path: str, homes: tuple) -> bool:
    """True when code from `path` is not the libraries' (frozen standard modules count as theirs)."""
    return not (path or "").startswith("<frozen ") and not _abspath(path or "?").startswith(homes)


def _foreign_object(label: str, obj: Any, homes: tuple) -> Optional[str]:
    """Why `obj` is not one of the library's own objects, or None (see _foreign)."""
    own_c = {"math": ("math",), "builtins": ("builtins",)}.get(label, ("torch",))
    if isinstance(obj, functools.partial):
        return "a functools.partial"
    if isinstance(obj, types.FunctionType):
        return "a function of the notebook" if _outside(obj.__code__.co_filename, homes) else None
    if isinstance(obj, types.BuiltinFunctionType):
        owner = obj.__self__
        if label == "builtins":             # (open is io's)
            return None if owner is builtins or getattr(owner, "__name__", "") in ("_io", "io") else \
                "a built-in of another module"
        if isinstance(owner, types.ModuleType) and owner.__name__.split(".")[0].lstrip("_") not in own_c:
            return f"the built-in {owner.__name__}.{obj.__name__}"
        return None
    if isinstance(obj, type):
        # a class statement's class holds its methods' code, wherever its __module__ says it is from
        if obj.__flags__ & _HEAP_TYPE and _notebook_code(obj, homes):
            return "a class of the notebook"
        if obj.__module__ != "builtins" and _outside(_module_file(obj.__module__), homes):
            return "a class of the notebook"
        # a class of the library's with a method of the notebook's (torch's own classes are
        # checked name by name where the grading relies on them: torch.Tensor, nn.Module)
        if obj.__module__.split(".")[0] not in own_c and any(
                isinstance(m, types.FunctionType) and _outside(m.__code__.co_filename, homes)
                for m in vars(obj).values()):
            return "a class of the notebook"
        return None
    kind = type(obj)
    if kind.__module__ == "builtins":           # a C descriptor (method_descriptor, ...)
        objclass = _attribute(obj, "__objclass__")
        if objclass is not None and label != "builtins" and objclass.__module__.split(".")[0] not in own_c:
            return f"a method of {objclass.__name__}"
        return None
    if _outside(_module_file(kind.__module__), homes):
        return f"an object of the notebook ({kind.__name__})"
    # torch's namespaces hold callable objects of torch's own classes and typing's special forms
    # (lru_cache wrappers are looked through by _foreign): a Mock, a numpy.vectorize, ... is not
    if label != "builtins" and kind.__module__.split(".")[0] not in ("torch", "typing", "typing_extensions", "functools"):
        return f"an object of another library ({kind.__module__}.{kind.__name__})"
    return None


def _foreign(label: str, name: str, obj: Any, homes: tuple) -> Optional[str]:
    """Why `obj`, found as `label.name`, is not the library's own (None when it is).

    The library's own: a Python function whose code file is under `homes` (torch's, the standard
    library's, for builtins also site-packages'), a C function of torch (of math for math, of
    builtins for builtins), a class defined there, or an instance of one. Anything else was put
    there by the notebook: a lambda, a partial, a callable object (unittest.mock's included), a
    class of its own, a built-in of another module (`operator.is_not`), and, for the names the
    grading calls (SAME_NAME; torch.Tensor's non-dunder methods), another genuine function."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, types.ModuleType):
        return None
    if not callable(obj):
        # a descriptor answers every lookup through an instance (`t.detach()` calls what its
        # __get__ returns): a property's functions, or a descriptor class's methods, of the notebook
        parts = [obj.fget, obj.fset, obj.fdel] if isinstance(obj, property) else \
            [obj] if hasattr(type(obj), "__get__") else []
        return "a descriptor of the notebook" if any(p is not None and _notebook_code(p, homes) for p in parts) else None
    wanted = SAME_NAME.get(label, ()) if label != "torch.Tensor" else (() if name.startswith("__") else (name,))
    own_name = _attribute(obj, "__name__")
    if (wanted is None or name in wanted) and isinstance(own_name, str) and own_name != name:
        return f"another function ({own_name})"
    for _ in range(10):                          # through functools.wraps / lru_cache wrappers
        why = _foreign_object(label, obj, homes)
        inner = None if isinstance(obj, type) else _attribute(obj, "__wrapped__")
        if why or inner is None:
            return why
        obj = inner
    return None


def _notebook_code(obj: Any, homes: tuple, classes_read: Optional[dict] = None) -> Optional[str]:
    """The qualified name of a Python function in `obj` whose code is not from `homes` (the
    libraries' folders, frozen standard modules included), or None. `obj` is a function, a
    method, a partial, a class (its own and its bases' methods) or an instance (its class's
    methods and the functions it holds itself).

    `classes_read`, a dict a caller keeps over one scan of many objects (no code of the
    notebook runs during it), remembers what each class's own namespace held, so that classes
    many objects share as bases (typing's, enum's) are read once per scan, not once per object."""
    found = _first_notebook_function([obj], homes)
    if found or isinstance(obj, (types.FunctionType, types.MethodType, functools.partial)):
        return found
    kind = obj if isinstance(obj, type) else type(obj)
    for klass in kind.__mro__[:-1]:
        known = classes_read.get(id(klass)) if classes_read is not None else None
        if known is not None and known[0] is klass:
            found = known[1]
        else:
            # a dataclass's __init__, __repr__, __eq__ ... and a named tuple's __new__ are compiled
            # by dataclasses and collections from "<string>"
            generated = hasattr(klass, "__dataclass_fields__") or hasattr(klass, "_fields")
            found = _first_notebook_function(
                [f for key, f in vars(klass).items()
                 if not (generated and key.startswith("__")
                         and isinstance(getattr(f, "__func__", f), types.FunctionType)
                         and getattr(f, "__func__", f).__code__.co_filename == "<string>")], homes)
            if classes_read is not None:
                classes_read[id(klass)] = (klass, found)        # (the class kept: its id stays its own)
        if found:
            return found
    if not isinstance(obj, type):
        return _first_notebook_function(list(getattr(obj, "__dict__", {}).values()), homes)
    return None


def _first_notebook_function(functions: list, homes: tuple) -> Optional[str]:
    """The qualified name of the first of `functions` (looked through methods, staticmethods
    and partials) whose code is not from `homes`, or None."""
    for function in functions:
        if type(function) is not types.FunctionType:    # (most are: read those without a call)
            for _ in range(10):             # through methods, staticmethods and partials
                if not isinstance(function, (types.MethodType, staticmethod, classmethod, functools.partial)):
                    break
                inner = getattr(function, "__func__", None) or getattr(function, "func", None)
                if inner is None:
                    break
                function = inner
            if not isinstance(function, types.FunctionType):
                continue
        if _outside(function.__code__.co_filename, homes):
            return function.__qualname__
    return None


def _import_system_changed() -> list[str]:
    """Finders and hooks of the notebook in Python's import system. load_package imports the
    private copy's submodules through it, so a finder in sys.meta_path (or a finder cached
    for the package's folder) could swap the comparison while the copy loads, before any
    snapshot is taken."""
    homes, classes_read = _library_folders(), {}
    found = []
    for label, entries in (("sys.meta_path", list(sys.meta_path)), ("sys.path_hooks", list(sys.path_hooks)),
                           ("sys.path_importer_cache", [v for v in list(sys.path_importer_cache.values()) if v])):
        for entry in entries:
            name = _notebook_code(entry, homes, classes_read)
            if name:
                found.append(f"{label} holds a finder with code of the notebook ({name})")
                break
    return found


def _private_copy_changed(package) -> list[str]:
    """Functions in the grading's private copy of minigpt whose code comes from neither the
    package's files nor a library: put there while the copy loaded (a finder of the notebook)
    or since (the student's code reaching it through a frame)."""
    if package is None:
        return []
    homes = (os.path.join(str(PACKAGE), ""),) + _library_folders()
    found, seen, modules, classes_read = [], set(), [package], {}
    while modules:
        module = modules.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        for name, value in list(vars(module).items()):
            if isinstance(value, types.ModuleType):
                if value.__name__.startswith(package.__name__ + "."):
                    modules.append(value)
                continue
            if isinstance(value, type) and not value.__module__.startswith(package.__name__):
                continue                # torch's and the standard library's classes, imported
            if callable(value) or isinstance(value, (staticmethod, classmethod)):
                culprit = _notebook_code(value, homes, classes_read)
                if culprit:
                    where = module.__name__.split(".", 1)[1] if "." in module.__name__ else "minigpt"
                    found.append(f"{where}.{name} in the grading's copy of minigpt is code of the notebook ({culprit})")
    return found


_TORCH_OWN = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _torch_class_changed(label: str, cls: type, homes: Optional[tuple] = None) -> list[str]:
    """The methods of one of torch.nn's classes that are the notebook's code, or another class's:
    every model the grading builds runs them (`nn.LayerNorm.forward = lambda self, x:
    torch.zeros_like(x)` makes every model's logits 0), and copying a case runs Parameter's
    `__deepcopy__`. A genuine method of another class (`enum.Enum.__deepcopy__`, which hands back
    the same object) is as wrong there as the notebook's (`_method_of`); what `dataclasses` and
    `typing_extensions` generate for torch's classes is left alone."""
    homes, found = homes or _library_folders(), []    # (the folders, once for all of torch.nn)
    for name, value in list(vars(cls).items()):
        function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if isinstance(function, types.FunctionType):
            path = _abspath(function.__code__.co_filename)
            generated = (function.__code__.co_filename == "<string>" or path.endswith(os.sep + "dataclasses.py")) \
                and hasattr(cls, "__dataclass_fields__") or (
                # what @deprecated wraps a class's __new__ and __init_subclass__ in (typing_extensions', or
                # on Python 3.13 the warnings module's)
                path.endswith((os.sep + "typing_extensions.py", os.sep + "warnings.py")))
            if generated:
                continue
            if _outside(path, homes) or not _method_of(function, cls, name):
                found.append(f"{label}.{name} was replaced by {function.__qualname__} ({os.path.basename(path)})")
        elif name != "__torch_function__":          # Parameter's and Buffer's are torch's C function
            why = _foreign(label, name, value, (_TORCH_HOME, _STDLIB))
            if why:
                found.append(f"{label}.{name} was replaced by {why}")
    return found


def _method_of(function: types.FunctionType, cls: type, name: str) -> bool:
    """Whether a library's `function`, found as `cls.name`, is that class's (or a base's) own
    method, a function of its module under its own name, or one a library made at run time to
    patch the class (a function defined inside another: torch.compile wraps nn.Module's
    `__init__`, transformers adds `smart_apply`). Another class's genuine method put there is
    not (`nn.Linear.forward = nn.Identity.forward`, `nn.Parameter.__deepcopy__ =
    OpOverload.__deepcopy__` or `enum.Enum.__deepcopy__`, which hand back the same object).
    (Module's `forward` is torch's `_forward_unimplemented`, defined outside the class.)"""
    owner, _, own_name = function.__qualname__.rpartition(".")
    if "<locals>" in owner:
        return True
    if not owner:
        return own_name == name or (cls is nn.Module and own_name == "_forward_unimplemented")
    return owner in {klass.__qualname__ for klass in cls.__mro__}


def _modes_switched_on() -> list[str]:
    """torch function and dispatch modes left on (entered in an earlier cell, or by the answer
    and never left): a mode answers for torch's functions, the grading's comparison among them
    (`torch.allclose` saying yes). Only torch's own DeviceContext (`torch.set_default_device`,
    `with torch.device(...)`) may be on."""
    from torch.utils._device import DeviceContext
    found = []
    for index in range(torch._C._len_torch_function_stack()):
        mode = torch._C._get_function_stack_at(index)
        if type(mode) is not DeviceContext or _torch_class_changed("DeviceContext", DeviceContext):
            found.append(f"a torch function mode is switched on ({type(mode).__qualname__}): it answers for torch's "
                         "functions, the grading's comparison among them")
    if torch._C._len_torch_dispatch_stack():
        found.append("a torch dispatch mode is switched on: it answers for torch's operators, the grading's "
                     "comparison among them")
    return found


_HEAP_TYPE = 1 << 9         # Py_TPFLAGS_HEAPTYPE: a class made at run time (a class statement)


def _copying_changed() -> list[str]:
    """deepcopy's own tables: each case is copied for the student's code and the reference, and
    a dispatch entry that hands a Parameter back uncopied makes the two share one model."""
    found = []
    for cls, function in list(copy._deepcopy_dispatch.items()):
        # the interpreter's own types only (no class written in Python: not nn.Parameter)
        if not isinstance(cls, type) or cls.__flags__ & _HEAP_TYPE or not isinstance(function, types.FunctionType) \
                or function.__module__ != "copy" or _outside(function.__code__.co_filename, (_STDLIB,)):
            found.append(f"copy.deepcopy's table was given {getattr(function, '__qualname__', function)!r} "
                         f"for {getattr(cls, '__qualname__', cls)}")
    for cls in list(copyreg.dispatch_table):
        if isinstance(cls, type) and issubclass(cls, (torch.Tensor, nn.Module)):
            found.append(f"copyreg's table was given a reduction for {cls.__qualname__}")
    return found


def _global_module_hooks() -> list[str]:
    """Hooks on every nn.Module (`register_module_forward_hook`): one that zeroes each output
    makes the reference's model give what a blank answer gives."""
    from torch.nn.modules import module
    return [f"a hook on every nn.Module ({name})" for name, hooks in sorted(vars(module).items())
            if name.startswith("_global_") and isinstance(hooks, dict) and hooks]


_CXX_SOURCES = (".cpp", ".cc", ".cu", ".c", ".h", ".hpp", ".mm")


def _kernels_of_the_notebook() -> list[str]:
    """Kernels registered from Python for torch's own operators (`torch.library.Library("aten",
    "IMPL").impl("allclose", ...)`): the dispatcher itself would then answer the grading's
    comparison, or compute the reference. torch registers Python kernels of its own (shape-only
    "Meta" ones, a few from its own files); one registered from the notebook, or through the
    public `torch.library` API (which records its own file), is reported."""
    if not hasattr(torch._C, "_dispatch_get_all_op_names"):
        return []
    public = (os.path.join(_TORCH_OWN, "library.py"), os.path.join(_TORCH_OWN, "_library", ""))
    found = []
    for op in torch._C._dispatch_get_all_op_names():
        if not op.startswith("aten::"):
            continue
        dump = torch._C._dispatch_dump(op)
        if dump in _TORCH_OWN_KERNELS:      # (read before, and all torch's own)
            continue
        own = True
        for key, path in _REGISTERED_AT.findall(dump):
            if key == "Meta" or path.endswith(_CXX_SOURCES):
                continue
            if not _abspath(path).startswith(_TORCH_OWN) or _abspath(path).startswith(public):
                found.append(f"torch's operator {op} has a kernel of the notebook's ({key})")
                own = False
        if own:
            _TORCH_OWN_KERNELS.add(dump)
    return found


# An operator's kernels, as the dispatcher lists them (one "Key: registered at file:line ::" a
# line); the listings found to hold torch's kernels alone, kept whole: the same text is the same
# kernels, so ~3,000 operators are read once per process rather than twice per grade.
_REGISTERED_AT = re.compile(r"^(\w+): registered at (.*?):\d+ ::", re.M)
_TORCH_OWN_KERNELS: set = set()


# The standard library's modules the grading calls into while it grades (paths and library
# folders, its own frames, copying, patterns, JSON, imports, warnings): a function of the
# notebook's put in one of them runs inside the grading, where nothing watches it
# (`site.getsitepackages = hook`, and the hook reaches the grading's frames).
GRADING_USES = ("os", "posixpath", "ntpath", "genericpath", "site", "sysconfig", "inspect", "re", "copy", "copyreg",
                "functools", "json", "json.decoder", "json.encoder", "ast", "importlib", "importlib.util",
                "importlib.machinery", "contextlib", "io", "warnings", "types", "threading", "traceback", "linecache",
                "tokenize", "dis", "textwrap", "collections", "operator", "itertools", "weakref", "enum")


def _standard_library_changed() -> list[str]:
    homes, found, classes_read = _library_folders(), [], {}
    for module_name in GRADING_USES:
        module = sys.modules.get(module_name)
        for name, obj in list(vars(module).items()) if module is not None else ():
            if isinstance(obj, types.ModuleType) or not (callable(obj) or isinstance(obj, (staticmethod, classmethod))):
                continue
            culprit = _notebook_code(obj, homes, classes_read)
            if culprit:
                found.append(f"{module_name}.{name} was replaced by code of the notebook ({culprit})")
    return found


def _monitoring_tools() -> list[str]:
    """Tools registered with `sys.monitoring` (Python 3.12 and later) that have events switched
    on: their callbacks run in every thread, the answer's entry and the grading's own included,
    before any profiler sees a call. An autograder runs no debugger or coverage tool."""
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return []
    found = []
    for tool in range(6):               # the ids a program may use (6 and 7: sys.setprofile's own)
        name = monitoring.get_tool(tool)
        if name is not None and monitoring.get_events(tool):
            found.append(f"a sys.monitoring tool is on ({name!r}): its callbacks run inside the grading")
    return found


def _signal_handlers_of_the_notebook() -> list[str]:
    """Signal handlers written in the notebook: Python runs them in the grading's thread between
    any two of its lines, with the grading's frames above them, and inside the Guard's own code,
    which no profiler watches."""
    import signal
    homes, found = _library_folders(), []
    classes: dict = {}          # id(class) -> (class, whether it holds code of the notebook's)
    for number in sorted(signal.valid_signals()):
        try:
            handler = signal.getsignal(number)
        except (ValueError, OSError):
            continue
        kind = type(handler)
        notebooks = _notebooks_function(handler, homes)
        if not notebooks and _function_of(handler) is None and kind.__flags__ & _HEAP_TYPE:
            # (most handlers are signal.Handlers' members: its enum classes are read once, kept
            # by id so that no metaclass's __hash__ runs)
            if id(kind) not in classes:
                classes[id(kind)] = (kind, _class_of_the_notebook(kind, homes))
            notebooks = classes[id(kind)][1]
        if notebooks:
            found.append(f"a signal handler of the notebook's is installed ({signal.Signals(number).name})")
    return found


def tampering(package) -> list[str]:
    """What the notebook replaced that the grading relies on (see the module docstring)."""
    found = (_import_system_changed() + _private_copy_changed(package) + _modes_switched_on() + _copying_changed()
             + _global_module_hooks() + _kernels_of_the_notebook() + _standard_library_changed())
    homes = _library_folders()
    for name, cls in list(vars(nn).items()):
        if isinstance(cls, type) and cls.__module__.startswith("torch."):
            found += _torch_class_changed(f"torch.nn.{name}", cls, homes)
    # torch's own functions, the standard library's that torch re-exports (typing's, ...) and,
    # in builtins, what site-packages put there (IPython's display, exit, ...); the libraries
    # beside torch count as its own (_TORCH_HOME), and their objects are held to more below
    site = tuple(os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("purelib", "platlib"))
    for label, namespace in (("torch", vars(torch)), ("torch.nn.functional", vars(torch.nn.functional)),
                             ("torch.Tensor", vars(torch.Tensor)),
                             ("math", vars(math)), ("builtins", vars(builtins))):
        homes = (_TORCH_HOME, _STDLIB) + (site if label == "builtins" else ())
        for name, obj in list(namespace.items()):
            why = _foreign(label, name, obj, homes)
            if why:
                found.append(f"{label}.{name} was replaced by {why}")
    found += _monitoring_tools() + _signal_handlers_of_the_notebook()
    for name in ("setprofile", "getprofile", "_getframe"):
        if not _genuine_builtin(getattr(sys, name, None), "sys", name):
            found.append(f"sys.{name} was replaced")
    # the standard library's functions the grading itself calls (copying the cases, reading
    # chapter 14's key, loading its files)
    import ast
    import json
    for function, name in ((copy.deepcopy, "copy.deepcopy"), (ast.literal_eval, "ast.literal_eval"),
                           (json.loads, "json.loads"), (importlib.import_module, "importlib.import_module"),
                           (importlib.util.spec_from_file_location,
                                                        "importlib.util.spec_from_file_location"),
                           (importlib.util.module_from_spec, "importlib.util.module_from_spec")):
        if not (isinstance(function, types.FunctionType) and function.__name__ == name.rsplit(".", 1)[1]
                and not _outside(function.__code__.co_filename, (_STDLIB,))):
            found.append(f"{name} was replaced")
    # the seed of the fresh inputs: os.urandom must be the operating system's (a notebook that
    # fixes it knows the inputs in advance)
    urandom = getattr(os, "urandom", None)
    if not (_genuine_builtin(urandom, "posix", "urandom") or _genuine_builtin(urandom, "nt", "urandom")):
        found.append("os.urandom was replaced")
    return found


def _code_in(function: Any, packages: tuple) -> bool:
    """True when `function` is a Python function of one of these installed packages, known by
    the file its code comes from."""
    code = getattr(inspect.unwrap(function), "__code__", None) if callable(function) else None
    if not isinstance(code, types.CodeType) or _outside(code.co_filename, _library_folders()):
        return False
    parts = _abspath(code.co_filename).split(os.sep)
    return any(package in parts for package in packages)


def _ipython_shell():
    """The IPython shell the grading runs in (a notebook's kernel), or None outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def replaced_checks() -> list[str]:
    """Visible checks replaced from a cell (reported only: the grade never uses them)."""
    module = sys.modules.get("minigpt.exercises")
    if module is None:
        return []
    out = []
    for name in list(SPECS) + [SELF_TEST]:
        check = getattr(module, name, None)
        code = getattr(check, "__code__", None)
        if check is not None and (code is None or "minigpt" not in code.co_filename.replace(os.sep, "/")):
            out.append(name)
    return out


# ------------------------------------------------------------------------------ grading
_plain = _APART["plain"]       # (defined with the student's thread's code, below Watcher)


@contextlib.contextmanager
def _injected(namespace: Optional[dict], values: dict):
    """Put the references in the notebook's namespace while a module built on them is graded."""
    if not namespace or not values:
        yield
        return
    missing = object()
    saved = {name: namespace.get(name, missing) for name in values}
    namespace.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = old


def _code_of(value: Any) -> tuple:
    """What a function runs, as objects: its code, defaults and closure cells (for a class,
    its own methods'). `f.__code__ = ...` keeps the function object, so a snapshot by identity
    alone would not see the comparison made to say yes."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, types.FunctionType):
        return (value.__code__, value.__defaults__, value.__kwdefaults__, value.__closure__)
    if isinstance(value, type):
        return tuple(part for v in vars(value).values() if isinstance(v, (types.FunctionType, staticmethod, classmethod))
                     for part in _code_of(v))
    return ()


def _globals_of(reference: Any) -> dict:
    """The module globals a reference computes with (a function's, or a class's methods'):
    `reference.__globals__["torch"] = fake` would make the right answer what the fake says."""
    functions = [reference] if isinstance(reference, types.FunctionType) else \
        [getattr(v, "__func__", v) for v in vars(reference).values()] if isinstance(reference, type) else []
    return next((f.__globals__ for f in functions if isinstance(f, types.FunctionType)), {})


def _snapshot(**namespaces: dict) -> dict:
    """Copies of the namespaces the grading runs on (its own module's, the private package's
    comparison and run adapters', the exercise's, the watcher's), with the code of the functions
    and classes in them, to compare after the student's code ran: nothing in Python keeps that
    code from reaching them through its callers' frames."""
    return {label: (namespace, dict(namespace), {k: _code_of(v) for k, v in namespace.items()})
            for label, namespace in namespaces.items()}


def _same_object(a: Any, b: Any) -> bool:
    """`a is b`, or equal numbers and strings (`id()` makes a new int object every time)."""
    return a is b or (type(a) is type(b) and type(a) in (int, float, str, bool) and a == b)


def _changed(snapshot: dict) -> list[str]:
    out = []
    for label, (namespace, before, code) in snapshot.items():
        names = sorted(k for k in set(before) | set(namespace)
                       if k not in before or k not in namespace or not _same_object(namespace[k], before[k])
                       or not all(map(_same_object, _code_of(namespace[k]), code[k]))
                       or len(_code_of(namespace[k])) != len(code[k]))
        out += [f"{label}.{name}" for name in names]
    return out


class ScoreNotShown(RuntimeError):
    """The notebook changed how IPython shows a cell's value: nbgrader reads the score from that
    display (and gives full points to a graded cell that shows none), so the cell must fail."""


def display_problems() -> list[str]:
    """What a notebook changed in IPython's display of a cell's value or in how it reads a cell:
    a graded cell whose value is not shown, or shown by other code, or whose code is rewritten
    before it runs, would score what nbgrader reads, not what grading printed."""
    shell = _ipython_shell()
    if shell is None:
        return []
    found = []
    if shell.ast_node_interactivity not in ("last_expr", "all", "last", "last_expr_or_assign"):
        found.append(f"InteractiveShell.ast_node_interactivity is {shell.ast_node_interactivity!r}")
    plain = shell.display_formatter.formatters.get("text/plain")
    if plain is None or not plain.enabled or "text/plain" not in shell.display_formatter.active_types:
        found.append("the text/plain display is turned off")
    homes = _library_folders()
    # (a class's __module__ is whatever the notebook says: its methods' code is not)
    if sys.displayhook is not shell.displayhook or \
            not type(shell.displayhook).__module__.startswith(("IPython.", "ipykernel.")) or \
            _notebook_code(type(shell.displayhook), homes):
        found.append("the display hook was replaced")
    for name in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
        for transformer in getattr(shell, name, []):
            home = getattr(transformer, "__module__", None) or type(transformer).__module__
            if not home.startswith("IPython.") or _notebook_code(transformer, homes):
                found.append(f"a transformer of every cell's code was added ({name})")
                break
    # every formatter that could show the score: IPython's own (%precision) and sympy's
    # (init_printing) print a float as it is, known by their code's file (a function's __module__
    # is whatever the notebook says); the mimebundle formatter can supply the text/plain
    # nbgrader reads, so it may hold no printer of a float at all
    formatters = list(shell.display_formatter.formatters.values()) + [
        getattr(shell.display_formatter, name, None) for name in ("mimebundle_formatter", "ipython_display_formatter")]
    for formatter in [f for f in formatters if f is not None]:
        for kind in (float, object):
            printers = [formatter.type_printers.get(kind),
                        formatter.deferred_printers.get(("builtins", kind.__name__))]
            if any(p is not None and not _code_in(p, ("IPython", "sympy")) for p in printers):
                found.append(f"IPython's display of {kind.__name__} values was replaced ({type(formatter).__name__})")
    found += _output_replaced(shell, homes)
    return found


def _output_replaced(shell, homes: tuple) -> list[str]:
    """The standard output the score is printed to: in a kernel, ipykernel's own stream (code of
    the notebook's in between could rewrite "Score: 0 / 1" on its way to nbgrader); elsewhere
    (a test's StringIO, a terminal) any stream without the notebook's code."""
    stream = sys.stdout
    kernel_stream = getattr(sys.modules.get("ipykernel.iostream"), "OutStream", None)
    in_kernel = kernel_stream is not None and type(shell).__name__ == "ZMQInteractiveShell"
    if (in_kernel and type(stream) is not kernel_stream) or _notebook_code(stream, homes):
        return ["the standard output was replaced (the printed score goes through other code)"]
    return []


def _show_score_plainly() -> None:
    """A float shows as Python writes it (a %precision set in the notebook would round 0.67 to 1
    in the display nbgrader reads)."""
    shell = _ipython_shell()
    plain = shell.display_formatter.formatters.get("text/plain") if shell is not None else None
    if plain is not None:
        plain.float_precision = ""
        plain.float_format = "%r"


def _refuse_hidden_display() -> None:
    problems = display_problems()
    if problems:
        message = ("✗ 0 points: this notebook changed how a cell's value is shown or its code is read ("
                   + "; ".join(problems) + "), so the grade cannot be shown. Remove that change and run "
                   "the notebook again.")
        if not any("standard output" in problem for problem in problems):
            print(message)          # (the replaced standard output is the notebook's code: the error says it)
        raise ScoreNotShown(message)


def grade(check: str, *answer: Any, points: float = 1.0, namespace: Optional[dict] = None,
          seed: Optional[int] = None) -> float:
    """Grade one exercise: print a report, return the points (0 .. points). Raises ScoreNotShown
    (the cell fails, nbgrader scores it 0) when the notebook changed IPython's display.

    The whole of it runs under the Guard: code of the notebook that would run in this thread
    (through an object the grading reads) makes the grade 0 before any of that code ran."""
    guard = Guard({id(globals()), id(_APART)})
    try:
        with guard.on():
            return _grade(guard, check, answer, points, namespace, seed)
    except NotebookCodeRan:
        pass
    # (a profiler that raised is removed: on again, so that a stdout of the notebook's trips it
    # again, and the cell fails, rather than rewrite this report)
    guard.on_again()
    try:
        try:                        # what was replaced, when that is how the notebook's code got in
            problems = tampering(guard.package)
        except NotebookCodeRan:     # (the checks call what was replaced: found by where it is kept)
            guard.on_again()
            problems = []
        problems = problems or guard.where_it_was()
        why = ("the notebook changed what grading relies on: " + "; ".join(problems)) if problems else (
            "an object of your notebook that the grading reads ran it (a property, __getattr__, a "
            "metaclass), or a finalizer or a signal handler did")
        print(f"✗ 0 points: code of your notebook ({guard.ran}) ran inside the grading's own code, where "
              f"nothing may run but the grading: {why}. Remove that and run the notebook again.\n"
              f"Score: 0 / {points:g}")
    finally:
        sys.setprofile(None)
    return 0.0


def _grade(guard: "Guard", check: str, answer: tuple, points: float, namespace: Optional[dict],
           seed: Optional[int]) -> float:
    _refuse_hidden_display()
    os.environ.pop("MINIGPT_GRADING", None)
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else int(seed)
    package, own = load_package()
    guard.own |= own
    guard.package = package
    lines: list[str] = []
    # checked before grading too: a replaced torch.randn or Tensor.double can make the grading
    # itself fail, and then the feedback names the replacement instead of showing the failure
    problems = tampering(package)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()) as stderr:
        warnings.simplefilter("ignore")
        try:
            if check == SELF_TEST:
                score, lines = _grade_answer(package, *answer)
            else:
                solutions = load_solutions(package)
                own = own | {id(vars(solutions))}
                guard.own |= own
                score, lines = _grade_exercise(package, solutions, own, check, answer[0], seed, namespace)
        except Exception:
            if not problems:
                raise                   # a bug of the grading's own: its traceback is wanted
            score, lines = 0.0, []      # the replacement broke the grading; the line below says why
    problems = problems or tampering(package)
    if problems:
        score = 0.0
        lines.append("✗ 0 points: the notebook changed what grading relies on: " + "; ".join(problems) + ".")
    replaced = replaced_checks()
    if replaced:
        lines.append("note: the visible check(s) " + ", ".join(replaced) + " were replaced in this notebook; "
                     "they give feedback only and never decided this grade.")
    if stderr.getvalue().strip():
        lines.append("(your code wrote to stderr while graded: " + stderr.getvalue().strip()[:200] + ")")
    # float's own rounding, not builtins.round: the notebook may have replaced that (tampering
    # then says so, and the score must still be the 0 it set); float is a built-in type nobody can patch
    earned = (points * score + 0.0).__round__(2)
    lines.append(f"Score: {earned:g} / {points:g}")
    print("\n".join(lines))
    _refuse_hidden_display()            # changed while the answer ran: the next cells would hide theirs
    _show_score_plainly()
    return earned


def _grade_exercise(package, solutions, own: set, check: str, answer: Any, seed: int,
                    namespace) -> tuple[float, list[str]]:
    spec = SPECS[check]
    core = package.exercises.core
    # the package's exercise with the code it leaves out (references, near-solution mistakes)
    exercise = solutions.live(exercise_named(package, spec.exercise))
    g = torch.Generator().manual_seed(seed)
    draw = CUSTOM_DRAWS.get(check)
    if draw is not None:
        visible_cases = exercise.cases()
        visible = {repr(case.args) + repr(case.kwargs) for case in visible_cases}
        cases = draw(core, g, visible_cases)
        for _ in range(50):      # a draw that hit one of the visible check's inputs is drawn again
            if not any(repr(c.args) + repr(c.kwargs) in visible for c in cases):
                break
            cases = draw(core, g, visible_cases)
    else:
        cases = [core.Case(case.name, redraw(case.args, g), redraw(case.kwargs, g)) for case in exercise.cases()]
    head = (f"Graded: {exercise.name}, {len(cases)} cases on inputs drawn at grading time "
            f"(seed {seed}: grade(..., seed={seed}) reproduces them)")
    # what else could be handed in (a functools.partial, a bound method, a library's callable)
    # runs code that is not the answer's own, and can be re-pointed after this line
    if not (isinstance(answer, types.FunctionType) or isinstance(answer, type) and answer.__flags__ & _HEAP_TYPE):
        return 0.0, [head, f"✗ 0 points: grading takes a function (def) or a class (class) written in your notebook; "
                     f"the answer given is {type(answer).__module__}.{type(answer).__qualname__}."]
    inject = {name: attribute(solutions, path) for name, path in spec.inject.items()}
    watcher = Watcher(spec, own, tuple(inject.values()))
    guarded = _snapshot(grading=globals(), core=vars(core), exercise=vars(exercise),
                        adapters=getattr(exercise.run, "__globals__", {}), solutions=vars(solutions),
                        watcher=vars(Watcher), watcher_state=vars(watcher),
                        reference=_globals_of(exercise.reference))
    atol = max(exercise.atol, spec.atol)
    results, passed, passed_trivial, trivial_cases = [], 0, 0, 0
    for case in cases:
        # The student's code runs first, in a thread of its own, on its own copy of the inputs,
        # and its answer is made plain before the right one exists: no frame it can reach leads
        # to the grading, and changing its inputs in place changes nothing the reference sees.
        theirs = copy.deepcopy(case)    # copied before the watch: torch's __deepcopy__ is not theirs
        if _shared_storage(theirs, case):
            return 0.0, [head, "✗ 0 points: copying a case gave your code the very tensors the right answer is "
                         "computed from (copy.deepcopy was changed in this notebook)."]
        torch.manual_seed(seed)
        failed = got = None
        with _injected(namespace, inject):
            # made plain in that thread, still watched: a tensor subclass's own code runs in it
            outcome, got = watcher.run(exercise.run, (answer, theirs))
        if outcome == "not implemented":
            failed = f"  … {case.name}: not implemented yet"
        elif outcome == "raised":   # the student's code failed on this case: it costs this case
            failed = f"  ✗ {case.name}: your code raised {got}"
        elif outcome == "lost":
            failed = f"  ✗ {case.name}: your code's thread left no answer (what it hands back was tampered with)"
        # checked before any of the grading's code runs again: a comparison changed in place
        # could otherwise put itself back once it has said yes
        if _changed(guarded):
            break
        if failed:
            results.append(failed)
            continue
        torch.manual_seed(seed)
        expected = exercise.run(exercise.reference, case)
        trivial = _answered_by_no_work(core, exercise, case, expected, atol, seed)
        trivial_cases += trivial
        if got is None and expected is not None:
            results.append(f"  ✗ {case.name}: your code returned None (a missing `return`?)")
            continue
        if core.same(got, expected, atol, exercise.rtol):
            passed_trivial += trivial
            passed += not trivial
            results.append(f"  ✓ {case.name}")
            continue
        line = f"  ✗ {case.name}: {core.describe_difference(expected, got)}."
        mistake = exercise.diagnose(got, case)
        if mistake is not None:
            line += f" Likely mistake: {mistake.hint}"
        results.append(line)
    changed = _changed(guarded)     # (after the last case: what the watcher records with is in it)
    if changed:
        return 0.0, [head, "✗ 0 points: your code changed the grading's own code while it ran: "
                     + ", ".join(changed[:6]) + "."] + results
    if watcher.used:
        used = ", ".join(watcher.used)
        what = f" The exercise is to write it yourself: {spec.what} may not be used." if spec.what else ""
        return 0.0, [head, f"✗ 0 points: your answer used {used}.{what}"] + results
    if watcher.near_copies:     # the score stands; a person decides
        results.append(f"{REVIEW_MARK}code close to what the exercise forbids, but not a copy of it: "
                       f"{'; '.join(watcher.near_copies)}. Compare the two.")
    if watcher.review:      # the score stands; `make grade` lists the notebook for a person to read
        results.append(f"{REVIEW_MARK}threads that run only the standard library's code ran beside the "
                       f"grading ({', '.join(watcher.review)}): a thread pool or an event loop made in an earlier "
                       "cell could have done the work where grading does not watch.")
    if passed_trivial and not passed and trivial_cases < len(cases):
        results.append(f"  (the {passed_trivial} passed case(s) are ones that an input returned unchanged, "
                       "or a tensor of ones or zeros, also passes: they count beside a case that takes work)")
        return 0.0, [head] + results
    return (passed + passed_trivial) / len(cases), [head] + results


def _tensors_in(value: Any, depth: int = 0) -> list:
    """The tensors a case holds: in its arguments, containers and modules (parameters, buffers)."""
    if depth > 6:
        return []
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, nn.Module):
        return list(value.parameters()) + list(value.buffers())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v, depth + 1)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors_in(v, depth + 1)]
    if hasattr(value, "args") and hasattr(value, "kwargs"):        # a Case
        return _tensors_in(list(value.args) + list(value.kwargs.values()), depth + 1)
    return []


def _shared_storage(copied: Any, original: Any) -> bool:
    """Whether the student's copy of a case shares memory with the case itself: the reference
    would then run on what the student's code changed in place."""
    def pointers(value):
        return {t.untyped_storage().data_ptr() for t in _tensors_in(value) if t.numel()}
    return bool(pointers(copied) & pointers(original))


def _answered_by_no_work(core, exercise, case, expected: Any, atol: float, seed: int) -> bool:
    """Whether an answer that does no work gets this case right: one of its inputs returned
    unchanged, or zeros or ones shaped like its first tensor input, run through the check as a
    student's answer is (softmax over one score, RoPE at position 0, repeat_kv with one repeat,
    dropout in eval mode, a merge that finds no pair). Such a case earns its share of the
    points only beside a case that takes work."""
    def inputs(args, kwargs):
        return list(args) + list(kwargs.values())

    def returned(index):
        def answer(*args, **kwargs):
            return inputs(args, kwargs)[index]
        return answer

    def filled(value):
        def answer(*args, **kwargs):
            return torch.full_like(next(a for a in inputs(args, kwargs) if isinstance(a, torch.Tensor)), value)
        return answer

    given = len(case.args) + len(case.kwargs)
    for null in [returned(i) for i in range(max(given, 3))] + [filled(0.0), filled(1.0)]:
        try:
            torch.manual_seed(seed)
            if core.same(exercise.run(null, copy.deepcopy(case)), expected, atol, exercise.rtol):
                return True
        except Exception:       # a class expected, no such input, no tensor input: no such answer
            continue
    return False


def answer_key(path: Path = SELF_TEST_NOTEBOOK) -> dict:
    """Chapter 14's answer key, read from the full edition's notebook file (the cell tagged
    `answer-key`, which calls `minigpt.exercises.use_answer_key({...})` with a literal dict): the
    student edition has no key, and the student's kernel is never asked for one."""
    import ast
    import json
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or "answer-key" not in cell.get("metadata", {}).get("tags", []):
            continue
        for node in ast.walk(ast.parse(text)):
            name = getattr(node.func, "attr", getattr(node.func, "id", "")) if isinstance(node, ast.Call) else ""
            if name == "use_answer_key":
                return ast.literal_eval(node.args[0])
    raise LookupError(f"{path.name} has no answer-key cell calling use_answer_key")


def _grade_answer(package, number: str, given: Any) -> tuple[float, list[str]]:
    """A self-test question (chapter 14): one right value, from the full edition's answer key,
    compared with the private copy's `same` (an option's letter read as the visible check reads it)."""
    question = exercise_named(package, "QUESTIONS").get(number)
    if question is None:
        return 0.0, [f"no self-test question {number!r}"]
    guarded = _snapshot(grading=globals(), core=vars(package.exercises.core))
    if callable(given):         # called before the key is read, in a thread of its own
        outcome, given = _run_apart(None, given, ())
        if outcome == "not implemented":
            return 0.0, [f"Graded: question {number}", "  … not implemented yet"]
        if outcome != "returned":
            return 0.0, [f"Graded: question {number}", f"  ✗ your answer raised {given}" if outcome == "raised"
                         else "  ✗ your answer's thread left no answer (what it hands back was tampered with)"]
    # read as the visible check reads it (a list or torch.Size is a shape, a 0-d tensor a count)
    given, _ = package.exercises.core.read_answer(f"question {number}", _plain(given))
    given = _plain(given)
    if question.kind == "option":
        given = exercise_named(package, "_option")(given)
    changed = _changed(guarded)
    if changed:
        return 0.0, [f"Graded: question {number}", "  ✗ your answer changed the grading's own code while it "
                     "ran: " + ", ".join(changed[:6]) + "."]
    entry = answer_key().get(number)
    if entry is None:
        return 0.0, [f"no self-test question {number!r}"]
    ok = package.exercises.core.same(given, entry["answer"])
    return (1.0 if ok else 0.0), [f"Graded: question {number}", "  ✓ right" if ok else f"  ✗ {given!r} is not it"]
