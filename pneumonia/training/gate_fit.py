"""Fitting the input gate of a saved model from train/ alone (`python -m pneumonia fit-gate`).

Kept apart from `pneumonia.screening.gate`, which only judges inputs at run time, so that scoring never imports
training code. Mahalanobis means and covariance come from the fit split; every threshold comes from the
validation split plus its stress-shifted copies, so a radiograph from a different machine is not refused
for its exposure.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pneumonia.config import GATE_FILENAME, GateConfig
from pneumonia.io.bundle import read_metadata, write_metadata
from pneumonia.io.dataset import discover_split, find_split, load_images, patient_split, sha256_file, split_seed
from pneumonia.io.images import read_input, to_model_input
from pneumonia.screening.adult_caution import (
    AdultConfig,
    adult_features,
    fit_adult_caution,
    save_adult_caution,
    with_adult_caution,
)
from pneumonia.screening.gate import CAUTION, REFUSED, STATISTICS, Gate, Verdict, image_statistics
from pneumonia.screening.predictor import load_predictor
from pneumonia.training.stress import stress_shifts


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the precision of the shared class-centred covariance (Ledoit-Wolf shrinkage)."""
    from sklearn.covariance import LedoitWolf

    features = np.asarray(features, dtype=np.float64)
    means = np.stack([features[labels == c].mean(axis=0) for c in (0, 1)])
    centred = features - means[labels.astype(int)]
    return means, LedoitWolf(assume_centered=True).fit(centred).precision_


def fit_thresholds(config: GateConfig, statistics: list[dict[str, float]], unusualness: np.ndarray) -> dict[str, float]:
    """Each statistic rule refuses at most `statistic_refusal_rate` of the validation images (clean and
    stress-shifted), the Mahalanobis rule at most `unusual_refusal_rate`: at most 1% in all."""
    rate = config.statistic_refusal_rate
    column = {name: np.array([s[name] for s in statistics]) for name in STATISTICS}
    return {
        "std_min": float(np.quantile(column["std"], rate)),
        "neighbour_correlation_min": float(np.quantile(column["neighbour_correlation"], rate)),
        "peak_share_max": float(np.quantile(column["peak_share"], 1 - rate)),
        "saturation_max": float(max(np.quantile(column["saturation"], 1 - rate), config.saturation_floor)),
        "unusual_refuse": float(np.quantile(unusualness, 1 - config.unusual_refusal_rate)),
        "unusual_caution": float(np.quantile(unusualness, 1 - max(config.caution_rate, config.unusual_refusal_rate))),
    }


def save_gate(gate: Gate, model_dir: Path) -> dict:
    """Arrays to models/pneumonia_gate.npz; returns the metadata entry (thresholds, rules, file hash)."""
    path = Path(model_dir) / GATE_FILENAME
    arrays = {f"mean_{i}": m for i, m in enumerate(gate.means)}
    arrays.update({f"precision_{i}": p for i, p in enumerate(gate.precisions)})
    arrays["scales"] = np.asarray(gate.scales)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return {
        "file": GATE_FILENAME,
        "sha256": sha256_file(path),
        "config": dataclasses.asdict(gate.config),
        "thresholds": gate.thresholds,
    }


