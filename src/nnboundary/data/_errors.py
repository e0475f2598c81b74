"""Exceptions raised by :mod:`nnboundary.data`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["DataFormatError", "DatasetNotFoundError"]


class DatasetNotFoundError(FileNotFoundError):
    """A real data set was not found in any of the places searched.

    Parameters
    ----------
    message : str
        Full, user-facing message: what was searched and how to provide the files.
    dataset : str
        Registry name of the data set, e.g. ``"mnist"``.
    searched : sequence of Path
        Every file or folder that was checked, in search order.
    """

    def __init__(self, message: str, *, dataset: str, searched: Sequence[Path]) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.searched = [Path(p) for p in searched]

    def __str__(self) -> str:  # FileNotFoundError would otherwise print only args[0]
        return str(self.args[0])


class DataFormatError(ValueError):
    """A data file exists but is corrupt, truncated or not in the expected format.

    The message names the file, what was expected and what was found, and suggests
    replacing the file.
    """
