"""`python -m pneumonia train|evaluate|predict|...`: one clear line and a non-zero exit on any user error."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from pneumonia.config import MODELS_DIR, TrainConfig
from pneumonia.errors import PneumoniaError
from pneumonia.interrupts import first_ctrl_c_finishes_the_chunk
from pneumonia.pacs import cli as pacs_cli

EXIT_USER_ERROR = 2
"""A usage error, a missing or damaged model folder, an output that cannot be written or already exists (without
--resume), a malformed CSV, or no input could be scored: one `error:` line on stderr, never a traceback."""
EXIT_SOME_REFUSED = 3
"""predict: some inputs were refused (their rows say why) and the rest were scored; every row was written."""
EXIT_INTERRUPTED = 130
"""predict stopped by Ctrl-C: the rows written so far are valid, and --resume finishes the job."""
MIN_FILES_FOR_WORKERS = 64
"""Starting worker processes costs a second or two; below this many files one process is quicker."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pneumonia",
        description="Train, evaluate and run a pneumonia screening CNN on chest X-rays. Not a medical device.",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also show TensorFlow's own log lines on stderr (hidden by default)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model on DIR/train (validation is carved out by patient)")
    train.add_argument("--data", required=True, type=Path, help="folder holding train/ (Kaggle chest_xray layout)")
    train.add_argument("--out", type=Path, default=MODELS_DIR, help="where to write the model (default: models/)")
    train.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    train.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    train.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted run from OUT/checkpoints (weights, optimizer and epoch are kept there each epoch)",
    )
    train.add_argument("--seed", type=int, default=TrainConfig.seed)
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any TrainConfig field with a JSON value, e.g. --set learning_rate=0.001 "
        "--set filters=[32,64,96,128,192] --set augment.gamma=0.5",
    )

    evaluate = commands.add_parser("evaluate", help="score DIR/test once and record test metrics in the metadata")
    evaluate.add_argument("--data", required=True, type=Path, help="folder holding test/")
    evaluate.add_argument("--model-dir", type=Path, default=MODELS_DIR)

    predict = commands.add_parser(
        "predict",
        help="gate and score images or DICOM files, or folders of them (refused files get a reason)",
        description="Gate and score images or DICOM files. Exit status: 0 when every input was scored, "
        f"{EXIT_SOME_REFUSED} when some were refused (the rest are scored and every row is written), "
        f"{EXIT_USER_ERROR} on a usage error or when none could be scored.",
    )
    predict.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR")
    predict.add_argument("--threshold", type=float, help="decision threshold (default: the model's own)")
    predict.add_argument(
        "--csv", type=Path, help="also write file,status,probability,label,threshold,reason rows here (one per input)"
    )
    predict.add_argument(
        "--parquet", type=Path, metavar="FOLDER", help="also write the rows as Parquet parts, one per chunk, here"
    )
    predict.add_argument(
        "--resume", action="store_true",
        help="skip the files already in --csv/--parquet (a run that was interrupted) and append the rest",
    )
    predict.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="processes that read files and run the gate's checks while the model scores "
        f"(default: the number of cores; 0: all in this process; used from {MIN_FILES_FOR_WORKERS} files on)",
    )
    predict.add_argument("--engine", choices=("local", "ray"), default="local",
                         help="local (default) or ray: the same pipeline on Ray Data (RAY_ADDRESS picks a cluster)")
    predict.add_argument("--chunk-size", type=int, default=256, help="files read, scored and written at a time")
    predict.add_argument("--quiet", action="store_true", help="no per-file lines, no progress bar, no summary line")
    predict.add_argument(
        "--no-gate", action="store_true", help="score every readable file, skipping the input gate (research only)"
    )
    predict.add_argument("--model-dir", type=Path, default=MODELS_DIR)

    report = commands.add_parser(
        "report", help="write a one-page PDF report per image: gate, score, label, LIME and Grad-CAM (refused: why)"
    )
    report.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR")
    report.add_argument("--out", required=True, type=Path, help="folder for the <stem>.pdf reports")
    report.add_argument("--threshold", type=float, help="decision threshold (default: the model's own)")
    report.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    report.add_argument("--names", action="store_true",
                        help="name reports after the input files (default: a code from each file's SHA-256 and its "
                             "place in the list, since file names often identify the patient); a name that is a "
                             "DICOM UID or contains the file's own patient name or ID is replaced all the same")

    calibrate = commands.add_parser(
        "calibrate", help="redo calibration, threshold and validation metrics of a saved model from DIR/train"
    )
    calibrate.add_argument("--data", required=True, type=Path, help="folder holding train/ (the model's own)")
    calibrate.add_argument("--model-dir", type=Path, default=MODELS_DIR)

    site = commands.add_parser(
        "calibrate-site",
        help="derive a site threshold from a folder of the site's own normal films (nothing is stored)",
    )
    site.add_argument("inputs", nargs="+", type=Path, metavar="NORMALS_DIR", help="films known to be normal")
    site.add_argument(
        "--max-flagged", type=float, default=0.10, help="share of these normal films the threshold may flag (default 0.10)"
    )
    site.add_argument("--model-dir", type=Path, default=MODELS_DIR)

    gate = commands.add_parser(
        "fit-gate", help="fit the input gate of a saved model from DIR/train (fit split; thresholds on validation)"
    )
    gate.add_argument("--data", required=True, type=Path, help="folder holding train/ (the model's own)")
    gate.add_argument("--model-dir", type=Path, default=MODELS_DIR)

    card = commands.add_parser("card", help="print the model card (markdown) from the model's metadata")
    card.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    card.add_argument("--out", type=Path, help="write it here instead of printing it")
    card.add_argument("--readme", type=Path, help="also refresh the results table between the markers in this README")

    study = commands.add_parser("study", help="reader studies: compare readers' AUC across modalities (e.g. with AI)")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    analyse = study_commands.add_parser(
        "analyse",
        help="multi-reader multi-case analysis of readers' AUC (Obuchowski-Rockette, Hillis degrees of freedom)",
        description="Compare readers' average AUC between modalities, readers and cases both random "
        "(Obuchowski-Rockette with jackknife covariances and Hillis degrees of freedom). Every reader must rate "
        "every case in every modality.",
    )
    analyse.add_argument(
        "readings", type=Path, metavar="READINGS_CSV",
        help="rows of reader,case,truth,modality,rating (truth 1 = abnormal; a larger rating = more likely "
        "abnormal); an optional call column (1 = abnormal) adds sensitivity and specificity",
    )
    analyse.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON here")
    export = study_commands.add_parser(
        "export",
        help="write a study's readings as reader,case,truth,modality,rating CSV (what `study analyse` reads)",
        description="Write the readings of the study called NAME (from the app's Reader study page) as CSV: one row "
        "per reader, case and modality (unaided, aided); rating 1 (NORMAL, certain) to 10 (PNEUMONIA, certain). "
        "Only readers who finished every case are written unless --include-unfinished. The database is "
        "PNEUMONIA_DB's (default ~/.local/share/pneumonia/studies.db) unless --db.",
    )
    create = study_commands.add_parser(
        "create",
        help="create a reader study over your own films (a folder or ZIP and a file,truth CSV); prints both codes",
        description="Create an open reader study in PNEUMONIA_DB (or --db) over your own films: every film passes the "
        "input gate and is scored by the model; refused films are listed with their reasons and left out; kept films "
        "are stored in the study as 224-px grey PNGs named by content hash (no file name, no DICOM header). Prints "
        "the teacher code (keep it private) and the join code (for the class).",
    )
    create.add_argument("--name", required=True, help="the study's name (readers see it)")
    create.add_argument("--cases", required=True, type=Path, metavar="FOLDER_OR_ZIP", help="the films")
    create.add_argument("--truth", required=True, type=Path, metavar="CSV",
                        help="columns file,truth: each film's base name and 1 (PNEUMONIA) or 0 (NORMAL)")
    create.add_argument("--no-ai", action="store_true", help="readers read alone only (no AI-aided second read)")
    create.add_argument("--seed", type=int, default=0, help="seed of the cases' order in the study (default 0)")
    create.add_argument("--db", metavar="PATH_OR_URL", help="an SQLite file or SQLAlchemy URL (default: PNEUMONIA_DB)")
    create.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    export.add_argument("name", metavar="NAME", help="the study's name, as the teacher gave it (any case)")
    export.add_argument("--csv", required=True, type=Path, metavar="OUT", help="where to write the readings")
    export.add_argument("--db", metavar="PATH_OR_URL", help="an SQLite file or SQLAlchemy URL (default: PNEUMONIA_DB)")
    export.add_argument("--include-unfinished", action="store_true",
                        help="also write the readings of readers who have not finished (study analyse refuses them)")
    pacs_cli.add_parser(commands)
    return parser


