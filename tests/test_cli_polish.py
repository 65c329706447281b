"""The command line as a new user meets it: --version, help for everything, one list style, run --json,
both registers labelled in run and sweep, readable summaries, standard JSON, failed rows with their
reason in full, float accumulator sweeps, the sweep plot, and exit 2 for bad input only."""
import argparse
import json
import re

import numpy as np
import pytest

from fxsim import __version__
from fxsim.cli.main import EXIT_INPUT, EXIT_OK, build_parser, main
from tests.workflow_specs import E4M3_GEMM, INT8_GEMM


def _strict(text):
    """json.loads that refuses NaN/Infinity (what strict parsers and jq do)."""
    def bad(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=bad)


def _long_floats(text):
    """Decimal numbers printed with more than 6 significant digits."""
    out = []
    for m in re.finditer(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?", text):
        mant = m.group(0).lstrip("-").split("e")[0].replace(".", "").lstrip("0")
        if len(mant) > 6:
            out.append(m.group(0))
    return out


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "layer.toml"
    p.write_text(INT8_GEMM)
    return p


# int16 accumulator, no requant: the accumulator saturates but the int8 output register hides most of it
INT16_SPEC = INT8_GEMM.replace('format = "int14"', 'format = "int16"').replace("M = 3", "M = 12").replace(
    "K = 20", "K = 64").replace("[output.requant]\nkind = \"dyadic\"\nmultiplier = 3\nshift = 7\n",
                                "[output.requant]\nkind = \"shift\"\nshift = 8\n")

FLOAT_SPEC = E4M3_GEMM.replace("bias = true", "bias = false").replace("std = 0.02", "std = 0.004").replace(
    "K = 24", "K = 96")


def test_version(capsys):
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"fxsim {__version__}"


def _actions():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    yield "fxsim", parser
    yield from sub.choices.items()


@pytest.mark.parametrize("name", [n for n, _ in _actions()])
def test_every_option_and_argument_has_help(name):
    parser = dict(_actions())[name]
    assert parser.description or name == "fxsim" or parser.format_help()
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert a.help and len(a.help) > 10, f"{name} {a.option_strings or a.dest} has no help"


def test_help_documents_inclusive_ranges_and_the_list_style(capsys):
    assert main(["sweep", "--help"]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "LO:HI ranges include both ends" in out and "comma-separated list and may also be repeated" in out


def test_list_options_take_commas_or_repeats_alike(spec, capsys):
    a = ["sweep", str(spec), "--workers", "1", "--acc-bits", "14:15"]
    assert main(a + ["--order", "sequential,tree", "--overflow", "wrap,saturate"]) == EXIT_OK
    one = capsys.readouterr().out
    assert main(a + ["--order", "sequential", "--order", "tree", "--overflow", "wrap", "--overflow", "saturate"]) == 0
    assert capsys.readouterr().out == one
    assert main(["sweep", str(spec), "--workers", "1", "--acc-bits", "14", "--acc-bits", "15,16"]) == EXIT_OK
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("sequential")]) == 2 * 3


def test_acc_bits_range_includes_both_ends(spec, tmp_path, capsys):
    assert main(["sweep", str(spec), "--workers", "1", "--acc-bits", "14:16", "--overflow", "wrap",
                 "--out", str(tmp_path / "o")]) == EXIT_OK
    rows = _strict((tmp_path / "o" / "sweep.json").read_text())["rows"]
    assert [r["acc_bits"] for r in rows] == [14, 15, 16]


def test_run_json_is_standard_json_with_both_registers(spec, capsys):
    assert main(["run", str(spec), "--json"]) == EXIT_OK
    doc = _strict(capsys.readouterr().out)
    s = doc["summary"]
    assert doc["layer"] == "layer.toml: gemm M=3 K=20 N=4"
    for key in ("acc_overflow_events", "acc_outputs_differing_from_exact", "acc_max_abs_error_vs_exact",
                "acc_sqnr_db_vs_exact", "out_outputs_differing_from_exact", "out_max_abs_error_vs_exact",
                "out_sqnr_db_vs_exact", "out_format"):
        assert key in s, key


