"""Parsing of destinations and DICOMweb URLs, and DICOMweb credentials from the environment."""

from __future__ import annotations

import pytest

from medsr.errors import ConfigError
from medsr.net.dicomweb import DicomwebTarget, session
from medsr.net.dimse import Destination, check_ae_title


def test_destination_parses_ae_host_port():
    assert Destination.parse("ORTHANC@127.0.0.1:4242") == Destination("ORTHANC", "127.0.0.1", 4242)
    assert Destination.parse("PACS@[::1]:104").host == "::1"
    for bad in ("ORTHANC@127.0.0.1", "127.0.0.1:4242", "A@h:0", "A\\B@h:104", "A@h:99999"):
        with pytest.raises(ConfigError, match=r"destination|AE title"):
            Destination.parse(bad)


def test_ae_titles_are_checked():
    assert check_ae_title("MEDSR") == "MEDSR"
    for bad in ("", "   ", "X" * 17, "BACK\\SLASH"):
        with pytest.raises(ConfigError, match="not valid"):
            check_ae_title(bad)


def test_dicomweb_urls_split_into_root_study_and_series():
    root = "http://127.0.0.1:8042/dicom-web"
    assert DicomwebTarget.parse(root) == DicomwebTarget(root)
    assert DicomwebTarget.parse(f"{root}/studies/1.2.3") == DicomwebTarget(root, "1.2.3")
    assert DicomwebTarget.parse(f"{root}/studies/1.2/series/1.3") == DicomwebTarget(
        root, "1.2", "1.3"
    )
    for bad in (f"{root}/studies", f"{root}/studies/1/instances/2", "ftp://x/studies/1"):
        with pytest.raises(ConfigError, match=r"DICOMweb URL|not an http"):
            DicomwebTarget.parse(bad)


def test_credentials_in_a_url_are_refused():
    with pytest.raises(ConfigError, match="MEDSR_DICOMWEB_TOKEN"):
        DicomwebTarget.parse("https://user:secret@pacs.example/dicom-web")


def test_credentials_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("MEDSR_DICOMWEB_TOKEN", raising=False)
    monkeypatch.delenv("MEDSR_DICOMWEB_USER", raising=False)
    assert "Authorization" not in session().headers and session().auth is None
    monkeypatch.setenv("MEDSR_DICOMWEB_USER", "reader")
    with pytest.raises(ConfigError, match="MEDSR_DICOMWEB_PASSWORD"):
        session()
    monkeypatch.setenv("MEDSR_DICOMWEB_PASSWORD", "pw")
    assert session().auth == ("reader", "pw")
    monkeypatch.setenv("MEDSR_DICOMWEB_TOKEN", "tok")
    assert session().headers["Authorization"] == "Bearer tok"
