"""The PACS round trip (issue 28) against a real Orthanc started here: films wrapped as DICOM are uploaded, `pacs scan`
screens them over DICOMweb and stores SRs (and Grad-CAM captures) in their studies, exactly once, and nothing
identifying or secret reaches the output. Orthanc comes from `make orthanc`; without it these tests skip and say
why, except under PNEUMONIA_REQUIRE_ORTHANC=1 (CI), where they fail."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dicomweb_client", reason="the pacs extra is not installed: pip install '.[pacs]'")
pytest.importorskip("highdicom", reason="the pacs extra is not installed: pip install '.[pacs]'")

import pydicom
from inputs import PHI, PRIVATE_VALUE, dicom_bytes, radiograph_grey, twelve_bit
from orthanc_server import PASSWORD, REQUIRE_ENV, USER, Orthanc, free_port, missing_reason, orthanc_binaries
from pydicom.uid import generate_uid

from pneumonia.cli import main
from pneumonia.pacs import structured_report as sr
from pneumonia.pacs.client import (
    Credentials,
    PacsClient,
    PacsError,
    PacsUnavailableError,
    check_root_url,
    read_credentials,
)

REPO = Path(__file__).resolve().parent.parent
THUMBNAILS = sorted((REPO / "models" / "test_thumbnails").glob("*.jpg"))[:8]
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
TOLERANCE = 1e-4


# --- a server and films ----------------------------------------------------------------------------------------


@pytest.fixture
def orthanc(tmp_path):
    binaries = orthanc_binaries()
    if binaries is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(missing_reason() + f"; {REQUIRE_ENV}=1 says these tests must run")
        pytest.skip(missing_reason())
    server = Orthanc(tmp_path / "orthanc", binaries)
    yield server
    server.stop()


def film(grey: np.ndarray, study: str, *, photometric: str = "MONOCHROME2", age: str = "004Y",
         modality: str = "DX", study_date: str = "20260115", accession: str = PHI["AccessionNumber"]) -> bytes:
    """A film as a DX (or CR) DICOM in `study`, full of identifying data, with fresh series and instance UIDs."""
    pixels = twelve_bit(grey)
    if photometric == "MONOCHROME1":
        pixels = 4095 - pixels
    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels, photometric=photometric, age=age, modality=modality)))
    dataset.AccessionNumber = accession
    return _placed(dataset, study, study_date)


def ct_slice(study: str) -> bytes:
    """pydicom's bundled CT slice, filed in `study` under the same patient."""
    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    for key in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        setattr(dataset, key, PHI[key])
    return _placed(dataset, study, "20260115")


def _placed(dataset, study: str, study_date: str) -> bytes:
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.StudyDate = study_date
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def stored(server: Orthanc, sop_class: str | None = None) -> list:
    """Every instance Orthanc holds (read back with pydicom), or those of one SOP class."""
    datasets = [pydicom.dcmread(io.BytesIO(server.rest(f"/instances/{i}/file"))) for i in server.rest("/instances")]
    return [d for d in datasets if sop_class is None or d.SOPClassUID == sop_class]


@pytest.fixture
def mix(orthanc):
    """Three studies: two DX films; a DX film of a 62-year-old; a MONOCHROME1 CR film with a CT slice beside it.
    Returns {SOP Instance UID: (study UID, the uploaded bytes, what the film is)}."""
    greys = [radiograph_grey(path) for path in THUMBNAILS[:4]]
    a, b, c = generate_uid(), generate_uid(), generate_uid()
    films = [(a, film(greys[0], a), "dx"), (a, film(greys[1], a), "dx"), (b, film(greys[2], b, age="062Y"), "adult"),
             (c, film(greys[3], c, photometric="MONOCHROME1", modality="CR"), "monochrome1"), (c, ct_slice(c), "ct")]
    for _, data, _ in films:
        orthanc.upload(data)
    return {_uid(data): (study, data, kind) for study, data, kind in films}


