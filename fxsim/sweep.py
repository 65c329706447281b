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
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from .bounds import data_bits, l1_bits, worst_case_bits
from .datapath import Accumulator, Order
from .errors import FxsimError
from .formats import Fixed

__all__ = ["sweep_configs", "run_sweep", "write_sweep", "plot_sweep"]


def sweep_configs(bits, overflows=("saturate", "wrap"), orders=("sequential",), lanes=4):
    """Every (order, overflow, width) combination as a list of plain dicts (picklable, JSON-able)."""
    from .modes import Overflow
    for ov in overflows:
        Overflow.parse(ov, argument="overflow")
    for o in orders:
        if o not in ("sequential", "tree", "chunked"):
            raise ValueError(f"order must be one of ('sequential', 'tree', 'chunked'), got {o!r}")
    for b in bits:
        if isinstance(b, bool) or not 2 <= int(b) <= 62:
            raise ValueError(f"accumulator bits must be in 2..62, got {b!r}")
    if isinstance(lanes, bool) or int(lanes) < 1:
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    out = []
    for o in orders:
        for ov in overflows:
            for b in bits:
                out.append({"acc_bits": int(b), "overflow": ov, "order": o, "lanes": lanes})
    return out


def _order(config):
    return Order(config["order"], lanes=config["lanes"] if config["order"] == "chunked" else 1)


def exact_reference(spec, config, data):
    """The layer through the same datapath and order on a 62-bit accumulator (no partial sum of these
    layers comes near it): (output values, output codes)."""
    from .spec import run_layer
    base = spec.datapath
    acc = base.accumulator.fmt
    wide = base.replace(accumulator=Accumulator(Fixed(62, acc.frac, True), overflow="wrap",
                                                rounding=base.accumulator.rounding), order=_order(config))
    ref, _ = run_layer(spec, wide, data=data)
    return ref.values, ref.codes


def _metrics(spec_raw, spec_path, config, data, reference, threads=None):
    """One configuration: simulate, compare with the exact reference. Runs in a worker; ``threads`` caps
    Numba's threads there (one per process when processes share the cores)."""
    if threads:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    from .spec import run_layer, spec_from_dict
    spec = spec_from_dict(spec_raw)
    spec.path = spec_path
    base = spec.datapath
    acc = base.accumulator.fmt
    dp = base.replace(accumulator=Accumulator(Fixed(config["acc_bits"], acc.frac, acc.signed),
                                              overflow=config["overflow"], rounding=base.accumulator.rounding),
                      order=_order(config))
    ref_values, ref_codes = reference
    try:
        res, _ = run_layer(spec, dp, data=data)
    except ValueError as exc:   # e.g. a preloaded bias that does not fit this accumulator
        return {**config, "share_differing": 1.0, "overflow_events": -1, "outputs_with_overflow": -1,
                "max_abs_error": float("nan"), "sqnr_db": float("nan"), "error": str(exc)}
    err = res.values - ref_values
    sig = float(np.sum(ref_values ** 2))
    noise = float(np.sum(err ** 2))
    sqnr = float("inf") if noise == 0 else (10 * np.log10(sig / noise) if sig > 0 else float("-inf"))
    return {**config, "share_differing": float(np.mean(res.codes != ref_codes)),
            "overflow_events": int(res.overflow_count.sum()),
            "outputs_with_overflow": int(np.count_nonzero(res.overflow_count)),
            "max_abs_error": float(np.max(np.abs(err))) if err.size else 0.0, "sqnr_db": sqnr, "error": ""}


def run_sweep(spec, configs, *, scheduler=None, workers=None, progress=True, connect_timeout=10.0):
    """Run every configuration; returns {"rows": [...], "narrowest_exact": {...}, "bounds": {...}}.

    ``workers``: local processes (default one per core; 1 runs serially in this process); they ignore
    Ctrl-C (this process handles it and stops them) and die with this process. ``scheduler``: the address
    of a Dask distributed scheduler, which then runs the configurations instead; it must answer as one
    within ``connect_timeout`` seconds (checked before any work, see :func:`probe_scheduler`)."""
    from .spec import make_data
    if not isinstance(spec.datapath.accumulator.fmt, Fixed):
        raise ValueError(f"an accumulator width sweep needs a Fixed accumulator; the spec's accumulator is "
                         f"{spec.datapath.accumulator.fmt}")
    if scheduler:
        probe_scheduler(scheduler, connect_timeout)
    data = make_data(spec)
    refs = {}                                  # the exact reference, once per order
    for c in configs:
        key = (c["order"], c["lanes"])
        if key not in refs:
            refs[key] = exact_reference(spec, c, data)
    rows = [None] * len(configs)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(configs), desc="sweep", unit="config", disable=None)
    if scheduler:
        from distributed import Client, as_completed as d_as_completed
        with Client(scheduler, timeout=connect_timeout) as client:
            shared = client.scatter(data, broadcast=True)          # the layer's data goes to each worker once
            shared_refs = {k: client.scatter(v, broadcast=True) for k, v in refs.items()}
            futs = {client.submit(_metrics, spec.raw, spec.path, c, shared, shared_refs[(c["order"], c["lanes"])],
                                  pure=False): i for i, c in enumerate(configs)}
            for f in d_as_completed(list(futs)):
                rows[futs[f]] = f.result()
                if bar:
                    bar.update()
    elif workers == 1:
        for i, c in enumerate(configs):
            rows[i] = _metrics(spec.raw, spec.path, c, data, refs[(c["order"], c["lanes"])])
            if bar:
                bar.update()
    else:
        # spawn, not fork: Numba's OpenMP threads must not be forked
        ctx = multiprocessing.get_context("spawn")
        n = workers or os.cpu_count() or 1
        threads = max(1, (os.cpu_count() or 1) // n)
        from .workers import quiet_spawning, start_resource_tracker, stop_pool, worker_init
        start_resource_tracker()
        ex = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=worker_init, initargs=(os.getpid(),))
        try:
            with quiet_spawning():          # workers start with Ctrl-C blocked until they ignore it
                futs = {ex.submit(_metrics, spec.raw, spec.path, c, data, refs[(c["order"], c["lanes"])],
                                  threads): i for i, c in enumerate(configs)}
            for f in as_completed(futs):
                rows[futs[f]] = f.result()
                if bar:
                    bar.update()
        except BaseException:               # Ctrl-C or a failure: stop the workers now, not after their work
            stop_pool(ex)
            raise
        ex.shutdown(wait=True)
    if bar:
        bar.close()
    return {"rows": rows, "narrowest_exact": narrowest_exact(rows), "bounds": layer_bounds(spec, data)}


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
    """Per "order/overflow": the smallest swept width from which every wider swept width is bit-exact
    (a wrapping accumulator can be exact by luck at one width and not at the next)."""
    out = {}
    for key in sorted({f"{r['order']}/{r['overflow']}" for r in rows}):
        rs = sorted((r for r in rows if f"{r['order']}/{r['overflow']}" == key), key=lambda r: -r["acc_bits"])
        best = None
        for r in rs:
            if r["share_differing"] != 0:
                break
            best = r["acc_bits"]
        if best is not None:
            out[key] = best
    return out


