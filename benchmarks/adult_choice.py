# ruff: noqa: E702, E731, E741  (a one-off analysis script, kept as it ran)
"""Step 2: the 12 adult-caution settings (block 3, 4, 5 grids x 32, 64, 128 components or none) at the 99.5%
validation quantile, each with how many of the 24 adult development films it flags (the gate's other rules aside).
Reads only build/features_{train,adult}.npz; the test split is not touched. Block 3 with 64 components flagged
the most (17/24, tied with 128 components; the smaller was taken) and ships."""
import sys

import numpy as np

sys.path.insert(0, ".")
from pathlib import Path

from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from pneumonia.io.bundle import read_metadata
from pneumonia.io.dataset import discover_split, find_split, patient_split, split_seed

saved = read_metadata(Path("models"))["training"]["config"]
samples = discover_split(find_split(Path("/work/shared/data/chest_xray"), "train"))
fit_s, val_s = patient_split(samples, saved["validation_fraction"], split_seed(saved))
tr, ad = np.load("build/features_train.npz"), np.load("build/features_adult.npz")
names = list(tr["names"])
idx = {str(p): i for i, p in enumerate(tr["paths"])}
fi = np.array([idx[str(s.path)] for s in fit_s]); vi = np.array([idx[str(s.path)] for s in val_s])
labels = np.array([s.label for s in fit_s])
get = lambda z, k: np.log1p(np.maximum(z[f"f{names.index(k)}"].reshape(len(z["paths"]), -1).astype(np.float64), 0))
for key in ["block3_relu_grid", "block4_relu_grid", "block5_relu_grid"]:
    X, A = get(tr, key), get(ad, key)
    for k in (32, 64, 128, None):
        F = X[fi]
        if k:
            pca = PCA(k, random_state=0).fit(F)
            T = pca.transform
        else:
            T = lambda a: a
        Ft = T(F)
        means = np.stack([Ft[labels == c].mean(0) for c in (0, 1)])
        P = LedoitWolf(assume_centered=True).fit(Ft - means[labels]).precision_
        d = lambda a: np.einsum("ncd,de,nce->nc", T(a)[:, None] - means[None], P, T(a)[:, None] - means[None]).min(1)
        v, a = d(X[vi]), d(A)
        th = np.quantile(v, 0.995)
        print(f"{key:18s} pca={k} val>th {np.mean(v > th):.3%} adult {int((a > th).sum())}/24")
