"""The per-image PDF report: every field as extractable text, the one-page refusal, no DICOM identifiers,
threshold provenance, report names that never clash, and `python -m pneumonia report`."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pypdf
import pytest
from conftest import synthetic_xray
from inputs import PHI, dicom_bytes, encode, twelve_bit
from PIL import Image

from pneumonia.cli import main
from pneumonia.config import ASSETS_DIR
from pneumonia.explain.maps import LimeSettings
from pneumonia.formatting import format_probability
from pneumonia.reports.pdf import (
    CREATOR,
    TECHNICAL_HEADING,
    image_report,
    report_file_names,
)
from pneumonia.threshold import Threshold, ThresholdSource
from pneumonia.wording import HELD_OUT_FILMS, STATUS_WORDS

FAST = LimeSettings(num_samples=60, n_segments=12, batch_size=60)
CREATED = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)


def xray_png(label: int, seed: int) -> bytes:
    return encode(Image.fromarray(synthetic_xray(label, seed, size=256)), "PNG")


def colour_png() -> bytes:
    return encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)), "PNG")


def pdf_text(data: bytes) -> tuple[int, str]:
    """(pages, text with runs of whitespace made single spaces, so wrapped lines read as one)."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def screened(tiny_predictor):
    inputs = [("ward7_secret/xray.png", xray_png(1, 3)), ("photo.png", colour_png())]
    scored, refused = tiny_predictor.screen(inputs, keep_images=True)
    assert scored.status != "refused" and refused.status == "refused"
    return scored, refused


def test_scored_report_carries_every_field(tiny_predictor, screened):
    screening = screened[0]
    metadata = tiny_predictor.metadata
    threshold = tiny_predictor.default_threshold
    data = image_report(tiny_predictor, screening, threshold, FAST, created=CREATED)
    assert data.startswith(b"%PDF")
    pages, text = pdf_text(data)
    assert pages <= 2
    assert "File: xray.png" in text and "ward7_secret" not in text
    assert f"Input check: {STATUS_WORDS[screening.status]}" in text
    assert flat(screening.reason) in text
    assert f"P(pneumonia): {format_probability(screening.probability, threshold)}" in text
    assert f"Label: {screening.label(threshold)} at threshold {threshold.text}" in text
    assert flat(f"Threshold {threshold.text}: {threshold.provenance}") in text
    technical = text.split(TECHNICAL_HEADING)[1]
    assert flat(f"Threshold rule as recorded: {metadata.threshold_rule}, chosen on validation") in technical
    assert "LIME:" in text and "Grad-CAM:" in text
    assert "LIME picks" in text and "Labelled " in text
    assert "LIME and Grad-CAM" in text or "Grad-CAM found no evidence" in text
    assert f"package version {metadata.package_version}, created {metadata.created}" in text
    assert metadata.model_sha256 in text
    assert f"Report created (UTC): {CREATED.isoformat(timespec='seconds')}" in text
    assert "Not a medical device" in text and "not for diagnosis" in text
    assert "Kermany, Zhang, Goldbaum (2018)" in text and "Mendeley Data v2" in text
    assert "doi:10.17632/rscbjbr9sj.2" in text and "CC BY 4.0" in text
    info = pypdf.PdfReader(io.BytesIO(data)).metadata
    assert info.title == "Pneumonia screening report: xray.png" and info.creator == CREATOR


def test_refused_report_is_one_page_without_a_score(tiny_predictor, screened):
    screening = screened[1]
    metadata = tiny_predictor.metadata
    data = image_report(tiny_predictor, screening, Threshold.by_hand(0.5), FAST, created=CREATED)
    pages, text = pdf_text(data)
    assert pages == 1
    assert "Not scored" in text and flat(screening.reason) in text
    assert "P(pneumonia)" not in text and "Label:" not in text and "Grad-CAM:" not in text
    assert "The image as read" in text
    assert metadata.model_sha256 in text and CREATED.isoformat(timespec="seconds") in text
    assert "Not a medical device" in text and "doi:10.17632/rscbjbr9sj.2" in text and "CC BY 4.0" in text


