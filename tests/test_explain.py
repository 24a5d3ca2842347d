"""LIME and Grad-CAM: lime-exact sampling and fitting, determinism, maps and overlays."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_xray

from pneumonia.explain.maps import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    LimeExplanation,
    LimeSettings,
    explain_lime,
    fit_surrogate,
    grad_cam,
    heatmap_overlay,
    hide_image,
    lime_heatmap,
    lime_overlay,
    log_odds,
    map_agreement,
    perturbation_masks,
    perturbed_images,
    score_masks,
    segment_image,
)
from pneumonia.io.dataset import discover_split, find_split

FAST = LimeSettings(num_samples=120, n_segments=12, batch_size=50)


@pytest.fixture(scope="module")
def tiny_image(tiny_predictor) -> np.ndarray:
    return synthetic_xray(1, seed=5, size=tiny_predictor.image_size).astype(np.float32)


def quadrant_explanation(weights) -> LimeExplanation:
    """A 40x40 image split into four 20x20 superpixels numbered row by row."""
    segments = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 20, axis=0), 20, axis=1)
    return LimeExplanation(segments, np.asarray(weights, dtype=float), probability=0.5, score=0.9)


def test_same_seed_same_weights_other_seed_other_weights(tiny_predictor, tiny_image):
    first = explain_lime(tiny_predictor, tiny_image, FAST)
    again = explain_lime(tiny_predictor, tiny_image, FAST)
    other = explain_lime(tiny_predictor, tiny_image, LimeSettings(**{**FAST.__dict__, "seed": 1}))
    assert np.array_equal(first.weights, again.weights)
    assert np.array_equal(first.segments, other.segments)
    assert not np.allclose(first.weights, other.weights)


def test_explanation_fields_are_consistent(tiny_predictor, tiny_image):
    fractions: list[float] = []
    explanation = explain_lime(tiny_predictor, tiny_image, FAST, progress=fractions.append)
    n = int(explanation.segments.max()) + 1
    assert explanation.segments.shape == tiny_image.shape
    assert set(np.unique(explanation.segments)) == set(range(n))
    assert explanation.weights.shape == (n,)
    assert explanation.probability == pytest.approx(float(tiny_predictor.predict_arrays(tiny_image[None])[0]), abs=1e-5)
    assert 0.0 <= explanation.score <= 1.0
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 3  # 120 samples / 50


def test_log_odds_are_the_calibrated_probability_before_the_sigmoid(tiny_predictor):
    images = np.stack([synthetic_xray(label, seed=40 + label, size=tiny_predictor.image_size) for label in (0, 1)])
    scores = log_odds(tiny_predictor, images.astype(np.float32), batch_size=1)
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), tiny_predictor.predict_arrays(images), atol=1e-6)


def lime_masks(random_state: np.random.RandomState, num_samples: int, n_features: int) -> np.ndarray:
    """lime's own independent draws (`LimeImageExplainer.data_labels`): a fair coin per superpixel, row 0 all on."""
    masks = random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
    masks[0, :] = 1
    return masks


def test_masks_are_lime_coins_in_antithetic_pairs():
    masks = perturbation_masks(np.random.RandomState(5), 101, 12)
    coins = np.random.RandomState(5).randint(0, 2, 50 * 12).reshape(50, 12)
    assert masks.shape == (101, 12) and set(np.unique(masks)) == {0, 1}
    assert (masks[0] == 1).all()
    np.testing.assert_array_equal(masks[1::2], coins)
    np.testing.assert_array_equal(masks[2::2], 1 - coins)
    assert (masks[1:].sum(axis=0) == 50).all()  # every superpixel is on in exactly half of the samples
    # An even count drops the last complement but keeps the prefix: fewer samples are a prefix of more.
    np.testing.assert_array_equal(perturbation_masks(np.random.RandomState(5), 40, 12), masks[:40])


def test_perturbations_equal_lime_data_labels(tiny_image):
    """The vectorised images are exactly those lime's own loop builds for the same masks."""
    from lime.lime_image import LimeImageExplainer
    from skimage.color import gray2rgb

    segments = segment_image(tiny_image, 12)
    hidden = hide_image(tiny_image, segments)
    seen: list[np.ndarray] = []

    def record(batch):
        seen.append(batch.copy())
        return np.zeros((len(batch), 2))

    drawn, _ = LimeImageExplainer(random_state=3).data_labels(
        gray2rgb(tiny_image), gray2rgb(hidden), segments, record, num_samples=57, batch_size=10
    )
    lime_images = np.concatenate(seen)
    ours = perturbed_images(tiny_image, hidden, segments, drawn)

    assert np.array_equal(drawn, lime_masks(np.random.RandomState(3), 57, int(segments.max()) + 1))
    assert np.array_equal(np.repeat(ours[..., None], 3, axis=-1), lime_images)


