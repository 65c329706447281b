"""Output directories that lose nothing: written atomically, never replacing what fxsim did not write.

Every command that writes a directory (``export``, ``sweep --out``, ``demo``, ``examples``) goes through
:func:`output_dir`::

    with output_dir("golden", "golden-vectors", force=False) as tmp:
        ...write files into tmp...
    # now "golden" holds them, or nothing changed

What it guarantees:

- The output location is checked when the ``with`` block is entered, before any work: a location that
  exists is refused unless ``force``, and ``force`` replaces only a previous fxsim output of the same kind,
  recognised by its ``manifest.json`` (``"fxsim_output": kind``) and holding nothing but the files that
  manifest lists. It refuses, with :class:`~fxsim.errors.OutputExists`: the current directory and its
  parents, a directory fxsim did not write, an fxsim output of another kind, one to which files were
  added, a regular file, a symbolic link, anything else.
- The files are written into a temporary directory beside the output (created with mode 0777 minus the
  umask, like ``mkdir``) and renamed into place at the end. The rename may not replace anything: on Linux
  ``renameat2(RENAME_NOREPLACE)``, on macOS ``renamex_np(RENAME_EXCL)``; elsewhere ``rename``, which
  POSIX lets replace only an empty directory. So when two runs write the same output at once, exactly
  one succeeds and the other reports that the output exists; a directory that appears meanwhile is never
  replaced.
- With ``force``, the previous output is moved aside, checked once more where nobody else can touch it,
  and deleted only after the new output is in place; if anything fails it is moved back.
- Temporaries are named ``.<name>.fxsim-tmp-<pid>-<random>`` and carry a marker file naming their process;
  those of a process that no longer runs (or older than a day) are removed the next time fxsim writes
  beside them. A previous output left aside by a killed ``--force`` run is moved back, or removed when a
  newer output took its place.
- A location that cannot be written (read-only, no permission, disk full) raises
  :class:`OutputNotWritable`, naming it, and leaves nothing behind.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import time

from fxsim.errors import BadFile, OutputExists
from fxsim._version import __version__

__all__ = ["KINDS", "OutputNotWritable", "output_dir", "check_output_location", "rename_noreplace",
           "read_manifest"]

KINDS = ("golden-vectors", "model-golden-vectors", "sweep", "demo", "testbench", "model-run", "model-sweep",
         "examples")
MANIFEST = "manifest.json"
_MARKER = ".fxsim-temporary"
_MAX_MANIFEST_BYTES = 64 << 20
_STALE_SECONDS = 24 * 3600
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class OutputNotWritable(BadFile):
    """An output location that cannot be written: read-only, no permission, or full."""


# ---------------------------------------------------------------------------------------------------
# rename that never replaces


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def rename_noreplace(src, dst) -> None:
    """Rename ``src`` to ``dst``; raise ``FileExistsError`` if ``dst`` exists (any kind of entry, an
    empty directory included, where the system can say so atomically)."""
    s, d = os.fsencode(src), os.fsencode(dst)
    if _LIBC is not None and sys.platform.startswith("linux") and hasattr(_LIBC, "renameat2"):
        AT_FDCWD, RENAME_NOREPLACE = -100, 1
        rc = _LIBC.renameat2(AT_FDCWD, s, AT_FDCWD, d, RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):       # EINVAL: a file system without the flag
            raise OSError(err, os.strerror(err), os.fsdecode(d)) if err != errno.EEXIST else \
                FileExistsError(err, os.strerror(err), os.fsdecode(d))
    elif _LIBC is not None and sys.platform == "darwin" and hasattr(_LIBC, "renamex_np"):
        RENAME_EXCL = 0x4
        rc = _LIBC.renamex_np(s, d, RENAME_EXCL)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOTSUP, errno.EINVAL):
            raise OSError(err, os.strerror(err), os.fsdecode(d)) if err != errno.EEXIST else \
                FileExistsError(err, os.strerror(err), os.fsdecode(d))
    # portable fallback: POSIX rename replaces a directory only when it is empty, never a file
    if os.path.lexists(d):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(d))
    try:
        os.rename(s, d)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(d)) from None
        raise


# ---------------------------------------------------------------------------------------------------
# recognising a previous output


def read_manifest(directory, *, name=MANIFEST) -> dict:
    """``directory/manifest.json`` as a dict, read without following a link, from a regular file of at
    most 64 MiB. Raises ``BadFile`` saying what is wrong."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise BadFile(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadFile(f"{path} is a symbolic link") from None
        raise BadFile(f"{path}: cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadFile(f"{path} is not a regular file")
        if st.st_size > _MAX_MANIFEST_BYTES:
            raise BadFile(f"{path} is {st.st_size} bytes, more than a manifest can be ({_MAX_MANIFEST_BYTES})")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(_MAX_MANIFEST_BYTES + 1)
    finally:
        os.close(fd)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadFile(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BadFile(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    return manifest


def _manifest_kind(manifest: dict):
    kind = manifest.get("fxsim_output")
    if kind is None and isinstance(manifest.get("files"), dict) and "spec" in manifest \
            and "fxsim_version" in manifest:
        return "golden-vectors"          # written before manifests named their kind
    return kind


def _listed_files(manifest: dict, kind: str) -> set:
    """Relative paths (with "/") the manifest says fxsim wrote, the manifest included."""
    files = manifest.get("files")
    if kind == "golden-vectors":
        if not isinstance(files, dict) or not all(isinstance(e, dict) and isinstance(e.get("file"), str)
                                                  for e in files.values()):
            raise BadFile("its manifest's files are not a table of file entries")
        names = {e["file"] for e in files.values()}
        pkg = manifest.get("package")
        if pkg is not None:
            if not isinstance(pkg, dict) or not isinstance(pkg.get("file"), str):
                raise BadFile("its manifest's package is not a file entry")
            names.add(pkg["file"])
    else:
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise BadFile("its manifest's files are not a list of names")
        names = set(files)
    return names | {MANIFEST}


def _tree(directory) -> tuple:
    """(regular files as relative "/" paths, sub-directories, other entries) without following links."""
    files, dirs, other = set(), set(), []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(directory, rel) if rel else directory) as it:
            for e in it:
                r = f"{rel}/{e.name}" if rel else e.name
                if e.is_symlink():
                    other.append((r, "a symbolic link"))
                elif e.is_dir(follow_symlinks=False):
                    dirs.add(r)
                    stack.append(r)
                elif e.is_file(follow_symlinks=False):
                    files.add(r)
                else:
                    other.append((r, "not a regular file"))
    return files, dirs, other


def _why_not_replaceable(path: str, kind: str):
    """None if ``path`` is a previous fxsim output of ``kind`` holding only what its manifest lists;
    otherwise the reason, as words."""
    try:
        manifest = read_manifest(path)
    except BadFile as exc:
        return f"it is not a previous fxsim {kind} output ({exc})"
    found = _manifest_kind(manifest)
    if found != kind:
        if found in KINDS:
            return f"it is an fxsim {found} output, not a {kind} output"
        return f"it is not a previous fxsim {kind} output (its manifest.json does not say fxsim wrote it)"
    try:
        listed = _listed_files(manifest, kind)
    except BadFile as exc:
        return f"it is not a previous fxsim {kind} output ({exc})"
    files, dirs, other = _tree(path)
    if other:
        return f"it holds {other[0][0]!r}, {other[0][1]}, which fxsim did not write"
    extra = sorted(files - listed)
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        return f"it holds files fxsim did not write there: {', '.join(map(repr, extra[:3]))}{more}"
    needed_dirs = {p.rsplit("/", 1)[0] for p in listed if "/" in p}
    parents = set()
    for d in needed_dirs:
        parts = d.split("/")
        parents.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    extra_dirs = sorted(dirs - parents)
    if extra_dirs:
        return f"it holds a directory fxsim did not write there: {extra_dirs[0]!r}"
    return None


def check_output_location(out, kind: str, *, force: bool) -> str:
    """The absolute output path, after checking that it may be written: absent, or (with ``force``)
    a previous fxsim output of ``kind``. Raises ``OutputExists`` saying why not."""
    if kind not in KINDS:
        raise ValueError(f"output kind must be one of {KINDS}, got {kind!r}")
    path = os.path.abspath(os.fspath(out))
    if not os.path.lexists(path):
        return path
    what = ("a symbolic link" if os.path.islink(path) else "a directory" if os.path.isdir(path)
            else "a regular file" if os.path.isfile(path) else "a special file")
    if not force:
        hint = "; pass --force to replace a previous fxsim output" if what == "a directory" else ""
        raise OutputExists(f"output {path!r} exists ({what}){hint}")
    if what != "a directory":
        raise OutputExists(f"--force will not replace {path!r}: it is {what}, and --force replaces only a "
                           f"previous fxsim {kind} output directory")
    real, cwd = os.path.realpath(path), os.path.realpath(os.getcwd())
    if real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep) or real == os.sep:
        raise OutputExists(f"--force will not replace {path!r}: it is the current directory or contains it")
    why = _why_not_replaceable(path, kind)
    if why:
        raise OutputExists(f"--force will not replace {path!r}: {why}; --force replaces only a previous "
                           f"fxsim {kind} output (move or delete it yourself)")
    return path


# ---------------------------------------------------------------------------------------------------
# temporaries


def _temp_re(base: str):
    return re.compile(rf"^\.{re.escape(base)}\.fxsim-(tmp|old)-(\d+)-[0-9a-f]{{12}}$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(marker: dict, mtime: float) -> bool:
    if time.time() - mtime > _STALE_SECONDS:
        return True
    if marker.get("host") == socket.gethostname():
        pid = marker.get("pid")
        return isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid)
    return False


def clean_stale_temporaries(parent: str, base: str, kind: str) -> list:
    """Remove fxsim's own leftovers of writing ``parent/base`` by processes that are gone; returns what
    was done (as words)."""
    done = []
    pat = _temp_re(base)
    try:
        names = os.listdir(parent)
    except OSError:
        return done
    for name in names:
        m = pat.match(name)
        if not m:
            continue
        p = os.path.join(parent, name)
        if os.path.islink(p) or not os.path.isdir(p):
            continue
        pid = int(m.group(2))
        try:
            mtime = os.lstat(p).st_mtime
        except OSError:
            continue
        if m.group(1) == "tmp":
            try:
                marker = read_manifest(p, name=_MARKER)
            except BadFile:
                continue                                   # not provably ours: leave it
            if marker.get("fxsim_temporary") != kind or marker.get("pid") != pid or not _is_stale(marker, mtime):
                continue
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p}")
        else:   # a previous output moved aside by a --force run that did not finish
            if not _is_stale({"host": socket.gethostname(), "pid": pid}, mtime):
                continue
            if _why_not_replaceable(p, kind) is not None:
                continue
            target = os.path.join(parent, base)
            try:
                rename_noreplace(p, target)
                done.append(f"restored {target}")
            except FileExistsError:
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {p}")
            except OSError:
                pass
    return done


