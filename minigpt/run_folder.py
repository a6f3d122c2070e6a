"""A training run's folder: its lock, its `latest` pointer, its step folders, the temporary
folders a crash leaves behind, and the check that it can hold the run's checkpoints.

    run/
      latest                 one line: the newest complete step folder
      .lock                  who holds the run (PID, host), to name them in a refusal
      step-000500/           one checkpoint (its files: see checkpoint.py)
      .step-000600.tmp-PID   a step folder being written (renamed into place when complete)

What is *in* a step folder is checkpoint.py's business; this module knows only that a step
folder is complete once its description (`minigpt.json`, written last) is in it.

The lock is an flock on the run folder itself, not on a file inside it: deleting `.lock` by
hand cannot let a second process in, so the start-up cleanup of a second run can never
remove the half-written step folder of a first one that is still writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator, Optional, Union

from .errors import CheckpointError, is_whole_number

LATEST_FILE, LOCK_FILE = "latest", ".lock"
META_FILE = "minigpt.json"                  # written last into a step folder: it is complete
STEP_NAME = re.compile(r"step-\d+")
TEMPORARY_NAME = re.compile(r"\.(step-\d+\.(tmp|old)|(latest|summary\.json)\.tmp)-\d+")
PathLike = Union[str, os.PathLike]


def step_name(step: int) -> str:
    """The name of step `step`'s folder: step-000500."""
    if not is_whole_number(step, 0):
        raise CheckpointError(f"step must be a whole number >= 0 (it names the folder step-000500), got {step!r}.")
    return f"step-{step:06d}"


def temporary_path(directory: PathLike, name: str, kind: str = "tmp") -> Path:
    """`.NAME.KIND-PID` in `directory`: where this process writes NAME before renaming it into
    place (kind "tmp"), or parks the old NAME while replacing it (kind "old")."""
    return Path(directory) / f".{name}.{kind}-{os.getpid()}"


