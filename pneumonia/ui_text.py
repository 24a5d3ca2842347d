"""The app's longer prose, kept apart from its layout so wording can be reviewed in one place.

Numbers never appear here: the app fills them in from the model's metadata and prediction files.
"""

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

THRESHOLD_HELP = (
    "Scores at or above the threshold are called PNEUMONIA. The same threshold applies on every page; "
    "changing it relabels images without re-running the model."
)

EXPLAIN_INTRO = (
    "**LIME** splits the X-ray into superpixels, hides random subsets of them, and fits a linear model to how "
    "the score changes: red regions push the score towards pneumonia, blue ones away. **Grad-CAM** shows where "
    "the last convolutional layer found evidence *for* pneumonia. Two methods that agree are more convincing "
    "than one; neither proves the model looked at the right thing for the right reason."
)

LIME_SETTINGS_HELP = (
    "More samples give steadier weights but take longer; more superpixels give finer regions that each need "
    "more samples. The seed is fixed, so the same settings always give the same picture."
)

AGREEMENT_HELP = (
    "Spearman rank correlation between the LIME weight map and the Grad-CAM map over pixels: 1 means they rank "
    "the image's regions in the same order, 0 unrelated, -1 reversed."
)

TEST_VS_VALIDATION = (
    "Everything below is measured on the **official test split**, which played no part in training or in "
    "choosing a threshold. The presets were computed on the **validation** split (carved out of the training "
    "images by patient, with stress-shifted copies of it for the model's own presets) or, for a site-derived "
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
    "mixes both classes; nothing is stored beyond this browser session."
)

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
