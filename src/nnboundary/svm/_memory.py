"""Memory estimates checked before the solvers allocate, so a fit that cannot fit says so in one sentence.

Each big allocation of a fit (the feature copy, the margin table of all units, liblinear's copy for the warm start,
the restricted QP's matrices) is estimated in bytes first and compared with the memory this machine has
available now (``MemAvailable`` of /proc/meminfo; the physical memory where that does not exist). Only a clear :class:`InsufficientMemoryError` is raised, never numpy's raw
``MemoryError`` after seconds of work.
"""

from __future__ import annotations

import os

__all__ = ["FALLBACK_BYTES", "InsufficientMemoryError", "available_bytes", "check_memory", "format_bytes"]

#: Memory a fallback solver (the other interior-point method, Clarabel, the separability LP) may take; beyond it the
#: fallback is not tried and the fit says why instead.
FALLBACK_BYTES = 2.0 * 2 ** 30


class InsufficientMemoryError(MemoryError):
    """A fit would need more memory than is available; the message says how much and what to do."""


def available_bytes() -> int:
    """Bytes of memory available to a new allocation now (Linux: MemAvailable; else total physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 2 ** 62  # unknown: do not refuse


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def check_memory(needed: float, what: str, advice: str, limit: float | None = None) -> None:
    """Raise :class:`InsufficientMemoryError` when ``needed`` bytes exceed ``limit`` (default: available now)."""
    limit = available_bytes() if limit is None else float(limit)
    if needed > limit:
        raise InsufficientMemoryError(
            f"{what} needs about {format_bytes(needed)} of memory, but only {format_bytes(limit)} is available. "
            f"{advice}")
