"""Training end to end on tiny data, the saved bundle, the loader's checks, and batch prediction."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from conftest import TINY_SIZE, synthetic_xray
from PIL import Image

from pneumonia.config import METADATA_FILENAME, MODEL_FILENAME, MODELS_DIR, TrainConfig
from pneumonia.errors import ModelError
from pneumonia.io.bundle import read_metadata, read_test_predictions, read_validation_predictions
from pneumonia.io.dataset import sha256_file
from pneumonia.screening.predictor import load_predictor

pytestmark = pytest.mark.score_sensitive


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_calibration_and_threshold_come_from_validation_and_its_stress_copies(tiny_model_dir, tiny_data_dir):
    """Platt scaling is refitted here on the pooled logits, and the default threshold keeps pooled sensitivity >= 0.95."""
    from pneumonia.io.dataset import load_images
    from pneumonia.model.network import logits_of
    from pneumonia.training.stress import stress_shifts
    from pneumonia.training.train import fit_calibration

    predictor = load_predictor(tiny_model_dir, with_gate=False)
    validation = read_validation_predictions(tiny_model_dir)
    images = load_images([tiny_data_dir / f for f in validation.files], predictor.image_size)
    pooled = np.concatenate([images, *stress_shifts(images).values()])
    labels = np.tile(validation.labels, 7)
    logits = np.asarray(logits_of(predictor.model).predict(pooled, verbose=0)).reshape(-1)
    temperature, bias = fit_calibration(logits, labels)
    calibration = predictor.metadata.calibration
    assert calibration["temperature"] == pytest.approx(temperature, rel=1e-3)
    assert calibration["bias"] == pytest.approx(bias, rel=1e-3, abs=1e-3)
    probabilities = predictor.predict_arrays(pooled)
    positives = probabilities[labels == 1]
    assert np.mean(positives >= predictor.default_threshold.value - 1e-6) >= 0.95
    assert np.mean(positives >= predictor.default_threshold.value + 1e-4) < 0.95 + 1 / positives.size  # the highest such threshold


def test_training_writes_a_complete_bundle(tiny_model_dir):
    metadata = read_metadata(tiny_model_dir)
    assert metadata["model_sha256"] == sha256_file(tiny_model_dir / MODEL_FILENAME)
    assert metadata["input"]["size"] == TINY_SIZE and metadata["classes"] == ["NORMAL", "PNEUMONIA"]
    assert metadata["threshold"]["chosen_on"] == "validation and its 6 stress-shifted copies, pooled"
    assert {p["name"] for p in metadata["threshold"]["presets"]} == {"default", "max_f1", "youden", "sensitivity_99"}
    assert metadata["training"]["train_manifest_sha256"] and metadata["training"]["n_validation"] > 0
    assert metadata["calibration"]["temperature"] > 0
    for split in ("validation", "test"):
        assert 0.0 <= metadata["metrics"][split]["auc"] <= 1.0
    assert "intervals_95" in metadata["metrics"]["test"]
    assert (tiny_model_dir / "training_history.csv").read_text().startswith("epoch,")
    test = read_test_predictions(tiny_model_dir)
    assert len(test.files) == 16 and set(test.subtypes) == {"normal", "bacteria", "virus"}
    assert all(f.startswith("test/") for f in test.files)
    validation = read_validation_predictions(tiny_model_dir)
    assert not set(validation.files) & set(test.files)


def applied_rules(metadata: dict) -> dict:
    """The rules the shipped threshold came from: a recalibration's when there was one, else training's."""
    if "recalibration" in metadata:
        return metadata["recalibration"]["rules"]
    return {key: metadata["training"]["config"][key] for key in ("target_sensitivity", "calibration_pool")}


@pytest.mark.parametrize("bundle", ["tiny", "committed"])
def test_default_threshold_meets_the_rule_it_was_chosen_by(bundle, request):
    """Pooled sensitivity over validation and its stress copies, from the recorded per-copy sensitivities
    (every copy holds the same pneumonias), meets the recorded target; the rule's text says the same."""
    model_dir = request.getfixturevalue("tiny_model_dir") if bundle == "tiny" else MODELS_DIR
    metadata = read_metadata(model_dir)
    rules = applied_rules(metadata)
    assert rules["calibration_pool"] == "validation+stress"
    target, threshold = rules["target_sensitivity"], metadata["threshold"]["default"]
    assert metadata["threshold"]["rule"] == (
        f"highest threshold with sensitivity >= {target:.2f} on validation and its 6 stress-shifted copies, pooled "
        "(screening: few misses)"
    )
    val = read_validation_predictions(model_dir)
    clean = np.mean(val.probabilities[val.labels == 1] >= threshold)
    recorded = metadata["metrics"]["validation"]
    assert recorded["threshold"] == threshold and recorded["sensitivity"] == pytest.approx(clean)
    shifted = [v["sensitivity"] for v in recorded["stress"].values() if isinstance(v, dict)]
    assert len(shifted) == 6 and np.mean([clean, *shifted]) >= target


