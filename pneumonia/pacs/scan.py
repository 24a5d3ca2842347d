"""One pass over a PACS: find the CR/DX studies' instances not yet screened by this model, screen each one as the
app does, and store its results in its study. `watch` repeats the pass.

What is done is read from the PACS itself: each result's SOP Instance UID is derived from the screened instance's
UID and the model's SHA-256 (see `structured_report`), so a study's instance list says which films have their SR
(and their map), and storing one again after a crash or a retry gives the same instance, not a second one. The SR
is stored last, so a film whose SR is there has everything it needs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pneumonia.pacs.client import PacsAuthError, PacsClient, PacsError, PacsUnavailableError
from pneumonia.pacs.structured_report import (
    GATE_STATUS,
    MAP_SERIES_DESCRIPTION,
    SR_SERIES_DESCRIPTION,
    map_capture,
    map_uid,
    report_facts,
    sr_series_uid,
    sr_uid,
    structured_report,
)
from pneumonia.screening.gate import CAUTION, OK, REFUSED
from pneumonia.threshold import Threshold

MODALITIES = ("CR", "DX")
"""A study is in scope when it holds a series of one of these; every image in it then goes through the gate, so a
CT slice or a photograph filed in a chest X-ray study gets an SR saying it was refused."""
NOT_IMAGES = frozenset({"SR", "KO", "PR", "DOC", "REG", "SEG", "RWV", "PLAN", "RTSTRUCT", "RTPLAN", "RTRECORD",
                        "AU", "ECG", "HD", "FID"})


def _plain(text: str) -> str:
    """ASCII words only: a PACS may drop the em dash from the descriptions it indexes (Orthanc 1.10 does)."""
    return " ".join(text.encode("ascii", "ignore").decode().split())


OUR_SERIES = frozenset(_plain(d) for d in (SR_SERIES_DESCRIPTION, MAP_SERIES_DESCRIPTION))
TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
        "SOPClassUID": "00080016", "Modality": "00080060", "SeriesDescription": "0008103E"}


@dataclass(frozen=True)
class Film:
    """One instance to screen: its UIDs (never printed) and what it still lacks."""

    study: str
    series: str
    sop: str
    modality: str
    needs_report: bool
    needs_map: bool


@dataclass
class PassSummary:
    counts: dict = field(default_factory=lambda: {OK: 0, CAUTION: 0, REFUSED: 0})
    already_done: int = 0
    skipped: int = 0
    reports: int = 0
    maps: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def screened(self) -> int:
        return sum(self.counts.values())

    def line(self, threshold: Threshold) -> str:
        statuses = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        rate = f"; {self.screened / self.seconds:.1f} films/s" if self.screened and self.seconds > 0 else ""
        skipped = f", {self.skipped} skipped (see the warnings)" if self.skipped else ""
        return (f"{self.screened} screened ({statuses}), {self.already_done} already done{skipped}; "
                f"{self.reports} reports and {self.maps} maps stored; threshold {threshold.text}{rate}")


def since_filter(since: str | None) -> str | None:
    """--since 2026-01-31 (or 20260131) as a QIDO-RS StudyDate range."""
    if since is None:
        return None
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(since.strip(), pattern).strftime("%Y%m%d") + "-"
        except ValueError:
            continue
    raise PacsError(f"--since {since!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-01-31.")


def _value(record: dict, keyword: str) -> str:
    values = record.get(TAGS[keyword], {}).get("Value") or [""]
    return str(values[0])


def _status_of_report(client: PacsClient, study: str, report_uid: str, model_sha: str) -> str | None:
    """The gate status an SR of ours records; None when it cannot be read (the film is then screened again, and
    only what it lacks is stored)."""
    try:
        metadata = client.instance_metadata(study, sr_series_uid(study, model_sha), report_uid)
        return report_facts(metadata[0] if isinstance(metadata, list) else metadata).get(GATE_STATUS.code)
    except (PacsAuthError, PacsUnavailableError):
        raise
    except Exception:  # a PacsRequestError (say, deleted meanwhile) or metadata this code did not write
        return None


def find_films(client: PacsClient, model_sha: str, since: str | None = None,
               with_map: bool = False) -> tuple[list[Film], int]:
    """The films still to screen, study by study, and how many are already done (QIDO-RS only, plus one SR's
    metadata for a film that lacks its map, to learn whether it was refused and so needs none)."""
    filters = {"StudyDate": since_filter(since)} if since else {}
    studies: dict[str, None] = {}
    for modality in MODALITIES:
        for series in client.search_series({**filters, "Modality": modality}, ["StudyInstanceUID"]):
            studies[_value(series, "StudyInstanceUID")] = None
    films, done = [], 0
    for study in studies:
        records = client.search_instances(study, list(TAGS))
        present = {_value(r, "SOPInstanceUID") for r in records}
        for record in records:
            modality = _value(record, "Modality").upper()
            if modality in NOT_IMAGES or _plain(_value(record, "SeriesDescription")) in OUR_SERIES:
                continue
            sop = _value(record, "SOPInstanceUID")
            needs_report = sr_uid(sop, model_sha) not in present
            needs_map = with_map and map_uid(sop, model_sha) not in present
            if needs_map and not needs_report:
                needs_map = _status_of_report(client, study, sr_uid(sop, model_sha), model_sha) != REFUSED
            if needs_report or needs_map:
                films.append(Film(study, _value(record, "SeriesInstanceUID"), sop, modality, needs_report, needs_map))
            else:
                done += 1
    return films, done


CHUNK = 16
"""Films retrieved and scored together: one model call for the chunk, as `predict` batches. Ctrl-C finishes the chunk
in hand; a crash redoes at most its films (their results are stored under the same UIDs)."""


@contextlib.contextmanager
def _quiet_dicom():
    """pydicom and highdicom warn about malformed values by quoting them, and a value can be a patient's name."""
    for library in ("pydicom", "highdicom", "dicomweb_client"):
        logging.getLogger(library).setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class _Retrieved:
    film: Film
    name: str
    source: object  # the instance's header (pydicom Dataset, no pixels): what the results copy to join its study
    prepared: object  # a Screening (refused before the model) or a PendingInput


