# ruff: noqa: E702, E731, E741  (a one-off analysis script, kept as it ran)
"""Step 4 of choosing the adult caution's setting (issue 30): the generic pretrained backbone the issue names,
EfficientNet-Lite0 with its ImageNet weights (converted by `python -m tools.convert_backbone`), instead of the
committed network's own activations. Each stage's output averaged over a 3x3 grid of the film, and the head's
spatial mean; then the same one-class distance as the shipped caution (PCA, class-conditional Mahalanobis with
Ledoit-Wolf shrinkage to the fit split's children), thresholded at the 99.5% and 99.9% quantiles of validation and
its six stress copies pooled. Reads train/ and the 24 adult development films only; the test split is not touched.

`python benchmarks/adult_backbone.py` (caches build/features_lite0.npz, git-ignored)."""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from pneumonia.io.bundle import read_metadata
from pneumonia.io.dataset import discover_split, find_split, patient_split, split_seed
from pneumonia.io.images import read_input, to_model_input

DATA = Path("/work/shared/data/chest_xray")
ADULTS = Path("/work/shared/data/adult_dev")
WEIGHTS = Path("build/backbones/efficientnet_lite0_imagenet.weights.h5")
# `--size N` reads the films at N px instead of 224 (a low-pass: ImageNet features are sensitive to pixel noise) and
# stops at block 7, where the grid features saw adults best at 224 px.
SIZE = int(sys.argv[sys.argv.index("--size") + 1]) if "--size" in sys.argv else 224
CACHE = Path(f"build/features_lite0_{SIZE}.npz")
# The last block of each stage that has a residual add, then the head.
LAYERS = ["block2_add", "block4_add", "block7_add", "block10_add", "block14_add", "head_relu"]
if SIZE != 224:
    LAYERS = LAYERS[:3]

saved = read_metadata(Path("models"))["training"]["config"]
samples = discover_split(find_split(DATA, "train"))
fit_s, val_s = patient_split(samples, saved["validation_fraction"], split_seed(saved))
labels = np.array([s.label for s in fit_s])


def features_model():
    import keras

    from pneumonia.model.efficientnet_lite import efficientnet_lite0

    base = efficientnet_lite0(include_top=True, weights=str(WEIGHTS), input_shape=(SIZE, SIZE, 3))
    head = base.get_layer("head_relu").output if "head_relu" in LAYERS else None
    outs = []
    for name in LAYERS:
        out = base.get_layer(name).output
        k = max(1, out.shape[1] // 3)
        outs.append(keras.layers.Flatten()(keras.layers.AveragePooling2D(pool_size=k, strides=k)(out)))
    if head is not None:
        outs.append(keras.layers.GlobalAveragePooling2D()(head))
    return keras.Model(base.input, outs)


def run(model, greys: list[np.ndarray]) -> list[np.ndarray]:
    import keras

    parts = [[] for _ in range(len(model.outputs))]
    for s in range(0, len(greys), 32):
        batch = np.stack([to_model_input(g, SIZE) for g in greys[s:s + 32]]).astype(np.float32)
        rgb = np.repeat(batch[..., None], 3, axis=-1)
        for part, o in zip(parts, model(rgb, training=False)):
            part.append(keras.ops.convert_to_numpy(o))
    return [np.concatenate(p) for p in parts]


if not CACHE.is_file():
    from pneumonia.training.stress import stress_shifts

    start = time.perf_counter()
    model = features_model()
    fit_g = [read_input(s.path).grey for s in fit_s]
    val_g = [read_input(s.path).grey for s in val_s]
    adult_g = []
    for path in sorted(ADULTS.iterdir()):
        try:
            adult_g.append(read_input(path).grey)
        except Exception as error:  # the README file, or a film the reader refuses
            print(f"skipped {path.name}: {error}")
    clean = np.stack(val_g)[..., None]
    stress_g = [g[..., 0] for grey in stress_shifts(clean).values() for g in grey]
    out = {}
    for split, greys in (("fit", fit_g), ("val", val_g), ("adult", adult_g), ("stress", stress_g)):
        for i, f in enumerate(run(model, greys)):
            out[f"{split}_{i}"] = f
        print(f"{split}: {len(greys)} films, {time.perf_counter() - start:.0f} s", flush=True)
    np.savez(CACHE, **out)

c = np.load(CACHE)
names = [f"{n}_grid" for n in LAYERS] + (["head_mean"] if "head_relu" in LAYERS else [])
for i, name in enumerate(names):
    signed = name.startswith("block")
    prep = (lambda a: a.astype(np.float64)) if signed else (lambda a: np.log1p(np.maximum(a.astype(np.float64), 0)))
    F, V, A, S = (prep(c[f"{split}_{i}"]) for split in ("fit", "val", "adult", "stress"))
    for k in (32, 64, 128):
        if k >= F.shape[1]:
            continue
        pca = PCA(k, random_state=0).fit(F)
        Ft = pca.transform(F)
        means = np.stack([Ft[labels == cl].mean(0) for cl in (0, 1)])
        P = LedoitWolf(assume_centered=True).fit(Ft - means[labels]).precision_
        d = lambda a: np.einsum("ncd,de,nce->nc", pca.transform(a)[:, None] - means[None], P,
                                pca.transform(a)[:, None] - means[None]).min(1)
        v, s, a = d(V), d(S), d(A)
        pooled = np.concatenate([v, s])
        told = {q: int((a > np.quantile(pooled, q)).sum()) for q in (0.995, 0.999)}
        clean = np.quantile(v, 0.995)  # for the why: how far each stress copy moves the children
        moved = " ".join(f"{(part > clean).mean():.1%}" for part in s.reshape(6, -1))
        print(f"lite0@{SIZE} {name:16s} pca={k:3d} adult at 99.5% {told[0.995]}/{len(a)}, at 99.9% {told[0.999]}/{len(a)};"
              f" clean 99.5%: adult {int((a > clean).sum())}/{len(a)}, stress copies above it {moved}", flush=True)
