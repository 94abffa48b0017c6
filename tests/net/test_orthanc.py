"""End to end against a real Orthanc (skipped when it is not installed): ``medsr listen`` as
a separate process, fed by Orthanc's own C-STORE (the REST forward of docs/pacs.md) or by a
pynetdicom SCU, sending derived series back by STOW-RS or C-STORE; ``medsr upscale`` reading
from Orthanc's DICOMweb and storing back with STOW-RS."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medsr.cli import main
from medsr.infer.model_source import load_model
from medsr.net.dimse import Destination
from medsr.net.listen import CStoreSender, ListenOptions, Node, StowSender, UpscaleOptions
from tests.io.test_write import DCIODVFY, dciodvfy_errors
from tests.net.conftest import Orthanc, running_orthanc, wait_for
from tests.test_privacy import assert_clean

pynetdicom = pytest.importorskip("pynetdicom")
pytest.importorskip("dicomweb_client")
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore  # noqa: E402

pytestmark = pytest.mark.e2e
UID = re.compile(r"\d+(?:\.\d+){4,}")
REPO = Path(__file__).resolve().parents[2]


class Listener:
    """``medsr listen`` in its own process, its output in a log file."""

    def __init__(self, spool: Path, port: int, log: Path, *destination: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "medsr",
            "listen",
            "--spool",
            str(spool),
            "--port",
            str(port),
            "--allow-aet",
            "ORTHANC",
            "--allow-aet",
            "TESTER",
            "--quiet",
            "6",  # well above the time between the restart and the rest of the series
            "--retry-seconds",
            "1",
            "--model",
            "bicubic",
            "--scale",
            "2",
            "--tile",
            "0",
            "--device",
            "cpu",
            "--threads",
            "1",
            *destination,
        ]
        self.port, self.log = port, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        started = self.log.stat().st_size if self.log.exists() else 0

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"medsr listen exited: {self.text()[-3000:]}")
            return "medsr listen: AE" in self.text()[started:]

        wait_for(ready, "medsr listen to start", timeout=120)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.stop()


def spool_empty(spool: Path) -> bool:
    return not any(any((spool / name).iterdir()) for name in ("incoming", "queue"))


def derived_series(orthanc: Orthanc, study_uid: str, source_series: str) -> list[dict]:
    return [
        s
        for s in orthanc.series_of_study(study_uid)
        if s["MainDicomTags"]["SeriesInstanceUID"] != source_series
    ]


def scu(port: int, aet: str = "TESTER"):
    ae = pynetdicom.AE(ae_title=aet)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="MEDSR")


def in_process_node(orthanc: Orthanc, spool: Path, sender) -> Node:
    """A node in this process (faster to start than ``medsr listen``; the process itself is
    tested in the kill test)."""
    return Node(
        ListenOptions(
            spool=spool,
            port=orthanc.medsr_port,
            allowed_aets=("ORTHANC",),
            quiet_seconds=1,
            poll_seconds=0.2,
        ),
        UpscaleOptions(model="bicubic", scale=2, device="cpu", tile=0),
        sender,
        model=load_model("bicubic", scale=2),
    )


def test_orthanc_forwards_a_series_and_gets_the_derived_series_back_by_stow(
    orthanc, ct_series, tmp_path, caplog
):
    caplog.set_level("DEBUG")
    node = in_process_node(orthanc, tmp_path / "spool", StowSender(orthanc.dicomweb))
    node.start()
    try:
        paths = ct_series(4)
        source = pydicom.dcmread(paths[0])
        series_id = orthanc.upload(paths)
        # the REST forward of docs/pacs.md: Orthanc C-STOREs the series to the "medsr" modality
        body = json.dumps({"Resources": [series_id], "Synchronous": True}).encode()
        orthanc.request("/modalities/medsr/store", body)

        def arrived() -> list[dict]:
            found = derived_series(orthanc, source.StudyInstanceUID, source.SeriesInstanceUID)
            return found if found and len(found[0]["Instances"]) == 4 else []

        wait_for(arrived, "the derived series in Orthanc")
        wait_for(lambda: spool_empty(tmp_path / "spool"), "the spool to empty")
    finally:
        node.stop()
    (derived,) = derived_series(orthanc, source.StudyInstanceUID, source.SeriesInstanceUID)
    assert len(derived["Instances"]) == 4  # all slices, none twice
    assert derived["MainDicomTags"]["SeriesInstanceUID"] != source.SeriesInstanceUID
    for k, instance in enumerate(derived["Instances"][:2]):
        path = tmp_path / f"derived{k}.dcm"
        path.write_bytes(orthanc.request(f"/instances/{instance}/file"))
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert (ds.Rows, ds.Columns) == (2 * source.Rows, 2 * source.Columns)
        assert ds.ImageType[0] == "DERIVED"
        if DCIODVFY:
            new = dciodvfy_errors(path) - dciodvfy_errors(paths[0])
            assert not new, f"dciodvfy errors not in the input: {new}"
    log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("medsr"))
    assert "instance(s) sent (STOW-RS" in log
    assert_clean(log)
    assert not UID.search(log)


def test_killed_mid_series_loses_nothing_sends_nothing_twice_and_refuses_bad_input(
    orthanc, ct_series, tmp_path, listeners
):
    spool, log = tmp_path / "spool", tmp_path / "listen.log"
    destination = ("--send-to", orthanc.destination)
    first = Listener(spool, orthanc.medsr_port, log, *destination)
    listeners.append(first)
    first.start()
    paths = ct_series(5)
    source = pydicom.dcmread(paths[0])
    assoc = scu(orthanc.medsr_port)
    assert [int(assoc.send_c_store(p).Status) for p in paths[:2]] == [0, 0]
    assoc.release()
    first.kill()  # mid-series, within the quiet period: nothing sealed, nothing sent

    second = Listener(spool, orthanc.medsr_port, log, *destination)
    listeners.append(second)
    second.start()
    # the rest of the series first: it must arrive within the quiet period after the restart
    assoc = scu(orthanc.medsr_port)
    assert [int(assoc.send_c_store(p).Status) for p in paths[2:]] == [0, 0, 0]
    bad = pydicom.dcmread(paths[2])
    bad.PixelData = bad.PixelData[:-3000]
    assert int(assoc.send_c_store(bad).Status) == 0xA900  # refused, the node carries on
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()
    assert not scu(orthanc.medsr_port, aet="INTRUDER").is_established  # not on the list

    def arrived() -> list[dict]:
        found = orthanc.series_of_study(source.StudyInstanceUID)
        return found if found and len(found[0]["Instances"]) == 5 else []

    wait_for(arrived, "the derived series in Orthanc")
    wait_for(lambda: spool_empty(spool), "the spool to empty")
    (derived,) = orthanc.series_of_study(source.StudyInstanceUID)  # one series only
    assert len(derived["Instances"]) == 5
    assert derived["MainDicomTags"]["SeriesInstanceUID"] != source.SeriesInstanceUID
    assert second.process is not None and second.process.poll() is None
    text = second.text()
    assert "refused an instance from TESTER" in text and "rejected" in text
    assert_clean(text)
    assert not UID.search(text)


def test_upscale_reads_from_dicomweb_and_stores_back_with_stow(orthanc, ct_series, tmp_path):
    paths = ct_series(3)
    source = pydicom.dcmread(paths[0])
    orthanc.upload(paths)
    url = f"{orthanc.dicomweb}/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}"
    common = ["--model", "bicubic", "--scale", "2", "--device", "cpu", "--tile", "0"]
    code = main(["upscale", url, "-o", str(tmp_path / "out"), *common, "--to", orthanc.dicomweb])
    assert code == 0
    (derived,) = derived_series(orthanc, source.StudyInstanceUID, source.SeriesInstanceUID)
    assert len(derived["Instances"]) == 3
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 3  # also kept under OUT
    # a study URL: every series of it (here the source and the derived one)
    study_url = f"{orthanc.dicomweb}/studies/{source.StudyInstanceUID}"
    assert main(["upscale", study_url, "-o", str(tmp_path / "study"), *common]) == 0
    assert len(list((tmp_path / "study").rglob("*.dcm"))) == 6


def test_upscale_refuses_credentials_in_a_dicomweb_url(tmp_path, capsys):
    url = "http://user:secret@127.0.0.1:9/dicom-web/studies/1.2.3"
    assert main(["upscale", url, "-o", str(tmp_path / "out"), "--model", "bicubic"]) == 2
    assert "MEDSR_DICOMWEB_TOKEN" in capsys.readouterr().err


def docs_lua() -> str:
    text = (REPO / "docs" / "pacs.md").read_text()
    return text.split("```lua\n", 1)[1].split("```", 1)[0]


def test_the_lua_route_of_the_docs_forwards_ct_series_once(ct_series, tmp_path):
    (tmp_path / "route.lua").write_text(docs_lua())
    extra = {"LuaScripts": [str(tmp_path / "route.lua")], "StableAge": 1}
    with running_orthanc(tmp_path / "orthanc", **extra) as orthanc:
        sender = CStoreSender(Destination.parse(orthanc.destination))
        node = in_process_node(orthanc, tmp_path / "spool", sender)
        node.start()
        try:
            paths = ct_series(3)
            source = pydicom.dcmread(paths[0])
            orthanc.upload(paths)  # nothing else: the Lua script forwards it once stable

            def derived_stable() -> bool:
                found = derived_series(orthanc, source.StudyInstanceUID, source.SeriesInstanceUID)
                return bool(found) and bool(orthanc.json(f"/series/{found[0]['ID']}")["IsStable"])  # type: ignore[index]

            wait_for(derived_stable, "the derived series to arrive and become stable")
            time.sleep(3)  # grace for a (wrong) forward of the derived series to show up
            assert node.spool.pending() == {} and node.spool.jobs() == []
            assert node.sent_series == 1  # the derived series was not routed back
            (derived,) = derived_series(orthanc, source.StudyInstanceUID, source.SeriesInstanceUID)
            assert len(derived["Instances"]) == 3
        finally:
            node.stop()
