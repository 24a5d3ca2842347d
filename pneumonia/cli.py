"""`python -m pneumonia train|evaluate|predict`: one clear line and a non-zero exit on any user error."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from pneumonia.config import MODELS_DIR, TrainConfig
from pneumonia.errors import PneumoniaError

EXIT_USER_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pneumonia",
        description="Train, evaluate and run a pneumonia screening CNN on chest X-rays. Not a medical device.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model on DIR/train (validation is carved out by patient)")
    train.add_argument("--data", required=True, type=Path, help="folder holding train/ (Kaggle chest_xray layout)")
    train.add_argument("--out", type=Path, default=MODELS_DIR, help="where to write the model (default: models/)")
    train.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    train.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    train.add_argument("--seed", type=int, default=TrainConfig.seed)

    evaluate = commands.add_parser("evaluate", help="score DIR/test once and record test metrics in the metadata")
    evaluate.add_argument("--data", required=True, type=Path, help="folder holding test/")
    evaluate.add_argument("--model-dir", type=Path, default=MODELS_DIR)

    predict = commands.add_parser("predict", help="score image files or folders of images")
    predict.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR")
    predict.add_argument("--threshold", type=float, help="decision threshold (default: the model's own)")
    predict.add_argument("--csv", type=Path, help="also write file,probability,prediction rows here")
    predict.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    return parser


def _train(args) -> int:
    from pneumonia.train import train

    if args.epochs < 1 or args.image_size < 32:
        raise PneumoniaError("--epochs must be at least 1 and --image-size at least 32.")
    config = TrainConfig(epochs=args.epochs, image_size=args.image_size, seed=args.seed)
    train(args.data, args.out, config)
    return 0


def _evaluate(args) -> int:
    from pneumonia.evaluate import evaluate

    report = evaluate(args.data, args.model_dir)
    intervals = report["intervals_95"]
    print(f"test set: {report['n']} images, threshold {report['threshold']:.3f} (chosen on validation)")
    for name in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "recall_bacteria", "recall_virus"):
        low, high = intervals.get(name, (float("nan"), float("nan")))
        print(f"  {name:<16} {report[name]:.4f}  [95% CI {low:.4f}-{high:.4f}]")
    print(f"  {'ece':<16} {report['ece']:.4f}")
    print(f"  confusion        TN {report['tn']}  FP {report['fp']}  FN {report['fn']}  TP {report['tp']}")
    return 0


def _predict(args) -> int:
    from pneumonia.inference import expand_inputs, load_predictor

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise PneumoniaError(f"--threshold must lie in [0, 1], got {args.threshold}.")
    files = expand_inputs(args.inputs)
    predictor = load_predictor(args.model_dir)
    threshold = predictor.threshold if args.threshold is None else args.threshold
    results = predictor.predict_sources((str(path), path) for path in files)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"warning: skipped {r.name}: {r.error}", file=sys.stderr)
    scored = [r for r in results if not r.error]
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "probability", "prediction"])
            writer.writerows([r.name, f"{r.probability:.6f}", r.label(threshold)] for r in scored)
    for r in scored:
        print(f"{r.probability:.4f}  {r.label(threshold):<9}  {r.name}")
    print(
        f"{len(scored)} scored, {len(failed)} skipped; threshold {threshold:.3f}; device {predictor.device}",
        file=sys.stderr,
    )
    if not scored:
        raise PneumoniaError("none of the images could be read.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"train": _train, "evaluate": _evaluate, "predict": _predict}[args.command]
    try:
        return handler(args)
    except PneumoniaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
