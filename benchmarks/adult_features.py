# ruff: noqa: E702, E731, E741  (a one-off analysis script, kept as it ran)
"""Step 1 of choosing the adult caution's setting (issue 30): cache the committed network's pooled features of train/,

and the adult development films in build/ (git-ignored). Run from the repository root:
`python benchmarks/adult_features.py`, then `python benchmarks/adult_choice.py`."""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
import keras

from pneumonia.io.dataset import discover_split, find_split
from pneumonia.io.images import read_input, to_model_input
from pneumonia.screening.predictor import load_predictor

data = Path("/work/shared/data/chest_xray")
p = load_predictor("models", with_gate=False)
relus = [l.name for l in p.model.layers if l.name.endswith("_relu")]
print(relus, flush=True)
outs = []
for name in relus:
    out = p.model.get_layer(name).output
    outs.append(keras.layers.GlobalAveragePooling2D()(out))
    outs.append(keras.layers.GlobalMaxPooling2D()(out))
    # 3x3 grid of means: where in the film things are
    h = out.shape[1]
    k = max(1, h // 3)
    outs.append(keras.layers.Flatten()(keras.layers.AveragePooling2D(pool_size=k, strides=k)(out)))
fm = keras.Model(p.model.input, [*outs, p.model.output])

def run(paths, tag):
    t = time.time()
    inputs = np.stack([to_model_input(read_input(q).grey, p.image_size) for q in paths]).astype(np.float32)[..., None]
    parts = []
    for s in range(0, len(inputs), 64):
        parts.append([keras.ops.convert_to_numpy(o) for o in fm(inputs[s:s+64], training=False)])
    arrays = {f"f{i}": np.concatenate([q[i] for q in parts]) for i in range(len(outs) + 1)}
    np.savez(f"build/features_{tag}.npz", paths=np.array([str(q) for q in paths]), names=np.array(
        [f"{r}_{kind}" for r in relus for kind in ("gap", "gmp", "grid")] + ["prob"]), **arrays)
    print(tag, len(paths), f"{time.time()-t:.0f}s", flush=True)

adult = sorted(Path("/work/shared/data/adult_dev").glob("*.*"))
adult = [q for q in adult if q.suffix != ".csv"]
run(adult, "adult")
run([s.path for s in discover_split(find_split(data, "train"))], "train")
