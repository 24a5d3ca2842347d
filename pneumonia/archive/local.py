"""The archive pipeline on one machine: worker processes read files and run the gate's checks on chunk k+1
while this process scores chunk k with the model, so both cores work and memory holds at most two chunks.

Workers never import TensorFlow: reading and the gate's pre-checks need only the gate's thresholds.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from pneumonia.io.bundle import thawed
from pneumonia.screening.gate import Gate, load_gate
from pneumonia.screening.predictor import PendingInput, Predictor, Screening, prepare_input

_WORKER: dict = {}  # set once in each worker process


def chunked(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _start_worker(model_dir: str, gate_entry: dict | None, image_size: int) -> None:
    from pneumonia.tensorflow_logs import quiet_logs

    quiet_logs(False)
    _WORKER.update(gate=load_gate(Path(model_dir), gate_entry) if gate_entry else None, image_size=image_size)


def _prepare_paths(paths: list[str]) -> list[Screening | PendingInput]:
    return [prepare_input(path, Path(path), _WORKER["gate"], _WORKER["image_size"]) for path in paths]


def prepared_chunks(
    predictor: Predictor, paths: list[str], chunk_size: int, workers: int, use_gate: bool = True
) -> Iterator[list[Screening | PendingInput]]:
    """Each chunk of `paths` read and pre-checked, in order; with workers, the next chunk is read while the
    caller scores this one."""
    gate: Gate | None = predictor.gate if use_gate else None
    if workers <= 0:
        for chunk in chunked(paths, chunk_size):
            yield [prepare_input(path, Path(path), gate, predictor.image_size) for path in chunk]
        return
    entry = thawed(predictor.metadata.gate) if use_gate else None  # plain dicts: it is pickled to the workers
    context = multiprocessing.get_context("spawn")  # never fork a process that holds TensorFlow's threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(str(predictor.model_dir), entry, predictor.image_size)) as pool:
        waiting = None
        for chunk in chunked(paths, chunk_size):
            parts = [pool.submit(_prepare_paths, part) for part in chunked(chunk, max(1, -(-len(chunk) // (4 * workers))))]
            if waiting is not None:
                yield [item for part in waiting for item in part.result()]
            waiting = parts
        if waiting is not None:
            yield [item for part in waiting for item in part.result()]


def score_chunks(
    predictor: Predictor, chunks: Iterable[list[Screening | PendingInput]], use_gate: bool = True
) -> Iterator[list[Screening]]:
    for chunk in chunks:
        yield predictor.score(chunk, use_gate)
