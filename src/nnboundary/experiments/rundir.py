"""The one run directory of nnboundary: staged, atomic, resumable, locked, and recognisable.

Every experiment kind (simulated, image, bias, forgetting, adversarial) writes its results through
:class:`RunDir`::

    rd = RunDir("runs/blobs-quick", experiment="blobs", profile="quick")
    with rd.open(force=False, resume=False) as stage:      # stage = runs/blobs-quick.partial/
        ...write config.json, metrics.jsonl, summary.json, report.md, figures/ into stage...
    # leaving the block without an error renames stage -> runs/blobs-quick (atomic commit)

Safety rules, each enforced here and nowhere else:

* **Marker.** A run directory carries :data:`MARKER` (a small JSON file listing what the run wrote).
  ``force=True`` replaces only a directory that carries it; a folder without it (a user's folder, ``runs/``
  itself) is refused and nothing in it is touched. Files a user added to a run directory are kept.
* **Lock.** While a run writes, ``<out>.lock`` holds the writer's pid and host. A second writer is refused;
  a lock whose process is gone (same host) is stale and taken over.
* **Staging.** Everything is written into ``<out>.partial/`` and renamed to ``<out>`` only when the run is
  complete, so ``<out>`` is never half written. An error leaves ``.partial`` for ``resume=True``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nnboundary._jsonio import write_json

__all__ = ["LOCK_SUFFIX", "MARKER", "RunDir", "RunExistsError", "RunLockedError", "default_run_dir"]

logger = logging.getLogger(__name__)

#: File that makes a directory recognisable as an nnboundary run directory.
MARKER = ".nnboundary-run.json"
#: ``<out><LOCK_SUFFIX>`` is the writer's lock file, next to the run directory.
LOCK_SUFFIX = ".lock"
_MARKER_FORMAT = 1


class RunExistsError(FileExistsError):
    """The run directory (or an interrupted ``.partial`` one) exists, or is not ours; the message says what to do."""


class RunLockedError(RunExistsError):
    """Another live process is writing this run directory."""


def default_run_dir(name: str, profile: str, root: str | os.PathLike[str] = "runs") -> Path:
    """The one naming scheme: ``<root>/<name>-<profile>``, e.g. ``runs/blobs-quick``."""
    return Path(root) / f"{name}-{profile}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunDir:
    """A run directory ``path`` with its staging folder ``path.partial`` and its lock ``path.lock``.

    Parameters
    ----------
    path : path-like
        The final run directory.
    experiment, profile : str
        Written into the marker (so a directory says what run it holds).
    """

    def __init__(self, path: str | os.PathLike[str], *, experiment: str, profile: str) -> None:
        self.path = Path(path)
        self.experiment = experiment
        self.profile = profile

    # -- names ---------------------------------------------------------------------------------------
    @property
    def partial(self) -> Path:
        """The staging folder ``<path>.partial``."""
        return self.path.with_name(self.path.name + ".partial")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + LOCK_SUFFIX)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, experiment={self.experiment!r}, profile={self.profile!r})"

    # -- state ---------------------------------------------------------------------------------------
    @staticmethod
    def is_run_dir(path: str | os.PathLike[str]) -> bool:
        """True if ``path`` is a directory carrying the :data:`MARKER`."""
        return (Path(path) / MARKER).is_file()

    def is_complete(self) -> bool:
        """The final directory exists, carries the marker, and holds summary.json and config.json."""
        return self.is_run_dir(self.path) and all((self.path / f).is_file() for f in ("summary.json", "config.json"))

    def has_partial(self) -> bool:
        return self.partial.exists()

    # -- opening ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def open(self, *, force: bool = False, resume: bool = False) -> Iterator[Path]:
        """Lock, prepare the staging folder, yield it; commit it on success, keep it on error.

        Raises
        ------
        RunExistsError
            ``path`` or ``path.partial`` exists and the flags do not allow using it, or either is not an
            nnboundary run directory (no marker) so that it is never replaced.
        RunLockedError
            Another live process holds the lock.
        """
        self.check(force=force, resume=resume)
        self._acquire()
        try:
            self.check(force=force, resume=resume)  # again, now that we hold the lock
            stage = self._prepare(force=force, resume=resume)
            yield stage
            self._commit(force=force)
        finally:
            self._release()

    def _refuse_foreign(self, d: Path, what: str) -> None:
        if d.exists() and not d.is_dir():
            raise RunExistsError(f"{d} exists and is not a directory. Choose another --out.")
        if d.is_dir() and any(d.iterdir()) and not self.is_run_dir(d):
            raise RunExistsError(f"{d} is not an nnboundary run directory (no {MARKER}); it is never replaced, "
                                 f"even with --force. Choose another --out{what}.")

    def check(self, *, force: bool = False, resume: bool = False) -> None:
        """Raise :class:`RunExistsError` now if :meth:`open` with these flags would refuse (call it before long work)."""
        self._refuse_foreign(self.path, "")
        self._refuse_foreign(self.partial, " or remove that folder yourself")
        if self.path.is_dir() and any(self.path.iterdir()) and not force:
            state = "complete" if self.is_complete() else "unfinished"
            raise RunExistsError(f"{self.path} already holds a run ({state}). Pass --force (force=True) to replace "
                                 "it, or choose another --out.")
        if self.partial.exists() and not (force or resume):
            raise RunExistsError(f"{self.partial} holds an interrupted run. Pass --resume (resume=True) to continue "
                                 "it, or --force to discard it and start over.")

    def _prepare(self, *, force: bool, resume: bool) -> Path:
        if self.partial.exists() and not resume:
            shutil.rmtree(self.partial)  # carries the marker (checked): ours to delete
        elif resume and not self.partial.exists():
            logger.warning("resume=True but %s does not exist: starting from scratch.", self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        if not self.is_run_dir(self.partial):
            write_json(self.partial / MARKER, {
                "format": _MARKER_FORMAT, "experiment": self.experiment, "profile": self.profile,
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return self.partial

    def _commit(self, *, force: bool) -> None:
        """Move the finished staging folder to ``path``; an old run there is replaced only with ``force``."""
        out, stage = self.path, self.partial
        marker = json.loads((stage / MARKER).read_text(encoding="utf-8"))
        marker["created"] = sorted(p.name for p in stage.iterdir() if p.name != MARKER)
        write_json(stage / MARKER, marker)  # what this run wrote: a later --force deletes only these
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if out.exists():
            if not (force and self.is_run_dir(out)):
                raise RunExistsError(f"{out} appeared while the run was going; the finished run is in {stage}.")
            ours = set(self._created(out))
            for entry in out.iterdir():  # files a user put into the old run directory move to the new one
                if entry.name != MARKER and entry.name not in ours and not (stage / entry.name).exists():
                    os.replace(entry, stage / entry.name)
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            os.replace(stage, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, out)

    @staticmethod
    def _created(d: Path) -> list[str]:
        try:
            return list(json.loads((d / MARKER).read_text(encoding="utf-8")).get("created", []))
        except (OSError, ValueError, AttributeError):
            return []

    # -- the lock --------------------------------------------------------------------------------------
    def _acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read_lock()
                if holder is not None and self._is_stale(holder):
                    logger.warning("Removing the stale lock %s (process %s is gone).", self.lock_path,
                                   holder.get("pid"))
                    self.lock_path.unlink(missing_ok=True)
                    continue
                who = "an unreadable lock" if holder is None else \
                    f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('started_utc')})"
                raise RunLockedError(f"{self.path} is being written by {who}. Wait for it to finish; if no such "
                                     f"process runs any more, delete {self.lock_path}.") from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
            self._lock_owner = me
            return
        raise RunLockedError(f"Could not take the lock {self.lock_path}; another process keeps taking it.")

    def _read_lock(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.lock_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _is_stale(holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
            return False  # another machine's process cannot be checked from here
        return not _pid_alive(pid)

    def _release(self) -> None:
        holder = self._read_lock()
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.lock_path.unlink(missing_ok=True)
