"""How often the readout says an explanation's evidence lies outside the chest, on the test set, and a contact
sheet of the chest region on 30 test films for checking it by eye.

    .venv/bin/python benchmarks/bench_chest_region.py                 # all test films: docs/chest_region.md
    .venv/bin/python benchmarks/bench_chest_region.py --limit 20      # a quick run: 10 films per class
    .venv/bin/python benchmarks/bench_chest_region.py --sheet-only    # only docs/chest_region/*.png

LIME runs at the app's defaults (`LimeSettings()`, seed 0) and Grad-CAM on the committed model, as the Screen
page does. The region method was tuned by eye on train/ films; the test set here only reports.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pneumonia.config import CLASS_NAMES, MODELS_DIR, REPO_DIR  # noqa: E402
from pneumonia.io.dataset import discover_split, find_split  # noqa: E402

DOC = REPO_DIR / "docs" / "chest_region.md"
SHEET_DIR = REPO_DIR / "docs" / "chest_region"
SHEET_FILMS_PER_CLASS = 15
THUMB = 160  # pixels a side on the contact sheet
SHEET_COLUMNS = 6
FALLBACK_RGB = (255, 150, 0)  # outline colour where the lungs were not found and the centre stands in
BEGIN, END = "<!-- chest_region:begin", "<!-- chest_region:end -->"


def test_films(data_dir: Path) -> list[tuple[Path, int]]:
    return sorted((sample.path, sample.label) for sample in discover_split(find_split(data_dir, "test")))


def seeded_choice(films: list[tuple[Path, int]], per_class: int, seed: int = 0) -> list[tuple[Path, int]]:
    """A fixed choice of `per_class` films of each class, in file order within a class."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(CLASS_NAMES)):
        of_class = [film for film in films if film[1] == label]
        picks = rng.choice(len(of_class), min(per_class, len(of_class)), replace=False)
        chosen.extend(of_class[i] for i in sorted(picks))
    return chosen