def test_run_json_of_a_bit_exact_layer_says_inf_as_a_string(tmp_path, capsys):
    p = tmp_path / "wide.toml"
    p.write_text(INT8_GEMM.replace('format = "int14"', 'format = "int32"'))
    assert main(["run", str(p), "--json"]) == EXIT_OK
    s = _strict(capsys.readouterr().out)["summary"]
    assert s["acc_sqnr_db_vs_exact"] == "inf" and s["out_sqnr_db_vs_exact"] == "inf"
    assert s["acc_outputs_differing_from_exact"] == 0 and s["out_outputs_differing_from_exact"] == 0


@pytest.mark.parametrize("text", [INT8_GEMM, E4M3_GEMM], ids=["int8", "e4m3"])
def test_run_summary_has_no_python_reprs_and_no_long_floats(tmp_path, capsys, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    assert main(["run", str(p)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "None" not in out and "{'" not in out and "Infinity" not in out
    assert not _long_floats(out), out                       # at most 6 significant digits
    assert "raw accumulator:" in out
    assert "output register:" in out


def test_batch_norm_summary_has_no_dataclass_repr(capsys):
    import os
    path = os.path.join(os.path.dirname(__file__), os.pardir, "fxsim", "examples", "batch_norm_training.toml")
    assert main(["run", path]) == EXIT_OK
    out = capsys.readouterr().out
    assert "BatchNormConfig(" not in out and not _long_floats(out)
    assert main(["run", path, "--json"]) == EXIT_OK
    assert "y_sqnr_db_vs_float64" in _strict(capsys.readouterr().out)["summary"]


def test_run_and_sweep_report_the_same_two_registers(tmp_path, capsys):
    """The same spec: run's accumulator and output-register counts equal the sweep row at that width."""
    p = tmp_path / "int16.toml"
    p.write_text(INT16_SPEC)
    assert main(["run", str(p), "--json"]) == EXIT_OK
    s = _strict(capsys.readouterr().out)["summary"]
    assert s["acc_outputs_differing_from_exact"] > 0            # the accumulator saturates ...
    assert main(["sweep", str(p), "--workers", "1", "--acc-bits", "16", "--overflow", "saturate",
                 "--out", str(tmp_path / "sw")]) == EXIT_OK
    table = capsys.readouterr().out
    assert "out differ %" in table and "acc differ %" in table
    row = _strict((tmp_path / "sw" / "sweep.json").read_text())["rows"][0]
    n = s["outputs"]
    assert row["acc_share_differing"] == s["acc_outputs_differing_from_exact"] / n
    assert row["share_differing"] == s["out_outputs_differing_from_exact"] / n
    # ... and independently: the exact sums and the saturated int16 accumulator from Python integers
    from fxsim.workflows.spec import load_spec, make_data
    A, B, bias = make_data(load_spec(p))
    ai = np.rint(A).astype(int).tolist()
    bi = np.rint(B).astype(int).T.tolist()
    differ = 0
    for i in range(len(ai)):
        for j in range(len(bi)):
            acc = exact = int(bias[j])
            for x, w in zip(ai[i], bi[j]):
                exact += x * w
                acc = min(max(acc + x * w, -2 ** 15), 2 ** 15 - 1)
            differ += acc != exact
    assert differ == s["acc_outputs_differing_from_exact"]


def test_sweep_json_is_standard_json(spec, tmp_path, capsys):
    assert main(["sweep", str(spec), "--workers", "1", "--acc-bits", "8:22", "--out", str(tmp_path / "o")]) == 0
    text = (tmp_path / "o" / "sweep.json").read_text()
    doc = _strict(text)
    assert "Infinity" not in text and "NaN" not in text
    sq = [r["sqnr_db"] for r in doc["rows"]]
    assert "inf" in sq                                  # bit-exact widths: the string "inf"
    failed = [r for r in doc["rows"] if r["error"]]
    assert failed and all(r["sqnr_db"] is None and r["max_abs_error"] is None for r in failed)


def test_failed_sweep_rows_carry_the_reason_in_full(spec, tmp_path, capsys):
    assert main(["sweep", str(spec), "--workers", "1", "--acc-bits", "8:9", "--overflow", "wrap"]) == EXIT_OK
    out = capsys.readouterr().out
    from fxsim.datapath import Accumulator
    from fxsim.formats import Fixed
    from fxsim.workflows.spec import parse_spec, run_layer
    s = parse_spec(INT8_GEMM)
    with pytest.raises(ValueError) as info:
        run_layer(s, s.datapath.replace(accumulator=Accumulator(Fixed(8), overflow="wrap", rounding="floor")))
    reason = str(info.value)
    assert len(reason) > 60
    assert f"sequential, wrap, 8: {reason}" in out


@pytest.mark.slow     # two float sweeps of many formats (about 30 s)
def test_float_accumulator_sweep_by_formats_and_by_mantissa_width(tmp_path, capsys):
    """FP8 operands, Float accumulators e5m10, e6m9 and e5m7..e5m9; each row against an independent
    computation: every addition rounded to the format in Python Fractions."""
    from fractions import Fraction
    from fxsim.formats import Float
    from fxsim.quantize import quantize
    from fxsim.workflows.spec import load_spec, make_data
    p = tmp_path / "f.toml"
    p.write_text(FLOAT_SPEC)
    assert main(["sweep", str(p), "--workers", "1", "--acc-formats", "e5m10,e6m9", "--overflow", "ieee",
                 "--out", str(tmp_path / "a")]) == EXIT_OK
    assert main(["sweep", str(p), "--workers", "1", "--acc-man-bits", "7:9", "--overflow", "ieee",
                 "--out", str(tmp_path / "b")]) == EXIT_OK
    rows = _strict((tmp_path / "a" / "sweep.json").read_text())["rows"] + \
        _strict((tmp_path / "b" / "sweep.json").read_text())["rows"]
    assert [r["acc_format"] for r in rows] == ["e5m10", "e6m9", "e5m7", "e5m8", "e5m9"]
    A, B, _ = make_data(load_spec(p))
    exact = [[sum(Fraction(float(x)) * Fraction(float(w)) for x, w in zip(A[i], B[:, j]))
              for j in range(B.shape[1])] for i in range(A.shape[0])]
    for r in rows:
        fmt = Float(r["acc_exp"], r["acc_man"])
        differ = 0
        for i in range(A.shape[0]):
            for j in range(B.shape[1]):
                acc = 0.0
                for x, w in zip(A[i], B[:, j]):   # each product exact in float64, each sum rounded half even
                    acc = float(quantize(np.array([float(Fraction(acc) + Fraction(float(x)) * Fraction(float(w)))]),
                                         fmt, rounding="half_even", overflow="saturate")[0])
                differ += Fraction(acc) != exact[i][j]
        assert r["share_differing"] == differ / (A.shape[0] * B.shape[1]), r["acc_format"]
    assert rows[0]["share_differing"] > 0 and rows[2]["sqnr_db"] < rows[4]["sqnr_db"]


def test_float_sweep_option_errors_exit_2(tmp_path, spec, capsys):
    p = tmp_path / "f.toml"
    p.write_text(FLOAT_SPEC)
    cases = [(["sweep", str(p), "--acc-bits", "12:14"], "needs a Fixed accumulator"),
             (["sweep", str(p), "--acc-formats", "e5m10", "--acc-bits", "12"], "give one kind per sweep"),
             (["sweep", str(p), "--acc-formats", "int8"], "must be Float formats"),
             (["sweep", str(p), "--acc-formats", "e99m3"], "e99m3"),
             (["sweep", str(spec), "--acc-man-bits", "7:9"], "give both --acc-exp-bits and --acc-man-bits"),
             (["sweep", str(p), "--acc-formats", "e5m10", "--overflow", "wrap"], "does not apply to a Float"),
             (["sweep", str(spec), "--acc-bits", "12", "--overflow", "ieee"], "does not apply to a Fixed"),
             (["sweep", str(p), "--acc-man-bits", "9:7"], "LO:HI with 1 <= LO <= HI <= 51")]
    for argv, message in cases:
        assert main(argv + ["--workers", "1"]) == EXIT_INPUT, argv
        assert message in capsys.readouterr().err, argv


def test_sweep_plot_names_the_layer_k_every_bound_and_the_narrowest_width(spec):
    from fxsim.workflows.spec import load_spec
    from fxsim.workflows.sweep import run_sweep, sweep_configs, sweep_figure
    res = run_sweep(load_spec(spec), sweep_configs(range(12, 21), ("saturate", "wrap")), workers=1, progress=False)
    fig = sweep_figure(res)
    title = fig._suptitle.get_text()
    assert "layer.toml: gemm M=3 K=20 N=4" in title and "K = 20" in title
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    b = res["bounds"]
    for name, key in (("worst case", "worst_case_bits"), ("data-dependent", "data_dependent_bits"),
                      ("l1-norm", "l1_norm_bits")):
        assert any(name in t and f"{b[key]} bits" in t for t in legend), (name, legend)
    for key, width in res["narrowest_exact"].items():
        assert any(f"narrowest bit-exact, {key.replace('/', ', ')}: {width} bits" in t for t in legend), legend
    sqnr_ax = fig.axes[3]
    finite = [r["sqnr_db"] for r in res["rows"] if np.isfinite(r["sqnr_db"])]
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float)
            if y.size and line.get_xdata() is not None and not np.all(np.isnan(y)):
                if len(set(np.asarray(line.get_xdata(), dtype=float).tolist())) == 1 and y.size == 2:
                    continue                            # a vertical bound line (axvline)
                assert lo < np.nanmin(y) and np.nanmax(y) < hi, (ax.get_ylabel(), lo, hi, y)   # no clipping
    ys = np.concatenate([np.asarray(l.get_ydata(), dtype=float) for l in sqnr_ax.get_lines()
                         if len(np.asarray(l.get_ydata())) != 2 or len(set(l.get_xdata())) != 1])
    assert 200.0 not in ys.tolist() and max(finite) < sqnr_ax.get_ylim()[1] < 200
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_export_refuses_off_grid_values_instead_of_rounding():
    from fxsim.rtl.export import _codes_of
    from fxsim.formats import Fixed
    from fxsim.errors import InvalidArgument
    assert _codes_of(np.array([1.0, -128.0, 127.0]), Fixed(8)).tolist() == [1, -128, 127]
    assert _codes_of(np.array([0.75, -2.5]), Fixed(8, 2)).tolist() == [3, -10]
    for bad, msg in (([0.5], "is not on the grid of int8"), ([128.0], "is outside int8"),
                     ([float("nan")], "is not on the grid")):
        with pytest.raises(InvalidArgument, match=msg):
            _codes_of(np.array(bad), Fixed(8))


def test_cli_exit_2_is_for_bad_input_only(spec, monkeypatch, capsys):
    import fxsim.cli.main as cli
    from fxsim.errors import InvalidArgument
    assert main(["run", str(spec) + ".missing"]) == EXIT_INPUT
    for exc in (InvalidArgument("bad value x"), PermissionError("denied: x"), IsADirectoryError("dir: x")):
        def boom(args, exc=exc):
            raise exc
        monkeypatch.setattr(cli, "cmd_run", boom)
        assert main(["run", str(spec)]) == EXIT_INPUT
        assert str(exc) in capsys.readouterr().err
    for bug in (ValueError("a bug"), TypeError("a bug"), KeyError("a bug"), OverflowError("a bug")):
        def boom(args, bug=bug):
            raise bug
        monkeypatch.setattr(cli, "cmd_run", boom)
        with pytest.raises(type(bug)):
            main(["run", str(spec)])


@pytest.mark.parametrize("argv,message", [
    (["sweep", "SPEC", "--lanes", "0"], "--lanes must be an integer >= 1"),
    (["sweep", "SPEC", "--workers", "-2"], "--workers must be an integer >= 1"),
    (["sweep", "SPEC", "--order", "chunked", "--lanes", "100000", "--acc-bits", "12"], "lanes must be an integer"),
    (["sweep", "SPEC", "--order", "sequential,", "--acc-bits", "12"], "comma-separated list"),
    (["sweep", "SPEC", "--acc-bits", "1:4"], "--acc-bits must be LO:HI with 2 <= LO <= HI <= 62"),
    (["sweep", "SPEC", "--lanes", "8", "--acc-bits", "12"], "--lanes 8 applies to --order chunked only"),
    (["sweep", "SPEC", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2", "--acc-bits", "12"], "give one of the two"),
    (["sweep", "SPEC", "--acc-formats", "e11m52"], "man must be an integer in 0..51"),
    (["export", "SPEC", "--out", "X", "--trace=-1,0"], "--trace must be I,J"),
    (["export", "SPEC", "--out", "X", "--trace", "9,0"], "trace index (9, 0) is outside the output shape (3, 4)"),
])
def test_bad_options_exit_2_naming_the_option(spec, tmp_path, capsys, argv, message):
    argv = [str(spec) if a == "SPEC" else str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == EXIT_INPUT
    assert message in capsys.readouterr().err


def test_datapath_doc_says_gemmlowp_srdhm_rounds_ties_toward_plus_infinity():
    import os
    from fxsim.engines.output_stage import saturating_rounding_doubling_high_mul as srdhm
    text = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "datapath.md")).read()
    line = next(ln for ln in text.splitlines() if "SaturatingRoundingDoublingHighMul(x, M)" in ln)
    assert "toward +infinity" in line and "(round half away" not in line
    # the behaviour the text describes: 2*a*b / 2**32 = k + 1/2 rounds to k + 1 for either sign
    for a, b, want in ((3, 2 ** 30, 2), (-3, 2 ** 30, -1), (5, 2 ** 30, 3), (-5, 2 ** 30, -2)):
        assert int(srdhm(a, b)) == want


@pytest.mark.parametrize("text", [E4M3_GEMM, FLOAT_SPEC, E4M3_GEMM.replace('a = "e4m3"', 'a = "int8"').replace(
    "std = 0.02", "std = 30")], ids=["e4m3-bias", "e4m3", "int8-x-e5m2"])
def test_float_exact_sums_at_kernel_speed_equal_the_fraction_reference(tmp_path, text):
    from fxsim.workflows.metrics import exact_gemm
    from fxsim.workflows.spec import make_data, parse_spec
    from fxsim.workflows.sweep import kulisch_exact
    spec = parse_spec(text)
    A, B, bias = make_data(spec)
    want = exact_gemm(A, B, bias)                       # Python Fractions, rounded once to float64
    assert np.array_equal(kulisch_exact(spec, (A, B, bias)), want)


def test_run_of_a_float_convolution_reports_the_accumulator_against_the_exact_sums(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text('[layer]\nop = "conv2d"\n[shape]\nbatch = 1\nin_channels = 3\nheight = 5\nwidth = 5\n'
                 'out_channels = 2\nkernel = 3\n[data]\nseed = 1\ndistribution = "normal"\nstd = 0.01\n'
                 '[datapath]\na = "e4m3"\nb = "e4m3"\n[datapath.accumulator]\nformat = "e5m4"\n'
                 'overflow = "ieee"\nrounding = "half_even"\n')
    assert main(["run", str(p), "--json"]) == EXIT_OK
    s = _strict(capsys.readouterr().out)["summary"]
    assert s["acc_outputs_differing_from_exact"] > 0 and "acc_sqnr_db_vs_exact" in s
    assert main(["sweep", str(p), "--workers", "1", "--acc-formats", "e5m4", "--overflow", "ieee",
                 "--out", str(tmp_path / "o")]) == EXIT_OK
    row = _strict((tmp_path / "o" / "sweep.json").read_text())["rows"][0]
    assert row["acc_share_differing"] == s["acc_outputs_differing_from_exact"] / s["outputs"]