@pytest.fixture
def scan(orthanc, committed_predictor, monkeypatch, capsys):
    """`python -m pneumonia pacs scan` in this process (the committed model loaded once): returns (exit code,
    stdout, stderr)."""
    import pneumonia.screening.predictor

    monkeypatch.setattr(pneumonia.screening.predictor, "load_predictor", lambda *args, **kwargs: committed_predictor)
    monkeypatch.setenv("PNEUMONIA_PACS_PASSWORD", PASSWORD)

    def run(*extra: str):
        code = main(["pacs", "scan", "--url", orthanc.url, "--user", USER, *extra])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNEUMONIA_PACS_")}
    return {**env, **extra}


def _assert_no_phi(text: str, uids) -> None:
    for value in [*PHI.values(), PRIVATE_VALUE, *uids]:
        if value != PHI["StudyDate"]:
            assert value not in text, f"an identifier reached the output: {value}"


# --- the round trip --------------------------------------------------------------------------------------------


@pytest.mark.score_sensitive
def test_scan_stores_one_sr_per_film_in_its_study_with_the_apps_scores(orthanc, mix, scan, committed_predictor):
    code, out, err = scan()
    assert code == 0, err
    reports = stored(orthanc, SR_CLASS)
    assert len(reports) == len(mix)
    threshold = committed_predictor.default_threshold
    sha = committed_predictor.metadata.model_sha256
    for report in reports:
        facts = sr.report_facts(report)
        study, data, kind = mix[facts["source"]]
        assert report.StudyInstanceUID == study  # in the screened film's study, in a series of its own
        assert report.SeriesInstanceUID == sr.sr_series_uid(study, sha)
        assert report.PatientID == PHI["PatientID"] and report.AccessionNumber == PHI["AccessionNumber"]
        assert "research demo" in report.SeriesDescription and "not for diagnosis" in report.SeriesDescription
        assert report.Manufacturer == sr.MANUFACTURER
        assert report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID == facts["source"]
        assert facts[sr.MODEL_SHA.code] == sha
        (local,) = committed_predictor.screen([("local", data)])  # what `predict` gives on the same pixels
        assert facts[sr.GATE_STATUS.code] == local.status
        assert facts.get(sr.GATE_REASON.code, "") == local.reason
        if kind == "ct":
            assert local.status == "refused" and "CT" in facts[sr.GATE_REASON.code]
            assert sr.PROBABILITY.code not in facts and sr.LABEL.code not in facts
            assert facts[sr.NOT_SCORED.code].startswith("not scored")
        else:
            assert local.probability is not None, (kind, local.reason)
            assert abs(facts[sr.PROBABILITY.code] - local.probability) < TOLERANCE
            assert abs(facts[sr.THRESHOLD.code] - threshold.value) < 1e-9
            assert facts[sr.THRESHOLD_SOURCE.code] == threshold.provenance
            assert facts[sr.LABEL.code] == local.label(threshold)
    by_kind = {mix[facts["source"]][2]: facts[sr.GATE_STATUS.code]
               for facts in (sr.report_facts(r) for r in reports)}
    assert by_kind["adult"] == "caution"  # the gate's age band, as in the app
    assert f"{len(mix)} screened" in err and "1 refused" in err
    _assert_no_phi(out + err, [*mix, *(study for study, _, _ in mix.values())])

    code, out, err = scan()  # the second scan writes nothing new
    assert code == 0 and "0 screened" in err and f"{len(mix)} already done" in err and out == ""
    assert len(stored(orthanc)) == 2 * len(mix)


def test_a_probability_is_a_num_item_named_for_pneumonia(orthanc, mix, scan):
    assert scan()[0] == 0
    numbers = [item for report in stored(orthanc, SR_CLASS) for item in report.ContentSequence
               if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == sr.PROBABILITY.code]
    assert len(numbers) == len(mix) - 1  # every film but the CT slice
    assert all("pneumonia" in item.ConceptNameCodeSequence[0].CodeMeaning.lower() for item in numbers)
    assert all(0.0 <= float(item.MeasuredValueSequence[0].NumericValue) <= 1.0 for item in numbers)


