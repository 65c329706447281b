"""Accumulator width sweeps: which accumulator is the narrowest that stays exact, or within a budget.

Each configuration (width, overflow mode, order) is one independent simulation; they run in parallel in
local processes, or on a Dask distributed cluster given its scheduler address. Results are identical to
a serial run (every simulation is deterministic and results are ordered by configuration).
"""
from __future__ import annotations

import csv
import json
import os
import multiprocessing
import pickle
from multiprocessing import resource_tracker, shared_memory
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from fxsim.bounds import data_bits, l1_bits, worst_case_bits
from fxsim.datapath import MAX_LANES, Accumulator, Order
from fxsim.errors import FxsimError, InvalidArgument
from fxsim.formats import check_format, Fixed, Float
from fxsim.workflows.metrics import compare
from fxsim.engines.exact import exact_gemm
from fxsim.modes import Overflow
from fxsim.ops.gemm import compact_int_dtype
from fxsim.ops.lowering import flatten_weights, unfold
from fxsim.runtime.workers import quiet_spawning, start_resource_tracker, stop_pool, worker_init
from fxsim.validate import check_choice, check_int

__all__ = ["sweep_configs", "float_formats", "run_sweep", "write_sweep", "plot_sweep", "sweep_figure", "json_safe",
           "format_table", "narrowest_exact", "layer_name"]


def sweep_configs(bits=(), overflows=("saturate", "wrap"), orders=("sequential",), lanes=4, *, acc_formats=()):
    """Every (order, overflow, accumulator) combination as a list of plain dicts (picklable, JSON-able).

    ``bits``: widths of a Fixed accumulator (its binary point stays the spec's). ``acc_formats``: Float
    accumulator formats (names such as "e5m10" or Float objects) swept instead; each row then carries
    ``acc_format`` (its name), ``acc_exp``/``acc_man`` and ``acc_bits`` (its total width)."""
    if isinstance(bits, (str, bytes)) or isinstance(acc_formats, (str, bytes)):
        raise InvalidArgument("bits and acc_formats must be lists (e.g. range(8, 33), ['e5m10', 'e6m9']), "
                              f"got {bits!r} / {acc_formats!r}")
    bits, acc_formats = list(bits), list(acc_formats)
    if bits and acc_formats:
        raise InvalidArgument("sweep either Fixed accumulator widths (bits) or Float accumulator formats "
                              "(acc_formats), not both in one sweep")
    if not bits and not acc_formats:
        raise InvalidArgument("nothing to sweep: give accumulator widths (bits) or Float formats (acc_formats)")
    for ov in overflows:
        mode = Overflow.parse(ov, argument="overflow")
        if acc_formats and mode not in (Overflow.IEEE, Overflow.SATURATE, Overflow.ERROR):
            raise InvalidArgument(f"overflow {ov!r} does not apply to a Float accumulator: give ieee (overflow to "
                                  "infinity), saturate or error")
        if bits and mode in (Overflow.IEEE, Overflow.ERROR):
            raise InvalidArgument(f"overflow {ov!r} does not apply to a Fixed accumulator sweep: give wrap, "
                                  "saturate, saturate_symmetric or saturate_zero")
    for o in orders:
        check_choice("order", o, ("sequential", "tree", "chunked"))
    bits = [check_int("accumulator bits", b, lo=2, hi=62) for b in bits]
    lanes = check_int("lanes", lanes, lo=2, hi=MAX_LANES) if "chunked" in orders else check_int("lanes", lanes, lo=1)
    accs = [{"acc_bits": b} for b in bits]
    for f in acc_formats:
        fmt = check_format("acc_formats", f)
        if not isinstance(fmt, Float):
            raise InvalidArgument(f"acc_formats must be Float formats (sweep Fixed widths with bits), got {fmt}")
        accs.append({"acc_bits": int(fmt.bits), "acc_format": _float_label(f, fmt), "acc_exp": int(fmt.exp),
                     "acc_man": int(fmt.man), "acc_float": _float_fields(fmt)})
    out = []
    for o in orders:
        for ov in overflows:
            for a in accs:
                out.append({**a, "overflow": ov, "order": o, "lanes": lanes})
    return out


def _float_label(given, fmt):
    """A format's name as the user wrote it, or eXmY for a Float built from widths."""
    return given if isinstance(given, str) else f"e{fmt.exp}m{fmt.man}"


def _float_fields(fmt):
    return {"exp": int(fmt.exp), "man": int(fmt.man), "bias": int(fmt.bias), "signed": bool(fmt.signed),
            "specials": fmt.specials, "subnormals": bool(fmt.subnormals), "zero": bool(fmt.zero),
            "radix": int(fmt.radix)}


