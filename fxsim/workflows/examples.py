"""The examples shipped inside the package (``fxsim/examples``: layer specs, the RTL script, the cocotb
test), written out for users of an installed wheel: ``fxsim examples DIR [--force]``."""
from __future__ import annotations

import os
import shutil

from fxsim.runtime.outputs import output_dir

__all__ = ["EXAMPLES", "example_files", "write_examples"]

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def example_files() -> list:
    """The shipped examples as relative "/" paths, sorted (no caches)."""
    found = []
    for root, dirs, files in os.walk(EXAMPLES):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in files:
            if not f.endswith((".pyc", ".pyo")):
                found.append(os.path.relpath(os.path.join(root, f), EXAMPLES).replace(os.sep, "/"))
    return sorted(found)


def write_examples(out, *, force=False) -> list:
    """Copy the examples into the new directory ``out`` (atomically; an existing ``out`` is refused unless
    ``force`` and it is a previous ``fxsim examples`` output). Returns the files written."""
    files = example_files()
    with output_dir(out, "examples", force=force) as tmp:
        for rel in files:
            src = os.path.join(EXAMPLES, *rel.split("/"))
            dst = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            shutil.copymode(src, dst)          # run.sh stays executable
    return files
