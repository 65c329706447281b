"""Reading the files a user names (specs, operand data): only regular files, of sane sizes, with errors
that say which file and what is wrong.

A path that is a directory, a FIFO (which would block forever), a device such as ``/dev/zero`` (which
would be read until memory runs out), a file larger than the limit, an unreadable file, a spec that is
not UTF-8 or data that is not a NumPy file raises :class:`~fxsim.errors.BadFile` naming the argument and
the path.
"""
from __future__ import annotations

import errno
import os
import stat
import zipfile

import numpy as np

from fxsim.errors import BadFile

__all__ = ["MAX_SPEC_BYTES", "MAX_DATA_BYTES", "open_regular", "read_text_file", "load_array_file"]

MAX_SPEC_BYTES = 16 << 20          # a layer spec is a few hundred bytes
MAX_DATA_BYTES = 16 << 30          # operand data: 16 GiB (override with FXSIM_MAX_DATA_BYTES)


def _max_data_bytes():
    v = os.environ.get("FXSIM_MAX_DATA_BYTES")
    try:
        return int(v) if v else MAX_DATA_BYTES
    except ValueError:
        return MAX_DATA_BYTES


def _kind(mode) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path, what: str, limit: int):
    """An open binary file object for ``path`` after checking that it is a regular file of at most
    ``limit`` bytes (``what`` names the argument in errors). Never blocks on a FIFO."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise BadFile(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise BadFile(f"{what} {path!r} is a directory, not a file") from None
    except PermissionError:
        raise BadFile(f"{what} {path!r} cannot be read: permission denied") from None
    except OSError as exc:
        raise BadFile(f"{what} {path!r} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadFile(f"{what} {path!r} is {_kind(st.st_mode)}; fxsim reads only regular files")
        if st.st_size > limit:
            raise BadFile(f"{what} {path!r} is {st.st_size} bytes, more than the {limit} bytes allowed")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text_file(path, what: str = "spec file", limit: int = MAX_SPEC_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    with open_regular(path, what, limit) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise BadFile(f"{what} {os.fspath(path)!r} cannot be read: {exc.strerror}") from None
    if len(data) > limit:
        raise BadFile(f"{what} {os.fspath(path)!r} is more than the {limit} bytes allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise BadFile(f"{what} {os.fspath(path)!r}:{line}: not UTF-8 text (byte {data[exc.start]:#04x} at "
                      f"offset {exc.start})") from None


def load_array_file(path, what: str, limit: int | None = None):
    """A ``.npy`` array, or a dict of the arrays of a ``.npz`` file, read from a regular file of at most
    ``limit`` bytes (uncompressed, for ``.npz``); no pickled objects."""
    limit = _max_data_bytes() if limit is None else limit
    p = os.fspath(path)
    with open_regular(p, what, limit) as fh:
        head = fh.read(6)
        fh.seek(0)
        try:
            if head.startswith(b"PK"):
                try:
                    with zipfile.ZipFile(fh) as zf:
                        total = sum(i.file_size for i in zf.infolist())
                except zipfile.BadZipFile as exc:
                    raise BadFile(f"{what} {p!r} is not a NumPy .npz file ({exc})") from None
                if total > limit:
                    raise BadFile(f"{what} {p!r} unpacks to {total} bytes, more than the {limit} bytes allowed")
                fh.seek(0)
                with np.load(fh, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                for k, v in arrays.items():
                    if not isinstance(v, np.ndarray):
                        raise BadFile(f"{what} {p!r}: member {k!r} is not a .npy array")
                return arrays
            if head != b"\x93NUMPY":
                raise BadFile(f"{what} {p!r} is not a NumPy .npy or .npz file")
            return np.load(fh, allow_pickle=False)
        except BadFile:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.EIO,):
                raise BadFile(f"{what} {p!r} cannot be read: {exc.strerror}") from None
            raise BadFile(f"{what} {p!r} is not a readable NumPy file ({exc})") from None