def float_formats(exp_bits, man_bits, specials="ieee"):
    """Float(e, m) for every exponent width in ``exp_bits`` and mantissa width in ``man_bits``, as
    sweep_configs' ``acc_formats``."""
    out = []
    for e in exp_bits:
        for m in man_bits:
            e, m = check_int("exponent bits", e, lo=2, hi=11), check_int("mantissa bits", m, lo=1, hi=51)
            try:
                out.append(Float(e, m, specials=specials))
            except (ValueError, TypeError) as exc:
                if isinstance(exc, FxsimError):
                    raise
                raise InvalidArgument(f"Float accumulator e{e}m{m}: {exc}") from None
    return out


def _order(config):
    return Order(config["order"], lanes=config["lanes"] if config["order"] == "chunked" else 1)


def _is_float(config):
    return "acc_float" in config


def _reference_key(config):
    return ("float" if _is_float(config) else "fixed", config["order"], config["lanes"])


def _config_datapath(base, config):
    """The spec's datapath with the configuration's accumulator and order."""
    acc = base.accumulator
    if _is_float(config):
        fmt = Float(**config["acc_float"])
        rounding = acc.rounding if acc.is_float else None       # None: the float register's default
        return base.replace(accumulator=Accumulator(fmt, overflow=config["overflow"], rounding=rounding,
                                                    random_bits=acc.random_bits, seed=acc.seed,
                                                    flush_subnormals=acc.flush_subnormals), order=_order(config))
    return base.replace(accumulator=Accumulator(Fixed(config["acc_bits"], acc.fmt.frac, acc.fmt.signed),
                                                overflow=config["overflow"], rounding=acc.rounding),
                        order=_order(config))


def exact_reference(spec, config, data):
    """The layer through the same datapath and order with an accumulator that never overflows or rounds:
    (output values, output codes, accumulator values). Fixed sweeps: a 62-bit accumulator at the spec's
    binary point (no partial sum of these layers comes near it). Float sweeps: a Kulisch accumulator (a
    fixed-point register as wide as every float product and the bias need), i.e. the exact sums."""
    from fxsim.workflows.run import run_layer
    base = spec.datapath
    if _is_float(config):
        try:
            exact = kulisch_exact(spec, data, order=_order(config))
        except InvalidArgument as exc:
            raise InvalidArgument(f"a float accumulator sweep compares with the exact sums, formed in a 63-bit "
                                  f"fixed-point (Kulisch) register; this layer's exact sums do not fit it ({exc})") \
                from None
        return exact, exact, exact
    acc = base.accumulator.fmt
    wide = base.replace(accumulator=Accumulator(Fixed(62, acc.frac, True), overflow="wrap",
                                                rounding=base.accumulator.rounding), order=_order(config))
    ref, _ = run_layer(spec, wide, data=data)
    return ref.values, ref.codes, ref.acc_values


def kulisch_exact(spec, data, order=None):
    """The exact sums of the spec's layer (bias included when preloaded), each rounded once (half even)
    to float64, in the layer's output layout.

    gemm layers (every pass) and conv2d forward layers: ``fxsim.engines.exact.exact_gemm`` on the layer's lowered
    GEMM (kernels.exact_sum: products split without error into a fixed-point register covering the whole
    float64 range; no width limit). conv2d backward passes: the layer through a 63-bit fixed-point
    (Kulisch) accumulator whose LSB is the smallest product of the operand formats (and the bias grid),
    which raises InvalidArgument where the sums do not fit 63 bits. ``order`` does not change exact sums."""
    A, B, bias = data
    if spec.op == "gemm" or spec.pass_ == "forward":
        return _exact_lowered(spec, A, B, bias)
    from fxsim.workflows.run import run_layer
    base = spec.datapath
    frac = 0
    for f in (base.a, base.b):
        frac += -int(np.log2(f.min_subnormal)) if isinstance(f, Float) else f.frac
    if isinstance(base.accumulator.fmt, Float):
        frac = max(frac, -int(np.log2(base.accumulator.fmt.min_subnormal)))
    wide = base.replace(accumulator=Accumulator(Fixed(63, frac, True), overflow="wrap", rounding="floor"),
                        order=order or base.order, product=None, fused=False)
    ref, _ = run_layer(spec, wide, data=data)
    return ref.acc_values


def _zp_value(fmt, zp):
    """A Fixed operand's zero point as the real value the engines subtract from its values."""
    return int(zp) * fmt.resolution if isinstance(fmt, Fixed) and zp else 0.0


