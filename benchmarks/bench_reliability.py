"""Reliability on awkward inputs: fuzzing, the odd-input matrix, and the largest inputs' time and memory.

    python benchmarks/bench_reliability.py [--examples 20000] [--out docs/reliability.md]

Writes its own sections of docs/reliability.md (between its markers); `benchmarks/bench_soak.py` writes the
soak's. Fuzzing feeds the reader and the gate (`Predictor.prepare`, as every upload and every CLI input goes)
with the strategies of tests/fuzz_inputs.py, seeded, and counts every input that raised, took over 2 s, or
came back without one plain line. The largest inputs are each scored alone, against a 224-px JPEG measured
in the same run: wall time, time holding the shared model slot, and peak memory above the warm process.
"""

from __future__ import annotations

import argparse
import io
import platform
import re
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzz_inputs import SAMPLE, damaged_copies, random_bytes, random_dicom_headers, seed_files  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from inputs import dicom_bytes, encode, odd_inputs, radiograph_grey  # noqa: E402
from PIL import Image  # noqa: E402

from pneumonia.config import MAX_MEGAPIXELS, MODELS_DIR  # noqa: E402
from pneumonia.screening.gate import CAUTION, OK, REFUSED  # noqa: E402
from pneumonia.screening.predictor import PendingInput, load_predictor  # noqa: E402

COMMAND = "python benchmarks/bench_reliability.py"
SECONDS_ALLOWED = 2.0


# ---------------------------------------------------------------- fuzzing


def fuzz(predictor, strategy, examples: int, fuzz_seed: int) -> Counter:
    """Tries, crashes (exceptions), slow inputs and bad reasons, over `examples` generated inputs."""
    counts: Counter = Counter()

    @seed(fuzz_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=("generate",),
              suppress_health_check=list(HealthCheck))
    @given(data=strategy)
    def run(data):
        counts["tried"] += 1
        started = time.perf_counter()
        try:
            result = predictor.prepare("fuzzed", data, keep_images=True)
        except Exception as exc:  # what the benchmark counts; the tests fail on it
            counts["crashed"] += 1
            counts[f"crash: {type(exc).__name__}"] += 1
            return
        if time.perf_counter() - started > SECONDS_ALLOWED:
            counts["slow"] += 1
        if isinstance(result, PendingInput):
            counts[CAUTION if result.cautions else OK] += 1
            return
        counts[result.status] += 1
        if result.status != OK and (not result.reason or "\n" in result.reason):
            counts["bad reason"] += 1

    run()
    return counts