def test_an_odd_header_skips_that_film_only_and_quotes_nothing(orthanc, scan):
    grey = radiograph_grey(THUMBNAILS[0])
    good, odd, unusual = (pydicom.dcmread(io.BytesIO(film(grey, generate_uid()))) for _ in range(3))
    odd.StudyTime = "25:99"  # not a time: highdicom cannot build an object of this study
    unusual.PatientSex, unusual.PatientName = "UNKNOWN", "MONONYM"  # odd, but an SR can still be built
    for dataset in (good, odd, unusual):
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        orthanc.upload(buffer.getvalue())
    with warnings.catch_warnings(record=True) as caught:  # the libraries' warnings quote the values they reject
        warnings.simplefilter("always")
        code, out, err = scan()
    assert not [w for w in caught if "25:99" in str(w.message) or "MONONYM" in str(w.message)]
    assert code == 3  # some films skipped; the pass went on
    assert {sr.report_facts(r)["source"] for r in stored(orthanc, SR_CLASS)} == {good.SOPInstanceUID,
                                                                                unusual.SOPInstanceUID}
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "skipped: its results could not be built (ValueError)" in lines[0]
    assert "25:99" not in out + err and "MONONYM" not in out + err and "UNKNOWN" not in out + err
    _assert_no_phi(out + err, [good.SOPInstanceUID, odd.SOPInstanceUID, unusual.SOPInstanceUID])


def test_since_leaves_older_studies_alone_and_a_bad_date_is_one_line(orthanc, mix, scan):
    code, _, err = scan("--since", "2026-01-16")  # the films are from 2026-01-15
    assert code == 0 and "0 screened" in err and len(stored(orthanc)) == len(mix)
    code, _, err = scan("--since", "2026-01-15")
    assert code == 0 and f"{len(mix)} screened" in err
    code, _, err = scan("--since", "last tuesday")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "YYYY-MM-DD" in err


def test_with_map_adds_a_burned_in_grad_cam_capture_once_per_scored_film(orthanc, mix, scan):
    assert scan()[0] == 0  # SRs first, without maps
    code, _, err = scan("--with-map")  # then only the maps are added, and none for the refused CT slice
    assert code == 0, err
    captures = stored(orthanc, SC_CLASS)
    assert len(captures) == len(mix) - 1 and len(stored(orthanc, SR_CLASS)) == len(mix)
    sources = {c.SourceImageSequence[0].ReferencedSOPInstanceUID for c in captures}
    assert sources == {uid for uid, (_, _, kind) in mix.items() if kind != "ct"}
    for capture in captures:
        assert capture.BurnedInAnnotation == "YES" and "not for diagnosis" in capture.SeriesDescription
        assert capture.pixel_array.shape == (sr.MAP_SIDE, sr.MAP_SIDE, 3)
        assert capture.pixel_array[:20].max() > 200  # the band of burned-in white text
        assert capture.StudyInstanceUID == mix[capture.SourceImageSequence[0].ReferencedSOPInstanceUID][0]
    assert len({c.SeriesInstanceUID for c in captures} & {r.SeriesInstanceUID for r in stored(orthanc, SR_CLASS)}) == 0
    code, _, err = scan("--with-map")
    assert code == 0 and "0 screened" in err and len(stored(orthanc)) == 3 * len(mix) - 1
    # docs/pacs.md's recipe removes everything written, and nothing else
    query = json.dumps({"Level": "Series", "Query": {"SeriesDescription": "Pneumonia*demo*"}}).encode()
    for series in orthanc.rest("/tools/find", data=query, method="POST"):
        orthanc.rest(f"/series/{series}", method="DELETE")
    assert sorted(d.SOPInstanceUID for d in stored(orthanc)) == sorted(mix)


