"""Print the experiment log table from trained run folders' metadata.

    python benchmarks/experiments.py runs/e1_baseline runs/e2_ema_lr1e-3 ...

Validation columns decide; test columns are blank until `python -m pneumonia evaluate
--model-dir RUN` has been run once at the end, after the choice was made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumonia.config import TrainConfig  # noqa: E402
from pneumonia.io.bundle import read_metadata  # noqa: E402

# Options whose absence means what their default means (no backbone, no teacher; the fine-tuning knobs only act
# with a backbone, and f1, the first backbone run, kept batch norm frozen as the default does).
SAME_AS_DEFAULT_WHEN_ABSENT = {"backbone", "frozen_epochs", "head_learning_rate", "freeze_batch_norm", "teacher", "split_seed",
                               "distill_weight", "distill_temperature"}


def changed_settings(config: dict) -> str:
    """The config fields that differ from today's defaults, so each row says what it changed."""
    defaults = TrainConfig().__dict__
    changes = [f"{key}: predates option" for key in defaults
               if key not in config and key not in SAME_AS_DEFAULT_WHEN_ABSENT]
    for key, value in config.items():
        default = defaults.get(key)
        if key == "augment":
            changes += [f"augment.{k}={v}" for k, v in value.items() if default.get(k) != v]
        elif (list(default) if isinstance(default, tuple) else default) != value:
            changes.append(f"{key}={value}")
    return ", ".join(changes) or "defaults"


def row(run: Path) -> str:
    m = read_metadata(run)
    val, test = m["metrics"]["validation"], m["metrics"].get("test")
    stress = val.get("stress", {})
    t = m["training"]
    checkpoint = "val AUC" if "AUC" in t.get("checkpoint_rule", "") else "val loss"
    calibration = "Platt" if "bias" in m["calibration"] else "temperature"
    if "stress-shifted" in m["calibration"]["method"]:
        calibration += " on val+stress"
    cells = [
        run.name,
        changed_settings(t["config"]),
        f"{checkpoint}, {calibration}",
        f"{val['auc']:.4f}",
        f"{val['sensitivity']:.3f}/{val['specificity']:.3f}",
        f"{val['ece']:.3f}",
        f"{stress['mean_auc']:.4f}" if stress else "",
        f"{stress['mean_specificity']:.3f}" if stress else "",
        f"{m['threshold']['default']:.3f}",
        f"{t['best_epoch']}/{t['epochs_run']}",
        f"{t['seconds'] / 60:.1f}",
    ]
    if test:
        cells += [f"{test['auc']:.4f}", f"{test['accuracy']:.3f}", f"{test['sensitivity']:.3f}", f"{test['specificity']:.3f}"]
    else:
        cells += ["", "", "", ""]
    cells += [
        f"{stress['mean_sensitivity']:.3f}" if stress else "",
        f"{stress['ece']:.3f}" if "ece" in stress else "",
        f"{test['ece']:.3f}" if test else "",
        t.get("ran_on", "CPU (tensorflow), 2 cores"),  # every run before this field was on the 2-core CPU machine
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(
        "| run | change vs today's defaults | checkpoint, calibration | val AUC | val sens/spec | val ECE | stress AUC | stress spec "
        "| threshold | best/run epochs | train min | test AUC | test acc | test sens | test spec "
        "| stress sens | stress ECE | test ECE | ran on |"
    )
    print("|" + "---|" * 19)
    for run in args.runs:
        print(row(run))


if __name__ == "__main__":
    main()