# ------------------------------------------------------------ reasons for errors
def os_reason(err: Exception) -> str:
    """A short human reason for an OSError or a safetensors write error (disk full, ...)."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    text = str(err)
    if "StorageFull" in text or "No space left" in text:
        return "No space left on device"
    if "PermissionDenied" in text or "Permission denied" in text:
        return "Permission denied"
    return text


def write_fix(err: Exception) -> str:
    """What to do about a failed write, for the end of a one-line error."""
    reason = os_reason(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC or "No space" in reason:
        return "free some disk space or choose another output folder (--out)"
    if isinstance(err, OSError) and err.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a part of the path is a file; choose another output folder (--out)"
    return "make the folder writable or choose another output folder (--out)"


# ------------------------------------------------------------------ step folders
def complete_steps(directory: PathLike) -> list[Path]:
    """The step-* folders that hold a minigpt.json (renamed into place only when complete),
    oldest first."""
    try:
        return sorted((p for p in Path(directory).iterdir()
                       if STEP_NAME.fullmatch(p.name) and (p / META_FILE).is_file()), key=step_number)
    except OSError:
        return []


def step_number(path: PathLike) -> int:
    """step-000500 -> 500. Steps are ordered by this, not by name: from step 1,000,000 on the
    names grow a seventh digit, and 'step-1000000' sorts before 'step-999500' as text."""
    return int(Path(path).name[len("step-"):])


def has_checkpoint(directory: PathLike) -> bool:
    """True when `directory` holds a training checkpoint to resume (a `latest` or a step-* folder)."""
    directory = Path(directory)
    return (directory / LATEST_FILE).exists() or bool(complete_steps(directory))


def is_run_folder(directory: PathLike) -> bool:
    """True when `directory` is (or was) a training run's folder: it has a `latest`, a lock
    record or a complete step folder."""
    directory = Path(directory)
    return ((directory / LATEST_FILE).exists() or (directory / LOCK_FILE).exists()
            or bool(complete_steps(directory)))


def read_latest(run: PathLike) -> Path:
    """The step folder that run/latest names: one `step-N` name inside the run folder, never a
    path that leads elsewhere (an absolute path, `..`, a link out of the folder)."""
    run = Path(run)
    latest = run / LATEST_FILE
    try:
        with open(latest, "rb") as f:
            raw = f.read(256)
    except OSError as err:
        raise CheckpointError(f"cannot read {str(latest)!r}: {os_reason(err)}.") from None
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = None
    if name is None or not STEP_NAME.fullmatch(name):
        shown = repr(name[:60]) if name is not None else "binary data"
        raise CheckpointError(f"{str(latest)!r} must hold the name of a step folder of this run "
                              f"(like 'step-000500'), but holds {shown}; the run folder was modified "
                              "by hand. Point to a complete step-* folder instead.")
    step_dir = run / name
    if not (step_dir / META_FILE).is_file() or step_dir.resolve().parent != run.resolve():
        complete = complete_steps(run)
        hint = f" (the newest complete one is {str(complete[-1])!r})" if complete else ""
        raise CheckpointError(f"{str(latest)!r} points to {name!r}, which is missing or incomplete; "
                              f"the run folder was modified by hand. Point to a complete step-* "
                              f"folder instead{hint}.")
    return step_dir


def previous_complete_step(run: PathLike) -> Optional[Path]:
    """The newest complete step folder older than the one run/latest names, or None (no
    `latest`, an unreadable one, or no older step): what to fall back on when the newest
    checkpoint is damaged, since the run folder keeps one older checkpoint for that case."""
    run = Path(run)
    if not (run / LATEST_FILE).exists():
        return None
    try:
        newest = read_latest(run).name
    except CheckpointError:
        return None
    earlier = [p for p in complete_steps(run) if step_number(p) < step_number(newest)]
    return earlier[-1] if earlier else None


def write_text_atomically(directory: PathLike, name: str, text: str) -> None:
    """Write directory/name whole or not at all: a crash, or a second writer, leaves the old file
    or the new one, never half of one."""
    tmp = temporary_path(directory, name)
    try:
        tmp.write_text(text, encoding="utf-8")
        fsync_path(tmp)
        os.replace(tmp, Path(directory) / name)
    except BaseException:                 # a full disk or a Ctrl-C: no half-written temporary stays
        tmp.unlink(missing_ok=True)
        raise


def write_latest(run: PathLike, name: str) -> None:
    """Point run/latest at the step folder `name`, atomically (a crash leaves the old pointer)."""
    write_text_atomically(run, LATEST_FILE, name + "\n")


def fsync_path(path: PathLike) -> None:
    """Flush a written file to the disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_old_steps(run: PathLike, keep: int, newest: str) -> None:
    """Delete all but the newest `keep` complete step folders (never the one named `newest`)."""
    for stale in complete_steps(run)[:-keep] if keep > 0 else []:
        if stale.name != newest:
            shutil.rmtree(stale, ignore_errors=True)


def clean_temporary_files(directory: PathLike) -> list[Path]:
    """Remove the half-written `.step-*.tmp-PID` folders (and the `.old-`, `latest` and
    `summary.json` temporaries) that a killed or failed save left behind. Call it only while
    holding the folder's `run_lock`: then no other process is writing them."""
    removed = []
    for path in Path(directory).iterdir():
        if TEMPORARY_NAME.fullmatch(path.name):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ---------------------------------------------------------- room for the run
def checkpoint_nbytes(model, with_optimizer: bool = True) -> int:
    """About how many bytes one step folder of this model takes (weights + AdamW's two moments)."""
    n = sum(p.numel() for p in model.parameters())
    return 4 * n * (3 if with_optimizer else 1) + (1 << 20)      # + RNG states and minigpt.json


