"""The package's layers, as the file tree shows them, and the rules that keep them readable:

    errors, validate, modes  ->  formats  ->  quantize  ->  datapath, result, bounds  ->  runtime  ->  engines
    ->  ops  ->  training  ->  workflows, rtl, model  ->  cli

A module may import only from its own layer or the layers before it (including imports inside functions),
kernels/ (installed as fxsim._kernels) never imports fxsim and imports only its siblings, and setup.cfg
lists every package so a wheel carries all of them and no top-level ``kernels``.
"""
import ast
import configparser
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = [["fxsim._version", "fxsim.errors", "fxsim.validate", "fxsim.modes"], ["fxsim.formats"], ["fxsim.quantize"],
          ["fxsim.datapath", "fxsim.result", "fxsim.bounds"], ["fxsim.runtime"], ["fxsim.engines"], ["fxsim.ops"],
          ["fxsim.training"], ["fxsim.workflows", "fxsim.rtl", "fxsim.model"], ["fxsim.cli"]]


def _layer(module):
    for i, group in enumerate(LAYERS):
        if any(module == g or module.startswith(g + ".") for g in group):
            return i
    return None


def _modules(top):
    for d, _, files in os.walk(os.path.join(ROOT, top)):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield path, rel.removesuffix(".__init__")


def _imports(path):
    """Every module an import statement names (absolute; relative ones resolved by the caller)."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            yield node.lineno, node.level, node.module or "", [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, 0, a.name, []


# fxsim/data holds the shipped data and the scripts that made it, fxsim/examples the examples `fxsim examples`
# writes out (run as scripts, not imported)
FXSIM = [(p, m) for p, m in _modules("fxsim") if m not in ("fxsim", "fxsim.__main__") and not m.startswith(("fxsim.data.", "fxsim.examples."))]


@pytest.mark.parametrize("path,module", FXSIM, ids=[m for _, m in FXSIM])
def test_each_module_imports_only_its_layer_and_the_ones_before(path, module):
    me = _layer(module)
    assert me is not None, f"{module} belongs to no layer: add it to LAYERS (and to the docstring's picture)"
    for line, level, name, _ in _imports(path):
        assert level == 0, f"{module}:{line}: relative import; fxsim's modules import fxsim.x absolutely"
        if not name.startswith("fxsim") or name.startswith("fxsim._kernels"):
            continue
        assert name != "fxsim", f"{module}:{line} imports the package root (which imports every layer)"
        other = _layer(name)
        assert other is not None and other <= me, \
            f"{module}:{line} (layer {me}) imports {name} (layer {other}): a lower layer may not use a higher one"


KERNELS = list(_modules("kernels"))


@pytest.mark.parametrize("path,module", KERNELS, ids=[m for _, m in KERNELS])
def test_kernels_import_only_numeric_libraries_and_their_siblings(path, module):
    for line, level, name, _ in _imports(path):
        if level:
            assert level == 1, f"{module}:{line}: kernels import only their siblings"
            continue
        root = name.split(".")[0]
        assert root in ("numpy", "numba", "math", "__future__", "typing", "collections", "os"), \
            f"{module}:{line} imports {name}: kernels are plain numeric functions over numpy and numba"


def test_setup_cfg_lists_every_package_and_installs_kernels_privately():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    listed = set(cfg["options"]["packages"].split())
    found = {m for p, m in _modules("fxsim") if p.endswith("__init__.py")}
    assert not os.path.exists(os.path.join(ROOT, "fxsim", "data", "__init__.py"))
    assert found | {"fxsim._kernels"} == listed
    assert "kernels" not in listed
    assert cfg["options"]["package_dir"].split() == ["fxsim._kernels", "=", "kernels"]


def test_kernels_are_importable_under_the_private_name_from_this_checkout():
    import fxsim._kernels.int_gemm as k
    assert os.path.dirname(os.path.abspath(k.__file__)) == os.path.join(ROOT, "kernels")
