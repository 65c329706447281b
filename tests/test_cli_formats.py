"""`fxsim formats`: exact numbers, a filter, which ml_dtypes type each bare name is, and the aliases."""
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from fxsim.cli.main import EXIT_INPUT, EXIT_OK, main
from fxsim.formats import exact_number, format_table, parse_format


def _rows(out):
    lines = out.splitlines()
    head = lines[0].split()
    rows = {}
    for ln in lines[1:]:
        if not ln.strip():
            break
        cells = ln.split(None, 5)
        rows[cells[0]] = cells
    return head, rows


def test_integers_are_printed_in_full(capsys):
    assert main(["formats", "int32"]) == EXIT_OK
    head, rows = _rows(capsys.readouterr().out)
    assert rows["int32"][1:5] == ["32", "-2147483648", "2147483647", "1"]
    assert "e+09" not in str(rows)


def test_every_number_printed_is_exactly_the_format_value(capsys):
    assert main(["formats"]) == EXIT_OK
    _, rows = _rows(capsys.readouterr().out)
    assert set(rows) >= {"int8", "e4m3", "e5m2", "e2m1", "fp32", "e4m3_ieee", "e3m4", "int2"}

    def value(text):
        if "*2**" in text:
            m, k = text.split("*2**")
            return Fraction(int(m)) * Fraction(2) ** int(k)
        if text.lstrip("-").startswith("2**"):
            return (-1 if text.startswith("-") else 1) * Fraction(2) ** int(text.lstrip("-")[3:])
        return Fraction(text)

    for name, cells in rows.items():
        fmt = parse_format(name)
        assert value(cells[2]) == Fraction(fmt.min), name
        assert value(cells[3]) == Fraction(fmt.max), name
        assert value(cells[4]) == Fraction(fmt.resolution), name
    assert rows["fp32"][3] == "16777215*2**104"


def test_filter_by_name_alias_or_spelling(capsys):
    assert main(["formats", "fp8"]) == EXIT_OK
    _, rows = _rows(capsys.readouterr().out)
    assert set(rows) == {"e4m3", "e5m2"}          # found through their aliases fp8_e4m3, fp8_e5m2
    assert main(["formats", "fixed<16,6>"]) == EXIT_OK
    _, rows = _rows(capsys.readouterr().out)
    assert rows["fixed<16,6>"][2:5] == ["-32", "31.9990234375", "2**-10"]
    assert main(["formats", "nothing-like-this"]) == EXIT_INPUT
    assert "no format matches" in capsys.readouterr().err


def test_says_which_ml_dtypes_type_each_bare_name_is(capsys):
    assert main(["formats"]) == EXIT_OK
    out = capsys.readouterr().out
    _, rows = _rows(out)
    assert "float8_e4m3fn" in rows["e4m3"][5] and "float8_e4m3 " in rows["e4m3_ieee"][5] + " "
    assert "e4m3 is float8_e4m3fn, not float8_e4m3" in out
    for row in format_table():
        if row["dtype"].startswith(("float8", "float6", "float4")):
            t = getattr(ml_dtypes, row["dtype"])
            assert float(ml_dtypes.finfo(t).max) == row["format"].max
    assert "fp8_e4m3" in rows["e4m3"][5] and "half" in rows["fp16"][5]   # the aliases


@pytest.mark.parametrize("v,text", [(-2147483648, "-2147483648"), (2.0 ** -149, "2**-149"), (0.3125, "0.3125"),
                                    (-(2.0 ** 128 - 2.0 ** 104), "-16777215*2**104"), (448.0, "448")])
def test_exact_number(v, text):
    assert exact_number(v) == text