def fuzz_section(predictor, examples: int) -> str:
    strategies = {
        "random bytes (some behind a DICOM, PNG, JPEG or TIFF signature)": random_bytes(),
        "truncated and bit-flipped copies of real JPEG, PNG, TIFF and DICOM files": damaged_copies(seed_files()),
        "DICOM headers with random tag values": random_dicom_headers(),
    }
    rows = ["| inputs | tried | crashed | over 2 s | no plain reason | ok / caution / refused |", "|---|---|---|---|---|---|"]
    total = Counter()
    for index, (name, strategy) in enumerate(strategies.items()):
        counts = fuzz(predictor, strategy, examples // len(strategies), fuzz_seed=index)
        total.update(counts)
        rows.append(f"| {name} | {counts['tried']:,} | {counts['crashed']} | {counts['slow']} | {counts['bad reason']} "
                    f"| {counts[OK]:,} / {counts[CAUTION]:,} / {counts[REFUSED]:,} |")
    rows.append(f"| **all** | **{total['tried']:,}** | **{total['crashed']}** | **{total['slow']}** | "
                f"**{total['bad reason']}** | {total[OK]:,} / {total[CAUTION]:,} / {total[REFUSED]:,} |")
    crashes = {k: v for k, v in total.items() if k.startswith("crash: ")}
    if crashes:
        rows.append("\nCrashes by exception: " + ", ".join(f"{k[7:]} {v}" for k, v in crashes.items()))
    return "\n".join(rows)


# ---------------------------------------------------------------- the odd-input matrix


def matrix_section(predictor) -> str:
    items = odd_inputs(radiograph_grey(SAMPLE))
    results = predictor.screen([(name, data) for name, (data, _) in items.items()] + [("a plain 224-px JPEG", SAMPLE)])
    rows = ["| input | must be | status | probability | reason |", "|---|---|---|---|---|"]
    for (name, (_, expected)), result in zip([*items.items(), ("a plain 224-px JPEG", (b"", "scored"))], results):
        probability = "" if result.probability is None else f"{result.probability:.3f}"
        rows.append(f"| {name} | {expected} | {result.status} | {probability} | {result.reason or '—'} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- largest inputs


def _peak_reset() -> None:
    """Reset the process's peak RSS (Linux), so the next reading is the peak of what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def _rss_mb(field: str) -> float:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024


def large_inputs() -> dict[str, bytes]:
    grey = radiograph_grey(SAMPLE)
    films = {}
    for side in (2048, 4096, 7000):
        films[f"PNG {side}x{side} (8-bit)"] = encode(Image.fromarray(grey).resize((side, side), Image.BILINEAR), "PNG")
    films["JPEG 4096x4096"] = encode(Image.fromarray(grey).resize((4096, 4096), Image.BILINEAR), "JPEG", quality=90)
    big = np.asarray(Image.fromarray(grey).resize((2048, 2048), Image.BILINEAR), dtype=np.uint16) * 16
    films["DICOM 2048x2048 (12-bit)"] = dicom_bytes(big)
    buffer = io.BytesIO()
    Image.new("L", (13000, 13000)).save(buffer, format="PNG")  # 169 megapixels in about 0.2 MB
    films["PNG 13000x13000 (169 MP, tiny on disk)"] = buffer.getvalue()
    return films


def large_section(predictor) -> str:
    held = []

    @contextmanager
    def timed_slot():
        started = time.perf_counter()
        yield
        held.append(time.perf_counter() - started)

    films = {"baseline: 224-px JPEG": Path(SAMPLE).read_bytes(), **large_inputs()}
    rows = ["| input | size on disk | status | wall time | holding the model slot | peak memory above the warm process |",
            "|---|---|---|---|---|---|"]
    predictor.screen([("warm", films["baseline: 224-px JPEG"])], keep_images=True)
    for name, data in films.items():
        held.clear()
        before = _rss_mb("VmRSS")
        _peak_reset()
        started = time.perf_counter()
        [result] = predictor.screen([(name, data)], keep_images=True, model_slot=timed_slot)
        wall = time.perf_counter() - started
        peak = _rss_mb("VmHWM") - before
        slot = f"{held[0]:.2f} s" if held else "not taken (refused before the model)"
        status = result.status if result.status != REFUSED else f"refused: {result.reason}"
        rows.append(f"| {name} | {len(data) / 1e6:.1f} MB | {status} | {wall:.2f} s | {slot} | {max(peak, 0):.0f} MB |")
    return "\n".join(rows)


# ---------------------------------------------------------------- the document


def replace_section(text: str, name: str, body: str) -> str:
    """The body between `<!-- name:begin -->` and `<!-- name:end -->`, added at the end when missing."""
    begin, end = f"<!-- {name}:begin ({COMMAND}) -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin[^\n]*-->.*?<!-- {re.escape(name)}:end -->", re.S)
    return pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="fuzzed inputs in all (default 20,000)")
    parser.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    predictor = load_predictor(args.model_dir)
    predictor.warm_up()
    machine = f"{platform.machine()} with {len(__import__('os').sched_getaffinity(0))} CPU cores ({predictor.device})"
    header = (f"Generated by `{COMMAND} --examples {args.examples}` on {machine}, model "
              f"`{predictor.metadata.short_sha}`. Do not edit by hand.")
    sections = {
        "fuzz": f"## Fuzzing the reader and the gate\n\n{header}\n\n{fuzz_section(predictor, args.examples)}",
        "matrix": f"## The odd-input matrix\n\n{header}\n\nEvery input below was scored in one batch with a plain "
                  f"JPEG, which was scored too.\n\n{matrix_section(predictor)}",
        "large": f"## The largest inputs\n\n{header}\n\nImages above {MAX_MEGAPIXELS} megapixels are refused before "
                 f"decoding; the rest are reduced to at most 1,024 pixels a side right after decoding.\n\n"
                 f"{large_section(predictor)}",
    }
    text = args.out.read_text() if args.out.exists() else (
        "# Reliability\n\nWhat the screening pipeline does with awkward, damaged and very large inputs, and whether "
        "the app's memory holds steady. Each section is generated by the command named in it.\n")
    for name, body in sections.items():
        text = replace_section(text, name, body)
        print(body, end="\n\n")
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
