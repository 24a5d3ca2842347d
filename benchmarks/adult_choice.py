# ruff: noqa: E702, E731, E741  (a one-off analysis script, kept as it ran)
"""Choosing the adult caution's setting (issue 30) among block grids x 32, 64, 128 components or none, by how many
of the 24 adult development films each flags (the gate's other rules aside). Reads build/features_{train,adult}.npz
(`python benchmarks/adult_features.py`) and train/ only; the test split is not touched.

Step 2, `python benchmarks/adult_choice.py`: blocks 3-5 at the 99.5% quantile of clean validation. Block 3 with 64
components flagged the most (17/24, tied with 128 components; the smaller was taken) and ships.

Step 3, `python benchmarks/adult_choice.py --pooled`, after the threshold moved to validation and its six stress
copies pooled: blocks 1-5 at the 99.5% and 99.9% quantiles of that pool (the stress copies' features are cached in
build/features_stress.npz)."""
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from pneumonia.io.bundle import read_metadata
from pneumonia.io.dataset import discover_split, find_split, patient_split, split_seed

POOLED = "--pooled" in sys.argv[1:]
saved = read_metadata(Path("models"))["training"]["config"]
samples = discover_split(find_split(Path("/work/shared/data/chest_xray"), "train"))
fit_s, val_s = patient_split(samples, saved["validation_fraction"], split_seed(saved))
tr, ad = np.load("build/features_train.npz"), np.load("build/features_adult.npz")
names = list(tr["names"])
idx = {str(p): i for i, p in enumerate(tr["paths"])}
fi = np.array([idx[str(s.path)] for s in fit_s]); vi = np.array([idx[str(s.path)] for s in val_s])
labels = np.array([s.label for s in fit_s])
log = lambda a: np.log1p(np.maximum(a.reshape(len(a), -1).astype(np.float64), 0))


def stress_features(keys: list[str]) -> dict:
    """Each key's grid features of the validation films' six stress copies, read as the gate reads them."""
    cache = Path("build/features_stress.npz")
    if not cache.is_file():
        import keras

        from pneumonia.io.images import read_input, to_model_input
        from pneumonia.screening.adult_caution import AdultConfig, grid_output
        from pneumonia.screening.predictor import load_predictor
        from pneumonia.training.stress import stress_shifts

        p = load_predictor("models", with_gate=False)
        outs = [grid_output(p.model, AdultConfig(layer=key.removesuffix("_grid"), grid=3)) for key in keys]
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
    return np.load(cache)


keys = [n for n in names if n.endswith("_grid")] if POOLED else ["block3_relu_grid", "block4_relu_grid",
                                                                  "block5_relu_grid"]
st = stress_features(keys) if POOLED else None
for key in keys:
    X, A = log(tr[f"f{names.index(key)}"]), log(ad[f"f{names.index(key)}"])
    for k in (32, 64, 128, None):
        F = X[fi]
        T = PCA(k, random_state=0).fit(F).transform if k else (lambda a: a)
        Ft = T(F)
        means = np.stack([Ft[labels == c].mean(0) for c in (0, 1)])
        P = LedoitWolf(assume_centered=True).fit(Ft - means[labels]).precision_
        centred = lambda a: T(a)[:, None] - means[None]
        d = lambda a: (lambda c: np.einsum("ncd,de,nce->nc", c, P, c).min(1))(centred(a))
        a = d(A)
        if POOLED:
            pooled = np.concatenate([d(X[vi]), d(log(st[key]))])
            told = {q: int((a > np.quantile(pooled, q)).sum()) for q in (0.995, 0.999)}
            print(f"{key:18s} pca={k} adult at 99.5% {told[0.995]}/24, at 99.9% {told[0.999]}/24", flush=True)
        else:
            v = d(X[vi])
            th = np.quantile(v, 0.995)
            print(f"{key:18s} pca={k} val>th {np.mean(v > th):.3%} adult {int((a > th).sum())}/24")
