"""A throwaway Orthanc (Debian's `orthanc` and `orthanc-dicomweb`) for the PACS tests and benchmark: its storage in a
temporary folder, a free loopback HTTP port, remote access off, authentication on with one test user, and the
DICOMweb plugin. `make orthanc` installs the packages; without them the tests skip and say so, unless
PNEUMONIA_REQUIRE_ORTHANC=1 (CI), where they fail."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

USER, PASSWORD = "screener", "not-the-real-password-7f3a"
PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*",
                "/usr/lib/*/orthanc/plugins/libOrthancDicomWeb.so*")
REQUIRE_ENV = "PNEUMONIA_REQUIRE_ORTHANC"


def orthanc_binaries() -> tuple[str, str] | None:
    """(the Orthanc executable, the DICOMweb plugin) where Debian's packages put them, else None."""
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None)
    plugins = [path for pattern in PLUGIN_GLOBS for path in sorted(glob.glob(pattern))]
    return (binary, plugins[0]) if binary and plugins else None


def missing_reason() -> str:
    return ("Orthanc or its DICOMweb plugin is not installed (`make orthanc` installs Debian's `orthanc` and "
            "`orthanc-dicomweb`; apt-get failed?)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    """One server; `url` is its DICOMweb root. Stop it with `stop()` (the fixtures do)."""

    def __init__(self, folder: Path, binaries: tuple[str, str]):
        binary, plugin = binaries
        self.folder = Path(folder)
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root}/dicom-web"
        config = {
            "Name": "pneumonia-test", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"), "HttpPort": self.port, "DicomServerEnabled": False,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "HttpCompressionEnabled": False,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "config.json").write_text(json.dumps(config))
        self.log = open(self.folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([binary, str(self.folder / "config.json")], stdout=self.log,
                                        stderr=subprocess.STDOUT, cwd=self.folder)
        self._wait_until_up()

    def _wait_until_up(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.rest("/system")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError("Orthanc did not answer within 30 s")

    def rest(self, path: str, data: bytes | None = None, method: str | None = None):
        """Orthanc's own REST API (not DICOMweb), authenticated: the tests' view of what is stored."""
        request = urllib.request.Request(self.root + path, data=data, method=method)
        request.add_header("Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body and response.headers.get_content_type() == "application/json" else body

    def upload(self, dicom: bytes) -> None:
        self.rest("/instances", data=dicom, method="POST")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
