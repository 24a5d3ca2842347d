# ruff: noqa: E702, E731, E741  (a one-off analysis script, kept as it ran)
"""The next step for the adult caution on this branch (issue 30): a cascade that keeps the gate's cost. The network's
own block-3 grid distance (main's adult caution, models/pneumonia_adult.npz on main, passed as --prescreen) costs
nothing extra; only the films it finds beyond a pooled validation quantile go on to the Lite0 backbone (this branch's
caution). Prints, per prescreen quantile, the share of validation children (clean and stress copies) that would pay
for the backbone and how many of the 24 adult films the cascade still tells. Reads cached features only (train/ and
the adult films: `python benchmarks/adult_features.py` on main, `python benchmarks/adult_backbone.py`).

    git show main:models/pneumonia_adult.npz > /tmp/prescreen.npz
    python benchmarks/adult_cascade.py --prescreen /tmp/prescreen.npz

Printed on 2026-12-03: at the 90% quantile 10.0% of the children go on and 24/24 adults pass the prescreen, so the
cascade tells 22/24 (as the backbone alone does, DICOM included); at 95%, 5.0% and 20/24."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from pneumonia.io.dataset import discover_split, find_split, patient_split, split_seed

prescreen = np.load(sys.argv[sys.argv.index("--prescreen") + 1])
saved = json.loads(Path("models/pneumonia_cnn.json").read_text())
config = saved["training"]["config"]
samples = discover_split(find_split(Path("/work/shared/data/chest_xray"), "train"))
_, val_s = patient_split(samples, config["validation_fraction"], split_seed(config))
tr, ad, st = np.load("build/features_train.npz"), np.load("build/features_adult.npz"), np.load("build/features_stress.npz")
names = list(tr["names"]); index = {str(p): i for i, p in enumerate(tr["paths"])}
vi = np.array([index[str(s.path)] for s in val_s])
key = "block3_relu_grid"; log = lambda a: np.log1p(np.maximum(a.astype(np.float64), 0))


def distance(arrays, features):
    projected = (features - arrays["centre"].astype(np.float64)) @ arrays["components"].astype(np.float64).T
    centred = projected[:, None, :] - arrays["means"][None]
    return np.einsum("ncd,de,nce->nc", centred, arrays["precision"], centred).min(1)


pool = np.concatenate([distance(prescreen, log(tr[f"f{names.index(key)}"][vi])), distance(prescreen, log(st[key]))])
network_adult = distance(prescreen, log(ad[f"f{names.index(key)}"]))
backbone = np.load("models/pneumonia_adult.npz")
backbone_far = distance(backbone, np.load("build/features_lite0_224.npz")["adult_1"].astype(np.float64)) > \
    saved["gate"]["adult"]["threshold"]
print(f"backbone alone tells {backbone_far.sum()}/24")
for q in (0.8, 0.9, 0.95, 0.98):
    t = np.quantile(pool, q); past = network_adult > t
    print(f"prescreen at the pooled {q:.0%} quantile: children sent on {np.mean(pool > t):.1%}; adults past it "
          f"{past.sum()}/24; the cascade tells {(past & backbone_far).sum()}/24")
