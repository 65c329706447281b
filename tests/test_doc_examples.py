"""The README's Quick start runs and prints what its comments say, and every docstring example written as a
doctest in fxsim's modules passes."""
import ast
import doctest
import importlib
import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick_start_blocks():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _bracketed(text):
    """The leading [...] of ``text`` (brackets balanced), or None."""
    if not text.startswith("["):
        return None
    depth = 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth == 0:
            return text[:i + 1]
    return None


def _claim(comment):
    """What a comment claims about its line's value: ("array", dtype or None, literal), ("repr", prefix), or
    None for a comment that only explains."""
    m = re.match(r"((?:u?int|float)\d+)\s+(\[.*)", comment)
    dtype, rest = (m.group(1), m.group(2)) if m else (None, comment)
    lit = _bracketed(rest)
    if lit is not None:
        return "array", dtype, ast.literal_eval(re.sub(r"\bnan\b", "None", lit))
    m = re.match(r"([A-Z]\w*\(.*?), \.\.\.\)", comment)
    if m:
        return "repr", m.group(1)
    return None


def _check(value, claim, line):
    if claim[0] == "repr":
        assert repr(value).startswith(claim[1]), (line, repr(value))
        return
    _, dtype, lit = claim
    got = np.asarray(value)
    want = np.array([np.nan if v is None else v for v in np.ravel(np.array(lit, dtype=object))], dtype=np.float64)
    assert got.shape == np.array(lit, dtype=object).shape, (line, got.shape)
    assert np.array_equal(got.astype(np.float64).ravel(), want, equal_nan=True), (line, got)
    if dtype:
        assert got.dtype == np.dtype(dtype), (line, got.dtype)


def test_readme_quick_start_runs_and_gives_what_its_comments_say():
    blocks = _quick_start_blocks()
    assert blocks, "README.md has no python block under '## Quick start'"
    ns, checked = {}, 0
    for block in blocks:
        lines = block.splitlines()
        for stmt in ast.parse(block).body:
            code = ast.get_source_segment(block, stmt)
            exec(compile(ast.Module([stmt], []), "README.md", "exec"), ns)
            line = lines[stmt.end_lineno - 1]
            comment = line.split("# ", 1)[1].strip() if "# " in line[len(code.splitlines()[-1]):] + " " else ""
            claim = _claim(comment) if comment else None
            if claim is None:
                continue
            if isinstance(stmt, ast.Expr):
                value = eval(compile(ast.Expression(stmt.value), "README.md", "eval"), ns)
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                value = ns[stmt.targets[0].id]
            else:
                continue
            _check(value, claim, line)
            checked += 1
    assert checked >= 8, f"only {checked} Quick start lines state a value to check"


def _modules():
    out = []
    for d, _, files in os.walk(os.path.join(ROOT, "fxsim")):
        for f in sorted(files):
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                if not rel.startswith(("fxsim.data.", "fxsim.examples.")) and rel != "fxsim.__main__":
                    out.append(rel)
    return sorted(out)


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_written_as_doctests_pass(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=dict(vars(module))):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} docstring example(s) fail (see the output above)"


def test_the_doctest_run_finds_the_examples_it_should():
    """A finder that found nothing would pass every module: fxsim.validate's examples are found and run."""
    import fxsim.validate
    import fxsim.workflows.spec_keys
    for module in (fxsim.validate, fxsim.workflows.spec_keys):
        tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
        assert sum(len(t.examples) for t in tests) >= 2, module.__name__
