"""A DICOMweb client that keeps its credentials to itself and retries a PACS that is down or overloaded.

The password or token comes from the environment (PNEUMONIA_PACS_PASSWORD, PNEUMONIA_PACS_TOKEN) or a file, never
from the command line (where `ps` would show it), and it appears in no message. Messages name the PACS by the root
URL the user gave, never by a request's URL, which would carry study and instance UIDs.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pneumonia.errors import PneumoniaError

PASSWORD_ENV = "PNEUMONIA_PACS_PASSWORD"
TOKEN_ENV = "PNEUMONIA_PACS_TOKEN"
USER_ENV = "PNEUMONIA_PACS_USER"
URL_ENV = "PNEUMONIA_DICOMWEB_URL"
"""When set, the app's Screen page offers "Open from PACS" (by accession number) from this DICOMweb root."""
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_TRIES = 4
BACKOFF_S = 1.0
"""The first wait before a retry; each further wait doubles it."""
RETRIED_STATUS = (408, 429, 500, 502, 503, 504)
AS_STORED = (("application/dicom", "*"),)
"""WADO-RS: the instance in its stored transfer syntax, so the pixels are exactly the archive's."""


class PacsError(PneumoniaError):
    """The PACS could not be used: unreachable, refusing the login, or answering with an error."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401 or 403)."""


class PacsUnavailableError(PacsError):
    """The PACS did not answer, or kept answering 5xx, after every retry."""


class PacsRequestError(PacsError):
    """The PACS answered a request about one object with a client error (4xx other than a login failure)."""


@dataclass(frozen=True)
class Credentials:
    """HTTP Basic (user and password) or a bearer token; `repr` shows neither secret."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        kind = "token" if self.token else "password" if self.password else "none"
        return f"Credentials(user={self.user!r}, secret={kind})"

    def apply(self, session) -> None:
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.user is not None:
            session.auth = (self.user, self.password or "")


def read_credentials(user: str | None, password_file: Path | None, environ=os.environ) -> Credentials:
    """The password from --password-file or PNEUMONIA_PACS_PASSWORD, or a token from PNEUMONIA_PACS_TOKEN."""
    token = environ.get(TOKEN_ENV) or None
    password = None
    if password_file is not None:
        try:
            password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeError) as exc:
            raise PacsError(f"cannot read the password file {password_file}: "
                            f"{getattr(exc, 'strerror', None) or type(exc).__name__}.") from None
        if not password:
            raise PacsError(f"the password file {password_file} is empty.")
    elif environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    if password is not None and user is None:
        raise PacsError("a password was given but no user: add --user NAME.")
    if user is not None and password is None and token is None:
        raise PacsError(f"--user {user} needs a password: set {PASSWORD_ENV} or give --password-file FILE "
                        "(never on the command line, where other users could see it).")
    return Credentials(user, password, token)


def client_from_environment(url: str, environ=os.environ) -> PacsClient:
    """The app's client: the URL from PNEUMONIA_DICOMWEB_URL, the user from PNEUMONIA_PACS_USER, and the password
    or token from their variables, as for the command line."""
    return PacsClient(url, read_credentials(environ.get(USER_ENV) or None, None, environ), tries=2)


def check_root_url(url: str) -> str:
    """The DICOMweb root, refused with a plain line when it is not http(s) or carries a password."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError("--url must be the DICOMweb root, such as http://HOST:8042/dicom-web for Orthanc.")
    if parts.username or parts.password:
        raise PacsError("put the user in --user and the password in PNEUMONIA_PACS_PASSWORD or --password-file, "
                        "not in --url (a URL on the command line shows in `ps`).")
    if parts.query or parts.fragment:
        raise PacsError("--url must be the DICOMweb root alone, without a query (?...) or fragment (#...).")
    return url.strip().rstrip("/")


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


