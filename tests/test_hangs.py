"""Nothing hangs: a --scheduler that is not a Dask scheduler is a clear error in bounded time, Ctrl-C
stops a sweep with exit 130 and one line, and worker processes die with their parent."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from fxsim.cli.main import EXIT_INPUT, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BIG = """
[shape]
M = 192
K = 384
N = 192
[data]
seed = 1
[datapath.accumulator]
format = "int24"
overflow = "saturate"
[datapath.order]
kind = "chunked"
lanes = 3
"""


@pytest.fixture
def spec(tmp_path):
    from tests.workflow_specs import INT8_GEMM
    p = tmp_path / "layer.toml"
    p.write_text(INT8_GEMM)
    return p


class _Server:
    """A TCP server on 127.0.0.1 that does not speak Dask: silent, or answering HTTP, or closing."""

    def __init__(self, behaviour):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.behaviour = behaviour
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.behaviour == "http":
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            elif self.behaviour == "close":
                c.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SCHEDULERS = [
    ("a silent server", "silent", "sent no Dask handshake within 1 s"),
    ("an HTTP server", "http", "does not speak the Dask protocol"),
    ("a server that hangs up", "close", "closed the connection without a Dask handshake"),
    ("nothing listening", None, "cannot connect"),
    ("an unknown host", "tcp://no-such-host.invalid:8786", "unknown host 'no-such-host.invalid'"),
    ("not an address", "http://127.0.0.1:80/", "--scheduler must be tcp://HOST:PORT"),
]


@pytest.mark.parametrize("name,server,message", SCHEDULERS, ids=[c[0] for c in SCHEDULERS])
def test_a_scheduler_that_is_not_dask_is_a_clear_error_in_bounded_time(spec, capsys, name, server, message):
    srv = None
    if server in ("silent", "http", "close"):
        srv = _Server(server)
        address = f"tcp://127.0.0.1:{srv.port}"
    elif server is None:
        address = f"tcp://127.0.0.1:{_free_port()}"
    else:
        address = server
    t0 = time.monotonic()
    try:
        code = main(["sweep", str(spec), "--acc-bits", "12:13", "--scheduler", address, "--connect-timeout", "1"])
    finally:
        if srv:
            srv.close()
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == EXIT_INPUT and message in err, err
    assert "Traceback" not in err
    assert elapsed < 30        # generous: the bound is the timeout plus the layer's set-up


def test_connect_timeout_needs_a_scheduler_and_a_sane_value(spec, capsys):
    assert main(["sweep", str(spec), "--acc-bits", "12", "--connect-timeout", "5"]) == EXIT_INPUT
    assert "--connect-timeout applies to --scheduler only" in capsys.readouterr().err
    for bad in ("0", "-1", "nan", "soon"):
        assert main(["sweep", str(spec), "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", bad]) == EXIT_INPUT
        assert "--connect-timeout must be a number of seconds" in capsys.readouterr().err


def _start_sweep(tmp_path):
    p = tmp_path / "big.toml"
    p.write_text(BIG)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "fxsim.cli.main", "sweep", str(p), "--acc-bits", "8:40",
                             "--overflow", "saturate,wrap", "--order", "sequential,chunked", "--workers", "2",
                             "--engine", "per-width",
                             "--out", str(tmp_path / "out")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)      # its own process group, as a shell job
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 240
    workers = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [c for c in parent.children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    assert len(workers) >= 2, "the sweep did not start its workers"
    time.sleep(1.0)                 # the workers are simulating
    return proc, parent.children(recursive=True)


def _said(err):
    """The non-blank lines of stderr, less the first-use compile notice: with an empty Numba cache the
    sweep says it is compiling before it is interrupted, which is not a line the interruption printed."""
    from fxsim.runtime.compiling import MESSAGE
    return [line for line in err.splitlines() if line.strip() and line.strip() != MESSAGE]


def _gone(procs, timeout):
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_ctrl_c_stops_a_sweep_with_130_and_one_line(tmp_path):
    proc, children = _start_sweep(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)         # what the terminal does: the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _said(err) == ["fxsim: interrupted"], err
    assert _gone(children, 30) == []
    assert not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if "fxsim-tmp" in p] == []


LONG_FLOAT = """
[shape]
M = 768
K = 768
N = 768
[data]
seed = 2
[datapath]
a = "e4m3"
b = "e5m2"
[datapath.accumulator]
format = "fp16"
"""


def test_ctrl_c_stops_a_long_kernel_at_once(tmp_path):
    """A single float GEMM kernel of many seconds: Ctrl-C ends it within a second or two, and the
    temporary it was writing is removed by the next export beside it."""
    p = tmp_path / "long.toml"
    p.write_text(LONG_FLOAT)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "fxsim.cli.main", "export", str(p), "--out", str(tmp_path / "g")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:      # wait until the kernel is running
        if [n for n in os.listdir(tmp_path) if "fxsim-tmp" in n]:
            cpu = ps.cpu_times()
            start = cpu.user + cpu.system
            while proc.poll() is None and sum(ps.cpu_times()[:2]) < start + 1.5:
                time.sleep(0.05)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the export ended before it could be interrupted"
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    stopped = time.monotonic() - t0
    assert proc.returncode == 130 and _said(err) == ["fxsim: interrupted"], err
    assert stopped < 5, stopped           # at once, not when the kernel returns (many seconds later)
    assert not (tmp_path / "g").exists()
    assert [n for n in os.listdir(tmp_path) if "fxsim-tmp" in n]        # left by the killed run ...
    from fxsim.rtl.export import export_layer
    from fxsim.workflows.spec import parse_spec
    from tests.workflow_specs import INT8_GEMM
    export_layer(parse_spec(INT8_GEMM), tmp_path / "g")
    assert [n for n in os.listdir(tmp_path) if "fxsim-tmp" in n] == []  # ... and cleaned by the next one


def test_workers_die_with_their_parent(tmp_path):
    proc, children = _start_sweep(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _gone(children, 30) == []