def test_unreadable_file_says_no_image(tiny_predictor):
    (screening,) = tiny_predictor.screen([("broken.png", b"not an image")], keep_images=True)
    _, text = pdf_text(image_report(tiny_predictor, screening, Threshold.by_hand(0.5), FAST, created=CREATED))
    assert "no image could be read" in text and "Not scored" in text and flat(screening.reason) in text


def test_dicom_report_shows_safe_facts_and_no_identifiers(tiny_predictor):
    data = dicom_bytes(twelve_bit(synthetic_xray(1, 9, size=256)), view="LL")
    (screening,) = tiny_predictor.screen([("study.dcm", data)], keep_images=True)
    report = image_report(tiny_predictor, screening, Threshold.by_hand(0.5), FAST, created=CREATED)
    _, text = pdf_text(report)
    assert "view LL" in text and "age 1–5 years" in text
    for value in PHI.values():
        assert value not in text and value.encode() not in report


def test_naive_created_time_is_taken_as_utc_and_default_is_now(tiny_predictor, screened):
    naive = dt.datetime(2026, 3, 4, 5, 6, 7)
    _, text = pdf_text(image_report(tiny_predictor, screened[1], Threshold.by_hand(0.5), created=naive))
    assert "2026-03-04T05:06:07+00:00" in text
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    _, text = pdf_text(image_report(tiny_predictor, screened[1], Threshold.by_hand(0.5)))
    stamp = text.split("Report created (UTC): ")[1].split()[0]
    assert before <= dt.datetime.fromisoformat(stamp) <= dt.datetime.now(dt.timezone.utc)


METADATA_THRESHOLD = {
    "default": 0.811070442199707,
    "rule": "highest threshold with validation sensitivity >= 0.97 (screening: few misses)",
    "chosen_on": "validation",
    "presets": [{"name": "default", "threshold": 0.811070442199707,
                 "rule": "highest threshold with validation sensitivity >= 0.97 (screening: few misses)"},
                {"name": "max_f1", "threshold": 0.3742328882217407, "rule": "maximises F1 on validation"}],
}


def test_a_threshold_names_the_default_a_preset_or_hand():
    default = Threshold.model_default(METADATA_THRESHOLD)
    from_preset, max_f1 = (Threshold.from_preset(p, default_entry=METADATA_THRESHOLD)
                           for p in METADATA_THRESHOLD["presets"])
    assert default.provenance == (
        "the model's default, the highest threshold that still catches at least 97 in 100 pneumonias, on "
        f"{HELD_OUT_FILMS}"
    )
    assert from_preset == default  # the metadata's "default" preset is the model's default, not a second source
    assert max_f1.provenance == (
        f"preset \u201cBalance PPV and sensitivity\u201d, the best balance of finding pneumonias against flagging "
        f"children who are well, on {HELD_OUT_FILMS}"
    )
    assert default.recorded_rule == (
        "highest threshold with validation sensitivity >= 0.97 (screening: few misses), chosen on validation"
    )
    assert max_f1.recorded_rule == "preset max_f1: maximises F1 on validation"
    assert max_f1.value == 0.3742328882217407 and max_f1.text == "0.3742328882217407"  # printed as applied
    by_hand = Threshold.by_hand(0.5)
    assert (by_hand.provenance, by_hand.recorded_rule) == ("set by hand in the app", "")
    assert Threshold.by_hand(0.5, "set with --threshold").provenance == "set with --threshold"
    # Two thresholds with one value but different sources stay apart: nothing matches floats to find a source.
    assert Threshold.by_hand(max_f1.value) != max_f1


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf")])
def test_a_threshold_outside_0_to_1_is_refused(value):
    with pytest.raises(ValueError, match="between 0 and 1"):
        Threshold.by_hand(value)


SITE_PRESET = {"name": "site", "threshold": 0.97, "rule": "site-derived: flags 3 of 30 of the site's normal films",
               "n_films": 30, "n_flagged": 3, "max_flagged": 0.10}
