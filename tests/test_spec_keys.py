"""The table of spec keys (fxsim.workflows.spec_keys) is what the parser accepts and what the docs say."""
import copy
import os
import re

import pytest

from fxsim.workflows import spec_keys
from fxsim.workflows.spec import SpecError, parse_spec, spec_from_dict
from fxsim.workflows.shapes import layer_bytes, operand_shapes
from fxsim.workflows.spec_reference import BEGIN, END, render_markdown

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
GEMM = "[shape]\nM = 2\nK = 3\nN = 2\n"
BN = '[layer]\nop = "batch_norm"\n[shape]\nbatch = 2\nin_channels = 2\nheight = 2\nwidth = 2\n'


def test_docs_key_reference_is_the_rendered_table():
    text = open(os.path.join(ROOT, "docs", "workflows.md"), encoding="utf-8").read()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section == "\n" + render_markdown(), (
        "docs/workflows.md's key reference differs from fxsim/workflows/spec_keys.py; regenerate it with "
        "`python -m fxsim.workflows.spec_reference --update docs/workflows.md`")


def test_every_key_has_a_doc_a_type_and_an_allowed_value_and_no_key_twice():
    paths = [k.path for k in spec_keys.KEYS]
    assert len(paths) == len(set(paths))
    for k in spec_keys.KEYS:
        assert k.doc and k.type and k.allowed and k.report in ("expected", "validator"), k.path


def _base(table):
    if table == "shape":
        return {"layer": {"op": "conv2d"}, "shape": {"batch": 1, "in_channels": 2, "height": 5, "width": 5,
                                                     "out_channels": 2, "kernel": 3}}
    if table == "batch_norm":
        return {"layer": {"op": "batch_norm"}, "shape": {"batch": 2, "in_channels": 2, "height": 2, "width": 2}}
    return {"shape": {"M": 2, "K": 3, "N": 2}}


def _put(raw, table, name, value):
    t = raw
    for part in table.split("."):
        t = t.setdefault(part, {})
    t[name] = value
    return raw


DEFAULTED = [k for k in spec_keys.KEYS if k.default not in (None, spec_keys.REQUIRED)]


@pytest.mark.parametrize("k", DEFAULTED, ids=[k.path for k in DEFAULTED])
def test_stating_a_default_changes_nothing(k):
    """The table's default is the one parsing uses: writing it out gives the same layer."""
    without = _base(k.table)
    if k.only:
        _put(without, k.table, *k.only)
    if k.table == "output.requant":
        _put(without, k.table, "kind", "dyadic")     # the output stage requantizes once the table is there
    stated = _put(copy.deepcopy(without), k.table, k.name, k.default)
    a, b = spec_from_dict(without), spec_from_dict(stated)
    assert (a.op, a.pass_, a.datapath, a.batch_norm) == (b.op, b.pass_, b.datapath, b.batch_norm)
    if a.op != "batch_norm":
        assert operand_shapes(a) == operand_shapes(b) and layer_bytes(a) == layer_bytes(b)
    assert str(a.datapath) == str(b.datapath)


@pytest.mark.parametrize("table", spec_keys.TABLES)
def test_a_key_the_table_does_not_list_is_refused_with_the_keys_it_lists(table):
    with pytest.raises(SpecError, match=rf"{table}\.no_such_key = 1 is not allowed; expected one of the keys"):
        spec_from_dict(_put(_base(table), table, "no_such_key", 1))


CHECKED = [k for k in spec_keys.KEYS if k.check is not None]
TOML_BASE = {"batch_norm": BN}


@pytest.mark.parametrize("k", CHECKED, ids=[k.path for k in CHECKED])
def test_a_checked_key_refuses_a_wrong_value_naming_key_value_and_line(k):
    """Every check the table gives runs: a value of the wrong type is refused, with key and line."""
    base = TOML_BASE.get(k.table, GEMM)
    wrong = '"int999999"' if k.type == "format" else "[[1.5]]" if "string" in k.type else '"no such value"'
    if k.table == "shape":                       # the base opens [shape] already: the key written last
        text = "[shape]\n" + "".join(f"{n} = 2\n" for n in "MKN" if n != k.name) + f"{k.name} = {wrong}\n"
    else:
        text = base + f"[{k.table}]\n" + (f'{k.only[0]} = "{k.only[1]}"\n' if k.only else "") + f"{k.name} = {wrong}\n"
    line = text.count("\n")
    with pytest.raises(SpecError, match=rf"<spec>:{line}: {re.escape(k.path)}( = .* is not allowed; expected |: )"):
        parse_spec(text)


def test_shape_keys_of_the_op_are_required_for_random_data():
    with pytest.raises(SpecError, match=r"shape.K = None is not allowed; expected a positive integer"):
        parse_spec("[shape]\nM = 2\nN = 2\n")