def _exact_lowered(spec, A, B, bias):
    """kulisch_exact for gemm layers and conv2d forward: the lowered GEMM's exact sums, laid out as the
    layer's result (conv2d: NCHW, the same view the engines return)."""
    dp = spec.datapath
    za, zb = _zp_value(dp.a, dp.a_zero_point), _zp_value(dp.b, dp.b_zero_point)
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if spec.op == "gemm":
        if spec.pass_ == "backward_input":            # dX (M, K) = dY (M, N) . W^T (N, K)
            return exact_gemm(A, np.ascontiguousarray(B.T), None, za, zb)
        if spec.pass_ == "backward_weight":           # dW (K, N) = X^T . dY
            return exact_gemm(np.ascontiguousarray(A.T), B, None, za, zb)
        return exact_gemm(A, B, bias if (bias is not None and dp.bias_preload) else None, za, zb)
    s = spec.shape
    groups = s.get("groups", 1)
    N, C = A.shape[:2]
    O, Cg = B.shape[:2]
    Og = O // groups
    parts = []
    for g in range(groups):
        patches, OH, OW = unfold(A[:, g * Cg:(g + 1) * Cg], B.shape[2:], stride=s.get("stride", 1),
                                 padding=s.get("padding", 0), dilation=s.get("dilation", 1), pad_value=za,
                                 reduction_order="ckk")
        wg = flatten_weights(B[g * Og:(g + 1) * Og], "ckk")
        bg = None if (bias is None or not dp.bias_preload) else np.asarray(bias, dtype=np.float64)[g * Og:(g + 1) * Og]
        parts.append(exact_gemm(patches, wg, bg, za, zb))
    arr = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return arr.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)


def _errors(got, ref):
    """(share differing, max abs error, SQNR in dB: inf when bit-exact) of ``got`` against ``ref``."""
    return compare(ref, got)


def _metrics(spec_raw, spec_path, config, data, reference, threads=None):
    """One configuration: simulate, compare both registers with the exact reference: the output register
    (``share_differing``, ``max_abs_error``, ``sqnr_db``) and the raw accumulator (``acc_`` keys). Runs in
    a worker; ``threads`` caps Numba's threads there (one per process when processes share the cores).
    ``data`` or ``reference`` None: the ones this worker received once (:func:`_worker_data`)."""
    if threads:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    from fxsim.workflows.run import run_layer
    from fxsim.workflows.spec import spec_from_dict
    if data is None:
        data, reference = _WORKER["data"], _WORKER["refs"][reference]
    spec = spec_from_dict(spec_raw)
    spec.path = spec_path
    try:
        dp = _config_datapath(spec.datapath, config)
        res, _ = run_layer(spec, dp, data=data)
    except ValueError as exc:   # e.g. a preloaded bias that does not fit this accumulator
        nan = float("nan")
        return {**config, "share_differing": 1.0, "overflow_events": -1, "outputs_with_overflow": -1,
                "max_abs_error": nan, "sqnr_db": nan, "acc_share_differing": 1.0, "acc_max_abs_error": nan,
                "acc_sqnr_db": nan, "error": str(exc)}
    return _row(config, res, reference)


def _row(config, res, reference):
    """A configuration's row from its result and the exact reference (values, codes, accumulator values)."""
    ref_values, ref_codes, ref_acc = reference
    acc_values = res.acc_values if res.acc_values is not None else res.acc
    if _is_float(config):
        share, maxerr, sqnr = _errors(res.values, ref_values)
    else:
        share = float(np.mean(res.codes != ref_codes)) if res.codes.size else 0.0
        _, maxerr, sqnr = _errors(res.values, ref_values)
    if acc_values is res.values and ref_acc is ref_values:
        # no output stage: the register is the output (codes differ exactly where values do), so the
        # accumulator's comparison is the output's
        a_share, a_maxerr, a_sqnr = share, maxerr, sqnr
    else:
        a_share, a_maxerr, a_sqnr = _errors(acc_values, ref_acc)
    return {**config, "share_differing": share,
            "overflow_events": int(res.overflow_count.sum()),
            "outputs_with_overflow": int(np.count_nonzero(res.overflow_count)),
            "max_abs_error": maxerr, "sqnr_db": sqnr,
            "acc_share_differing": a_share, "acc_max_abs_error": a_maxerr, "acc_sqnr_db": a_sqnr, "error": ""}


# what a worker process received once (its initializer): the layer's operands and the references
_WORKER = {}


def _worker_data(parent_pid, shared_name, size):
    """A worker's initializer: first what makes it die with its parent and ignore Ctrl-C, then the
    operands and references, read once from the parent's shared-memory block (not from the start-up
    pipe: a parent stopped by Ctrl-C while writing a large start-up message would leave the worker
    unpickling half of it, and saying so on the terminal)."""
    worker_init(parent_pid)
    block = shared_memory.SharedMemory(name=shared_name)
    try:
        resource_tracker.unregister(block._name, "shared_memory")   # the parent owns and removes it
    except Exception:      # noqa: BLE001 -- trackers differ between Python versions; nothing depends on it
        pass
    data, refs = pickle.loads(bytes(block.buf[:size]))
    block.close()
    _WORKER["data"] = _real(data)
    _WORKER["refs"] = refs