def retrieve(client: PacsClient, predictor, film: Film, name: str) -> _Retrieved:
    """One film from the PACS, read and pre-checked by the gate as the app does, waiting for the model."""
    import pydicom

    data = client.retrieve_bytes(film.study, film.series, film.sop)
    source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    return _Retrieved(film, name, source, predictor.prepare(name, data, keep_images=film.needs_map))


def store_results(client: PacsClient, predictor, item: _Retrieved, screening, threshold: Threshold) -> int:
    """What the film lacks: the map first, the SR last (its presence means the film is done). Returns maps stored."""
    maps = 0
    if item.film.needs_map and screening.probability is not None and screening.model_input is not None:
        from pneumonia.explain.maps import grad_cam

        cam = grad_cam(predictor, screening.model_input)
        client.store(map_capture(item.source, screening, cam, predictor.metadata))
        maps = 1
    if item.film.needs_report:
        client.store(structured_report(item.source, screening, threshold, predictor.metadata))
    return maps


def _guarded(summary: PassSummary, name: str, warn: Callable[[str], None], step: Callable):
    """`step()`, or None after a warning when this one film cannot go on; a PACS that is down or refuses the login
    still stops the pass."""
    try:
        with _quiet_dicom():
            return step()
    except (PacsAuthError, PacsUnavailableError):
        raise
    except PacsError as exc:
        warn(f"warning: {name}: skipped: {exc}")
    except Exception as exc:  # one odd instance never stops a pass; its message could quote its header
        warn(f"warning: {name}: skipped: its results could not be built ({type(exc).__name__})")
    summary.skipped += 1
    return None


def scan_pass(client: PacsClient, predictor, threshold: Threshold, with_map: bool = False, since: str | None = None,
              stop: threading.Event | None = None, say: Callable[[str], None] = print,
              warn: Callable[[str], None] = print) -> PassSummary:
    """One pass. A film that cannot be read or stored is skipped with a warning and the pass goes on; a PACS that is
    down or refuses the login stops it (PacsUnavailableError, PacsAuthError). `stop` ends the pass after the chunk
    in hand."""
    from pneumonia.formatting import format_probability

    started = time.perf_counter()
    summary = PassSummary()
    films, summary.already_done = find_films(client, predictor.metadata.model_sha256, since, with_map)
    names = [f"film {number} of {len(films)} ({film.modality or 'no modality'})" for number, film in
             enumerate(films, 1)]
    for first in range(0, len(films), CHUNK):
        if stop is not None and stop.is_set():
            summary.interrupted = True
            break
        chunk = [_guarded(summary, name, warn, lambda film=film, name=name: retrieve(client, predictor, film, name))
                 for film, name in zip(films[first : first + CHUNK], names[first : first + CHUNK])]
        chunk = [item for item in chunk if item is not None]
        with _quiet_dicom():
            screenings = predictor.score([item.prepared for item in chunk])
        for item, screening in zip(chunk, screenings):
            maps = _guarded(summary, item.name, warn,
                            lambda item=item, screening=screening: store_results(client, predictor, item, screening,
                                                                                 threshold))
            if maps is None:
                continue
            summary.counts[screening.status] = summary.counts.get(screening.status, 0) + 1
            summary.reports += item.film.needs_report
            summary.maps += maps
            if screening.probability is None:
                say(f"{item.name}: not scored ({screening.status}): {screening.reason}")
            else:
                note = f" [{screening.status}: {screening.reason}]" if screening.status == CAUTION else ""
                say(f"{item.name}: {format_probability(screening.probability, threshold)} {screening.label(threshold)}{note}")
    summary.seconds = time.perf_counter() - started
    return summary


MAX_OPENED = 24
"""The most films "Open from PACS" brings into the app at once."""


def films_for_accession(client: PacsClient, accession: str) -> list[tuple[str, bytes]]:
    """The CR/DX films of the study with this accession number, as (a name that identifies no one, DICOM bytes),
    for the app to screen as if they were uploaded. At most MAX_OPENED."""
    accession = accession.strip()
    if not accession or len(accession) > 16 or any(c in accession for c in "*?\\"):
        raise PacsError("type one accession number: at most 16 characters, without * ? or \\.")
    films: list[tuple[str, bytes]] = []
    for modality in MODALITIES:
        series_list = client.search_series({"AccessionNumber": accession, "Modality": modality},
                                           ["StudyInstanceUID", "SeriesInstanceUID"])
        for series in series_list:
            study, series_uid = _value(series, "StudyInstanceUID"), _value(series, "SeriesInstanceUID")
            for record in client.search_instances(study, ["SOPInstanceUID"], series_uid):
                if len(films) == MAX_OPENED:
                    return films
                data = client.retrieve_bytes(study, series_uid, _value(record, "SOPInstanceUID"))
                films.append((f"PACS film {len(films) + 1} ({modality})", data))
    if not films:
        raise PacsError("the PACS holds no CR or DX film under that accession number.")
    return films