def test_predictions_are_probabilities_and_batching_does_not_change_them(tiny_predictor):
    images = np.stack([synthetic_xray(i % 2, 100 + i, size=TINY_SIZE).astype(np.float32) for i in range(10)])
    together = tiny_predictor.predict_arrays(images)
    one_by_one = np.concatenate([tiny_predictor.predict_arrays(images[i : i + 1]) for i in range(10)])
    in_threes = tiny_predictor.predict_arrays(images, batch_size=3)
    assert together.shape == (10,)
    assert np.all((together >= 0) & (together <= 1))
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(together, in_threes, atol=1e-5)


def test_screen_reports_bad_files_and_scores_the_rest_in_one_batch(tiny_predictor):
    good = _png(synthetic_xray(1, 5))
    results = tiny_predictor.screen([("a.png", good), ("broken.png", b"garbage"), ("b.png", good)], use_gate=False)
    assert [r.name for r in results] == ["a.png", "broken.png", "b.png"]
    assert results[1].probability is None and results[1].status == "refused"
    assert results[1].reason.startswith("not an image file this app can read")
    assert results[0].probability == pytest.approx(results[2].probability)
    assert results[0].probability == pytest.approx(tiny_predictor.predict_bytes(good), abs=1e-5)  # float32, batch-size dependent
    assert results[0].label(0.0) == "PNEUMONIA" and results[0].label(1.01) == "NORMAL"
    gated = tiny_predictor.screen([("a.png", good)])[0]
    assert gated.probability is None or gated.probability == pytest.approx(results[0].probability, abs=1e-5)