def contact_sheet(films: list[tuple[Path, int]], size: int, out: Path) -> int:
    """One PNG of the films with the chest region outlined; returns how many fell back to the centre."""
    from PIL import Image, ImageDraw

    from pneumonia.explain.chest_region import chest_region, outlined
    from pneumonia.io.images import decode_grayscale

    rows = -(-len(films) // SHEET_COLUMNS)
    sheet = Image.new("RGB", (SHEET_COLUMNS * THUMB, rows * THUMB))
    draw = ImageDraw.Draw(sheet)
    fallbacks = 0
    for index, (path, label) in enumerate(films):
        grey = decode_grayscale(path, size)
        region = chest_region(grey)
        fallbacks += not region.found_lungs
        rgb = np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=-1)
        tile = outlined(rgb, region.mask, (0, 220, 0) if region.found_lungs else FALLBACK_RGB)
        x, y = (index % SHEET_COLUMNS) * THUMB, (index // SHEET_COLUMNS) * THUMB
        sheet.paste(Image.fromarray(tile).resize((THUMB, THUMB), Image.Resampling.NEAREST), (x, y))
        draw.text((x + 4, y + THUMB - 14), f"{index + 1} {CLASS_NAMES[label][0]}", fill=(255, 255, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=128).save(out, optimize=True)  # a palette keeps the sheet small
    return fallbacks


def measure(predictor, films: list[tuple[Path, int]]) -> list[dict]:
    """Per film: its class, whether the lungs were found, each method's share outside, the agreement."""
    from pneumonia.explain.chest_region import chest_region
    from pneumonia.explain.maps import LimeSettings, explain_lime, grad_cam, lime_heatmap, map_agreement
    from pneumonia.explain.readout import outside_shares

    rows = []
    start = time.perf_counter()
    for count, (path, label) in enumerate(films, 1):
        image = predictor.decode(path)
        region = chest_region(image)
        lime_map = lime_heatmap(explain_lime(predictor, image, LimeSettings()))
        cam = grad_cam(predictor, image)
        rows.append({"label": label, "found_lungs": region.found_lungs, "cam_found": bool(cam.max() > 0),
                     "agreement": map_agreement(lime_map, cam), **outside_shares(region, lime_map, cam)})
        if count % 25 == 0 or count == len(films):
            print(f"{count}/{len(films)} films, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def count(rows: list[dict], test) -> str:
    hits = sum(1 for row in rows if test(row))
    return f"{hits} / {len(rows)} ({hits / len(rows):.0%})" if rows else "–"


def table(rows: list[dict]) -> str:
    from pneumonia.explain.chest_region import mostly_outside

    by_class = [[row for row in rows if row["label"] == label] for label in range(len(CLASS_NAMES))]
    measures = [
        ("Most of LIME's positive weight outside the chest (sentence names LIME)", lambda r: mostly_outside(r["LIME"])),
        ("Most of Grad-CAM's map outside the chest (sentence names Grad-CAM)", lambda r: mostly_outside(r["Grad-CAM"])),
        ("Either (the outside sentence fires)", lambda r: mostly_outside(r["LIME"]) or mostly_outside(r["Grad-CAM"])),
        ("Lungs not found: the centre of the film stands in", lambda r: not r["found_lungs"]),
        ("Maps point to different or opposite areas (agreement < 0.20)",
         lambda r: r["cam_found"] and round(r["agreement"], 2) < 0.2),
        ("Grad-CAM found no evidence for PNEUMONIA", lambda r: not r["cam_found"]),
    ]
    header = "| Films | " + " | ".join(CLASS_NAMES) + " | All |\n|---|" + "---|" * (len(CLASS_NAMES) + 1)
    lines = [f"| {name} | " + " | ".join(count(group, test) for group in (*by_class, rows)) + " |"
             for name, test in measures]
    medians = " | ".join(
        f"LIME {np.median([r['LIME'] for r in group]):.0%}, Grad-CAM {np.median([r['Grad-CAM'] for r in group]):.0%}"
        if group else "–" for group in (*by_class, rows))
    lines.append(f"| Median share of positive weight outside the chest | {medians} |")
    return "\n".join([header, *lines])


def write_section(body: str, command: str) -> None:
    """Replace the generated section of docs/chest_region.md, keeping the prose around it."""
    section = f"{BEGIN} ({command}) -->\n{body}\n{END}"
    text = DOC.read_text() if DOC.exists() else "# The chest region\n\n"
    pattern = re.compile(rf"{re.escape(BEGIN)}[^\n]*-->.*?{re.escape(END)}", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + f"\n\n{section}\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> None:
    from pneumonia.config import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data_dir() or Path("/work/shared/data/chest_xray"))
    parser.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--limit", type=int, default=None, help="films to explain, half per class (default: all)")
    parser.add_argument("--sheet-only", action="store_true", help="only write the contact sheet")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)

    from pneumonia.screening.predictor import load_predictor

    predictor = load_predictor(args.model_dir)
    films = test_films(args.data)
    sheet = SHEET_DIR / "test_contact_sheet.png"
    fallbacks = contact_sheet(seeded_choice(films, SHEET_FILMS_PER_CLASS), predictor.image_size,
                              Path("/tmp/chest_region_sheet.png") if args.no_write else sheet)
    print(f"contact sheet: {2 * SHEET_FILMS_PER_CLASS} films, {fallbacks} fell back to the centre", file=sys.stderr)
    if args.sheet_only:
        return
    if args.limit is not None:
        films = seeded_choice(films, args.limit // 2, seed=1)
    rows = measure(predictor, films)
    command = ".venv/bin/python benchmarks/bench_chest_region.py" + (f" --limit {args.limit}" if args.limit else "")
    body = (
        f"Measured {date.today().isoformat()} with `{command}` on {len(rows)} test films, model "
        f"{predictor.metadata.short_sha} ({predictor.image_size} px), LIME at the app's defaults "
        f"(seed 0). The contact sheet `docs/chest_region/test_contact_sheet.png` (30 films, seeded) is written by "
        f"the same command; {fallbacks} of its 30 films fell back to the centre.\n\n{table(rows)}"
    )
    print(body)
    if not args.no_write:
        write_section(body, command)


if __name__ == "__main__":
    main()
