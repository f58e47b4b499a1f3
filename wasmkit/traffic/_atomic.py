"""Files written whole or not at all: exports, reports, streamed records.

An export is written to a temporary file beside its target and renamed over
it once complete, so a failed or interrupted write (a full disk, Ctrl-C)
leaves the target as it was: never a truncated file. A target that exists and
is not a regular file (``/dev/stdout``, a pipe, ``/dev/full``) is written in
place. Every ``OSError`` that escapes names the target as the user gave it in
``filename`` (``ENOSPC`` on its own names none), with the reason in
``strerror``. Stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

PathArg = str | os.PathLike[str]


def named(exc: OSError, path: PathArg) -> OSError:
    """``exc`` as an ``OSError`` of the same kind whose ``filename`` is ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno is None:
        out = OSError(f"{os.fspath(path)}: {reason}")
        out.strerror, out.filename = reason, os.fspath(path)
        return out
    return OSError(exc.errno, reason, os.fspath(path))


def describe(exc: OSError, fallback: PathArg | None = None) -> str:
    """``PATH: reason`` for one line of an error message."""
    where = exc.filename if exc.filename is not None else fallback
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{os.fspath(where)}: {reason}" if where is not None else reason


class AtomicFile:
    """A file that appears at ``path`` only when :meth:`commit` succeeds.

    Use it as a context manager (committed when the block ends without an
    exception, discarded otherwise) or call :meth:`commit` / :meth:`discard`.
    :attr:`file` is the open file (text in UTF-8 for ``mode="w"``; ``w+b``
    also reads back what was written).

    Raises:
        OSError: the file cannot be created, written or renamed; its
            ``filename`` is ``path``.
    """

    def __init__(self, path: PathArg, mode: Literal["w", "wb", "w+b"] = "wb") -> None:
        self.path = path
        target = Path(os.path.realpath(path))  # a symlink's file, not the link
        self._target = target
        self._tmp: Path | None = None
        try:
            info = target.stat()
        except FileNotFoundError:
            info = None
        except OSError as exc:
            raise named(exc, path) from exc
        try:
            access = os.O_RDWR if "+" in mode else os.O_WRONLY
            if info is not None and not stat.S_ISREG(info.st_mode):
                fd = os.open(target, access | os.O_CLOEXEC)  # a device, a pipe
            else:
                tmp = target.with_name(
                    f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
                )
                flags = access | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
                self._tmp = tmp
                if info is not None:
                    with contextlib.suppress(OSError):
                        os.fchmod(fd, stat.S_IMODE(info.st_mode))
        except OSError as exc:
            raise named(exc, path) from exc
        text = mode == "w"
        self.file: IO[Any] = os.fdopen(
            fd, mode, encoding="utf-8" if text else None, newline="\n" if text else None
        )

    def commit(self) -> None:
        """Finish the file and move it into place."""
        fo = self.file
        if fo.closed:
            return
        try:
            fo.flush()
            if self._tmp is not None:
                os.fsync(fo.fileno())
            fo.close()
            if self._tmp is not None:
                os.replace(self._tmp, self._target)
                self._tmp = None
        except OSError as exc:
            self.discard()
            raise named(exc, self.path) from exc

    def discard(self) -> None:
        """Forget the file: the target stays as it was."""
        with contextlib.suppress(OSError):
            self.file.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None

    def __enter__(self) -> IO[Any]:
        return self.file

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.commit()
            return
        self.discard()
        if isinstance(exc, OSError) and exc.filename is None:
            raise named(exc, self.path) from exc


def write_text(path: PathArg, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all."""
    with AtomicFile(path, "w") as fo:
        fo.write(text)


def check_writable(path: PathArg) -> None:
    """Fail now, not after a long replay, if ``path`` cannot be written.

    Creates and removes the temporary file an export would use (a device or
    a pipe is only checked for write permission: opening a pipe would wait).

    Raises:
        OSError: naming ``path``.
    """
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not os.access(path, os.W_OK):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return
    AtomicFile(path, "wb").discard()