def _compact(data, spec):
    """The layer's operands for the workers: integer codes in their narrowest dtype where the format is
    an integer one (what gemm reads as codes; 8x smaller than float64 for INT8), else as they are."""
    A, B, bias = data
    dp = spec.datapath
    out = []
    for x, fmt in ((A, dp.a), (B, dp.b)):
        if isinstance(fmt, Fixed) and fmt.frac == 0 and fmt.bits < 64:
            x = np.asarray(x)
            codes = x.astype(compact_int_dtype(fmt.min_code, fmt.max_code))
            if np.array_equal(codes, x):            # on the grid and in range: exact codes
                out.append(("codes", codes))
                continue
        out.append(("values", x))
    return tuple(out) + (bias,)


def _real(data):
    """The operands as make_data gives them (float64 values) from :func:`_compact`'s form."""
    if len(data) == 3 and isinstance(data[0], tuple):
        (ka, A), (kb, B), bias = data
        return (A.astype(np.float64) if ka == "codes" else A, B.astype(np.float64) if kb == "codes" else B, bias)
    return data


#: below this much work (configurations x multiply-accumulates) a sweep runs in this process: starting
#: processes or shipping tasks to a cluster costs more than it saves
SERIAL_WORK = 1 << 28


def run_sweep(spec, configs, *, scheduler=None, workers=None, progress=True, connect_timeout=10.0,
              engine="auto", info=None):
    """Run every configuration; returns {"rows": [...], "narrowest_exact": {...}, "bounds": {...}}.

    ``engine``: "one-pass" answers every configuration from one pass over the layer's products per order
    (fxsim.workflows.sweep_onepass; a forward gemm or one-group conv2d layer on an integer datapath), "per-width" simulates each
    configuration on its own, "auto" (default) takes one pass where it applies unless ``workers`` > 1 or
    a ``scheduler`` asks for per-width simulation in processes or on a cluster. The rows are the same
    either way; ``info``, a dict when given, receives ``info["engine"]``: which ran.
    Per width: ``workers``: local processes (default: one per core, or serial in this process when the
    sweep is small, below SERIAL_WORK configurations x multiply-accumulates; 1 runs serially); they
    receive the layer's operands (integer codes where the formats are integers) and the references once,
    ignore Ctrl-C (this process handles it and stops them) and die with this process. ``scheduler``: the
    address of a Dask distributed scheduler, which then runs the configurations instead; it must answer
    as one within ``connect_timeout`` seconds (checked before any work, see :func:`probe_scheduler`)."""
    from fxsim.workflows.data import make_data
    check_choice("engine", engine, ("auto", "one-pass", "per-width"))
    if spec.op not in ("gemm", "conv2d"):
        raise InvalidArgument(f"sweep takes gemm and conv2d layers, got op = {spec.op!r}")
    if any(not _is_float(c) for c in configs) and not isinstance(spec.datapath.accumulator.fmt, Fixed):
        raise InvalidArgument(f"an accumulator width sweep needs a Fixed accumulator; the spec's accumulator is "
                              f"{spec.datapath.accumulator.fmt}: sweep Float accumulator formats instead "
                              "(acc_formats, or --acc-formats / --acc-man-bits / --acc-exp-bits)")
    from fxsim.workflows import sweep_onepass
    one_pass = sweep_onepass.eligible(spec, configs)
    split = scheduler is not None or (workers is not None and workers > 1)   # asked for processes or a cluster
    if engine == "one-pass" and split:
        raise InvalidArgument("engine='one-pass' runs in this process: workers > 1 and a scheduler apply to "
                              "engine='per-width'")
    if engine == "one-pass" and not one_pass:
        raise InvalidArgument("engine='one-pass' takes a forward gemm or one-group conv2d layer on an integer "
                              "datapath and Fixed accumulator widths (wrap or saturating modes); use "
                              "engine='auto' or 'per-width'")
    one_pass = one_pass and engine != "per-width" and not split
    if scheduler:
        probe_scheduler(scheduler, connect_timeout)
    data = make_data(spec)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(configs), desc="sweep", unit="config", disable=None)
    if one_pass:
        def fallback(c, ref):
            return _metrics(spec.raw, spec.path, c, data, ref)
        try:
            rows = sweep_onepass.sweep_rows(spec, configs, data, _config_datapath, _row, fallback)
        finally:
            if bar:
                bar.update(len(configs))
                bar.close()
        if info is not None:
            info["engine"] = sweep_onepass.ENGINE
        return {"layer": layer_name(spec), "rows": rows, "narrowest_exact": narrowest_exact(rows),
                "bounds": layer_bounds(spec, data)}
    refs = {}                                  # the exact reference, once per order
    for c in configs:
        key = _reference_key(c)
        if key not in refs:
            refs[key] = exact_reference(spec, c, data)
    rows = [None] * len(configs)
    from fxsim.workflows.spec import second_operand_matrix
    A, B, _ = data
    work = len(configs) * int(np.size(A)) * int(second_operand_matrix(spec, A, B).shape[1])   # about the MACs
    serial = workers == 1 or (workers is None and not scheduler and work < SERIAL_WORK)
    if scheduler:
        from distributed import Client, as_completed as d_as_completed
        with Client(scheduler, timeout=connect_timeout) as client:
            # the operands (as codes where they are integers) and the references go to each worker once
            shared = client.scatter(_compact(data, spec), broadcast=True)
            shared_refs = {k: client.scatter(v, broadcast=True) for k, v in refs.items()}
            futs = {client.submit(_metrics_real, spec.raw, spec.path, c, shared, shared_refs[_reference_key(c)],
                                  pure=False): i for i, c in enumerate(configs)}
            for f in d_as_completed(list(futs)):
                rows[futs[f]] = f.result()
                if bar:
                    bar.update()
    elif serial:
        for i, c in enumerate(configs):
            rows[i] = _metrics(spec.raw, spec.path, c, data, refs[_reference_key(c)])
            if bar:
                bar.update()
    else:
        # spawn, not fork: Numba's OpenMP threads must not be forked
        ctx = multiprocessing.get_context("spawn")
        n = workers or os.cpu_count() or 1
        threads = max(1, (os.cpu_count() or 1) // n)
        start_resource_tracker()
        # each worker receives the operands and references once, in its initializer; tasks name them
        payload = pickle.dumps((_compact(data, spec), refs), protocol=pickle.HIGHEST_PROTOCOL)
        block = shared_memory.SharedMemory(create=True, size=max(1, len(payload)))   # the tracker removes
        block.buf[:len(payload)] = payload                                            # it if we are killed
        ex = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_data,
                                 initargs=(os.getpid(), block.name, len(payload)))
        try:
            with quiet_spawning():          # workers start with Ctrl-C blocked until they ignore it
                futs = {ex.submit(_metrics, spec.raw, spec.path, c, None, _reference_key(c), threads): i
                        for i, c in enumerate(configs)}
            for f in as_completed(futs):
                rows[futs[f]] = f.result()
                if bar:
                    bar.update()
        except BaseException:               # Ctrl-C or a failure: stop the workers now, not after their work
            stop_pool(ex)
            raise
        else:
            ex.shutdown(wait=True)
        finally:
            block.close()
            block.unlink()
    if bar:
        bar.close()
    if info is not None:
        info["engine"] = "per-width"
    return {"layer": layer_name(spec), "rows": rows, "narrowest_exact": narrowest_exact(rows),
            "bounds": layer_bounds(spec, data)}


