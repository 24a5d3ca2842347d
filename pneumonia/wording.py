"""The words a clinician reads, in one place: page prose, the gate's reasons, status words, preset names and
rules, the queue line, the score's honesty line, the About summary and the explanation readout's sentences.
The app, the PDF and the gate take their wording from here, so a word changes once. Statistics and their
names stay out of these texts; they go in "How this is computed" expanders (tests/test_plain_words.py).

Numbers never appear here: the app fills them in from the model's metadata and prediction files.
"""

import re

from pneumonia.formatting import format_percent, format_threshold

SIDEBAR_DISCLAIMER = "Research/teaching demo, **not a medical device**; do not use for diagnosis."

SCREEN_DISCLAIMER = (
    "Teaching demo, **not a medical device**. The scores come from a small CNN trained on children's "
    "X-rays from one hospital; do not use them to diagnose or treat anyone."
)

UPLOAD_HELP = (
    "Files stay in this app's memory and are never written to disk. Adult, lateral, or non-chest images "
    "are outside what the model has seen, so their scores mean little."
)

SAMPLES_HELP = (
    "Images from the test split of Kermany, Zhang and Goldbaum (2018), CC BY 4.0; "
    "see assets/samples/ATTRIBUTION.md."
)

SHOW_NAMES = "Show file names in reports"

SHOW_NAMES_HELP = (
    "Off: the table, the CSV, the reports and their file names call each file by a code made from its content "
    "and its place in the upload (such as 3fa2b9c1_2), because hospital file names often carry the patient's "
    "name or number. On: the file names are used instead, except a name that is a DICOM UID or contains the "
    "patient's name or ID from the file itself."
)

KEPT_UPLOADS = "Still here from earlier in this session (in memory only): {count} uploaded file{s}"

THRESHOLD_HELP = (
    "Scores at or above the threshold are called PNEUMONIA. The same threshold applies on every page; "
    "changing it relabels images without re-running the model."
)

# ---------------------------------------------------------------- words for results, presets and reasons

STATUS_WORDS = {"ok": "ok", "caution": "caution", "refused": "not scored", "unchecked": "not checked"}
"""What a card and the results table call each of the gate's verdicts."""

OK_LINE = "ok: nothing unusual found in this file"

PRESET_NAMES = {
    "default": "Model default",
    "max_f1": "Balance PPV and sensitivity",
    "youden": "Balance sensitivity and specificity",
    "sensitivity_95": "Catch 95 in 100",
    "sensitivity_99": "Catch 99 in 100",
    "cost": "Lowest cost",
    "site": "Your site's normal films",
}
"""Button and report names of the threshold presets; their technical rules go under "How this is computed"."""

HELD_OUT_FILMS = "films held out from training, and copies of them altered to look like other X-ray machines' films"


def preset_name(name: str) -> str:
    return PRESET_NAMES.get(name, name.replace("_", " "))


def plain_rule(preset: dict) -> str:
    """What a preset's threshold does, in a clinician's words; the rule as recorded stays for the expander."""
    name, rule = preset["name"], preset.get("rule", "")
    target = re.search(r"sensitivity >= (0\.\d+)", rule)
    if target:
        return (f"the highest threshold that still catches at least {round(float(target.group(1)) * 100)} in 100 "
                f"pneumonias, on {HELD_OUT_FILMS}")
    if name == "max_f1":
        return f"the best balance of finding pneumonias against flagging children who are well, on {HELD_OUT_FILMS}"
    if name == "youden":
        return f"the best balance of sensitivity and specificity, on {HELD_OUT_FILMS}"
    if name == "cost":
        return (f"the fewest expected harms when pneumonia affects {preset['prevalence']:.0%} of children and a "
                f"missed pneumonia counts as {preset['cost_ratio']:g} false alarms")
    if name == "site":
        flagged, films = preset["n_flagged"], preset["n_films"]
        return (f"flags {flagged} of {films} of your site's own normal films ({format_percent(flagged / films)}; "
                f"at most {preset['max_flagged']:.0%} asked)")
    return rule


def score_honesty(ece: float) -> str:
    """The score's trustworthiness as a chance, without the statistic's name (issue 16 item 7)."""
    return (f"The score is tuned to read as a chance of pneumonia on films like the training ones; on the test "
            f"hospital's films it was off by about {ece:.2f} on average, so read it as a ranking more than an exact chance.")


def about_summary(training, counts: dict | None) -> str:
    """The About page's first lines: what the model is (from its training record) and how it did, in a
    clinician's words."""
    lines = [
        "**What it is.** A small neural network that reads one frontal chest X-ray of a child and gives a score "
        f"for pneumonia. It learned from {training['n_fit']:,} films of {training['n_fit_patients']:,} children "
        "aged one to five from one hospital in China. It is a teaching demo, **not a medical device**."
    ]
    if counts:
        lines.append(
            f"**How it did on {counts['pneumonias'] + counts['normals']} test films it had never seen.** At its "
            f"default threshold ({format_threshold(counts['threshold'])}) it caught {counts['caught']} of {counts['pneumonias']} "
            f"pneumonias and cleared {counts['cleared']} of {counts['normals']} healthy children: about "
            f"{round(10 * (counts['normals'] - counts['cleared']) / counts['normals'])} in 10 healthy children "
            "were flagged."
        )
    lines.append("**Where it fails.** Adults, lateral views, other hospitals' machines and other diseases were never "
                 "seen; see *Use* at the bottom of this page.")
    return "\n\n".join(lines)


