"""Does the screening pipeline itself hold on to memory? One process, no Streamlit, film after film.

    .venv/bin/python benchmarks/bench_heap.py --films 40 [--pin] [--threads]

Each film goes through what a soak session asks of the server: screen it, LIME at the app's defaults, Grad-CAM,
LIME's three-seed stability and the PDF report. The process's resident memory (VmRSS) is read after every 5
films. `--pin` pins glibc's mmap threshold as the server does at start-up (ui/server.py); `--threads` runs each
film on a new thread, as Streamlit runs each page run. Used to tell the app's own growth from the server's
(docs/reliability.md, "What still grows").
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumonia.config import DATA_ENV_VAR, MODELS_DIR  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=40)
    parser.add_argument("--pin", action="store_true", help="pin glibc's mmap threshold, as the server does")
    parser.add_argument("--threads", action="store_true", help="each film on a new thread, as Streamlit runs pages")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(DATA_ENV_VAR, "../shared/data/chest_xray")))
    args = parser.parse_args()
    if args.pin:
        from ui.server import keep_large_blocks_out_of_the_heap

        keep_large_blocks_out_of_the_heap()
    from pneumonia.explain.maps import LimeSettings, explain_lime, grad_cam
    from pneumonia.explain.readout import lime_stability
    from pneumonia.reports.pdf import image_report
    from pneumonia.screening.predictor import load_predictor

    predictor = load_predictor(MODELS_DIR)
    predictor.warm_up()
    gc.collect()
    gc.freeze()  # as the app does after loading the model
    films = sorted((args.data / "test" / "NORMAL").glob("*.jpeg"))[: args.films // 2]
    films += sorted((args.data / "test" / "PNEUMONIA").glob("*.jpeg"))[: args.films - len(films)]

    def one_film(path: Path) -> None:
        (screening,) = predictor.screen([(path.name, path.read_bytes())], keep_images=True)
        if screening.model_input is not None:
            explain_lime(predictor, screening.model_input, LimeSettings())
            grad_cam(predictor, screening.model_input)
            lime_stability(predictor, screening.model_input, LimeSettings())
            image_report(predictor, screening, predictor.default_threshold)

    readings = []
    for number, path in enumerate(films, start=1):
        if args.threads:
            worker = threading.Thread(target=one_film, args=(path,))
            worker.start()
            worker.join()
        else:
            one_film(path)
        if number % 5 == 0:
            gc.collect()
            readings.append((number, rss_mb()))
    flags = " ".join(flag for flag, on in (("--pin", args.pin), ("--threads", args.threads)) if on)
    print(f"`.venv/bin/python benchmarks/bench_heap.py --films {args.films}{' ' + flags if flags else ''}`: RSS (MB) "
          "after " + ", ".join(f"{n}" for n, _ in readings) + " films: " + ", ".join(f"{mb:.0f}" for _, mb in readings)
          + f"; {readings[-1][1] - readings[0][1]:+.0f} MB from film {readings[0][0]} to film {readings[-1][0]}")


if __name__ == "__main__":
    main()