def test_loader_rejects_a_changed_model_file(tiny_model_dir, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    with open(copy / MODEL_FILENAME, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelError, match="SHA-256 .* metadata records .*`python -m pneumonia train"):
        load_predictor(copy)


def test_loader_reports_missing_model_and_metadata(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="No model metadata .*`python -m pneumonia train"):
        load_predictor(tmp_path)
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    (copy / MODEL_FILENAME).unlink()
    with pytest.raises(ModelError, match="is missing"):
        load_predictor(copy)


def test_loader_rejects_an_unloadable_model_with_a_matching_hash(tiny_model_dir, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    (copy / MODEL_FILENAME).write_bytes(b"not a keras archive")
    metadata = json.loads((copy / METADATA_FILENAME).read_text())
    metadata["model_sha256"] = sha256_file(copy / MODEL_FILENAME)
    (copy / METADATA_FILENAME).write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="Could not load"):
        load_predictor(copy)


def test_loader_rejects_metadata_with_the_wrong_input_size(tiny_model_dir, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    metadata = json.loads((copy / METADATA_FILENAME).read_text())
    metadata["input"]["size"] = TINY_SIZE * 2
    (copy / METADATA_FILENAME).write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="takes inputs"):
        load_predictor(copy)


def test_device_is_reported(tiny_predictor):
    assert tiny_predictor.device.startswith(("CPU", "GPU"))


def test_recalibration_from_train_alone_reproduces_the_bundle(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    from pneumonia.training.train import recalibrate

    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    before = read_metadata(copy)
    command = f"python -m pneumonia calibrate --data {tiny_data_dir} --model-dir {copy}"
    after = recalibrate(tiny_data_dir, copy, command=command)  # the CLI passes its command line; sys.argv is not read
    today = {"target_sensitivity": TrainConfig.target_sensitivity, "calibration_pool": TrainConfig.calibration_pool}
    assert read_metadata(copy)["recalibration"] == after["recalibration"] == {
        "command": command,
        "rules": today,
        "replaces": {key: before["training"]["config"][key] for key in today},
        "date": after["created"],
    }
    assert after["calibration"]["temperature"] == pytest.approx(before["calibration"]["temperature"], rel=1e-3)
    assert after["calibration"]["bias"] == pytest.approx(before["calibration"]["bias"], abs=1e-3)
    assert after["threshold"]["default"] == pytest.approx(before["threshold"]["default"], abs=1e-4)
    assert "test" not in after["metrics"], "test metrics of the old calibration must not survive"
    predictor = load_predictor(copy)
    validation = read_validation_predictions(copy)
    images = np.stack([predictor.decode(tiny_data_dir / f) for f in validation.files])
    np.testing.assert_allclose(predictor.predict_arrays(images), validation.probabilities, atol=1e-5)


def test_recalibration_refuses_other_data(tiny_model_dir, tmp_path):
    from conftest import write_kaggle_tree

    from pneumonia.errors import DataError
    from pneumonia.training.train import recalibrate

    other = write_kaggle_tree(tmp_path / "other", patients_per_class=5)
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    with pytest.raises(DataError, match="not the data this model was trained on"):
        recalibrate(other, copy)


def test_stress_shifts_are_fixed_valid_images_that_change_the_input():
    from pneumonia.training.stress import stress_report, stress_shifts

    images = np.stack([synthetic_xray(i % 2, 200 + i, size=TINY_SIZE).astype(np.float32) for i in range(6)])[..., None]
    shifts = stress_shifts(images)
    assert set(shifts) == {"gamma_0.6", "gamma_1.6", "low_contrast", "blur", "noise", "half_resolution"}
    for name, shifted in shifts.items():
        assert shifted.shape == images.shape and shifted.dtype == np.float32, name
        assert shifted.min() >= 0.0 and shifted.max() <= 255.0, name
        assert np.abs(shifted - images).mean() > 0.5, name
    assert np.all(shifts["gamma_0.6"] >= images - 1e-3)  # gamma < 1 brightens every pixel
    assert np.array_equal(stress_shifts(images)["noise"], shifts["noise"])  # seeded

    labels = np.array([0, 1, 0, 1, 0, 1])
    report = stress_report(lambda x: x.mean(axis=(1, 2, 3)) / 255.0, images, labels, 0.5)
    per_shift = [report[name]["specificity"] for name in shifts]
    assert report["mean_specificity"] == pytest.approx(np.mean(per_shift))


def test_the_test_only_perturbation_moves_scores_by_the_amount_and_with_the_batch_size(tiny_predictor, monkeypatch):
    from pneumonia.config import PERTURB_ENV_VAR

    images = np.stack([synthetic_xray(i % 2, 80 + i, TINY_SIZE).astype(np.float32) for i in range(4)])
    monkeypatch.delenv(PERTURB_ENV_VAR, raising=False)
    clean = tiny_predictor.predict_arrays(images)
    monkeypatch.setenv(PERTURB_ENV_VAR, "1e-6")
    moved = tiny_predictor.predict_arrays(images)
    np.testing.assert_allclose(np.abs(moved - clean), 1e-6, rtol=0.2)  # every score moved, by about the amount
    alone = np.array([tiny_predictor.predict_arrays(image[None])[0] for image in images])
    assert not np.array_equal(alone, moved)  # as on a real CPU, a score depends on the size of its batch
    _, through_features = tiny_predictor.features_and_probabilities(images, tiny_predictor.gate.config.feature_layers)
    np.testing.assert_allclose(through_features, moved, atol=1e-6)  # the gate's path is moved the same way