GATE_SUMMARY = (
    "Before scoring, every file is checked. Files that cannot be read, colour pictures, blank images, documents, "
    "screenshots, negatives and films that look nothing like the training X-rays are **not scored**, with the "
    "reason and what to check. Films that are scored but differ from the training films (a small image, another "
    "view or body part, an adult) carry a **caution**."
)


QUEUE_LINE = "{what}: waiting for the model, {ahead} ahead"

EXPORT_AGAIN = "export the file again from the viewer or PACS"
"""What a damaged or self-contradicting file's reason tells the reader to do."""

REASONS = {
    "colour": "a colour picture, not an X-ray film: radiographs are grey; check that the right file was chosen",
    "blank": "the image is blank or almost uniform: check the file, or the window and level it was exported with",
    "noise": ("looks like a photograph, a document or a screenshot, not an X-ray film (sharp detail everywhere, "
              "where a radiograph has smooth shading): check that the right file was chosen"),
    "document": "looks like a document or a screenshot, not an X-ray film: check that the right file was chosen",
    "border": ("a wide black border: {share} of the image is pure black, more than on almost every film the "
               "model learned from; if this is an X-ray film, crop it to the chest (or export it again without the "
               "border) and send it again; if not, check that the right file was chosen"),
    "negative": ("looks like a negative image (lungs light, bones dark): the file may be tagged MONOCHROME1 by "
                 "mistake; check how it was exported, or invert it, and send it again"),
    "not_chest": ("does not look like the children's chest X-rays the model learned from: check it is a frontal "
                  "chest film, not a lateral view, another body part, a CT slice or a photo of a screen, and whether "
                  "the head, arms or belly fill much of it or a stripe or marker runs along an edge; crop it to the "
                  "chest if so"),
    "not_chest_border": ("looks like a radiograph, but unlike the children's chest X-rays the model learned from, "
                         "and {share} of it is a pure black border: crop the film to the chest and send it again; "
                         "check it is a frontal chest film"),
    "unusual": ("unusual film: less like the training X-rays than almost every film held out from training; "
                "check the view, the exposure and any text or devices on the film"),
}
"""The gate's reasons: each names the likely cause and the check to make."""


ADULT_LOOK = ("looks like an adult's chest film: the model was trained on children aged 1–5 years; check the "
              "patient's age on the request or the film's label, and for an adult or an older child do not rely on "
              "the score")
"""The adult caution for a film that carries no age (pneumonia.screening.adult_caution)."""


def age_caution(band: str, trained: str) -> str:
    who = "adult patient" if band.startswith("adult") else f"patient aged {band}"
    return f"{who}: the model was trained on children aged {trained}; check the patient's age before reading the score"


EXPLAIN_INTRO = (
    "**LIME** cuts the X-ray into patches, hides random sets of them and watches how the score changes: red "
    "patches push the score towards pneumonia, blue ones away. **Grad-CAM** shows where the network's last "
    "layers found evidence *for* pneumonia. Two methods that point to the same areas are more convincing than "
    "one; neither proves the model looked at the right thing for the right reason."
)

LIME_SETTINGS_HELP = (
    "More samples give steadier weights but take longer; more superpixels give finer regions that each need "
    "more samples. The seed is fixed, so the same settings always give the same picture."
)

AGREEMENT_HELP = (
    "Spearman rank correlation between the LIME weight map and the Grad-CAM map over pixels: 1 means they rank "
    "the image's regions in the same order, 0 unrelated, -1 reversed. The readout says the maps point to the "
    "same areas from 0.50, partly from 0.20, and to different areas below that."
)

TEST_VS_VALIDATION = (
    "Everything below is measured on the **official test split**, which played no part in training or in "
    "choosing a threshold. The presets were computed on the **validation** split (films held out from training, "
    "by patient, and for the model's own presets copies of them altered to look like other machines' films) or, "
    "for a site-derived "
    "one, on your own normal films, so picking one here is fair; tuning the slider until the test numbers look "
    "best is not."
)

DATA = """
**Source.** Kermany, Daniel; Zhang, Kang; Goldbaum, Michael (2018), *Labeled Optical Coherence Tomography (OCT)
and Chest X-Ray Images for Classification*, Mendeley Data, v2,
[doi:10.17632/rscbjbr9sj.2](https://doi.org/10.17632/rscbjbr9sj.2), licensed
[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/).

**Population.** Anterior-posterior chest X-rays of children aged one to five, taken in routine care at
Guangzhou Women and Children's Medical Center. Pneumonia images are labelled bacterial or viral in their file names.

**Copies used here.** Every image was resized to 224x224 pixels (aspect ratio not kept) and stored as JPEG; the
model resizes again to its own input size. The official train/test split is kept; the validation split is carved
out of the training images by patient, so no child appears on both sides.
"""