def layer_bounds(spec, data):
    """The analytical widths beside a sweep: worst case (formats and K), data-dependent (the actual
    weights over the whole input range) and the l1-norm bound; None where an operand is not Fixed."""
    dp = spec.datapath
    A, B, bias = data
    from .spec import second_operand_matrix
    Bm = second_operand_matrix(spec, A, B)
    K = Bm.shape[0]
    if not (isinstance(dp.a, Fixed) and isinstance(dp.b, Fixed)):
        return {"worst_case_bits": None, "data_dependent_bits": None, "l1_norm_bits": None, "K": int(K)}
    W = np.rint(np.ldexp(Bm, dp.b.frac)).astype(np.int64)
    return {"worst_case_bits": worst_case_bits(dp.a, dp.b, K, a_zero_point=dp.a_zero_point, b_zero_point=dp.b_zero_point),
            "data_dependent_bits": int(data_bits(W - dp.b_zero_point, dp.a, a_zero_point=dp.a_zero_point).max()),
            "l1_norm_bits": int(l1_bits(W - dp.b_zero_point, dp.a, a_zero_point=dp.a_zero_point).max()),
            "K": int(K)}


def write_sweep(result, directory):
    """sweep.csv, sweep.json and sweep.png into an existing directory."""
    rows = result["rows"]
    with open(os.path.join(directory, "sweep.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(directory, "sweep.json"), "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    plot_sweep(result, os.path.join(directory, "sweep.png"))


def plot_sweep(result, path):
    """PNG: share of outputs differing from exact, overflow events, max abs error and SQNR against
    accumulator bits, one line per order/overflow, the analytical bounds as vertical lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in result["rows"] if not r.get("error")]   # widths that cannot even hold the bias
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [("share_differing", "outputs differing from exact (%)", lambda v: 100 * v, "linear"),
              ("overflow_events", "overflow events (wrap or saturation)", lambda v: v, "symlog"),
              ("max_abs_error", "max abs error vs exact", lambda v: v, "symlog"),
              ("sqnr_db", "SQNR vs exact (dB, bit-exact drawn at 200)", lambda v: min(v, 200.0), "linear")]
    keys = sorted({(r["order"], r["overflow"]) for r in rows})
    b = result["bounds"]
    for ax, (field, label, f, scale) in zip(axes.ravel(), panels):
        for order, ov in keys:
            rs = sorted((r for r in rows if r["order"] == order and r["overflow"] == ov), key=lambda r: r["acc_bits"])
            ax.plot([r["acc_bits"] for r in rs], [f(r[field]) for r in rs], marker="o", ms=3, label=f"{order}, {ov}")
        if b.get("worst_case_bits") is not None:
            ax.axvline(b["worst_case_bits"], color="k", ls="--", lw=0.8, label="worst case")
            ax.axvline(b["data_dependent_bits"], color="g", ls=":", lw=0.8, label="data-dependent")
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylim(bottom=0)
        ax.set_xlabel("accumulator bits")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(result) -> str:
    lines = [f"{'order':<11}{'overflow':<10}{'bits':>5}{'differ %':>10}{'ovf events':>12}{'max err':>10}{'SQNR dB':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['order']:<11}{r['overflow']:<10}{r['acc_bits']:>5}{100 * r['share_differing']:>10.2f}"
                     f"{r['overflow_events']:>12}{r['max_abs_error']:>10.4g}{r['sqnr_db']:>10.2f}"
                     + (f"  ({r['error'][:60]})" if r.get("error") else ""))
    b = result["bounds"]
    lines.append(f"narrowest bit-exact accumulator on this data: {result['narrowest_exact'] or 'none in range'}")
    lines.append(f"analytical bounds (K={b['K']}): worst case {b['worst_case_bits']} bits, data-dependent "
                 f"{b['data_dependent_bits']} bits, l1-norm (A2Q) {b['l1_norm_bits']} bits")
    return "\n".join(lines)