# ---------------------------------------------------------------------------------------------------
# the context manager


def output_dir(out, kind: str, *, force: bool = False, manifest_files=True):
    """A context manager for writing the output directory ``out`` of ``kind`` (one of ``KINDS``).

    Entering checks the location (see the module's doc) and yields a temporary directory to write
    into. On success the temporary becomes ``out``. ``manifest_files``: when the block did not write a
    ``manifest.json`` itself, one is written naming ``kind`` and every file written (golden-vector
    directories write their own)."""
    return _OutputDir(out, kind, force, manifest_files)


def _mkdirs(path):
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise OutputNotWritable(f"cannot create {path!r}: a file of that name is in the way") from None
    except NotADirectoryError:
        raise OutputNotWritable(f"cannot create {path!r}: part of the path is a file") from None
    except OSError as exc:
        raise OutputNotWritable(f"cannot create {path!r}: {exc.strerror}") from None


class _OutputDir:
    def __init__(self, out, kind, force, manifest_files):
        self.out = check_output_location(out, kind, force=force)   # before any work
        self.kind = kind
        self.force = force
        self.manifest_files = manifest_files
        self.tmp = None

    def __enter__(self):
        parent, base = os.path.split(self.out)
        _mkdirs(parent)
        clean_stale_temporaries(parent, base, self.kind)
        self.out = check_output_location(self.out, self.kind, force=self.force)
        token = secrets.token_hex(6)
        tmp = os.path.join(parent, f".{base}.fxsim-tmp-{os.getpid()}-{token}")
        try:
            os.mkdir(tmp, 0o777)                           # the umask applies, as for mkdir(1)
        except OSError as exc:
            raise OutputNotWritable(f"cannot write the output {self.out!r}: {exc.strerror} in {parent!r}") from None
        self.tmp = tmp
        try:
            with open(os.path.join(tmp, _MARKER), "w") as fh:
                json.dump({"fxsim_temporary": self.kind, "pid": os.getpid(), "host": socket.gethostname(),
                           "created": time.time(), "for": self.out}, fh)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputNotWritable(f"cannot write the output {self.out!r}: {exc.strerror}") from None
        return tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, BadFile) and exc.errno in _WRITE_ERRNOS:
                where = f" ({exc.filename})" if exc.filename else ""
                raise OutputNotWritable(f"writing {self.out!r} failed: {exc.strerror}{where}; nothing was "
                                        f"replaced") from exc
            return False
        try:
            self._commit()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return False

    def _write_manifest(self):
        mpath = os.path.join(self.tmp, MANIFEST)
        if os.path.lexists(mpath):
            return
        files, _, _ = _tree(self.tmp)
        files.discard(_MARKER)
        with open(mpath, "w") as fh:
            json.dump({"fxsim_output": self.kind, "fxsim_version": __version__, "files": sorted(files)}, fh,
                      indent=2)
            fh.write("\n")

    def _commit(self):
        try:
            if self.manifest_files:
                self._write_manifest()
            os.unlink(os.path.join(self.tmp, _MARKER))
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS:
                raise OutputNotWritable(f"writing {self.out!r} failed: {exc.strerror}; nothing was replaced") \
                    from None
            raise
        parent, base = os.path.split(self.out)
        backup = None
        if self.force and os.path.lexists(self.out):
            backup = os.path.join(parent, f".{base}.fxsim-old-{os.getpid()}-{secrets.token_hex(6)}")
            try:
                rename_noreplace(self.out, backup)
            except FileNotFoundError:
                backup = None                                 # removed meanwhile: nothing to replace
            if backup is not None:
                why = _why_not_replaceable(backup, self.kind)   # checked again where nobody else writes
                if why:
                    self._restore(backup)
                    raise OutputExists(f"--force will not replace {self.out!r}: {why}")
        try:
            rename_noreplace(self.tmp, self.out)
        except FileExistsError:
            if backup:
                self._restore(backup)
            raise OutputExists(f"output {self.out!r} appeared while fxsim was writing it; nothing was "
                               f"replaced") from None
        except OSError:
            if backup:
                self._restore(backup)
            raise
        if backup:
            shutil.rmtree(backup, ignore_errors=True)

    def _restore(self, backup):
        try:
            rename_noreplace(backup, self.out)
        except OSError:
            raise OutputExists(f"{self.out!r} changed while fxsim was replacing it; the previous output "
                               f"is kept at {backup!r}") from None