def test_surrogate_equals_lime_explain_instance(tiny_predictor, tiny_image):
    """Same segments, hide image and lime's own samples: our scoring and surrogate give LimeImageExplainer's weights."""
    from lime.lime_image import LimeImageExplainer

    segments = segment_image(tiny_image, 12)
    hidden = hide_image(tiny_image, segments)

    def classifier(rgb_batch):
        scores = log_odds(tiny_predictor, rgb_batch[..., 0], batch_size=10)
        return np.column_stack([-scores, scores])

    lime_result = LimeImageExplainer(random_state=7).explain_instance(
        tiny_image, classifier, labels=(1,), top_labels=None, num_samples=90, batch_size=10,
        segmentation_fn=lambda _: segments, random_seed=0,
    )
    lime_weights = np.zeros(segments.max() + 1)
    for feature, weight in lime_result.local_exp[1]:
        lime_weights[feature] = weight

    explainer = LimeImageExplainer(random_state=7)
    masks = lime_masks(explainer.random_state, 90, segments.max() + 1)
    scores = score_masks(tiny_predictor, tiny_image, hidden, segments, masks, batch_size=10)
    weights, score = fit_surrogate(explainer, masks, scores)

    assert np.abs(lime_weights).max() > 0
    np.testing.assert_allclose(weights, lime_weights, rtol=1e-6, atol=1e-9 * np.abs(lime_weights).max())
    assert score == pytest.approx(lime_result.score, rel=1e-6)


def test_hide_image_fills_each_superpixel_with_its_mean(tiny_image):
    """Never black: a removed superpixel keeps its density (as lime's hide_color=None), loses its texture."""
    segments = segment_image(tiny_image, 12)
    hidden = hide_image(tiny_image, segments)
    assert hidden.dtype == np.float32 and hidden.shape == tiny_image.shape
    for segment in range(segments.max() + 1):
        inside = segments == segment
        assert np.ptp(hidden[inside]) == 0
        assert hidden[inside][0] == pytest.approx(tiny_image[inside].mean(), rel=1e-5)


def test_superpixels_follow_an_edge():
    """A sharp rib-like edge off the SLIC grid: no superpixel should straddle it."""
    image = np.full((64, 64), 60.0, dtype=np.float32)
    image[:, 27:] = 190.0
    segments = segment_image(image, 16)
    assert 8 <= segments.max() + 1 <= 32
    for segment in range(segments.max() + 1):
        bright_share = (image[segments == segment] > 100).mean()
        assert bright_share < 0.05 or bright_share > 0.95


def test_settings_and_input_are_checked(tiny_predictor):
    with pytest.raises(ValueError):
        LimeSettings(num_samples=1)
    with pytest.raises(ValueError, match="grey image"):
        explain_lime(tiny_predictor, np.zeros((10, 10)), FAST)


def test_top_segments_order_and_sign():
    explanation = LimeExplanation(np.zeros((2, 3), int), np.array([0.1, -0.5, 0.3, 0.0, -0.2, 0.7]), 0.5, 1.0)
    assert explanation.top_segments(2).tolist() == [5, 2]
    assert explanation.top_segments(10).tolist() == [5, 2, 0]  # only weights that really push that way
    assert explanation.top_segments(2, sign=-1).tolist() == [1, 4]
    with pytest.raises(ValueError):
        explanation.top_segments(2, sign=0)


def test_lime_heatmap_paints_each_superpixel_with_its_weight():
    explanation = quadrant_explanation([0.3, -0.2, 0.0, 0.1])
    heat = lime_heatmap(explanation)
    assert heat.shape == (40, 40)
    assert heat[5, 5] == 0.3 and heat[5, 35] == -0.2 and heat[35, 5] == 0.0 and heat[35, 35] == 0.1


def test_lime_overlay_tints_top_regions_and_leaves_the_rest_grey():
    image = np.full((40, 40), 128.0, dtype=np.float32)
    overlay = lime_overlay(image, quadrant_explanation([0.3, -0.2, 0.0, 0.1]), top_k=1)
    assert overlay.shape == (40, 40, 3) and overlay.dtype == np.uint8
    red, blue = overlay[10, 10].astype(int), overlay[10, 30].astype(int)
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    assert overlay[30, 10].tolist() == [128, 128, 128]  # zero weight
    assert overlay[30, 30].tolist() == [128, 128, 128]  # positive, but not in the top 1
    assert overlay[10, 19].tolist() == np.round(POSITIVE_RGB * 255).tolist()  # outlined in solid colour
    assert overlay[10, 20].tolist() == np.round(NEGATIVE_RGB * 255).tolist()