def nearest_existing_parent(path: PathLike) -> Path:
    """The closest folder (or file) above `path` that exists: where creating `path` starts."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def refuse_existing_file(directory: PathLike) -> None:
    """A run's output folder must not be an existing file, nor lie below one, and the nearest
    folder that exists on its path must be writable, since the rest is created there (checked
    before anything is built; check_output_folder then creates and probes it)."""
    directory = Path(directory)
    try:
        _refuse_existing_file(directory)
    except PermissionError as err:     # a folder on the path that this user may not enter (EACCES)
        raise CheckpointError(f"cannot use the output folder {str(directory)!r}: {err.strerror or 'Permission denied'} "
                              f"on {str(err.filename or directory)!r}; choose another --out.") from None


def _refuse_existing_file(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"the output folder {str(directory)!r} is an existing file; choose "
                              "a folder path for --out (it is created if missing).")
    if directory.exists():
        return
    parent = nearest_existing_parent(directory)
    if not parent.is_dir():
        raise CheckpointError(f"cannot create the output folder {str(directory)!r}: {str(parent)!r} on its "
                              "path is a file; choose another --out.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointError(f"cannot create the output folder {str(directory)!r}: {str(parent)!r} is not "
                              "writable; choose another --out.")


def check_output_folder(directory: PathLike, need_bytes: int = 0) -> Path:
    """Fail now, not at the first checkpoint, if `directory` cannot hold this run's checkpoints:
    it is a file, cannot be created or written, or its disk has less than `need_bytes` free."""
    directory = Path(directory)
    try:
        refuse_existing_file(directory)
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create the output folder {str(directory)!r}: "
                              f"{os_reason(err)}; choose another --out.") from None
    probe = directory / f".write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"minigpt")
    except OSError as err:
        raise CheckpointError(f"cannot write into the output folder {str(directory)!r}: "
                              f"{os_reason(err)}; {write_fix(err)}.") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    free = shutil.disk_usage(directory).free
    if free < need_bytes:
        raise CheckpointError(f"the disk holding {str(directory)!r} has {free / 1e6:.1f} MB free but this "
                              f"run's checkpoints need about {need_bytes / 1e6:.1f} MB; free some space "
                              "or choose another --out.")
    return directory


# ------------------------------------------------------------------------ lock
# flock errors that mean "this file system cannot lock a folder" (rather than "it is locked")
_NO_FOLDER_LOCKS = (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP)


@contextlib.contextmanager
def run_lock(directory: PathLike, holder: str = "another training run",
             fix: str = "wait for it to finish, or choose another output folder (--out)") -> Iterator[Path]:
    """Hold the run folder's lock for the `with` block; refuse if another process holds it.

    The lock is an flock on the folder itself (an open file descriptor of the directory): the
    kernel releases it when the holding process ends, however it ends (even SIGKILL), so a
    crashed run never leaves it stuck, and no file that a person (or a cleanup) might delete
    carries it. `.lock` only records the holder's PID and host, to name it in the refusal.
    On a file system that cannot flock a folder, `.lock` itself is locked instead. (Where
    fcntl is missing, on Windows, the block runs without a lock.) The refusal says the folder is
    in use by `holder` (and its PID) and what to do: `fix`; the classroom's course folder says
    it its own way.
    """
    directory = Path(directory)
    try:
        import fcntl
    except ImportError:          # pragma: no cover - Windows
        yield directory
        return
    record = directory / LOCK_FILE
    try:
        folder_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise CheckpointError(f"cannot open the run folder {str(directory)!r}: {os_reason(err)}; "
                              f"{write_fix(err)}.") from None
    record_fd = None
    try:
        try:
            record_fd = os.open(record, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(f"cannot create the lock file {str(record)!r}: {os_reason(err)}; "
                                  f"{write_fix(err)}.") from None
        lock_fd = folder_fd
        try:
            fcntl.flock(folder_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _NO_FOLDER_LOCKS:
                lock_fd = record_fd
            elif err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CheckpointError(f"cannot lock {str(directory)!r}: {os_reason(err)}.") from None
            else:
                _refuse(directory, record_fd, holder, fix)
        if lock_fd == record_fd:
            try:
                fcntl.flock(record_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise CheckpointError(f"cannot lock {str(record)!r}: {os_reason(err)}.") from None
                _refuse(directory, record_fd, holder, fix)
        os.ftruncate(record_fd, 0)
        os.pwrite(record_fd, f"PID {os.getpid()} on {socket.gethostname()}, since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield directory
    finally:
        if record_fd is not None:
            os.close(record_fd)
        os.close(folder_fd)      # closing the descriptor releases the flock


def _refuse(directory: Path, record_fd: int, holder: str, fix: str) -> None:
    where = os.pread(record_fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
    raise CheckpointError(f"{str(directory)!r} is in use by {holder} ({where}); {fix}.") from None
