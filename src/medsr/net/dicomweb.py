"""DICOMweb client side: read a study or series by URL (QIDO-RS, WADO-RS), store with STOW-RS.

Credentials come from the environment only, never from a URL or the command line (which end
up in shell histories, process lists and logs): ``MEDSR_DICOMWEB_TOKEN`` (an HTTP bearer
token) or ``MEDSR_DICOMWEB_USER`` with ``MEDSR_DICOMWEB_PASSWORD`` (HTTP basic auth).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from medsr.errors import ConfigError, MedsrError
from medsr.net.spool import redact

if TYPE_CHECKING:
    import requests
    from dicomweb_client import DICOMwebClient

logger = logging.getLogger(__name__)

TOKEN_ENV = "MEDSR_DICOMWEB_TOKEN"
USER_ENV = "MEDSR_DICOMWEB_USER"
PASSWORD_ENV = "MEDSR_DICOMWEB_PASSWORD"
STOW_CHUNK = 16  # instances per STOW-RS request (bounds memory and request size)


class DicomwebError(MedsrError):
    """A DICOMweb request failed (network, HTTP status, or instances the server refused)."""


def is_dicomweb_url(text: str) -> bool:
    """Whether a command-line input is a DICOMweb URL rather than a path."""
    return text.startswith(("http://", "https://"))


@dataclass(frozen=True)
class DicomwebTarget:
    """A DICOMweb URL split into the service root and the study/series it names."""

    base: str
    study_uid: str | None = None
    series_uid: str | None = None

    @classmethod
    def parse(cls, url: str) -> DicomwebTarget:
        """``http(s)://host[:port]/prefix[/studies/UID[/series/UID]]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{url!r} is not an http(s) DICOMweb URL")
        if parts.username or parts.password:
            raise ConfigError(
                "credentials in a DICOMweb URL are refused (they end up in logs and shell "
                f"histories): set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"DICOMweb URL {url!r}: no query or fragment expected")
        segments = [s for s in parts.path.split("/") if s]
        study = series = None
        if "studies" in segments:
            k = segments.index("studies")
            rest = segments[k + 1 :]
            prefix = segments[:k]
            if not rest or len(rest) not in (1, 3) or (len(rest) == 3 and rest[1] != "series"):
                raise ConfigError(
                    f"DICOMweb URL {url!r}: expected .../studies/STUDY_UID[/series/SERIES_UID]"
                )
            study = rest[0]
            series = rest[2] if len(rest) == 3 else None
        else:
            prefix = segments
        base = f"{parts.scheme}://{parts.netloc}" + "".join(f"/{s}" for s in prefix)
        return cls(base, study, series)


def session() -> requests.Session:
    """An HTTP session with the credentials of the environment, if any."""
    from dicomweb_client.session_utils import create_session

    s = create_session()
    token = os.environ.get(TOKEN_ENV)
    user = os.environ.get(USER_ENV)
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    elif user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise ConfigError(f"{USER_ENV} is set but {PASSWORD_ENV} is not")
        s.auth = (user, password)
    return s


def client(base: str) -> DICOMwebClient:
    from dicomweb_client import DICOMwebClient

    # dicomweb-client logs request URLs (with UIDs) at debug level
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
    return DICOMwebClient(base, session=session(), timeout=120)


def _save(ds, path: Path) -> None:
    from pydicom.dataset import FileMetaDataset

    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        from pydicom.uid import ExplicitVRLittleEndian

        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def fetch(url: str, folder: Path) -> list[Path]:
    """Download the study or series ``url`` names into ``folder`` (one file per instance;
    a study's series all go into ``folder``, which ``medsr upscale`` splits by series)."""
    target = DicomwebTarget.parse(url)
    if target.study_uid is None:
        raise ConfigError(
            f"DICOMweb URL {url!r} names no study: expected .../studies/STUDY_UID[/series/UID]"
        )
    web = client(target.base)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if target.series_uid is not None:
            series = [target.series_uid]
        else:  # QIDO-RS: the study's series
            found = web.search_for_series(target.study_uid, get_remaining=True)
            series = [str(s["0020000E"]["Value"][0]) for s in found if "0020000E" in s]
        paths: list[Path] = []
        for series_uid in series:
            for ds in web.retrieve_series(target.study_uid, series_uid):
                path = folder / f"{len(paths):05d}.dcm"
                _save(ds, path)
                paths.append(path)
    except ConfigError:
        raise
    except Exception as error:
        raise DicomwebError(
            f"{target.base}: reading failed ({type(error).__name__}: {redact(str(error))})"
        ) from error
    if not paths:
        raise DicomwebError(f"{target.base}: the study or series holds no instances")
    return paths


def stow(files: Sequence[Path], url: str, *, on_sent: Callable[[Path], None] | None = None) -> None:
    """Store ``files`` (DICOM files) at the DICOMweb service ``url`` with STOW-RS, a few
    instances a request; ``on_sent(path)`` after each instance the server accepted."""
    from pydicom import dcmread

    target = DicomwebTarget.parse(url)
    web = client(target.base)
    for start in range(0, len(files), STOW_CHUNK):
        chunk = list(files[start : start + STOW_CHUNK])
        try:
            response = web.store_instances([dcmread(p) for p in chunk])
        except Exception as error:
            raise DicomwebError(
                f"{target.base}: STOW-RS failed ({type(error).__name__}: {redact(str(error))})"
            ) from error
        failed = response.get("FailedSOPSequence", []) if response is not None else []
        if failed:
            raise DicomwebError(f"{target.base}: STOW-RS refused {len(failed)} instance(s)")
        if on_sent is not None:
            for path in chunk:
                on_sent(path)