def test_heatmap_overlay_colours():
    image = np.full((40, 40), 128.0, dtype=np.float32)
    heat = np.zeros((40, 40))
    heat[:20] = 1.0
    overlay = heatmap_overlay(image, heat)
    assert overlay.shape == (40, 40, 3) and overlay.dtype == np.uint8
    assert overlay[5, 5, 0] > overlay[5, 5, 2] + 50  # hot is red in jet
    assert overlay[35, 5, 2] > overlay[35, 5, 0] + 50  # cold is blue
    signed = heatmap_overlay(image, np.where(heat > 0, 0.5, -0.5))
    assert signed[5, 5, 0] > signed[5, 5, 2] and signed[35, 5, 2] > signed[35, 5, 0]
    with pytest.raises(ValueError):
        heatmap_overlay(image, heat[:10])


def test_map_agreement_range():
    rng = np.random.default_rng(0)
    cam = rng.random((32, 32))
    others = [rng.random((32, 32)), cam**2 + rng.normal(0, 0.1, cam.shape), -cam]
    assert map_agreement(cam, cam) == pytest.approx(1.0)
    assert map_agreement(cam, -cam) == pytest.approx(-1.0)
    assert abs(map_agreement(cam, others[0])) < 0.1
    assert all(map_agreement(cam, other) < map_agreement(cam, cam) for other in others)
    assert map_agreement(cam, np.zeros_like(cam)) == 0.0


def reference_grad_cam(model, image: np.ndarray) -> np.ndarray:
    """Textbook Grad-CAM with one tape over [conv activation, logit], for comparison."""
    import keras
    import tensorflow as tf
    from skimage.transform import resize

    from pneumonia.model.network import last_conv_layer_name

    conv = model.get_layer(last_conv_layer_name(model)).output
    both = keras.Model(model.input, [conv, model.get_layer("logit").output])
    with tf.GradientTape() as tape:
        activation, logit = both(image[None, ..., None], training=False)
    gradients = tape.gradient(logit, activation).numpy()[0]
    cam = np.maximum((activation.numpy()[0] * gradients.mean(axis=(0, 1))).sum(axis=-1), 0)
    cam = resize(cam, image.shape, order=1)
    return cam / cam.max()


def test_grad_cam_matches_textbook_computation(tiny_predictor, tiny_image):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the reference uses tf.GradientTape")
    cam = grad_cam(tiny_predictor, tiny_image)
    reference = reference_grad_cam(tiny_predictor.model, tiny_image)
    assert cam.shape == tiny_image.shape and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    assert np.corrcoef(cam.ravel(), reference.ravel())[0, 1] > 0.98


@pytest.fixture(scope="module")
def real_pneumonia_image(real_data_dir, committed_predictor) -> np.ndarray:
    samples = [s for s in discover_split(find_split(real_data_dir, "test")) if s.label == 1]
    return committed_predictor.decode(samples[0].path)


@pytest.mark.integration
def test_grad_cam_on_a_real_radiograph(committed_predictor, real_pneumonia_image):
    cam = grad_cam(committed_predictor, real_pneumonia_image)
    size = committed_predictor.image_size
    assert cam.shape == (size, size)
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    assert cam.std() > 0.05


@pytest.mark.integration
def test_lime_on_a_real_radiograph_finds_what_matters(committed_predictor, real_pneumonia_image):
    """Hiding the five superpixels LIME ranks highest lowers P(pneumonia) more than hiding the weakest five."""
    image = real_pneumonia_image
    settings = LimeSettings(num_samples=300)
    explanation = explain_lime(committed_predictor, image, settings)
    n = explanation.weights.size
    assert abs(n - settings.n_segments) <= settings.n_segments // 2
    assert explanation.probability > 0.5
    hidden = hide_image(image, explanation.segments)

    def without(segment_ids) -> float:
        mask = np.ones((1, n), dtype=int)
        mask[0, segment_ids] = 0
        return float(committed_predictor.predict_arrays(perturbed_images(image, hidden, explanation.segments, mask))[0])

    top = explanation.top_segments(5)
    weakest = np.argsort(np.abs(explanation.weights))[:5]
    assert len(top) == 5
    assert explanation.probability - without(top) > explanation.probability - without(weakest) + 0.01


def test_lime_forward_pass_keeps_no_memory_across_keras_session_clears(committed_predictor):
    """Streamlit calls keras.backend.clear_session() after every script run. LIME's compiled forward pass is
    rebuilt after each clear; as an XLA function each rebuild kept about 0.25 MB for good (the app's memory
    creep, docs/reliability.md), as a plain graph it keeps next to nothing."""
    import keras

    def resident_mb() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

    images = np.full((4, committed_predictor.image_size, committed_predictor.image_size), 128.0, np.float32)
    for _ in range(10):  # past the first rebuilds' one-off allocations
        keras.backend.clear_session(free_memory=False)
        log_odds(committed_predictor, images, batch_size=4)
    before = resident_mb()
    for _ in range(60):
        keras.backend.clear_session(free_memory=False)
        log_odds(committed_predictor, images, batch_size=4)
    assert resident_mb() - before < 6.0