COST_PRESET = {"name": "cost", "threshold": 0.42, "rule": "minimises expected cost", "prevalence": 0.05,
               "cost_ratio": 20.0}


def test_a_site_or_cost_threshold_names_its_rule_with_its_numbers(tiny_predictor, screened):
    site = Threshold.from_preset(SITE_PRESET, ThresholdSource.SITE)
    cost = Threshold.from_preset(COST_PRESET, ThresholdSource.COST)
    words = ("preset \u201cYour site's normal films\u201d, flags 3 of 30 of your site's own normal films (10.0%; at "
             "most 10% asked)")
    assert site.provenance == words
    assert cost.provenance == (
        "preset \u201cLowest cost\u201d, the fewest expected harms when pneumonia affects 5% of children and a missed "
        "pneumonia counts as 20 false alarms"
    )
    _, text = pdf_text(image_report(tiny_predictor, screened[0], site, FAST, created=CREATED))
    assert f"Threshold 0.970: {words}. A score at or above it is labelled PNEUMONIA." in text
    assert "Threshold rule as recorded: preset site: site-derived: flags 3 of 30" in text


def test_pdf_title_and_text_carry_the_name_they_are_given(tiny_predictor, screened):
    """The PDF has no name of its own: it carries the screening's name in its text and its title, so a caller that
    passes a pseudonym leaks no file name into either."""
    import dataclasses

    renamed = dataclasses.replace(screened[1], name="3fa2b9c1_2")
    data = image_report(tiny_predictor, renamed, tiny_predictor.default_threshold, FAST, created=CREATED)
    _, text = pdf_text(data)
    assert "File: 3fa2b9c1_2" in text and "photo" not in text
    assert pypdf.PdfReader(io.BytesIO(data)).metadata.title == "Pneumonia screening report: 3fa2b9c1_2"


def test_report_names_never_clash():
    paths = [Path("d/a.png"), Path("d/a.jpg"), Path("d/b.png"), Path("e/a.png"), Path("d/B.dcm"), Path("d/c")]
    assert report_file_names(paths) == ["a.png.pdf", "a.jpg.pdf", "b.png.pdf", "a.png-2.pdf", "B.dcm.pdf", "c.pdf"]