def test_a_sigkill_mid_scan_then_a_rescan_stores_each_sr_exactly_once(orthanc, tmp_path):
    greys = [radiograph_grey(path) for path in THUMBNAILS]
    uids = []
    for copy in range(3):
        study = generate_uid()
        for grey in greys:
            data = film(np.roll(grey, copy, axis=0), study)
            orthanc.upload(data)
            uids.append(_uid(data))
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    command = [sys.executable, "-m", "pneumonia", "pacs", "scan", "--url", orthanc.url, "--user", USER,
               "--password-file", str(password_file)]
    process = subprocess.Popen(command, cwd=REPO, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(orthanc.rest("/instances")) == len(uids) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    written = len(orthanc.rest("/instances")) - len(uids)
    assert 0 < written < len(uids), f"the kill did not land mid-scan ({written} of {len(uids)} written)"
    rescan = subprocess.run(command, cwd=REPO, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert rescan.returncode == 0, rescan.stderr
    assert f"{written} already done" in rescan.stderr
    references = [sr.report_facts(r)["source"] for r in stored(orthanc, SR_CLASS)]
    assert sorted(references) == sorted(uids)  # one SR each, none twice


def test_a_wrong_password_is_one_clear_line_and_exit_2(orthanc):
    wrong = "Wr0ng-pass-word"
    result = subprocess.run([sys.executable, "-m", "pneumonia", "pacs", "scan", "--url", orthanc.url, "--user", USER],
                            cwd=REPO, env=_cli_env(PNEUMONIA_PACS_PASSWORD=wrong), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused the login (HTTP 401)" in lines[0], lines
    assert wrong not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert stored(orthanc) == []


def test_watch_screens_new_films_keeps_the_password_out_of_ps_and_stops_on_ctrl_c(orthanc, tmp_path):
    grey = radiograph_grey(THUMBNAILS[0])
    first = film(grey, generate_uid())
    orthanc.upload(first)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    process = subprocess.Popen(
        [sys.executable, "-m", "pneumonia", "pacs", "watch", "--every", "0.5", "--url", orthanc.url, "--user", USER,
         "--password-file", str(password_file)],
        cwd=REPO, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(stored(orthanc, SR_CLASS)) == 1, process)
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert PASSWORD not in command_line and USER in command_line  # what `ps` shows
        second = film(radiograph_grey(THUMBNAILS[1]), generate_uid())
        orthanc.upload(second)  # a film arriving while it watches
        _wait_for(lambda: len(stored(orthanc, SR_CLASS)) == 2, process)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and err.strip().endswith("stopped"), err
    assert {sr.report_facts(r)["source"] for r in stored(orthanc, SR_CLASS)} == {_uid(first), _uid(second)}
    assert PASSWORD not in out + err
    _assert_no_phi(out + err, [_uid(first), _uid(second)])


def _wait_for(condition, process, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "watch stored nothing in time"
        time.sleep(0.1)


@pytest.mark.integration
def test_the_app_opens_a_study_from_the_pacs_by_accession_and_shows_nothing_identifying(
        orthanc, committed_predictor, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from test_app import APP, TIMEOUT, assert_no_exception, page_text, shown_results

    from pneumonia.formatting import format_probability

    monkeypatch.delenv("PNEUMONIA_DICOMWEB_URL", raising=False)
    hidden = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert_no_exception(hidden)
    assert not [t for t in hidden.text_input if t.key == "pacs_accession"]  # no PACS configured: no box

    wanted = [film(radiograph_grey(THUMBNAILS[0]), generate_uid()),
              film(radiograph_grey(THUMBNAILS[1]), generate_uid(), modality="CR")]
    other = film(radiograph_grey(THUMBNAILS[2]), generate_uid(), accession="ACC-OTHER-1")
    for data in [*wanted, other]:
        orthanc.upload(data)
    for name, value in (("PNEUMONIA_DICOMWEB_URL", orthanc.url), ("PNEUMONIA_PACS_USER", USER),
                        ("PNEUMONIA_PACS_PASSWORD", PASSWORD)):
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input(key="pacs_accession").set_value(PHI["AccessionNumber"])
    next(b for b in at.button if b.label == "Open from PACS").click()
    at.run()
    assert_no_exception(at)
    table = shown_results(at)
    # The study's two films, not the other, called by pseudonyms as every upload is (issue 30).
    assert len(table) == 2 and all(re.fullmatch(r"[0-9a-f]{8}_[12]", name) for name in table["file"])
    expected = {format_probability(r.probability, committed_predictor.default_threshold)
                for r in committed_predictor.screen([("a", d) for d in wanted])}
    assert set(table["probability"]) == expected
    assert at.text_input(key="pacs_accession").value == ""  # cleared once opened
    page = page_text(at)
    for secret in [*PHI.values(), *(_uid(d) for d in wanted), "20210314"]:
        assert secret not in page, secret
    at.text_input(key="pacs_accession").set_value("NO-SUCH-1")
    next(b for b in at.button if b.label == "Open from PACS").click()
    at.run()
    assert [e.value for e in at.error] == [("Could not open from the PACS: the PACS holds no CR or DX film under that "
                                            "accession number.")]


# --- failures of the PACS, credentials (no Orthanc needed) ------------------------------------------------------


class _Always503(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_pacs_answering_503_is_retried_with_backoff_then_one_clear_error():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    waits, warnings = [], []
    try:
        client = PacsClient(f"http://127.0.0.1:{server.server_port}/dicom-web", Credentials("u", "hunter2-secret"),
                            tries=3, warn=warnings.append, sleep=waits.append)
        with pytest.raises(PacsUnavailableError) as caught:
            client.search_series({"Modality": "DX"}, ["StudyInstanceUID"])
    finally:
        server.shutdown()
    assert waits == [1.0, 2.0] and len(warnings) == 2
    message = str(caught.value)
    assert "HTTP 503" in message and "after 3 tries" in message and "hunter2" not in message + "".join(warnings)
    assert "?" not in message  # the request's URL (with its query) is not quoted, only the root


def test_a_pacs_that_never_answers_times_out_and_is_retried():
    import socket

    listener = socket.socket()  # accepts connections (the kernel's backlog) and never says a word
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    waits = []
    try:
        client = PacsClient(f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web", timeout_s=0.3, tries=2,
                            warn=lambda line: None, sleep=waits.append)
        started = time.monotonic()
        with pytest.raises(PacsUnavailableError, match=r"no answer within 0\.3 s\) after 2 tries"):
            client.check_login()
    finally:
        listener.close()
    assert waits == [1.0] and time.monotonic() - started < 10


def test_an_unreachable_pacs_is_one_line_and_exit_2():
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    result = subprocess.run([sys.executable, "-m", "pneumonia", "pacs", "scan", "--url", url, "--tries", "1"],
                            cwd=REPO, env=_cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (f"error: the PACS at {url} failed while checking the login (the connection failed) after 1 tries; check that "
         "it is running and the URL is right, then run the same command again (results already stored are kept).")]


def test_secrets_stay_out_of_urls_reprs_and_messages(tmp_path):
    with pytest.raises(PacsError) as caught:
        check_root_url("http://admin:s3cr3t-value@pacs.example/dicom-web")
    assert "s3cr3t" not in str(caught.value) and "--user" in str(caught.value)
    credentials = read_credentials("alice", None, {"PNEUMONIA_PACS_PASSWORD": "s3cr3t-value"})
    assert credentials.password == "s3cr3t-value" and "s3cr3t" not in repr(credentials)
    assert read_credentials(None, None, {"PNEUMONIA_PACS_TOKEN": "tok-123"}).token == "tok-123"
    with pytest.raises(PacsError, match="needs a password"):
        read_credentials("alice", None, {})
    with pytest.raises(PacsError, match="cannot read the password file"):
        read_credentials("alice", tmp_path / "missing", {})
    (tmp_path / "pw").write_text("from-a-file\n")
    assert read_credentials("alice", tmp_path / "pw", {}).password == "from-a-file"


def test_result_uids_are_stable_per_film_and_model_and_valid():
    first, again = sr.sr_uid("1.2.3.4", "a" * 64), sr.sr_uid("1.2.3.4", "a" * 64)
    assert first == again and first != sr.sr_uid("1.2.3.4", "b" * 64) != sr.map_uid("1.2.3.4", "b" * 64)
    assert first.startswith("2.25.") and len(first) <= 64 and all(part.isdigit() for part in first.split("."))


def test_the_pacs_extra_is_what_make_test_installs():
    import tomllib

    from packaging.requirements import Requirement

    extra = {str(Requirement(r)) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
             ["optional-dependencies"]["pacs"]}
    lines = {str(Requirement(line)) for line in (REPO / "requirements-test.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert {Requirement(r).name for r in extra} == {"dicomweb-client", "highdicom"} and extra <= lines