class PacsClient:
    """QIDO-RS, WADO-RS and STOW-RS through dicomweb-client, each call retried with backoff on 5xx, timeouts and
    refused connections, and each failure turned into one line that names the PACS by its root URL only."""

    def __init__(self, url: str, credentials: Credentials = Credentials(), timeout_s: float = DEFAULT_TIMEOUT_S,
                 tries: int = DEFAULT_TRIES, backoff_s: float = BACKOFF_S, ca_file: Path | None = None,
                 warn: Callable[[str], None] = _warn, sleep: Callable[[float], None] = time.sleep):
        import requests
        from dicomweb_client.api import DICOMwebClient

        logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # its debug lines quote request URLs
        self.root = check_root_url(url)
        self.timeout_s = float(timeout_s)
        self.tries = max(1, int(tries))
        self.backoff_s = float(backoff_s)
        self._warn, self._sleep = warn, sleep
        session = requests.Session()
        session.trust_env = False  # no proxy, .netrc or CA bundle from the environment: only the PACS named here
        if ca_file is not None:
            session.verify = str(ca_file)
        credentials.apply(session)
        self._client = DICOMwebClient(self.root, session=session, timeout=self.timeout_s)
        self._client.set_http_retry_params(retry=False)  # retried here, with messages of our own

    # --- the calls the scanner makes ---------------------------------------------------------------------------

    def check_login(self) -> None:
        """One cheap query, so a wrong password or URL is reported before the model is loaded."""
        self._call("checking the login", self._client.search_for_studies, limit=1, fields=["StudyInstanceUID"])

    def search_series(self, filters: dict, fields: list[str]) -> list[dict]:
        return self._call("searching for series", self._client.search_for_series, search_filters=filters,
                          fields=fields, get_remaining=True)

    def search_instances(self, study_uid: str, fields: list[str], series_uid: str | None = None) -> list[dict]:
        return self._call("listing a study's instances", self._client.search_for_instances,
                          study_instance_uid=study_uid, series_instance_uid=series_uid, fields=fields,
                          get_remaining=True)

    def instance_metadata(self, study_uid: str, series_uid: str, sop_uid: str) -> dict:
        return self._call("reading an instance's metadata", self._client.retrieve_instance_metadata,
                          study_uid, series_uid, sop_uid)

    def retrieve_bytes(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """One instance as a DICOM file, in the transfer syntax the PACS stored it in."""
        import pydicom

        dataset = self._call("retrieving an instance", self._client.retrieve_instance, study_uid, series_uid,
                             sop_uid, media_types=AS_STORED)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=False)
        return buffer.getvalue()

    def store(self, dataset) -> None:
        """STOW-RS of one instance; an instance the PACS reports as failed raises, so nothing passes half-stored."""
        response = self._call("storing a result", self._client.store_instances, [dataset],
                              study_instance_uid=str(dataset.StudyInstanceUID))
        failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "unknown")
            raise PacsRequestError(f"the PACS at {self.root} refused to store a result (failure reason {reason}).")

    # --- errors and retries ------------------------------------------------------------------------------------

    def _call(self, action: str, function: Callable, *args, **kwargs):
        import requests

        problem = ""
        for attempt in range(1, self.tries + 1):
            try:
                return function(*args, **kwargs)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in (401, 403):
                    raise PacsAuthError(
                        f"the PACS at {self.root} refused the login (HTTP {status}): check --user and the password "
                        f"in {PASSWORD_ENV} or --password-file, or the token in {TOKEN_ENV}."
                    ) from None
                if status not in RETRIED_STATUS:
                    raise PacsRequestError(f"the PACS at {self.root} answered HTTP {status} while {action}.") from None
                problem = f"it answered HTTP {status}"
            except requests.exceptions.SSLError:
                raise PacsError(f"the TLS certificate of {self.root} could not be verified: give the hospital's CA "
                                "certificate with --ca-file FILE.") from None
            except requests.Timeout:
                problem = f"no answer within {self.timeout_s:g} s"
            except requests.ConnectionError:
                problem = "the connection failed"
            if attempt < self.tries:
                wait = self.backoff_s * 2 ** (attempt - 1)
                self._warn(f"the PACS at {self.root} failed while {action} ({problem}); retry {attempt} of "
                           f"{self.tries - 1} in {wait:g} s")
                self._sleep(wait)
        raise PacsUnavailableError(
            f"the PACS at {self.root} failed while {action} ({problem}) after {self.tries} tries; check that it is "
            "running and the URL is right, then run the same command again (results already stored are kept)."
        )