def test_cli_writes_one_report_per_input(tiny_predictor, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "one.png").write_bytes(xray_png(0, 11))
    (folder / "two.png").write_bytes(xray_png(1, 12))
    (folder / "two.jpg").write_bytes(encode(Image.fromarray(synthetic_xray(1, 13, size=256)), "JPEG"))
    (folder / "photo.png").write_bytes(colour_png())
    names = ["one.png", "photo.png", "two.jpg", "two.png"]
    expected = tiny_predictor.screen([(str(folder / n), folder / n) for n in names])
    out = tmp_path / "reports"

    args = ["report", str(folder), "--out", str(out), "--model-dir", str(tiny_predictor.model_dir)]
    assert main([*args, "--names"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["one.pdf", "photo.pdf", "two.jpg.pdf", "two.png.pdf"]
    lines = captured.out.splitlines()
    assert len(lines) == 4
    refused = sum(s.status == "refused" for s in expected)
    assert refused >= 1
    assert f"4 reports in {out}: {4 - refused} scored, {refused} refused; threshold" in captured.err
    for name, screening, line in zip(["one.pdf", "photo.pdf", "two.jpg.pdf", "two.png.pdf"], expected, lines):
        pages, text = pdf_text((out / name).read_bytes())
        assert line.startswith(f"{out / name}  ({screening.status}, ")
        assert f"File: {Path(screening.name).name}" in text
        if screening.status == "refused":
            assert pages == 1 and "Not scored" in text and "P(pneumonia)" not in text
        else:
            assert f"P(pneumonia): {format_probability(screening.probability)}" in text


def test_cli_reports_use_pseudonyms_unless_names_are_asked_for(tiny_predictor, tmp_path, capsys):
    """By default no file name reaches a report's file name, its text or its title: each is called by its
    SHA-256's first 8 hex digits and its place in the list. With --names, a UID or the DICOM's own patient name
    in a file name is still replaced."""
    import hashlib

    folder = tmp_path / "in"
    folder.mkdir()
    films = {"DOE_JANE_chest.png": xray_png(0, 21), "1.2.840.113619.2.55.3.604688.dcm": dicom_bytes(
        twelve_bit(synthetic_xray(1, 22, size=256))), "SMITH_chest.dcm": dicom_bytes(
        twelve_bit(synthetic_xray(1, 23, size=256))), "bed12_film.png": xray_png(1, 24)}
    for name, data in films.items():
        (folder / name).write_bytes(data)
    files = sorted(folder.iterdir())  # the order expand_inputs lists them in
    codes = [f"{hashlib.sha256(p.read_bytes()).hexdigest()[:8]}_{i}" for i, p in enumerate(files, start=1)]
    out = tmp_path / "reports"
    args = ["report", str(folder), "--out", str(out), "--model-dir", str(tiny_predictor.model_dir)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{c}.pdf" for c in codes)
    for code in codes:
        data = (out / f"{code}.pdf").read_bytes()
        _, text = pdf_text(data)
        title = pypdf.PdfReader(io.BytesIO(data)).metadata.title
        assert f"File: {code}" in text and title.endswith(code)
        for name in films:
            assert Path(name).stem not in text and Path(name).stem not in title
    capsys.readouterr()

    named = tmp_path / "named"
    assert main([*args[:3], str(named), *args[4:], "--names"]) == 0
    phi_name = PHI["PatientName"].split("^")[0]  # the DICOM's own patient name, planted by dicom_bytes
    (folder / f"{phi_name}_chest.dcm").write_bytes(films["SMITH_chest.dcm"])
    assert sorted(p.name for p in named.iterdir()) == sorted(
        ["DOE_JANE_chest.pdf", f"{codes[0]}.pdf", "SMITH_chest.pdf", "bed12_film.pdf"])  # the UID never shows
    again = tmp_path / "again"
    assert main([*args[:3], str(again), *args[4:], "--names"]) == 0
    names = sorted(p.name for p in again.iterdir())
    assert len(names) == 5 and f"{phi_name}_chest.pdf" not in names  # the DICOM's own patient name: replaced
    assert "DOE_JANE_chest.pdf" in names  # a PNG carries no patient name to check against


def test_cli_threshold_by_hand_is_named_so(tiny_predictor, screened, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(xray_png(1, 3))  # the image the `screened` fixture checks is scored
    out = tmp_path / "reports"
    args = ["report", str(tmp_path / "x.png"), "--names", "--out", str(out), "--threshold", "0.123456",
            "--model-dir", str(tiny_predictor.model_dir)]
    assert main(args) == 0
    _, text = pdf_text((out / "x.pdf").read_bytes())
    assert "Threshold 0.123456: set with --threshold." in text  # exactly as applied, never rounded
    assert main([*args[:-4], "--threshold", "2", "--model-dir", str(tiny_predictor.model_dir)]) == 2
    assert "--threshold must lie in [0, 1]" in capsys.readouterr().err


@pytest.mark.integration
def test_report_on_a_committed_sample(committed_predictor):
    path = ASSETS_DIR / "samples" / "bacterial_person100_bacteria_475.jpeg"
    (screening,) = committed_predictor.screen([(str(path), path)], keep_images=True)
    threshold = committed_predictor.default_threshold
    data = image_report(committed_predictor, screening, threshold, created=CREATED)
    pages, text = pdf_text(data)
    assert pages == 1 and screening.status == "ok"
    assert f"P(pneumonia): {format_probability(screening.probability, threshold)}" in text
    assert f"Label: PNEUMONIA at threshold {threshold.text}" in text
    rule = committed_predictor.metadata.threshold_rule
    assert f"Threshold {threshold.text}: the model's default, the highest threshold that still catches at least 95" in text
    assert f"Threshold rule as recorded: {rule[:40]}" in text.split(TECHNICAL_HEADING)[1]
    assert committed_predictor.metadata.model_sha256 in text
    assert "LIME picks" in text and "The presets label it" in text
