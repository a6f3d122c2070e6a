"""Can a learner run a cell again once the chapter has run? `python tools/rerun_check.py NB...`

A reader who has run a chapter to the end scrolls back and runs an earlier cell again. That cell
then sees the names as the chapter left them, not as they were when it first ran. If a later cell
rebound one of the names it reads (`x` of another shape, a `logits` of another model, a `T` of
another length), the re-run fails or prints other numbers than the page shows.

This script runs each notebook once, top to bottom, in a fresh kernel, and fingerprints every
name in the kernel's namespace between code cells and at the end (tensors and modules by their
values, functions and other objects by identity, small plain values by repr). For every code cell
it lists the names the cell reads from outside itself (read before the cell binds them, found by
parsing it) whose value at the end differs from their value just after the cell ran: a later cell
changed them. Exit status 1 if any cell has one.

It does not catch a cell that changes a name it reads itself (`x = x + 1`: the same cell run
twice in a row), nor one that depends on the global random state without seeding it; the
re-run-training check in tests/test_notebook_structure.py covers the cells that train.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

MARK = "@@rerun-fingerprints@@"

# Runs in the kernel before the first cell: a function (hidden by its name) that prints one JSON
# line {name: fingerprint} for the learner's names. Modules and IPython's own names are skipped.
FINGERPRINT_SETUP = r'''
def __rerun_fingerprints():
    import hashlib, json, types
    import torch
    shell = get_ipython()
    def tensor_digest(t):
        t = t.detach().cpu().contiguous()
        if t.is_complex():
            t = torch.view_as_real(t)
        if t.is_quantized or t.is_sparse:
            return f"id:{id(t)}"
        data = t.view(torch.uint8) if t.dim() and t.element_size() else t.reshape(1).view(torch.uint8)
        return hashlib.sha1(data.numpy().tobytes()).hexdigest()[:16] + f"{tuple(t.shape)}{t.dtype}"
    def digest(value):
        if isinstance(value, torch.Tensor):
            return tensor_digest(value)
        if isinstance(value, torch.nn.Module):        # its weights and buffers, and which object it is
            parts = [f"{k}:{tensor_digest(v)}" for k, v in value.state_dict().items()]
            return f"id:{id(value)}:" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes, range)):
            return repr(value)[:200]
        if isinstance(value, (tuple, list)) and len(value) <= 64:
            return f"{type(value).__name__}[" + ",".join(digest(v) for v in value) + "]"
        return f"id:{id(value)}"                        # functions, classes, dicts, configs...
    hidden = set(shell.user_ns_hidden)
    prints = {}
    for name, value in list(shell.user_ns.items()):
        if name.startswith("_") or name in hidden or isinstance(value, types.ModuleType):
            continue
        try:
            prints[name] = digest(value)
        except Exception as error:                      # an object that will not be read: by identity
            prints[name] = f"id:{id(value)} ({type(error).__name__})"
    print("''' + MARK + r'''" + json.dumps(prints))
'''
PROBE = "__rerun_fingerprints()"


def without_ipython_lines(source: str) -> str:
    """A cell's source with its IPython lines (%magic, !shell) left out: Python to parse."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _names_bound_by(node: ast.AST) -> list[str]:
    """The names a def, class or import statement binds (none for other nodes)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(alias.asname or alias.name).split(".")[0] for alias in node.names]
    return []


def _locals_of(scope: ast.AST) -> set[str]:
    """The names a function, lambda or comprehension binds for itself (its own scope only)."""
    names = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        names |= {arg.arg for arg in ast.walk(scope.args) if isinstance(arg, ast.arg)}
    if isinstance(scope, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        body = scope.generators
    else:
        body = scope.body if isinstance(scope.body, list) else [scope.body]
    for statement in body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif node is not scope:
                names.update(_names_bound_by(node))
    return names


def names_read_from_outside(source: str) -> set[str]:
    """The names a cell reads that it has not bound itself by then: at the cell's top level, a
    name read before the cell's first binding of it; inside a function, lambda or comprehension
    (which runs later), a name that neither that scope nor the cell binds."""
    tree = ast.parse(without_ipython_lines(source))
    cell_binds = _locals_of(ast.Module(body=tree.body, type_ignores=[]))   # anywhere at top level
    first_bound: dict[str, tuple[int, int]] = {}
    reads: set[str] = set()

    def visit(node: ast.AST, enclosing: list[set[str]]) -> None:
        top_level = not enclosing
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp,
                             ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            enclosing = enclosing + [_locals_of(node)]
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):   # x += 1 reads x
            visit(ast.copy_location(ast.Name(node.target.id, ast.Load()), node.target), enclosing)
        if isinstance(node, ast.Name):
            where = (node.lineno, node.col_offset)
            if isinstance(node.ctx, ast.Store) and top_level:
                first_bound[node.id] = min(first_bound.get(node.id, where), where)
            elif isinstance(node.ctx, ast.Load):
                if enclosing:
                    if not any(node.id in scope for scope in enclosing) and node.id not in cell_binds:
                        reads.add(node.id)
                elif first_bound.get(node.id, where) >= where:
                    reads.add(node.id)
        if top_level:
            for name in _names_bound_by(node):
                first_bound.setdefault(name, (node.lineno, node.col_offset))
        # an assignment's value is read before its target is bound: visit the value first
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value is not None:
            children.remove(node.value)
            children.insert(0, node.value)
        for child in children:
            visit(child, enclosing)

    visit(tree, [])
    return reads


def fingerprints_per_cell(notebook: Path, timeout: int) -> tuple[dict[int, str], list[dict], dict]:
    """Run the notebook once. Returns its code cells' sources by their index among all its cells,
    the namespace's fingerprints before each of them, and the fingerprints at the end."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    sources = {index: cell.source for index, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    probed = nbformat.v4.new_notebook(metadata=nb.metadata)
    probed.cells.append(nbformat.v4.new_code_cell(FINGERPRINT_SETUP))
    for source in sources.values():
        probed.cells.append(nbformat.v4.new_code_cell(PROBE))
        probed.cells.append(nbformat.v4.new_code_cell(source))
    probed.cells.append(nbformat.v4.new_code_cell(PROBE))
    NotebookClient(probed, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    seen = []
    for cell in probed.cells:
        if cell.source != PROBE:
            continue
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        seen.append(json.loads(text.split(MARK, 1)[1]))
    return sources, seen[:-1], seen[-1]


def changed_reads(sources: dict[int, str], before: list[dict], end: dict) -> list[tuple[int, list[str]]]:
    """(cell index, names) for each code cell that reads a name which the cells after it change:
    its value at the end differs from its value just after this cell ran. (Measured after the
    cell, not before it, so a cell that sets up an object it reads, e.g. loads weights into it,
    is not counted; a name the cell found missing is not counted either: it failed the first time.)"""
    found = []
    after = before[1:] + [end]
    for (index, source), seen, left in zip(sources.items(), before, after):
        changed = sorted(name for name in names_read_from_outside(source)
                         if name in seen and end.get(name) != left.get(name))
        if changed:
            found.append((index, changed))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=900, help="seconds a cell may run")
    args = parser.parse_args(argv)
    problems = 0
    for notebook in args.notebooks:
        began = time.perf_counter()
        sources, before, end = fingerprints_per_cell(notebook, args.timeout)
        found = changed_reads(sources, before, end)
        problems += len(found)
        print(f"{notebook}: {len(sources)} code cells, {len(found)} read a name a later cell changes "
              f"({time.perf_counter() - began:.0f} s)")
        for index, names in found:
            print(f"  cell {index}: {', '.join(names)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
