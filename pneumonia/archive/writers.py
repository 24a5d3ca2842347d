"""Rows written as soon as they are ready, so a crash or a kill loses at most the chunk in flight, and a
resumed run knows which files are done.

The columns are the app's results table (`pneumonia.reports.tables.results_table`), so the CLI's CSV, its Parquet
and the app's download read the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pneumonia.errors import OutputError, PneumoniaError

COLUMNS = ["file", "status", "probability", "label", "threshold", "reason"]


class CsvRows:
    """One CSV, appended chunk by chunk and flushed to disk after each. A resumed run first cuts a half-written
    last line (a kill mid-write) so the file stays valid, then appends."""

    def __init__(self, path: Path, resume: bool = False):
        self.path = Path(path)
        self.done: set[str] = set()
        if self.path.is_dir():
            raise OutputError(f"--csv {self.path} is a folder; it names a CSV file.")
        if self.path.exists() and self.path.stat().st_size and not resume:
            raise OutputError(f"{self.path} already exists; pass --resume to add to it, or choose another --csv.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            _cut_partial_last_line(self.path)
        if resume and self.path.exists() and self.path.stat().st_size:
            self.done = set(_read_csv(self.path)["file"].astype(str))
        else:
            self.path.write_text(",".join(COLUMNS) + "\n")

    def write(self, table: pd.DataFrame) -> None:
        with open(self.path, "a", newline="") as handle:
            handle.write(table[COLUMNS].to_csv(index=False, header=False))
            handle.flush()
            os.fsync(handle.fileno())


class ParquetParts:
    """A Parquet dataset: one complete file per chunk (part-000000.parquet, ...), each written under a temporary
    name and renamed, so a kill never leaves a broken part. `pandas.read_parquet(folder)` reads them all."""

    def __init__(self, folder: Path, resume: bool = False):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"--parquet {self.folder} is a file; it names a folder of Parquet parts.")
        existing = sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []
        if existing and not resume:
            raise OutputError(f"{self.folder} already holds Parquet parts; pass --resume to add to them, "
                              "or choose an empty folder.")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.done = {str(f) for part in existing for f in pd.read_parquet(part, columns=["file"])["file"]}
        self._next = len(existing)

    def write(self, table: pd.DataFrame) -> None:
        target = self.folder / f"part-{self._next:06d}.parquet"
        partial = target.with_suffix(".parquet.tmp")
        table[COLUMNS].astype({"probability": "float64", "threshold": "float64"}).to_parquet(partial, index=False)
        os.replace(partial, target)
        self._next += 1


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"file": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PneumoniaError(f"{path} is not a CSV written by predict ({exc.__class__.__name__}); "
                             "choose another --csv to start afresh.") from exc


def _cut_partial_last_line(path: Path) -> None:
    """Drop bytes after the last newline: the row a kill interrupted, which the resumed run writes again."""
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        step = min(size, 1 << 16)
        handle.seek(size - step)
        tail = handle.read(step)
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        handle.truncate(size - step + cut + 1 if cut >= 0 else 0)