def config_from_overrides(base: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=json` overrides (dotted keys reach into the augment dict) to a TrainConfig."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes: dict = {}
    augment = dict(base.augment)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise PneumoniaError(f"--set {item!r} is not KEY=VALUE.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("augment."):
            name = key.removeprefix("augment.")
            if name not in augment:
                raise PneumoniaError(f"--set {key}: unknown augmentation; known: {', '.join(sorted(augment))}.")
            augment[name] = value
        elif key in fields:
            changes[key] = tuple(value) if isinstance(value, list) else value
        else:
            raise PneumoniaError(f"--set {key}: unknown setting; known: {', '.join(sorted(fields))}.")
    return dataclasses.replace(base, augment=augment, **changes)


def _train(args) -> int:
    from pneumonia.training.train import train

    config = TrainConfig(epochs=args.epochs, image_size=args.image_size, seed=args.seed)
    config = config_from_overrides(config, args.set)
    if config.epochs < 1 or config.image_size < 32:
        raise PneumoniaError("epochs must be at least 1 and the image size at least 32.")
    train(args.data, args.out, config, resume=args.resume, command=args.command_line)
    return 0


def _evaluate(args) -> int:
    from pneumonia.formatting import format_threshold
    from pneumonia.training.evaluate import evaluate

    report = evaluate(args.data, args.model_dir)
    intervals = report["intervals_95"]
    print(f"test set: {report['n']} images, threshold {format_threshold(report['threshold'])} (chosen on validation)")
    for name in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "recall_bacteria", "recall_virus"):
        low, high = intervals.get(name, (float("nan"), float("nan")))
        print(f"  {name:<16} {report[name]:.4f}  [95% CI {low:.4f}-{high:.4f}]")
    print(f"  {'ece':<16} {report['ece']:.4f}")
    print(f"  confusion        TN {report['tn']}  FP {report['fp']}  FN {report['fn']}  TP {report['tp']}")
    return 0


def _inputs_model_and_threshold(args):
    """What predict and report share: the input files, the loaded model, and the threshold to apply."""
    from pneumonia.screening.predictor import expand_inputs, load_predictor
    from pneumonia.threshold import Threshold

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise PneumoniaError(f"--threshold must lie in [0, 1], got {args.threshold}.")
    files = expand_inputs(args.inputs)
    predictor = load_predictor(args.model_dir)
    if args.threshold is None:
        return files, predictor, predictor.default_threshold
    return files, predictor, Threshold.by_hand(args.threshold, "set with --threshold")


def _write_chunk(chunk, threshold, writers, counts: dict, bar, quiet: bool) -> None:
    from pneumonia.formatting import format_probability
    from pneumonia.reports.tables import results_table
    from pneumonia.screening.gate import CAUTION

    table = results_table(chunk, threshold)
    for writer in writers:
        writer.write(table)
    for r in chunk:
        counts[r.status] += 1
        if quiet:
            continue
        if r.probability is None:
            bar.write(f"not scored  {r.name}: {r.reason}", file=sys.stderr)
        else:
            note = f"  [{r.status}: {r.reason}]" if r.status == CAUTION else ""
            bar.write(f"{format_probability(r.probability, threshold):>7}  {r.label(threshold):<9}  {r.name}{note}",
                      file=sys.stdout)
    bar.update(len(chunk))


def _predict(args) -> int:
    import os
    import time

    from tqdm import tqdm

    from pneumonia.archive.writers import CsvRows, ParquetParts
    from pneumonia.screening.gate import CAUTION, OK, REFUSED
    from pneumonia.screening.predictor import UNCHECKED

    if args.resume and not (args.csv or args.parquet):
        raise PneumoniaError("--resume needs --csv or --parquet: the rows already written say which files are done.")
    if args.chunk_size < 1:
        raise PneumoniaError("--chunk-size must be at least 1.")
    files, predictor, threshold = _inputs_model_and_threshold(args)
    use_gate = not args.no_gate
    if args.no_gate:
        print("warning: the input gate is off (--no-gate): every readable file is scored, even a photograph; "
              "for research only", file=sys.stderr)
    writers = ([CsvRows(args.csv, args.resume)] if args.csv else []) + (
        [ParquetParts(args.parquet, args.resume)] if args.parquet else [])
    done = writers[0].done if writers else set()
    if any(w.done != done for w in writers):
        raise PneumoniaError("the CSV and the Parquet folder hold different files; resume each with its own run.")
    remaining = [str(path) for path in files if str(path) not in done]
    workers = len(os.sched_getaffinity(0)) if args.workers is None else args.workers
    if args.engine == "ray":
        from pneumonia.archive.ray_engine import ray_chunks

        chunks = ray_chunks(remaining, predictor.model_dir, args.chunk_size, use_gate)
    else:
        from pneumonia.archive.local import prepared_chunks, score_chunks

        workers = workers if len(remaining) >= MIN_FILES_FOR_WORKERS else 0
        chunks = score_chunks(predictor, prepared_chunks(predictor, remaining, args.chunk_size, workers, use_gate),
                              use_gate)
    counts = {status: 0 for status in (OK, CAUTION, REFUSED, UNCHECKED)}
    bar = tqdm(total=len(remaining), unit="film", file=sys.stderr, disable=args.quiet or not sys.stderr.isatty(),
               smoothing=0.1, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        with first_ctrl_c_finishes_the_chunk() as stop:
            for chunk in chunks:
                _write_chunk(chunk, threshold, writers, counts, bar, args.quiet)
                if stop.is_set():
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        written = sum(counts.values())
        target = " and ".join(str(p) for p in (args.csv, args.parquet) if p) or "the screen"
        print(f"interrupted: {written} of {len(remaining)} files written to {target}; run the same command with "
              "--resume to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    seconds = time.perf_counter() - started
    if not args.quiet:
        summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n or status != UNCHECKED)
        skipped = f"; {len(done)} already done (--resume)" if done else ""
        rate = f" in {seconds:.1f} s ({len(remaining) / seconds:.0f} films/s)" if remaining and seconds > 0 else ""
        print(f"{summary}{skipped}{rate}; threshold {threshold.text}; device {predictor.device}",
              file=sys.stderr)
    if remaining and not counts[OK] + counts[CAUTION] + counts[UNCHECKED]:
        raise PneumoniaError("none of the images could be scored.")
    return EXIT_SOME_REFUSED if counts[REFUSED] else 0


def _report(args) -> int:
    from pneumonia.io.pseudonyms import digest_of, shown_name
    from pneumonia.reports.pdf import image_report, report_file_names
    from pneumonia.screening.gate import REFUSED

    files, predictor, threshold = _inputs_model_and_threshold(args)
    args.out.mkdir(parents=True, exist_ok=True)
    shown = [shown_name(str(path), digest_of(data), position, args.names, data)
             for position, path in enumerate(files, start=1) for data in [path.read_bytes()]]
    results = predictor.screen(((name, path) for name, path in zip(shown, files)), keep_images=True)
    for result, name, path in zip(results, report_file_names([Path(n) for n in shown]), files):
        target = args.out / name
        target.write_bytes(image_report(predictor, result, threshold))
        outcome = "not scored" if result.probability is None else result.label(threshold)
        print(f"{target}  ({result.status}, {outcome})  {path}")
    refused = sum(r.status == REFUSED for r in results)
    print(f"{len(results)} reports in {args.out}: {len(results) - refused} scored, {refused} refused; "
          f"threshold {threshold.text}", file=sys.stderr)
    return 0


def _calibrate(args) -> int:
    from pneumonia.training.train import recalibrate

    recalibrate(args.data, args.model_dir, command=args.command_line)
    return 0


def _calibrate_site(args) -> int:
    from pneumonia.decision.site import calibrate_site_from_sources
    from pneumonia.formatting import format_threshold
    from pneumonia.screening.predictor import expand_inputs, load_predictor

    files = expand_inputs(args.inputs)
    predictor = load_predictor(args.model_dir)
    site = calibrate_site_from_sources(predictor, ((str(path), path) for path in files), args.max_flagged)
    print(site.summary())
    print(f"use it with: python -m pneumonia predict --threshold {format_threshold(site.threshold)} FILE_OR_DIR...")
    return 0


def _fit_gate(args) -> int:
    from pneumonia.training.gate_fit import fit_gate

    entry = fit_gate(args.data, args.model_dir)
    print(f"input gate saved to {args.model_dir / entry['file']}; thresholds chosen on {entry['thresholds_chosen_on']}")
    for name, rates in entry["validation"].items():
        print(f"  validation {name:<16} refused {rates['refused']:.2%}  cautioned {rates['cautioned']:.2%}")
    return 0


def _card(args) -> int:
    from pneumonia.io.bundle import read_model_metadata
    from pneumonia.reports.model_card import model_card, replace_results

    metadata = read_model_metadata(args.model_dir)
    if metadata.test_metrics is None:
        raise PneumoniaError(f"{args.model_dir} has no test metrics yet; run `python -m pneumonia evaluate` first.")
    text = model_card(metadata)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    if args.readme:
        args.readme.write_text(replace_results(args.readme.read_text(), metadata))
    return 0


def _study(args) -> int:
    return {"analyse": _study_analyse, "export": _study_export, "create": _study_create}[args.study_command](args)


def _study_create(args) -> int:
    from pneumonia.screening.predictor import load_predictor
    from pneumonia.studies.own_cases import create_own_study, films_from
    from pneumonia.studies.store import StudyStore

    try:
        truth = args.truth.read_bytes()
    except OSError as exc:
        raise PneumoniaError(f"cannot read {args.truth}: {exc.strerror or exc}.") from exc
    films = films_from(args.cases)
    store = StudyStore(args.db)
    try:
        study, teacher_code, refused = create_own_study(store, args.name, films, truth, load_predictor(args.model_dir),
                                                        aided=not args.no_ai, seed=args.seed)
        cases = len(store.cases(study.id))
    finally:
        store.close()
    for name, reason in refused:
        print(f"left out: {name}: {reason}")
    print(f"{study.name}: {cases} cases, {'AI-aided' if study.aided else 'readers alone'}")
    print(f"teacher code (keep it private; it opens the results and deletes the study): {teacher_code}")
    print(f"join code (for the class): {study.join_code}")
    return 0


def _study_export(args) -> int:
    from pneumonia.studies.results import export_study
    from pneumonia.studies.store import StudyStore

    store = StudyStore(args.db)
    try:
        text, snap = export_study(store, args.name, include_unfinished=args.include_unfinished)
    finally:
        store.close()
    try:
        args.csv.write_text(text)
    except OSError as exc:
        raise PneumoniaError(f"cannot write {args.csv}: {exc.strerror or exc}.") from exc
    written = {line.split(",", 1)[0] for line in text.splitlines()[1:]}
    print(f"{snap.study.name}: {len(text.splitlines()) - 1} readings of {len(written)} of {len(snap.readers)} "
          f"readers, {len(snap.cases)} cases, written to {args.csv}")
    return 0


def _study_analyse(args) -> int:
    from pneumonia.studies.mrmc import analyse, read_readings

    result = analyse(read_readings(args.readings))
    print(result.summary())
    if args.json:
        try:
            args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise PneumoniaError(f"cannot write {args.json}: {exc.strerror or exc}.") from exc
    return 0


def _quiet_logs(verbose: bool) -> None:
    """Keep TensorFlow's start-up log lines off stderr unless --verbose; our warning:/error: lines stay."""
    from pneumonia.tensorflow_logs import quiet_logs

    quiet_logs(verbose)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.command_line = "python -m pneumonia " + shlex.join(argv)  # recorded in a trained model's metadata
    _quiet_logs(args.verbose)
    handler = {"train": _train, "evaluate": _evaluate, "predict": _predict, "report": _report,
               "calibrate": _calibrate, "calibrate-site": _calibrate_site, "fit-gate": _fit_gate, "card": _card,
               "study": _study, "pacs": pacs_cli.run}[args.command]
    try:
        return handler(args)
    except PneumoniaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a path the user named cannot be read or written: their mistake, in one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; check the path and its permissions.", file=sys.stderr)
        return EXIT_USER_ERROR