def _metrics_real(spec_raw, spec_path, config, data, reference):
    """_metrics on a cluster worker: the operands arrive in :func:`_compact`'s form, once per worker;
    their float64 form is made once per worker too (kept with the object it was made from)."""
    if _WORKER.get("cluster_src") is not data:
        _WORKER["cluster_src"], _WORKER["cluster_data"] = data, _real(data)
    return _metrics(spec_raw, spec_path, config, _WORKER["cluster_data"], reference)


def layer_name(spec) -> str:
    """The spec's [layer] name (or its file name), its op and pass, and its shape, in one line."""
    name = spec.raw.get("layer", {}).get("name") or (os.path.basename(spec.path) if spec.path else None)
    shape = " ".join(f"{k}={v}" for k, v in spec.shape.items())
    what = spec.op if spec.pass_ == "forward" else f"{spec.op} {spec.pass_}"
    return f"{name + ': ' if name else ''}{what}{' ' + shape if shape else ''}"


class SchedulerUnreachable(FxsimError, ConnectionError):
    """A ``--scheduler`` address that does not lead to a Dask scheduler answering in time."""


def probe_scheduler(address, timeout=10.0) -> None:
    """Check, within ``timeout`` seconds, that ``address`` (``tcp://HOST:PORT``) resolves, accepts a
    connection and sends the handshake a Dask scheduler sends; raise :class:`SchedulerUnreachable`
    saying which step failed. (Dask's own client waits forever on a server that accepts and stays silent,
    and reads garbage from one that speaks another protocol.)"""
    import re
    import socket
    import struct
    import threading
    import time
    m = re.match(r"^(?:tcp://)?(\[[^\]]+\]|[^:/\[\]]+):(\d{1,5})$", str(address))
    if not m or not 0 < int(m.group(2)) < 65536:
        raise SchedulerUnreachable(f"--scheduler must be tcp://HOST:PORT (a Dask scheduler's address), "
                                   f"got {address!r}")
    host, port = m.group(1).strip("[]"), int(m.group(2))
    deadline = time.monotonic() + timeout
    found = {}

    def resolve():
        try:
            found["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            found["error"] = exc
    t = threading.Thread(target=resolve, daemon=True)      # getaddrinfo cannot be given a time limit
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise SchedulerUnreachable(f"--scheduler {address}: the host name {host!r} did not resolve within "
                                   f"{timeout:g} s")
    if "error" in found:
        raise SchedulerUnreachable(f"--scheduler {address}: unknown host {host!r} ({found['error']})")
    family, stype, proto, _, sockaddr = found["addrs"][0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            sock.connect(sockaddr)
        except socket.timeout:
            raise SchedulerUnreachable(f"--scheduler {address}: no connection within {timeout:g} s") from None
        except OSError as exc:
            raise SchedulerUnreachable(f"--scheduler {address}: cannot connect ({exc.strerror or exc})") from None
        head = b""
        while len(head) < 16:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(16 - len(head))
            except socket.timeout:
                raise SchedulerUnreachable(
                    f"--scheduler {address}: the server accepted the connection but sent no Dask handshake "
                    f"within {timeout:g} s; is it a Dask scheduler? (--connect-timeout sets the wait)") from None
            except OSError as exc:
                raise SchedulerUnreachable(f"--scheduler {address}: the connection failed ({exc.strerror or exc})") \
                    from None
            if not chunk:
                raise SchedulerUnreachable(f"--scheduler {address}: the server closed the connection without a "
                                           f"Dask handshake; is it a Dask scheduler?")
            head += chunk
        total, nframes = struct.unpack("<QQ", head)
        if not (1 <= nframes <= 64 and 8 * (nframes + 1) <= total <= 1 << 24):
            raise SchedulerUnreachable(f"--scheduler {address}: the server does not speak the Dask protocol "
                                       f"(it sent {head[:16]!r}); is it a Dask scheduler?")
    finally:
        sock.close()


def narrowest_exact(rows) -> dict:
    """Per "order/overflow": the narrowest swept accumulator from which every wider swept one is bit-exact
    at the output register (a wrapping accumulator can be exact by luck at one width and not at the next):
    its width in bits, or for Float sweeps its format name (ordered by total width, then mantissa width)."""
    out = {}
    for key in sorted({f"{r['order']}/{r['overflow']}" for r in rows}):
        rs = sorted((r for r in rows if f"{r['order']}/{r['overflow']}" == key),
                    key=lambda r: (-r["acc_bits"], -r.get("acc_man", 0)))
        best = None
        for r in rs:
            if r["share_differing"] != 0:
                break
            best = r.get("acc_format", r["acc_bits"])
        if best is not None:
            out[key] = best
    return out


def layer_bounds(spec, data):
    """The analytical widths beside a sweep: worst case (formats and K), data-dependent (the actual
    weights over the whole input range) and the l1-norm bound; None where an operand is not Fixed."""
    dp = spec.datapath
    A, B, bias = data
    from fxsim.workflows.shapes import second_operand_matrix
    Bm = second_operand_matrix(spec, A, B)
    K = Bm.shape[0]
    if not (isinstance(dp.a, Fixed) and isinstance(dp.b, Fixed)):
        return {"worst_case_bits": None, "data_dependent_bits": None, "l1_norm_bits": None, "K": int(K)}
    W = np.rint(np.ldexp(Bm, dp.b.frac)).astype(np.int64)
    return {"worst_case_bits": worst_case_bits(dp.a, dp.b, K, a_zero_point=dp.a_zero_point, b_zero_point=dp.b_zero_point),
            "data_dependent_bits": int(data_bits(W - dp.b_zero_point, dp.a, a_zero_point=dp.a_zero_point).max()),
            "l1_norm_bits": int(l1_bits(W - dp.b_zero_point, dp.a, a_zero_point=dp.a_zero_point).max()),
            "K": int(K)}


def json_safe(obj):
    """``obj`` with every non-finite float replaced so that it is standard JSON (RFC 8259): +inf -> "inf"
    (an SQNR of a bit-exact result), -inf -> "-inf", NaN (a configuration that could not run) -> null."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if np.isnan(f):
            return None
        if np.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    return obj


def write_sweep(result, directory):
    """sweep.csv, sweep.json (standard JSON: infinite SQNR is the string "inf", a failed configuration's
    numbers are null) and sweep.png into an existing directory."""
    rows = result["rows"]
    fields = list(dict.fromkeys(k for r in rows for k in r if k != "acc_float"))
    with open(os.path.join(directory, "sweep.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(directory, "sweep.json"), "w") as fh:
        json.dump(json_safe(result), fh, indent=2, allow_nan=False)
    plot_sweep(result, os.path.join(directory, "sweep.png"))


def _positions(rows):
    """x position of each row's accumulator: its width in bits (Fixed sweeps) or its mantissa width
    (Float sweeps, one curve per exponent width)."""
    if not any("acc_format" in r for r in rows):
        return lambda r: r["acc_bits"]
    return lambda r: r["acc_man"]


def _series(r):
    """The curve a row belongs to: order and overflow, and for Float sweeps the exponent width."""
    base = (r["order"], r["overflow"])
    return base + ((f"e{r['acc_exp']}",) if "acc_exp" in r else ())


def plot_sweep(result, path, title=None):
    """Write ``sweep_figure(result, title)`` to ``path`` (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = sweep_figure(result, title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sweep_figure(result, title=None):
    """A matplotlib figure: share of outputs differing from exact (output register and raw accumulator), overflow events,
    max abs error and SQNR against accumulator width, one line per order/overflow; the analytical bounds
    and the narrowest bit-exact width per order/overflow as vertical lines, every one named in the legend.
    Bit-exact configurations have no finite SQNR: they are marked on the top edge of the SQNR panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in result["rows"] if not r.get("error")]   # widths that cannot even hold the bias
    is_float = any("acc_format" in r for r in rows)
    xpos = _positions(rows)
    fig, axes = plt.subplots(2, 2, figsize=(14, 8.5))
    panels = [("share_differing", "outputs differing from exact (%)", "linear"),
              ("overflow_events", "overflow events (wrap, saturation or inf)", "symlog"),
              ("max_abs_error", "max abs error vs exact (output register)", "symlog"),
              ("sqnr_db", "SQNR vs exact (dB, output register)", "linear")]
    keys = sorted({_series(r) for r in rows})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    finite_sqnr = [r["sqnr_db"] for r in rows if np.isfinite(r["sqnr_db"])]
    hi_sqnr = max(finite_sqnr) if finite_sqnr else 0.0
    lo_sqnr = min(min(finite_sqnr), 0.0) if finite_sqnr else 0.0
    top = hi_sqnr + max(10.0, 0.15 * (hi_sqnr - lo_sqnr))      # where bit-exact points are marked
    handles = {}
    for ax, (field, label, scale) in zip(axes.ravel(), panels):
        for n, key in enumerate(keys):
            c = colors[n % len(colors)]
            name = ", ".join(key)
            rs = sorted((r for r in rows if _series(r) == key), key=xpos)
            xs = [xpos(r) for r in rs]
            if field == "sqnr_db":
                fin = [(x, r[field]) for x, r in zip(xs, rs) if np.isfinite(r[field])]
                ax.plot([p[0] for p in fin], [p[1] for p in fin], marker="o", ms=3, color=c)
                exact = [x for x, r in zip(xs, rs) if r[field] == float("inf")]
                if exact:
                    h, = ax.plot(exact, [top - 0.02 * n * (top - lo_sqnr)] * len(exact), ls="none", marker="^",
                                 ms=7, color=c, alpha=0.8)
                    handles[f"{name}: bit-exact (infinite SQNR, at the top)"] = h
            elif field == "share_differing":
                h, = ax.plot(xs, [100 * r[field] for r in rs], marker="o", ms=3, color=c)
                handles[f"{name}: output register"] = h
                if not is_float:     # a Float accumulator is its own output register
                    h, = ax.plot(xs, [100 * r.get("acc_share_differing", np.nan) for r in rs], ls="--",
                                 marker="x", ms=4, color=c, alpha=0.7)
                    handles[f"{name}: raw accumulator (dashed)"] = h
            else:
                ax.plot(xs, [r[field] for r in rs], marker="o", ms=3, color=c)
        series = {f"{k[0]}/{k[1]}": colors[n % len(colors)] for n, k in reversed(list(enumerate(keys)))}
        for name, h in _bound_lines(ax, result["bounds"], result.get("narrowest_exact", {}), rows, is_float, xpos,
                                    series):
            handles.setdefault(name, h)
        values = [r[field] for r in rows if np.isfinite(r[field])]
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylim(-0.3, max(max(values, default=1.0), 1.0) * 2.5)   # headroom: no point on an edge
        elif field == "share_differing":
            ax.set_ylim(-4, 104)
        else:
            ax.set_ylim(lo_sqnr - 0.05 * (top - lo_sqnr) - 1, top + 0.06 * (top - lo_sqnr) + 1)
        ax.set_xlabel("accumulator mantissa bits (one curve per exponent width)" if is_float else
                      "accumulator bits")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        xs_all = sorted({xpos(r) for r in rows})
        if xs_all:
            ax.set_xlim(xs_all[0] - 0.6, xs_all[-1] + 0.6)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=8, frameon=False)
    fig.suptitle(title or _title(result), fontsize=12)
    fig.tight_layout(rect=(0, 0, 0.72, 0.96))
    return fig


def _title(result):
    b = result["bounds"]
    layer = result.get("layer") or "layer"
    return f"Accumulator sweep of {layer} (K = {b['K']} products per output)"


def _bound_lines(ax, b, narrowest, rows, is_float, xpos, series):
    """Draw every analytical bound and the narrowest bit-exact accumulator per order/overflow as vertical
    lines (lines that fall on the same width are drawn side by side); returns (legend label, handle) pairs."""
    lines = []
    if not is_float:
        for key, name, color, ls in (("worst_case_bits", "worst case bound (formats and K)", "k", "--"),
                                     ("data_dependent_bits", "data-dependent bound (these weights)", "g", ":"),
                                     ("l1_norm_bits", "l1-norm bound (A2Q)", "m", "-.")):
            if b.get(key) is not None:
                lines.append((b[key], f"{name}: {b[key]} bits", color, ls, 1.2))
    for key, best in sorted(narrowest.items()):
        r = next((r for r in rows if f"{r['order']}/{r['overflow']}" == key
                  and r.get("acc_format", r["acc_bits"]) == best), None)
        if r is not None:
            lines.append((xpos(r), f"narrowest bit-exact, {key.replace('/', ', ')}: {best}"
                          f"{'' if is_float else ' bits'}", series.get(key, "r"), "-", 2.5))
    out = []
    seen = {}
    for x, name, color, ls, lw in lines:
        k = seen.get(x, 0)
        seen[x] = k + 1
        h = ax.axvline(x + 0.09 * k, color=color, ls=ls, lw=lw, alpha=0.8)
        out.append((name, h))
    return out


def _num(v, digits=4):
    """A float for people: 4 significant digits, "inf"/"-inf", "n/a" for NaN."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    if isinstance(v, float) and np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def format_table(result) -> str:
    """The sweep as text: per configuration the output register (share differing, max error, SQNR) and
    the raw accumulator (share differing); failed configurations with their reason in full."""
    rows = result["rows"]
    is_float = any("acc_format" in r for r in rows)
    wcol = "format" if is_float else "bits"
    lines = ["output = the output register (after the output stage); acc = the raw accumulator",
             f"{'order':<11}{'overflow':<10}{wcol:>8}{'ovf events':>12}{'out differ %':>14}{'out max err':>13}"
             f"{'out SQNR dB':>13}{'acc differ %':>14}"]
    failed = []
    for r in rows:
        w = r.get("acc_format", r["acc_bits"])
        if r.get("error"):
            lines.append(f"{r['order']:<11}{r['overflow']:<10}{w!s:>8}  failed: see below")
            failed.append(f"  {r['order']}, {r['overflow']}, {w}: {r['error']}")
            continue
        sq = _num(r["sqnr_db"], 5) if np.isfinite(r["sqnr_db"]) else ("exact" if r["sqnr_db"] > 0 else "-inf")
        lines.append(f"{r['order']:<11}{r['overflow']:<10}{w!s:>8}{r['overflow_events']:>12}"
                     f"{100 * r['share_differing']:>14.2f}{_num(r['max_abs_error']):>13}{sq:>13}"
                     f"{100 * r.get('acc_share_differing', 0.0):>14.2f}")
    if failed:
        lines.append("configurations that could not run:")
        lines += failed
    b = result["bounds"]
    ne = result["narrowest_exact"]
    unit = "" if is_float else " bits"
    narrow = "; ".join(f"{k.replace('/', ', ')}: {v}{unit}" for k, v in ne.items()) or "none in the swept range"
    lines.append(f"narrowest bit-exact accumulator on this data (output register): {narrow}")
    if b.get("worst_case_bits") is None:
        lines.append(f"analytical bounds (K={b['K']}): not defined (an operand is not fixed point)")
    else:
        lines.append(f"analytical bounds (K={b['K']}): worst case {b['worst_case_bits']} bits, data-dependent "
                     f"{b['data_dependent_bits']} bits, l1-norm (A2Q) {b['l1_norm_bits']} bits")
    return "\n".join(lines)
