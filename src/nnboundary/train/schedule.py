"""Step schedules: which steps get a checkpoint, a history entry or a callback.

Long runs here last 10^4-10^5 steps and the quantities we watch (the angle between the head and
the SVM, the loss) move on a logarithmic time scale, so the default schedule is log-spaced:
``1, 2, 5, 10, 20, 50, ...`` plus the last step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Union

__all__ = ["log_schedule", "resolve_schedule", "ScheduleSpec"]

ScheduleSpec = Union[str, int, Iterable[int], None]
"""What a schedule argument may be: ``"log"``, ``"none"``/``None``, an int ``k`` (every ``k`` steps)
or an explicit iterable of steps."""


def log_schedule(n_steps: int, *, mantissas: tuple[float, ...] = (1, 2, 5),
                 include_last: bool = True) -> list[int]:
    """Log-spaced steps ``m * 10**e <= n_steps`` for every mantissa ``m``, plus ``n_steps``.

    Parameters
    ----------
    n_steps : int
        Last step of the run (steps are counted from 1).
    mantissas : tuple of float, default=(1, 2, 5)
        Values in ``[1, 10)`` used in every decade; ``(1, 2, 5)`` gives 1, 2, 5, 10, 20, 50, ...
    include_last : bool, default=True
        Append ``n_steps`` if it is not already on the schedule.

    Returns
    -------
    steps : list of int
        Sorted, unique steps in ``[1, n_steps]``. Empty if ``n_steps < 1``.

    Examples
    --------
    >>> log_schedule(120)
    [1, 2, 5, 10, 20, 50, 100, 120]
    """
    if any(not (1 <= m < 10) for m in mantissas):
        raise ValueError(f"mantissas must lie in [1, 10), got {mantissas}. Use e.g. (1, 2, 5).")
    steps: set[int] = set()
    scale = 1
    while scale <= n_steps:
        for m in mantissas:
            s = int(round(m * scale))
            if 1 <= s <= n_steps:
                steps.add(s)
        scale *= 10
    if include_last and n_steps >= 1:
        steps.add(int(n_steps))
    return sorted(steps)


def resolve_schedule(spec: ScheduleSpec, n_steps: int) -> frozenset[int]:
    """Turn a schedule argument into the set of steps in ``[1, n_steps]`` it names.

    Parameters
    ----------
    spec : "log", "none", None, int or iterable of int
        ``"log"``: :func:`log_schedule` (with the last step). ``None``/``"none"``: no step.
        An int ``k >= 1``: every ``k``-th step plus the last step. An iterable: exactly those steps
        (steps outside ``[1, n_steps]`` are dropped).
    n_steps : int
        Last step of the run.

    Returns
    -------
    steps : frozenset of int
    """
    if spec is None or (isinstance(spec, str) and spec.lower() == "none"):
        return frozenset()
    if isinstance(spec, str):
        if spec.lower() == "log":
            return frozenset(log_schedule(n_steps))
        raise ValueError(f"Unknown schedule {spec!r}; use 'log', 'none', an int k (every k steps) "
                         "or a list of steps.")
    if isinstance(spec, bool):
        raise TypeError("A schedule cannot be a bool; use 'log', 'none', an int or a list of steps.")
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"An every-k schedule needs k >= 1, got {spec}.")
        return frozenset(range(spec, n_steps + 1, spec)) | ({n_steps} if n_steps >= 1 else set())
    try:
        steps = {int(s) for s in spec}
    except TypeError as exc:
        raise TypeError(f"Cannot read a schedule from {type(spec).__name__}; use 'log', 'none', an "
                        "int or a list of steps.") from exc
    return frozenset(s for s in steps if 1 <= s <= n_steps)