INTENDED_USE = """
**Intended use.** Teaching and demonstration: how a screening classifier behaves, what a threshold trades, and how
to read explanations critically. It is **not a medical device** and must not be used to diagnose, triage, or
treat anyone.

**Known limits.**
- *One hospital, one population.* Children aged one to five from a single centre; adults, other age groups,
  other scanners, lateral views, and other diseases were never seen. Scores on such images are not meaningful.
- *Dataset shift.* Accuracy measured here will not carry over to another hospital's images without re-validation;
  image size, exposure, and equipment differences can shift scores silently.
- *Labels.* Labels come from the data set's graders, not from follow-up; the test split is small, so the 95%
  intervals are wide.
- *Explanations.* LIME and Grad-CAM show what moved the score, not why the disease is present; models can rely on
  markers, text, or positioning rather than the lungs.
"""

READER_INTRO = (
    "Read first, then reveal. Each test X-ray appears without its label or score. Commit NORMAL or PNEUMONIA "
    "(and, if you like, how sure you are); the page then shows the model's score and label, the truth and both "
    "explanation maps. A tally compares you with the model on the same cases. Cases come in a seeded order that "
    "mixes both classes. Your place and calls are kept in this page's address, so a reload carries on where you "
    "were; nothing is stored on the server."
)

READER_CODE_BAD = ("The reading code in this page's address could not be read (it may be cut short or from an "
                   "older version), so reading starts again at case 1.")

READER_MAPS_NOTE = (
    "The maps are computed on the 224-pixel copy shown here; the score is the model's recorded score on the "
    "original test image."
)

READER_ROC_NOTE = (
    "The curve is the model's ROC on the whole test set; the dots are the model's and your operating points on "
    "the cases you read. With confidences, your own ROC curve appears: each confidence level is a threshold."
)

PREVALENCE_HELP = (
    "How common pneumonia is among the children you screen. The test set's share is far higher than in most "
    "clinics; predictive values (PPV, NPV) depend on it, sensitivity and specificity do not."
)

COST_RATIO_HELP = (
    "How many false alarms you would accept to avoid one missed pneumonia. Together with the prevalence it "
    "defines the cost-minimising threshold, computed on the validation split and offered as a preset."
)

SITE_CALIBRATION_HELP = (
    "A threshold chosen on this data set's validation split flags many more healthy children on films from "
    "another machine. Bring 20 or more of your own films known to be normal and choose the share of them you "
    "accept to flag: the threshold follows from their scores, and the line below gives its price in "
    "sensitivity on the validation pneumonias. The films are scored in memory and dropped; only the threshold "
    "and how it was derived stay, for this session. The test-set numbers below stay as they are: they are not "
    "your site's."
)

CHEST_OUTLINE = (
    "Green line: the chest as found on this film from its grey levels (the two lung fields and what lies "
    "between them). The readout says so when most of a method's evidence lies outside it."
)

CHEST_OUTLINE_FALLBACK = (
    "Green line: the centre of the film, standing in for the chest because the lungs could not be outlined on "
    "this film. The readout says so when most of a method's evidence lies outside it."
)

# ---------------------------------------------------------------- the explanation readout

STABILITY_SENTENCES = {
    "stable": "LIME picks much the same top {top_k} regions each time it is rerun ({seeds} runs): its map is steady.",
    "fairly stable": ("LIME picks partly the same top {top_k} regions when it is rerun ({seeds} runs): its map is "
                      "fairly steady."),
    "unstable": ("LIME picks different top {top_k} regions each time it is rerun ({seeds} runs): its map depends on "
                 "chance, so read it with care; more samples steady it."),
}
"""How much LIME's picture depends on chance, by band (pneumonia.explain.readout picks the band)."""

AGREEMENT_SENTENCES = {
    "same": "LIME and Grad-CAM point to the same areas, so each backs up the other.",
    "partly": "LIME and Grad-CAM point partly to the same areas, so they back each other up only in part.",
    "different": "LIME and Grad-CAM point to different areas, so neither backs up the other; read both with care.",
    "opposite": ("LIME and Grad-CAM point to opposite areas: what one marks as evidence, the other marks least, so "
                 "neither backs up the other; read both with care."),
}
"""Whether the two maps point to the same areas, by band (pneumonia.explain.readout picks the band)."""

NO_GRAD_CAM_EVIDENCE = "Grad-CAM found no evidence for PNEUMONIA in this image, so it cannot back up LIME."

OUTSIDE_CHEST = ("Most of {who} evidence lies {where}, near the edge of the film where markers and text sit, or in "
                 "the neck or belly: the score may rest on something other than the lungs.")
OUTSIDE_WHERE = {True: "outside the chest",
                 False: "away from the centre of the film (the lungs could not be outlined)"}
"""Where the evidence lies, by whether the lung fields were found (pneumonia.explain.chest_region)."""
