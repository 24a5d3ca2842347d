"""The README's numbers and the model card come from the committed metadata, not from a keyboard."""

from __future__ import annotations

from pneumonia.cli import main
from pneumonia.config import MODELS_DIR, REPO_DIR
from pneumonia.io.bundle import read_metadata, read_model_metadata
from pneumonia.reports.model_card import RESULTS_BEGIN, RESULTS_END, model_card, results_table


def test_readme_results_match_the_committed_metadata():
    readme = (REPO_DIR / "README.md").read_text()
    block = readme.split(RESULTS_BEGIN, 1)[1].split(RESULTS_END, 1)[0].strip()
    assert block == results_table(read_model_metadata(MODELS_DIR)), "run: python -m pneumonia card --readme README.md"


def test_committed_model_card_is_current():
    card = (REPO_DIR / "docs" / "model_card.md").read_text()
    assert card == model_card(read_model_metadata(MODELS_DIR)), "run: python -m pneumonia card --out docs/model_card.md"


def test_card_reports_test_metrics_with_intervals(tiny_model_dir, tmp_path, capsys):
    assert main(["card", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path / "card.md")]) == 0
    card = (tmp_path / "card.md").read_text()
    test = read_metadata(tiny_model_dir)["metrics"]["test"]
    low, high = test["intervals_95"]["auc"]
    assert f"| ROC AUC | {test['auc']:.3f} | {low:.3f}–{high:.3f} |" in card
    assert "Not a medical device" in card


def test_card_names_the_rules_that_made_the_threshold(tiny_model_dir):
    """training.config keeps the rules of the training run; the card says when a recalibration replaced them."""
    committed = read_model_metadata(MODELS_DIR)
    block = committed.recalibration
    assert block["rules"] == {"target_sensitivity": 0.95, "calibration_pool": "validation+stress"}
    assert block["replaces"]["target_sensitivity"] == committed.training_config["target_sensitivity"] == 0.97
    assert f">= {block['rules']['target_sensitivity']:.2f} on validation and its 6" in committed.threshold_rule
    card = model_card(committed)
    assert f"Recalibrated on {block['date'][:10]} by `{block['command']}`" in card
    assert "sensitivity 0.95 on the `validation+stress` pool, replacing the run's own 0.97 on `validation`" in card
    assert "Calibration and thresholds are the training run's own." in model_card(read_model_metadata(tiny_model_dir))
