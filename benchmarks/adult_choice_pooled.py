# ruff: noqa: E702, E731, E741  (a one-off analysis script, kept as it ran)
"""Step 3 of choosing the adult caution's setting (issue 30, after the threshold moved to validation and its stress
copies pooled): for each feature setting, the threshold at the 99.5% and 99.9% quantiles of validation plus its six
stress copies, and how many of the 24 adult development films each flags. Reads train/ (fit split, validation and its
stress copies) and the adult films only; the test split is not touched. Needs build/features_{train,adult}.npz
(`python benchmarks/adult_features.py`); caches the stress copies' features in build/features_stress.npz."""
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
import keras
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from pneumonia.io.bundle import read_metadata
from pneumonia.io.dataset import discover_split, find_split, patient_split, split_seed
from pneumonia.io.images import read_input, to_model_input
from pneumonia.screening.predictor import load_predictor
from pneumonia.training.stress import stress_shifts

saved = read_metadata(Path("models"))["training"]["config"]
samples = discover_split(find_split(Path("/work/shared/data/chest_xray"), "train"))
fit_s, val_s = patient_split(samples, saved["validation_fraction"], split_seed(saved))
tr, ad = np.load("build/features_train.npz"), np.load("build/features_adult.npz")
names = list(tr["names"])
keys = [n for n in names if n.endswith("_grid")]
cache = Path("build/features_stress.npz")
if not cache.is_file():
    p = load_predictor("models", with_gate=False)
    outs = []
    for key in keys:
        out = p.model.get_layer(key.removesuffix("_grid")).output
        k = max(1, out.shape[1] // 3)
        outs.append(keras.layers.Flatten()(keras.layers.AveragePooling2D(pool_size=k, strides=k)(out)))
    fm = keras.Model(p.model.input, outs)
    originals = [read_input(s.path) for s in val_s]
    clean = np.stack([im.grey for im in originals])[..., None]
    parts = {key: [] for key in keys}
    for grey in stress_shifts(clean).values():
        inputs = np.stack([to_model_input(dataclasses.replace(im, grey=g[..., 0]).grey, p.image_size)
                           for im, g in zip(originals, grey)]).astype(np.float32)[..., None]
        for s in range(0, len(inputs), 64):
            for key, o in zip(keys, fm(inputs[s:s + 64], training=False)):
                parts[key].append(keras.ops.convert_to_numpy(o))
    np.savez(cache, **{key: np.concatenate(v) for key, v in parts.items()})
st = np.load(cache)
idx = {str(p): i for i, p in enumerate(tr["paths"])}
fi = np.array([idx[str(s.path)] for s in fit_s]); vi = np.array([idx[str(s.path)] for s in val_s])
labels = np.array([s.label for s in fit_s])
log = lambda a: np.log1p(np.maximum(a.reshape(len(a), -1).astype(np.float64), 0))
for key in keys:
    X, A, S = log(tr[f"f{names.index(key)}"]), log(ad[f"f{names.index(key)}"]), log(st[key])
    for k in (32, 64, 128, None):
        F = X[fi]
        T = PCA(k, random_state=0).fit(F).transform if k else (lambda a: a)
        Ft = T(F)
        means = np.stack([Ft[labels == c].mean(0) for c in (0, 1)])
        P = LedoitWolf(assume_centered=True).fit(Ft - means[labels]).precision_
        d = lambda a: np.einsum("ncd,de,nce->nc", T(a)[:, None] - means[None], P, T(a)[:, None] - means[None]).min(1)
        pooled, a = np.concatenate([d(X[vi]), d(S)]), d(A)
        told = {q: int((a > np.quantile(pooled, q)).sum()) for q in (0.995, 0.999)}
        print(f"{key:18s} pca={k} adult at 99.5% {told[0.995]}/24, at 99.9% {told[0.999]}/24", flush=True)