def adult_fit_features(paths: list[Path], labels: np.ndarray, config: AdultConfig,
                       chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The adult caution's features of the fit split's films, read as the app reads a file, and of their stress
    copies, with the labels repeated to match: the distance learns that noise, blur and exposure are a child's too.
    In chunks, so a large split never holds its seven versions at once."""
    features, repeated = [], []
    for start in range(0, len(paths), chunk):
        films = np.stack([to_model_input(read_input(p).grey, config.size) for p in paths[start : start + chunk]])
        part = labels[start : start + chunk]
        for version in [films, *(v[..., 0] for v in stress_shifts(films[..., None], seed=start).values())]:
            features.append(adult_features(version, config))
            repeated.append(part)
    return np.concatenate(features), np.concatenate(repeated)


def fit_gate(data_dir: Path, model_dir: Path, config: GateConfig = GateConfig(),
             adult_config: AdultConfig = AdultConfig()) -> dict:
    """Fit the gate of a saved model from train/ alone and record it in the model's metadata.

    Mahalanobis means and covariance come from the fit split. Every threshold comes from the
    validation split plus its stress-shifted copies (gamma, contrast, blur, noise, resolution), so
    a radiograph from a different machine is not refused for its exposure.
    """

    data_dir, model_dir = Path(data_dir), Path(model_dir)
    predictor = load_predictor(model_dir, with_gate=False)
    if not config.feature_layers:
        blocks = [layer.name for layer in predictor.model.layers if layer.name.endswith("_relu")]
        config = dataclasses.replace(config, feature_layers=(blocks[len(blocks) // 2], blocks[-1]))
    saved = predictor.metadata.training_config
    samples = discover_split(find_split(data_dir, "train"))
    fit_samples, val_samples = patient_split(samples, saved["validation_fraction"], split_seed(saved))
    layers = config.feature_layers
    names = {layer.name for layer in predictor.model.layers}
    adult = adult_config if adult_config.layer in names else dataclasses.replace(adult_config, layer=layers[0])
    fit_features, _ = predictor.features_and_probabilities(
        load_images([s.path for s in fit_samples], predictor.image_size), layers
    )
    # The adult caution's features are read as the app reads a file (read_input), as its validation films are.
    fit_inputs = np.stack([to_model_input(read_input(s.path).grey, predictor.image_size) for s in fit_samples])
    fit_grid = predictor.features_and_probabilities(fit_inputs, layers, grid=adult)[0][-1]
    del fit_inputs
    fit_labels = np.array([s.label for s in fit_samples])
    backbone_fit, backbone_labels = adult_fit_features([s.path for s in fit_samples], fit_labels, adult)
    fitted = [fit_mahalanobis(f, fit_labels) for f in fit_features]

    originals = [read_input(s.path) for s in val_samples]
    if len({image.grey.shape for image in originals}) != 1:
        raise ValueError("validation images differ in size; stress copies need one size")
    clean = np.stack([image.grey for image in originals])[..., None]
    versions = {"clean": clean, **stress_shifts(clean)}
    statistics: list[dict[str, float]] = []
    features: list[list[np.ndarray]] = []
    grids: list[np.ndarray] = []  # the adult caution's prescreen features (the network's grid), per version
    backbones: list[np.ndarray] = []  # and its backbone's, per version
    for grey in versions.values():
        shifted = [dataclasses.replace(image, grey=g[..., 0]) for image, g in zip(originals, grey)]
        statistics.extend(image_statistics(image, config.stats_side) for image in shifted)
        inputs = np.stack([to_model_input(image.grey, predictor.image_size) for image in shifted])
        computed = predictor.features_and_probabilities(inputs, layers, grid=adult)[0]
        features.append(computed[:-1])
        grids.append(computed[-1])
        backbones.append(adult_features(np.stack([to_model_input(image.grey, adult.size) for image in shifted]), adult))
    merged = [np.concatenate([f[i] for f in features]) for i in range(len(layers))]
    n_clean = len(originals)
    scales = []
    for (means, precision), values in zip(fitted, merged):
        centred = values[:n_clean, None, :] - means[None]
        scales.append(float(np.median(np.einsum("ncd,de,nce->nc", centred, precision, centred).min(axis=1))))
    gate = Gate(config, {}, [m for m, _ in fitted], [p for _, p in fitted], scales)
    unusualness = gate.unusualness(merged)
    gate.thresholds = fit_thresholds(config, statistics, unusualness)
    # The threshold on validation and its stress copies pooled, as every other threshold of the gate: a child's film
    # from another machine must not read as an adult's.
    gate.adult = fit_adult_caution((fit_grid, fit_labels, np.concatenate(grids)),
                                   (backbone_fit, backbone_labels, np.concatenate(backbones)), adult)
    adult_flags = np.concatenate([gate.adult.cascade(g, lambda past, b=b: b[past]) for g, b in zip(grids, backbones)])

    verdicts = [gate.judge(image, stats, u) for image, stats, u in zip(originals * len(versions), statistics, unusualness)]
    verdicts = [Verdict(*with_adult_caution(v.status, v.reasons, bool(flag), image.facts))
                for v, flag, image in zip(verdicts, adult_flags, originals * len(versions))]
    names = [name for name in versions for _ in originals]
    entry = save_gate(gate, model_dir)
    entry["adult"] = save_adult_caution(gate.adult, model_dir)
    entry["adult"]["fitted_on"] = (f"projections and class means on the fit split ({len(fit_samples)} train/ images; "
                                   f"the backbone's with its {len(versions) - 1} stress-shifted copies too); "
                                   f"thresholds the {gate.adult.config.prescreen_quantile:.1%} (prescreen) and "
                                   f"{gate.adult.config.quantile:.1%} (backbone) quantiles on the validation split "
                                   f"({n_clean} train/ images, by patient) and its {len(versions) - 1} stress-shifted "
                                   "copies; no adult film and no test film used")
    entry["fitted_on"] = f"Mahalanobis parameters on the fit split ({len(fit_samples)} train/ images)"
    entry["thresholds_chosen_on"] = (
        f"the validation split ({n_clean} train/ images, by patient) and its {len(versions) - 1} stress-shifted copies"
    )
    entry["validation"] = {
        name: {
            "n": sum(1 for n in names if n == name),
            "refused": float(np.mean([v.status == REFUSED for v, n in zip(verdicts, names) if n == name])),
            "cautioned": float(np.mean([v.status == CAUTION for v, n in zip(verdicts, names) if n == name])),
            "looks_adult": float(np.mean([flag for flag, n in zip(adult_flags, names) if n == name])),
        }
        for name in versions
    }
    metadata = read_metadata(model_dir)
    metadata["gate"] = entry
    write_metadata(model_dir, metadata)
    return entry
