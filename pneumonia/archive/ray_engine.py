"""The archive pipeline on Ray Data: the same steps as `local`, spread over a cluster.

The paths become a dataset. Reading and the gate's pre-checks run as `map_batches` tasks on CPU workers; the
model runs in a pool of actors, each loading it once; batches come back in input order and are written as
they arrive. `ray.init()` starts a local Ray, or joins the cluster named by RAY_ADDRESS. Ray is optional:
`pip install .[ray]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

from pneumonia.errors import PneumoniaError
from pneumonia.screening.gate import REFUSED
from pneumonia.screening.predictor import PendingInput, Screening, load_predictor, prepare_input

PENDING = "pending"


def _prepare_batch(batch: dict, model_dir: str, use_gate: bool) -> dict:
    """Read and pre-check one batch of paths (a Ray task: no model, no TensorFlow)."""
    from pneumonia.io.bundle import read_model_metadata
    from pneumonia.screening.gate import load_gate

    metadata = read_model_metadata(Path(model_dir))
    gate = load_gate(Path(model_dir), metadata.gate) if use_gate else None
    size = metadata.input_size
    items = [prepare_input(str(path), Path(str(path)), gate, size) for path in batch["path"]]
    pending = [isinstance(item, PendingInput) for item in items]
    adult_size = gate.adult.config.size if gate is not None and gate.adult is not None else 1
    return {
        "index": batch["index"],
        "file": np.array([item.name for item in items], dtype=object),
        "status": np.array([PENDING if p else item.status for p, item in zip(pending, items)], dtype=object),
        "reason": np.array(["; ".join(item.cautions) if p else item.reason for p, item in zip(pending, items)],
                           dtype=object),
        "model_input": np.stack([item.model_input if p else np.zeros((size, size), np.float32)
                                 for p, item in zip(pending, items)]),
        # The film at the adult caution's size (a placeholder where the gate has none or the film was refused).
        "adult_input": np.stack([item.adult_input if p and item.adult_input is not None
                                 else np.zeros((adult_size, adult_size), np.float32) for p, item in zip(pending, items)]),
        # The reader's non-identifying facts (a DICOM's age band decides the adult caution), as JSON text.
        "facts": np.array([json.dumps(item.common.get("facts") or {}) if p else "{}" for p, item in zip(pending, items)],
                          dtype=object),
    }


class ScoreBatches:
    """An actor holding the loaded model; scores the pending rows of each batch."""

    def __init__(self, model_dir: str, use_gate: bool):
        from pneumonia.tensorflow_logs import quiet_logs

        quiet_logs(False)
        self.predictor = load_predictor(model_dir, with_gate=use_gate)
        self.use_gate = use_gate

    def __call__(self, batch: dict) -> dict:
        prepared = [
            PendingInput(str(name), np.asarray(image, np.float32), [c for c in str(reason).split("; ") if c],
                         {"facts": json.loads(str(facts))}, False, np.asarray(adult, np.float32))
            if status == PENDING else Screening(str(name), str(status), str(reason))
            for name, status, reason, image, facts, adult in zip(batch["file"], batch["status"], batch["reason"],
                                                                 batch["model_input"], batch["facts"],
                                                                 batch["adult_input"])
        ]
        results = self.predictor.score(prepared, self.use_gate)
        return {
            "index": batch["index"],
            "file": np.array([r.name for r in results], dtype=object),
            "status": np.array([r.status for r in results], dtype=object),
            "reason": np.array([r.reason for r in results], dtype=object),
            "probability": np.array([np.nan if r.probability is None else r.probability for r in results]),
        }


CPUS_PER_MODEL_ACTOR = 8
"""The model is cheap next to reading and gating a film: one actor per this many CPUs keeps the readers busy."""


def ray_chunks(paths: list[str], model_dir: Path, chunk_size: int, use_gate: bool = True) -> Iterator[list[Screening]]:
    """Chunks of scored Screenings in input order, computed on Ray. The model's actor pool grows with the
    cluster: from one actor up to one per CPUS_PER_MODEL_ACTOR CPUs."""
    try:
        import ray
    except ImportError as exc:
        raise PneumoniaError("--engine ray needs Ray: pip install '.[ray]' (or pip install 'ray[data]>=2.60').") from exc

    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, configure_logging=False)
    actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // CPUS_PER_MODEL_ACTOR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"index": i, "path": path} for i, path in enumerate(paths)])
    dataset = dataset.map_batches(_prepare_batch, batch_size=chunk_size, batch_format="numpy",
                                  fn_kwargs={"model_dir": str(model_dir), "use_gate": use_gate})
    dataset = dataset.map_batches(ScoreBatches, batch_size=chunk_size, batch_format="numpy", concurrency=(1, actors),
                                  fn_constructor_kwargs={"model_dir": str(model_dir), "use_gate": use_gate})
    for batch in dataset.iter_batches(batch_size=chunk_size, batch_format="numpy", prefetch_batches=1):
        yield [
            Screening(str(name), str(status), str(reason), None if status == REFUSED or np.isnan(p) else float(p))
            for name, status, reason, p in zip(batch["file"], batch["status"], batch["reason"], batch["probability"])
        ]
