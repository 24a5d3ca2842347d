"""The PACS round trip's speed: films per second through a throwaway Orthanc, with and without --with-map, against
local `predict` on the same films in the same run, and each command's peak memory.

    python benchmarks/bench_pacs.py [--data DATA/chest_xray] [--count 200] [--max-side 1024]

The films are `count` official test images spread over both classes (no label is used), each wrapped as a 12-bit DX DICOM at its
own size, its long side capped at --max-side. Each configuration runs as its own process (the CLI a user would run);
its peak memory is the largest RSS sampled every 0.1 s. Orthanc starts afresh, empty, for each scan. The rate is
the one each command prints (films after the model has loaded); the wall time includes Python and the model's load.
Prints a markdown table for docs/pacs.md, and the largest difference between the scores the SRs carry and
`predict`'s.
"""

from __future__ import annotations

import argparse
import csv
import io
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
from orthanc_server import PASSWORD, USER, Orthanc, missing_reason, orthanc_binaries  # noqa: E402

from pneumonia.config import DATA_ENV_VAR  # noqa: E402
from pneumonia.io.dataset import discover_split, find_split  # noqa: E402

COMMAND = "python benchmarks/bench_pacs.py"
RATE = re.compile(r"([\d.]+) films/s")


def make_films(sources: list[Path], folder: Path, max_side: int) -> list[Path]:
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    films = []
    for index, source in enumerate(sources):
        grey = Image.open(source).convert("L")
        grey.thumbnail((max_side, max_side), Image.BILINEAR)
        dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(np.asarray(grey, dtype=np.uint16) * 16 + 8)))
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        target = folder / f"{index:04d}.dcm"
        dataset.save_as(target, enforce_file_format=True)
        films.append(target)
    return films


def measured(command: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stderr) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    err = process.stderr.read()
    if process.returncode not in (0, 3):  # 3: some films refused (their rows say why), the rest scored
        raise SystemExit(f"{' '.join(command[:6])}... failed ({process.returncode}): {err[-2000:]}")
    return time.perf_counter() - started, peak / 2**20, err


def sr_scores(server: Orthanc) -> dict[str, float]:
    import pydicom

    from pneumonia.pacs.structured_report import PROBABILITY, report_facts

    scores = {}
    for identifier in server.rest("/instances"):
        dataset = pydicom.dcmread(io.BytesIO(server.rest(f"/instances/{identifier}/file")))
        if dataset.Modality == "SR":
            facts = report_facts(dataset)
            if PROBABILITY.code in facts:
                scores[facts["source"]] = facts[PROBABILITY.code]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get(DATA_ENV_VAR))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--max-side", type=int, default=1024)
    args = parser.parse_args()
    if args.data is None:
        raise SystemExit(f"give --data or set {DATA_ENV_VAR}")
    binaries = orthanc_binaries()
    if binaries is None:
        raise SystemExit(missing_reason())
    import pydicom

    samples = [item.path for item in discover_split(find_split(args.data, "test"))]
    sources = samples[:: max(1, len(samples) // args.count)][: args.count]  # both classes, spread over the split
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNEUMONIA_PACS_")}
    env["PNEUMONIA_PACS_PASSWORD"] = PASSWORD
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        films = make_films(sources, temp / "films", args.max_side)
        uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in films}
        wall, peak, err = measured([sys.executable, "-m", "pneumonia", "predict", str(temp / "films"), "--csv",
                                    str(temp / "predict.csv"), "--workers", "0"], env)
        rows.append(("local `predict --workers 0`", float(RATE.search(err)[1]), wall, peak))
        with open(temp / "predict.csv") as handle:
            local = {Path(r["file"]).name: float(r["probability"]) for r in csv.DictReader(handle) if r["probability"]}
        differences = []
        for label, extra in (("`pacs scan`", []), ("`pacs scan --with-map`", ["--with-map"])):
            server = Orthanc(temp / f"orthanc{len(rows)}", binaries)
            try:
                for path in films:
                    server.upload(path.read_bytes())
                wall, peak, err = measured([sys.executable, "-m", "pneumonia", "pacs", "scan", "--url", server.url,
                                            "--user", USER, *extra], env)
                rows.append((f"{label} through Orthanc", float(RATE.search(err)[1]), wall, peak))
                for uid, score in sr_scores(server).items():
                    if uids[uid].name in local:
                        differences.append(abs(score - local[uids[uid].name]))
            finally:
                server.stop()
    print(f"{len(films)} films (official test images as 12-bit DX DICOM, long side at most {args.max_side} px); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; `{COMMAND}`\n")
    print("| command | films/s (after the model loads) | wall time, s | peak RSS, MiB |")
    print("|---|---:|---:|---:|")
    for label, rate, wall, peak in rows:
        print(f"| {label} | {rate:.1f} | {wall:.0f} | {peak:.0f} |")
    print(f"\nlargest |SR score - predict score| over {len(differences)} scored films: {max(differences):.2e}")


if __name__ == "__main__":
    main()
