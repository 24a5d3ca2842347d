"""Scoring an archive: films/s and peak memory of `predict` on many files, local with 0 and N workers, and Ray.

    python benchmarks/bench_archive.py [--data DATA/chest_xray] [--counts 1000,10000] [--out docs/archive_benchmark.md]

Synthetic archives are made from the official test images (no label is used): 224-px JPEGs as they are, and
2048-px PNGs and 12-bit DICOMs upscaled from them. Distinct films are written once and hard-linked to reach the
count, so making 10,000 films costs no more than making 624. Each configuration runs `python -m pneumonia
predict FOLDER --csv OUT --quiet` as its own process; peak memory is the largest sum of the RSS of that
process and every process under it (workers, Ray's raylet and actors), sampled every 0.1 s. The baseline is
the local engine with `--workers 0`, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from inputs import dicom_bytes  # noqa: E402

from pneumonia.config import DATA_ENV_VAR, MODELS_DIR  # noqa: E402
from pneumonia.io.dataset import discover_split, find_split  # noqa: E402

COMMAND = "python benchmarks/bench_archive.py"
FORMATS = ("224-px JPEG", "2048-px PNG", "2048-px DICOM")


def make_archive(folder: Path, sources: list[Path], kind: str, count: int) -> Path:
    """`count` films of one kind: each test image converted once, then hard-linked."""
    distinct = folder / "distinct"
    distinct.mkdir(parents=True, exist_ok=True)
    made = []
    for index, source in enumerate(sources[: min(count, len(sources))]):
        if kind == "224-px JPEG":
            target = distinct / f"{index:04d}.jpeg"
            target.write_bytes(source.read_bytes())
        else:
            big = Image.open(source).convert("L").resize((2048, 2048), Image.BILINEAR)
            if kind == "2048-px PNG":
                target = distinct / f"{index:04d}.png"
                big.save(target)
            else:
                target = distinct / f"{index:04d}.dcm"
                target.write_bytes(dicom_bytes(np.asarray(big, dtype=np.uint16) * 16, phi=False))
        made.append(target)
    films = folder / "films"
    films.mkdir()
    for index in range(count):
        source = made[index % len(made)]
        os.link(source, films / f"{index:06d}{source.suffix}")
    return films


def run(films: Path, out: Path, extra: list[str]) -> tuple[float, float, float]:
    """Films/s of the scoring loop (predict's own summary: after the model has loaded), wall seconds including
    start-up, and peak RSS (MB) of one predict run and all its descendants."""
    command = [sys.executable, "-m", "pneumonia", "predict", str(films), "--csv", str(out), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root, peak = psutil.Process(process.pid), 0.0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    err = process.stderr.read().decode()
    if process.returncode not in (0, 3):
        raise RuntimeError(err[-2000:])
    return float(re.search(r"\((\d+) films/s\)", err).group(1)), seconds, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get(DATA_ENV_VAR))
    parser.add_argument("--counts", default="1000,10000", help="archive sizes, comma-separated")
    parser.add_argument("--large-counts", default="1000", help="archive sizes for the 2048-px formats")
    parser.add_argument("--ray", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "archive_benchmark.md")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error(f"--data or {DATA_ENV_VAR} must name the chest_xray folder")
    sources = [s.path for s in discover_split(find_split(Path(args.data), "test"))]
    cores = len(os.sched_getaffinity(0))
    engines = [("local, --workers 0 (baseline)", ["--workers", "0"]), (f"local, --workers {cores}", [])]
    if args.ray:
        engines.append(("Ray Data on this machine", ["--engine", "ray"]))
    rows = []
    for kind in FORMATS:
        counts = args.counts if kind == "224-px JPEG" else args.large_counts
        for count in (int(c) for c in counts.split(",") if c and int(c) > 0):
            with tempfile.TemporaryDirectory() as folder:
                films = make_archive(Path(folder), sources, kind, count)
                baseline = None
                for index, (name, extra) in enumerate(engines):  # a CSV each: predict never overwrites one
                    rate, seconds, peak = run(films, Path(folder) / f"out_{index}.csv",
                                              [*extra, "--model-dir", str(MODELS_DIR)])
                    baseline = baseline or rate
                    row = (f"| {kind} | {count:,} | {name} | {rate:.0f} | {rate / baseline:.2f}x | {seconds:.0f} s "
                           f"| {peak:,.0f} MB |")
                    print(row, flush=True)
                    rows.append(row)
    header = (f"Generated by `{COMMAND} --counts {args.counts} --large-counts {args.large_counts}` on "
              f"{platform.machine()} with {cores} CPU cores. Do not edit by hand.")
    table = "\n".join(["| films | count | engine | films/s, scoring | speed-up | wall, with start-up | "
                       "peak memory (all processes) |", "|---|---|---|---|---|---|---|", *rows])
    text = args.out.read_text() if args.out.exists() else ""
    marker_begin, marker_end = "<!-- archive:begin -->", "<!-- archive:end -->"
    block = f"{marker_begin}\n{header}\n\n{table}\n{marker_end}"
    if marker_begin in text:
        text = text[: text.index(marker_begin)] + block + text[text.index(marker_end) + len(marker_end):]
    else:
        text = f"# Scoring an archive\n\n{block}\n"
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
