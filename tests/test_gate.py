"""The input gate: fixed rules, image statistics, the Mahalanobis score, fitting, saving and screening.

Units use hand-made images and a tiny model trained in a fixture; the committed gate is checked on
real radiographs, photographs shipped with scikit-image and DICOMs written here.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_xray
from inputs import dicom_bytes, encode, radiograph_grey, twelve_bit
from PIL import Image

from pneumonia.config import GATE_FILENAME, METADATA_FILENAME, GateConfig
from pneumonia.errors import ModelError
from pneumonia.io.images import InputImage
from pneumonia.screening.gate import (
    CAUTION,
    OK,
    REFUSED,
    Gate,
    image_statistics,
    load_gate,
    rule_verdict,
)
from pneumonia.training.gate_fit import fit_mahalanobis, fit_thresholds
from pneumonia.wording import REASONS

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "samples").glob("*.jpeg"))


def grey_image(height: int, width: int, facts: dict | None = None, value: float = 100.0) -> InputImage:
    return InputImage(np.full((height, width), value, np.float32), "PNG", 0.0, facts or {})


# ---------------------------------------------------------------- fixed rules


@pytest.mark.parametrize(
    "height, width, start",
    [
        (10, 10, "the image is too small to be a radiograph: 10x10 pixels"),
        (20, 20000, "the image has an extreme shape for a radiograph: 20000x20 pixels, 1000 times longer"),
        (300, 1000, "the image has an extreme shape for a radiograph: 1000x300 pixels, 3 times longer"),
    ],
)
def test_shape_rules_refuse(height, width, start):
    refusals, _ = rule_verdict(grey_image(height, width))
    assert len(refusals) == 1 and refusals[0].startswith(start)


def test_shape_rules_accept_ordinary_shapes_and_caution_low_resolution():
    assert rule_verdict(grey_image(1000, 2900)) == ([], [])  # 1:2.9 is a plausible radiograph
    refusals, cautions = rule_verdict(grey_image(150, 200))
    assert refusals == [] and cautions == [
        "low resolution: 200x150 pixels, smaller than the 224-pixel training images; send the original file "
        "rather than a thumbnail if there is one"
    ]


def test_dicom_facts_refuse_other_modalities_and_caution_outside_the_training_population():
    assert rule_verdict(grey_image(512, 512, {"modality": "CT"}))[0] == [
        "wrong kind of image: DICOM modality CT, but this model reads chest radiographs (CR, DX, DR)"
    ]
    typical = {"modality": "CR", "view": "AP", "body_part": "CHEST", "age_band": "1–5 years"}
    assert rule_verdict(grey_image(512, 512, typical)) == ([], [])
    _, cautions = rule_verdict(
        grey_image(512, 512, {"modality": "DX", "view": "LL", "body_part": "HAND", "age_band": "adult (18 or over)"})
    )
    assert cautions == [
        "view LL: the model was trained on frontal (AP/PA) views only; send the frontal film",
        "body part HAND: the model was trained on chest X-rays only; check that this is a chest film",
        "adult patient: the model was trained on children aged 1–5 years; check the patient's age before reading "
        "the score",
    ]


# ---------------------------------------------------------------- statistics and the learned score


def test_image_statistics_separate_blank_noise_documents_and_radiographs():
    rng = np.random.default_rng(0)
    xray = image_statistics(InputImage(synthetic_xray(0, 1, 96).astype(np.float32), "PNG", 0.0))
    blank = image_statistics(grey_image(64, 64, value=128))
    noise = image_statistics(InputImage(rng.integers(0, 256, (128, 128)).astype(np.float32), "PNG", 0.0))
    page = np.full((128, 128), 245, np.float32)
    page[10:14, 5:120] = 20
    page[30:34, 5:100] = 20
    document = image_statistics(InputImage(page, "PNG", 0.0))
    assert blank["std"] == 0.0 and xray["std"] > 20
    assert abs(noise["neighbour_correlation"]) < 0.05 and xray["neighbour_correlation"] > 0.9
    assert document["peak_share"] > 0.9 and xray["peak_share"] < 0.1


def test_statistics_are_computed_on_a_bounded_copy():
    big = InputImage(np.tile(np.arange(4000, dtype=np.float32) % 256, (3000, 1)), "PNG", 0.0)
    small = InputImage(big.grey[::16, ::16].copy(), "PNG", 0.0)
    assert image_statistics(big, side=256) == image_statistics(small, side=256)


def test_unusualness_is_the_scaled_distance_to_the_nearer_class_averaged_over_depths():
    means = [np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[0.0], [5.0]])]
    precisions = [np.eye(2), np.eye(1) * 4.0]
    gate = Gate(GateConfig(feature_layers=("a", "b")), {}, means, precisions, [2.0, 1.0])
    features = [np.array([[1.0, 1.0], [9.0, 0.0]]), np.array([[1.0], [4.0]])]
    # first: depth a min(2, 82)/2 = 1, depth b min(4*1, 4*16)/1 = 4 -> 2.5; second: min(82, 1)/2 = 0.5, 4/1 = 4 -> 2.25
    assert np.allclose(gate.unusualness(features), [2.5, 2.25])


def test_mahalanobis_fit_recovers_class_means_and_a_shared_precision():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 2000)
    features = rng.normal(0, [1.0, 3.0], (4000, 2)) + np.where(labels[:, None] == 1, [5.0, 0.0], [0.0, 0.0])
    means, precision = fit_mahalanobis(features, labels)
    assert np.allclose(means, [[0, 0], [5, 0]], atol=0.2)
    assert np.allclose(np.diag(precision), [1.0, 1 / 9], rtol=0.15)


def test_thresholds_refuse_at_most_the_chosen_share_of_validation_images():
    rng = np.random.default_rng(2)
    stats = [{"std": s, "neighbour_correlation": c, "peak_share": p, "saturation": 0.0}
             for s, c, p in zip(rng.uniform(20, 80, 1000), rng.uniform(0.9, 1.0, 1000), rng.uniform(0, 0.2, 1000))]
    unusual = rng.gamma(2.0, 0.5, 1000)
    config = GateConfig(statistic_refusal_rate=0.01, unusual_refusal_rate=0.02)
    t = fit_thresholds(config, stats, unusual)
    assert np.mean([s["std"] < t["std_min"] for s in stats]) <= 0.01
    assert np.mean([s["neighbour_correlation"] < t["neighbour_correlation_min"] for s in stats]) <= 0.01
    assert np.mean([s["peak_share"] > t["peak_share_max"] for s in stats]) <= 0.01
    assert np.mean(unusual > t["unusual_refuse"]) <= 0.02
    assert t["saturation_max"] == config.saturation_floor  # grey validation data never sets it below the floor


def test_judge_refuses_past_a_threshold_and_explains_with_the_numbers():
    thresholds = {"std_min": 5.0, "neighbour_correlation_min": 0.5, "peak_share_max": 0.5, "saturation_max": 0.05,
                  "unusual_refuse": 4.0, "unusual_caution": 4.0}
    gate = Gate(GateConfig(), thresholds, [], [], [])
    image = grey_image(512, 512)
    stats = {"std": 30.0, "neighbour_correlation": 0.95, "peak_share": 0.05, "saturation": 0.0}
    typical = gate.judge(image, stats, 1.0)
    assert typical.status == OK and typical.reason == ""
    far = gate.judge(image, stats, 7.25)
    assert far.status == REFUSED and far.reason == REASONS["not_chest"]
    negative = gate.verdict([], [], 7.25, inverted=1.0)
    assert negative.status == REFUSED and negative.reason == REASONS["negative"]
    assert gate.verdict([], [], 7.25, inverted=7.0).reason == REASONS["not_chest"]
    colour = gate.judge(image, {**stats, "saturation": 0.3}, 1.0)
    assert colour.status == REFUSED and colour.reason == REASONS["colour"]
    lateral = gate.judge(grey_image(512, 512, {"view": "LL"}), stats, 1.0)
    assert lateral.status == CAUTION and lateral.reason.startswith("view LL")


# ---------------------------------------------------------------- the tiny model's gate


def test_training_fits_a_gate_whose_thresholds_come_from_validation(tiny_model_dir, tiny_predictor):
    entry = json.loads((tiny_model_dir / METADATA_FILENAME).read_text())["gate"]
    assert entry["file"] == GATE_FILENAME and (tiny_model_dir / GATE_FILENAME).is_file()
    assert "validation split" in entry["thresholds_chosen_on"] and "fit split" in entry["fitted_on"]
    assert set(entry["validation"]) == {"clean", "gamma_0.6", "gamma_1.6", "low_contrast", "blur", "noise",
                                        "half_resolution"}
    assert tiny_predictor.gate is not None
    assert tiny_predictor.gate.thresholds == entry["thresholds"]


def test_adult_threshold_spares_the_stress_copies_too(tiny_model_dir):
    """The adult caution's quantile holds over validation and its stress copies pooled, as the gate's other
    thresholds do: a child's film from another machine must not be told it looks like an adult's."""
    entry = json.loads((tiny_model_dir / METADATA_FILENAME).read_text())["gate"]
    versions = entry["validation"].values()
    flagged = sum(v["looks_adult"] * v["n"] for v in versions)
    total = sum(v["n"] for v in versions)
    allowed = (1 - entry["adult"]["config"]["quantile"]) * total
    assert flagged <= allowed + 1, (flagged, total)
    assert "stress-shifted copies" in entry["adult"]["fitted_on"]


def test_screening_scores_radiographs_and_refuses_the_rest_without_a_probability(tiny_predictor):
    rng = np.random.default_rng(3)
    xray = encode(Image.fromarray(synthetic_xray(1, 11, size=256)), "PNG")
    colour = encode(Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)), "PNG")
    results = tiny_predictor.screen(
        [("xray.png", xray), ("colour.png", colour), ("broken.png", b"garbage"), ("tiny.png", encode(Image.new("L", (10, 10)), "PNG"))],
        keep_images=True,
    )
    assert [r.name for r in results] == ["xray.png", "colour.png", "broken.png", "tiny.png"]
    assert results[0].probability is not None and results[0].status in (OK, CAUTION)
    assert results[0].image.dtype == np.uint8 and results[0].model_input.shape == (32, 32)
    for refused in results[1:]:
        assert refused.status == REFUSED and refused.probability is None and refused.model_input is None
        assert refused.reason and "\n" not in refused.reason
    assert results[1].reason == REASONS["colour"]
    assert results[1].image is not None and results[2].image is None  # a readable refusal still shows its picture


def test_turning_the_gate_off_scores_everything_readable(tiny_predictor):
    colour = encode(Image.fromarray(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    result = tiny_predictor.screen([("colour.png", colour)], use_gate=False)[0]
    assert result.status == "unchecked" and result.probability is not None


def test_a_missing_or_altered_gate_names_the_command_that_fixes_it(tiny_model_dir, tmp_path):
    from pneumonia.screening.predictor import load_predictor

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    (copy / GATE_FILENAME).write_bytes(b"not the gate")
    with pytest.raises(ModelError, match="does not match its metadata hash; refit it with `python -m pneumonia fit-gate"):
        load_predictor(copy)
    (copy / GATE_FILENAME).unlink()
    with pytest.raises(ModelError, match="is missing"):
        load_predictor(copy)
    with pytest.raises(ModelError, match="has no input gate"):
        load_gate(copy, None)


def test_saved_gate_loads_back_identically(tiny_model_dir, tiny_predictor):
    entry = json.loads((tiny_model_dir / METADATA_FILENAME).read_text())["gate"]
    again = load_gate(tiny_model_dir, entry)
    features = [np.random.default_rng(5).normal(size=(3, m.shape[1])) for m in again.means]
    assert np.allclose(again.unusualness(features), tiny_predictor.gate.unusualness(features))
    assert dataclasses.asdict(again.config) == dataclasses.asdict(tiny_predictor.gate.config)


# ---------------------------------------------------------------- the committed gate (no data set needed)


@pytest.mark.integration
def test_committed_gate_scores_the_samples_and_refuses_photographs_documents_and_ct(committed_predictor):
    import skimage.data

    radiographs = [(p.name, p.read_bytes()) for p in SAMPLES]
    others = {
        "astronaut.jpg": encode(Image.fromarray(skimage.data.astronaut()), "JPEG"),
        "camera.png": encode(Image.fromarray(skimage.data.camera()), "PNG"),
        "page.png": encode(Image.fromarray(skimage.data.page()).resize((768, 382)), "PNG"),
        "noise.png": encode(Image.fromarray(np.random.default_rng(6).integers(0, 256, (400, 400), dtype=np.uint8)), "PNG"),
        "black.png": encode(Image.new("L", (400, 400)), "PNG"),
        "ct.dcm": dicom_bytes(twelve_bit(radiograph_grey(SAMPLES[0])), modality="CT"),
    }
    results = committed_predictor.screen(radiographs + list(others.items()))
    assert [r.status for r in results[: len(radiographs)]] == [OK] * len(radiographs)
    refused = {r.name: r for r in results[len(radiographs):]}
    assert all(r.status == REFUSED and r.probability is None for r in refused.values()), {
        n: r.status for n, r in refused.items()}
    assert refused["astronaut.jpg"].reason == REASONS["colour"]
    assert refused["ct.dcm"].reason.startswith("wrong kind of image: DICOM modality CT")


@pytest.mark.integration
def test_monochrome1_copy_scores_within_0_01_of_its_monochrome2_original(committed_predictor):
    for sample in SAMPLES:
        values = twelve_bit(radiograph_grey(sample))
        m2, m1 = committed_predictor.screen([
            ("m2.dcm", dicom_bytes(values)),
            ("m1.dcm", dicom_bytes(4095 - values, photometric="MONOCHROME1")),
        ])
        assert m2.status == m1.status == OK
        assert abs(m1.probability - m2.probability) <= 0.01
        plain = committed_predictor.predict_bytes(sample.read_bytes())
        assert abs(m2.probability - plain) <= 0.05  # a percentile window barely moves a standardised input


@pytest.mark.integration
def test_committed_gate_refuses_at_most_1_percent_of_validation_radiographs(committed_predictor, real_data_dir):
    """The gate itself screens the 746 validation radiographs; its rates must be the ones the metadata records."""
    from pneumonia.io.bundle import read_validation_predictions

    files = read_validation_predictions(committed_predictor.model_dir).files
    results = committed_predictor.screen((f, real_data_dir / f) for f in files)
    refused = np.mean([r.status == REFUSED for r in results])
    cautioned = np.mean([r.status == CAUTION for r in results])
    assert refused + cautioned <= 0.01
    validation = committed_predictor.metadata.gate["validation"]
    assert validation["clean"]["n"] == len(files)
    assert abs(refused - validation["clean"]["refused"]) <= 2 / len(files)  # borderline images may tip either way
    assert abs(cautioned - validation["clean"]["cautioned"]) <= 2 / len(files)
    assert np.mean([v["refused"] for v in validation.values()]) <= 0.01


@pytest.mark.integration
def test_a_negative_film_is_refused_as_a_negative_and_says_what_to_check(committed_predictor):
    """MONOCHROME1 written over MONOCHROME2 data: the reader inverts it, the film shows as a negative."""
    for sample in SAMPLES:
        values = twelve_bit(radiograph_grey(sample))
        (negative,) = committed_predictor.screen([("wrongly_tagged.dcm", dicom_bytes(values, photometric="MONOCHROME1"))])
        assert negative.status == REFUSED
        assert "negative image" in negative.reason and "MONOCHROME1" in negative.reason


@pytest.mark.integration
def test_a_photograph_is_not_called_a_negative(committed_predictor):
    from skimage import data

    for name, picture in (("camera", data.camera()), ("moon", data.moon())):
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        (item,) = committed_predictor.screen([(f"{name}.png", buffer.getvalue())])
        assert item.status == REFUSED and "negative" not in item.reason, (name, item.reason)


def padded_film(sample: Path, black: float) -> bytes:
    """A real film inside a pure black frame covering about `black` of the image (padding or shutters)."""
    grey = radiograph_grey(sample).astype(np.uint8)
    height, width = grey.shape
    pad = int(round((np.sqrt(1 / (1 - black)) - 1) * max(height, width) / 2))
    framed = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
    framed[pad:pad + height, pad:pad + width] = np.maximum(grey, 3)
    return encode(Image.fromarray(framed), "PNG")


def test_a_grey_film_with_a_black_border_is_never_called_a_document_and_the_border_is_named():
    """Issue 30: a bacterial pneumonia test film with a wide black border was told it "looks like a document or a
    screenshot". The few-grey-levels rule still refuses it, with the border as its reason."""
    gate = Gate(GateConfig(), {"std_min": 1.0, "neighbour_correlation_min": 0.5, "peak_share_max": 0.236,
                               "saturation_max": 0.04, "unusual_refuse": 4.0, "unusual_caution": 4.0}, [], [], [])
    from pneumonia.io.images import read_input

    image = read_input(padded_film(SAMPLES[0], 0.3))
    refusals, _ = gate.precheck(image, image_statistics(image))
    assert len(refusals) == 1 and "document" not in refusals[0] and "screenshot" not in refusals[0]
    assert refusals[0].startswith("a wide black border: 3") and "crop it to the chest" in refusals[0]
    page = read_input(encode(Image.fromarray(np.where(np.arange(400)[:, None] % 40 < 30, 255, 0).astype(np.uint8)
                                             .repeat(1, 1) * np.ones((1, 300), np.uint8)), "PNG"))
    refusals, _ = gate.precheck(page, image_statistics(page))  # mostly white: still a document
    assert refusals == [REASONS["document"]]
    unusual = gate.verdict([], [], 9.0, None, np.zeros((128, 128), np.float32) + np.eye(128, dtype=np.float32) * 200)
    assert unusual.status == REFUSED and unusual.reason.startswith("looks like a radiograph, but unlike")
    assert gate.verdict([], [], 9.0, None, np.full((128, 128), 90.0, np.float32)).reason == REASONS["not_chest"]


@pytest.mark.integration
def test_committed_gate_names_the_border_of_a_framed_sample(committed_predictor):
    for sample in SAMPLES[:2]:
        (item,) = committed_predictor.screen([("framed.png", padded_film(sample, 0.3))])
        assert "document" not in item.reason and "screenshot" not in item.reason, item.reason
        if item.status == REFUSED:
            assert "black border" in item.reason
