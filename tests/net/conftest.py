"""Fixtures of the networking tests: small real CT series with known identifiers, a free
loopback port, and a real Orthanc (skipped when the ``Orthanc`` binary is not installed)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.test_privacy import SECRETS

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGINS = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    *sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_series(
    source: Path, folder: Path, count: int, *, study_uid: str | None = None
) -> list[Path]:
    """``count`` slices of one new series (of a new study unless ``study_uid``) made from the
    real CT slice ``source``, stacked 5 mm apart, carrying the identifiers of ``SECRETS``."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(source)
    study, series = study_uid or generate_uid(), generate_uid()
    paths = []
    for k in range(count):
        ds = pydicom.dcmread(source)
        for keyword, value in SECRETS.items():
            setattr(ds, keyword, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        x, y, z = (float(v) for v in base.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * k]
        ds.SliceLocation = z + 5.0 * k
        ds.InstanceNumber = k + 1
        path = folder / f"slice{k:02d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


@pytest.fixture
def ct_series(dicom_file, tmp_path) -> Callable[..., list[Path]]:
    """``ct_series(count, name="series", study_uid=None)``: a CT series written from pydicom's
    CT_small (a real scan) into ``tmp_path/name``."""
    source = dicom_file("CT_small.dcm")

    def build(count: int = 4, name: str = "series", study_uid: str | None = None) -> list[Path]:
        return make_series(source, tmp_path / name, count, study_uid=study_uid)

    return build


@dataclass
class Orthanc:
    """A running Orthanc on loopback ports, with its REST API."""

    http_port: int
    dicom_port: int
    medsr_port: int  # the port Orthanc knows the "medsr" modality by
    aet: str = "ORTHANC"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def destination(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    def request(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.read()

    def json(self, path: str, data: bytes | None = None) -> object:
        return json.loads(self.request(path, data))

    def upload(self, paths: list[Path]) -> str:
        """POST the files; returns the Orthanc ID of their series."""
        ids = [self.json("/instances", p.read_bytes())["ParentSeries"] for p in paths]  # type: ignore[index]
        return ids[0]

    def series_of_study(self, study_uid: str) -> list[dict]:
        """Each series of the study: its main tags and instance IDs."""
        found = self.json("/tools/lookup", study_uid.encode())
        studies = [f["ID"] for f in found if f["Type"] == "Study"]  # type: ignore[union-attr]
        if not studies:
            return []
        return list(self.json(f"/studies/{studies[0]}/series"))  # type: ignore[arg-type]

    def clear(self) -> None:
        for patient in self.json("/patients"):  # type: ignore[union-attr]
            self.request(f"/patients/{patient}", method="DELETE")


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90.0) -> object:
    """Poll ``condition`` until it returns something truthy (a readiness wait, not a timing
    assertion: the deadline only stops a test that would otherwise hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def running_orthanc(root: Path, **extra: object) -> Iterator[Orthanc]:
    """A real Orthanc with the DICOMweb plugin, its own storage under ``root``, loopback-only
    peers and a "medsr" modality (AE MEDSR on 127.0.0.1:``medsr_port``); ``extra``
    configuration entries are added (e.g. LuaScripts)."""
    if ORTHANC is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    plugin = next((p for p in DICOMWEB_PLUGINS if p.is_file()), None)
    if plugin is None:
        pytest.skip("the Orthanc DICOMweb plugin is not installed (orthanc-dicomweb)")
    server = Orthanc(http_port=free_port(), dicom_port=free_port(), medsr_port=free_port())
    config = {
        "Name": "medsr-test",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "HttpPort": server.http_port,
        "DicomPort": server.dicom_port,
        "DicomAet": server.aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {
            "medsr": ["MEDSR", "127.0.0.1", server.medsr_port],
            "tester": ["TESTER", "127.0.0.1", 104],
        },
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "ConcurrentJobs": 1,
        "SaveJobs": False,
        "HttpThreadsCount": 4,
        **extra,
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "orthanc.json"
    path.write_text(json.dumps(config))
    log = (root / "orthanc.log").open("wb")
    process = subprocess.Popen([ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
        try:
            server.json("/system")
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_for(up, "Orthanc to start", timeout=60)
        yield server
    finally:
        process.kill()  # its storage is temporary: no need for an orderly (slow) shutdown
        process.wait()
        log.close()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory) -> Iterator[Orthanc]:
    """One Orthanc for a test module (see ``running_orthanc``)."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
