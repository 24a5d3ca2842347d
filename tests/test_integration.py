"""The committed model against the real data (skipped, with the reason, when PNEUMONIA_DATA is unset)."""

from __future__ import annotations

import numpy as np
import pytest

from pneumonia.decision.metrics import full_report
from pneumonia.io.bundle import read_test_predictions, read_validation_predictions
from pneumonia.io.dataset import discover_split, find_split, load_images, patient_split, split_seed

pytestmark = [pytest.mark.integration, pytest.mark.score_sensitive]


def test_committed_model_reproduces_its_recorded_test_metrics(committed_predictor, real_data_dir):
    samples = discover_split(find_split(real_data_dir, "test"))
    assert len(samples) == 624
    images = load_images([s.path for s in samples], committed_predictor.image_size)
    probabilities = committed_predictor.predict_arrays(images)
    labels = np.array([s.label for s in samples])
    recorded = committed_predictor.metadata.test_metrics
    report = full_report(labels, probabilities, committed_predictor.default_threshold.value, np.array([s.subtype for s in samples]))
    for name in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "recall_bacteria", "recall_virus"):
        assert report[name] == pytest.approx(recorded[name], abs=2e-3), name
    committed = read_test_predictions(committed_predictor.model_dir)
    by_file = dict(zip(committed.files, committed.probabilities))
    files = [s.path.relative_to(real_data_dir).as_posix() for s in samples]
    np.testing.assert_allclose(probabilities, [by_file[f] for f in files], atol=1e-3)


def test_committed_validation_split_is_the_seeded_patient_split_and_disjoint_from_training(
    committed_predictor, real_data_dir
):
    config = committed_predictor.metadata.training_config
    samples = discover_split(find_split(real_data_dir, "train"))
    fit, val = patient_split(samples, config["validation_fraction"], split_seed(config))
    assert not {s.patient for s in fit} & {s.patient for s in val}
    committed = read_validation_predictions(committed_predictor.model_dir)
    assert sorted(committed.files) == sorted(s.path.relative_to(real_data_dir).as_posix() for s in val)
    assert all(f.startswith("train/") for f in committed.files)
