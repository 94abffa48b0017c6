"""The ``medsr listen`` node in-process: a real Storage SCP on a loopback port, fed by a
pynetdicom SCU, with a recording sender in place of the destination (Orthanc end-to-end
tests are in test_orthanc.py)."""

from __future__ import annotations

import io
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medsr.cli.listen import server_tls
from medsr.errors import ConfigError
from medsr.infer.model_source import load_model
from medsr.net.listen import (
    DATA_SET_DOES_NOT_MATCH,
    SUCCESS,
    ListenOptions,
    Node,
    UpscaleOptions,
    check_instance,
)
from tests.test_privacy import assert_clean

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore  # noqa: E402

LATER = 10_000.0  # seconds added to "now" so the quiet period and back-off have passed
UID = re.compile(r"\d+(?:\.\d+){4,}")  # not an IPv4 address


@dataclass
class Recorder:
    """A destination that keeps what it is sent, and can fail after some instances."""

    fail_after: int | None = None
    description: str = "recorder"
    sent: list[bytes] = field(default_factory=list)

    def send(self, files: Sequence[Path], on_sent: Callable[[Path], None]) -> None:
        for path in files:
            if self.fail_after is not None and len(self.sent) >= self.fail_after:
                raise ConnectionError("destination down")
            self.sent.append(path.read_bytes())
            on_sent(path)

    @property
    def datasets(self) -> list[pydicom.Dataset]:
        return [pydicom.dcmread(io.BytesIO(data)) for data in self.sent]

    @property
    def uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


@pytest.fixture(scope="module")
def bicubic():
    return load_model("bicubic", scale=2)


@pytest.fixture
def make_node(tmp_path, bicubic) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(sender=None, *, upscale: UpscaleOptions | None = None, **options) -> Node:
        options.setdefault("allowed_aets", ("TESTER",))
        node = Node(
            ListenOptions(spool=tmp_path / "spool", port=0, **options),
            upscale or UpscaleOptions(model="bicubic", scale=2, device="cpu", tile=0),
            sender if sender is not None else Recorder(),
            model=bicubic,
        )
        node.start(worker=False)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def associate(node: Node, aet: str = "TESTER"):
    ae = pynetdicom.AE(ae_title=aet)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    assert node.address is not None
    return ae.associate("127.0.0.1", node.address[1], ae_title="MEDSR")


def store(node: Node, datasets, aet: str = "TESTER") -> list[int]:
    assoc = associate(node, aet)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_echo_store_and_send_a_derived_series(make_node, ct_series):
    recorder = Recorder()
    node = make_node(recorder)
    paths = ct_series(3)
    assoc = associate(node)
    assert int(assoc.send_c_echo().Status) == SUCCESS
    assoc.release()
    assert store(node, [pydicom.dcmread(p) for p in paths]) == [SUCCESS] * 3
    assert list(node.spool.pending().values()) == [3]
    assert node.work_once() is False  # still within the quiet period
    assert node.work_once(now=time.time() + LATER) is True
    source = [pydicom.dcmread(p) for p in paths]
    derived = recorder.datasets
    assert len(derived) == 3
    assert {d.StudyInstanceUID for d in derived} == {source[0].StudyInstanceUID}
    assert len({d.SeriesInstanceUID for d in derived}) == 1
    assert derived[0].SeriesInstanceUID != source[0].SeriesInstanceUID
    assert {(d.Rows, d.Columns) for d in derived} == {(2 * source[0].Rows, 2 * source[0].Columns)}
    referenced = {d.SourceImageSequence[0].ReferencedSOPInstanceUID for d in derived}
    assert referenced == {s.SOPInstanceUID for s in source}
    assert node.spool.jobs() == [] and node.spool.pending() == {}  # sent: spool emptied


def test_malformed_instances_are_refused_and_the_node_keeps_running(make_node, ct_series):
    node = make_node()
    good = [pydicom.dcmread(p) for p in ct_series(2)]
    truncated = pydicom.dcmread(ct_series(1, name="bad")[0])
    truncated.PixelData = truncated.PixelData[:-3000]
    no_series = pydicom.dcmread(ct_series(1, name="bad2")[0])
    del no_series.SeriesInstanceUID
    no_pixels = pydicom.dcmread(ct_series(1, name="bad3")[0])
    del no_pixels.PixelData
    statuses = store(node, [truncated, no_series, no_pixels, *good])
    assert statuses == [DATA_SET_DOES_NOT_MATCH] * 3 + [SUCCESS] * 2
    assert list(node.spool.pending().values()) == [2]
    assoc = associate(node)
    assert int(assoc.send_c_echo().Status) == SUCCESS
    assoc.release()


def test_check_instance_names_the_problem_without_values(ct_series):
    ds = pydicom.dcmread(ct_series(1)[0])
    assert check_instance(ds, ds.SOPInstanceUID) is None
    assert check_instance(ds, "1.2.3.4") == "SOPInstanceUID differs from the C-STORE request's"
    del ds.StudyInstanceUID
    assert check_instance(ds, None) == "no StudyInstanceUID"


def test_a_calling_ae_title_not_allowed_is_rejected(make_node, ct_series):
    node = make_node()
    assoc = associate(node, aet="INTRUDER")
    assert assoc.is_rejected and not assoc.is_established
    assert node.spool.pending() == {}


def test_a_host_not_allowed_is_refused(make_node):
    node = make_node(allowed_hosts=("127.0.0.2",))
    assoc = associate(node)
    assert not assoc.is_established


def test_options_refuse_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="allowed calling AE titles"):
        ListenOptions(spool=tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError, match="'TOO-LONG-AE-TITLE-X'"):
        ListenOptions(spool=tmp_path, ae_title="TOO-LONG-AE-TITLE-X")
    with pytest.raises(ConfigError, match="'somehost'"):
        ListenOptions(spool=tmp_path, allowed_hosts=("somehost",))


def test_a_restart_sends_only_what_was_not_sent(make_node, ct_series, tmp_path):
    first = Recorder(fail_after=2)
    node = make_node(first)
    assert store(node, [pydicom.dcmread(p) for p in ct_series(4)]) == [SUCCESS] * 4
    now = time.time() + LATER
    node.work_once(now=now)
    (job,) = node.spool.jobs()
    state = job.state()
    assert len(state.sent) == 2 and state.attempts == 1 and state.next_try > now - LATER
    outputs = {str(pydicom.dcmread(p).SOPInstanceUID) for p in job.outputs()}
    node.stop()

    second = Recorder()
    restarted = make_node(second)  # same spool: the queued job and its written output remain
    restarted.work_once(now=now + LATER)
    assert not set(first.uids) & set(second.uids)  # nothing sent twice
    assert set(first.uids) | set(second.uids) == outputs  # the same output: not redone
    assert restarted.spool.jobs() == []


def test_send_failures_back_off_then_give_up(make_node, ct_series):
    node = make_node(Recorder(fail_after=0), max_attempts=2, retry_seconds=30)
    store(node, [pydicom.dcmread(p) for p in ct_series(2)])
    now = time.time() + LATER
    node.work_once(now=now)
    (job,) = node.spool.jobs()
    assert job.state().attempts == 1
    assert job.state().next_try >= now - LATER + 30
    assert node.spool.next_job(now=time.time()) is None  # not due before the back-off
    node.work_once(now=now + LATER)
    assert node.spool.jobs() == []
    (failed,) = node.spool.failed.iterdir()
    error = (failed / "error.txt").read_text()
    assert "sending failed 2 times" in error and "destination down" in error
    assert not UID.search(error)


def test_an_incomplete_series_survives_a_restart(make_node, ct_series):
    paths = ct_series(4)
    node = make_node()
    assert store(node, [pydicom.dcmread(p) for p in paths[:2]]) == [SUCCESS] * 2
    node.stop()
    (series,) = (node.spool.incoming).iterdir()
    (series / "input" / ".tmp-halfwritten").write_bytes(b"\0" * 10)  # a crash mid-write
    recorder = Recorder()
    restarted = make_node(recorder)
    assert list(restarted.spool.pending().values()) == [2]
    assert not list(series.glob("input/.tmp-*"))
    store(restarted, [pydicom.dcmread(p) for p in paths[2:]])
    restarted.work_once(now=time.time() + LATER)
    assert len(recorder.sent) == 4
    assert len({ds.SeriesInstanceUID for ds in recorder.datasets}) == 1


def test_logs_and_spool_names_carry_no_identifiers(make_node, ct_series, caplog):
    caplog.set_level("DEBUG")
    node = make_node(Recorder(fail_after=1), max_attempts=1)
    paths = ct_series(2)
    bad = pydicom.dcmread(paths[0])
    bad.PixelData = b""
    store(node, [bad, *(pydicom.dcmread(p) for p in paths)])
    associate(node, aet="INTRUDER")
    node.work_once(now=time.time() + LATER)
    assert "given up" in caplog.text and "refused an instance" in caplog.text
    assert_clean(caplog.text)
    assert not UID.search(caplog.text)
    names = " ".join(str(p.relative_to(node.spool.root)) for p in node.spool.root.rglob("*"))
    assert not UID.search(names)


def test_deidentified_output_keeps_one_mapping_across_restarts(make_node, ct_series, tmp_path):
    recorder = Recorder()
    upscale = UpscaleOptions(model="bicubic", scale=2, device="cpu", tile=0, deidentify=True)
    node = make_node(recorder, upscale=upscale)
    paths = ct_series(2)
    store(node, [pydicom.dcmread(p) for p in paths])
    node.work_once(now=time.time() + LATER)
    source = pydicom.dcmread(paths[0])
    derived = recorder.datasets[0]
    assert derived.PatientIdentityRemoved == "YES"
    assert derived.StudyInstanceUID != source.StudyInstanceUID
    data = b"".join(recorder.sent)
    for value in ("Zyxwv^Privacyprobe", "PID-9137-SECRET", "ACC77331SEC"):
        assert value.encode() not in data
    node.stop()
    restarted = make_node(Recorder(), upscale=upscale)
    assert restarted.deid_state is not None and node.deid_state is not None
    assert restarted.deid_state.map_uid(source.StudyInstanceUID) == derived.StudyInstanceUID


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_only_with_a_server_certificate(make_node, tmp_path):
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    subject = ["-subj", "/CN=medsr-test", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
    )
    node = make_node(ssl_context=server_tls(str(cert), str(key), None))
    assert not associate(node).is_established  # plain DICOM is not spoken
    ae = pynetdicom.AE(ae_title="TESTER")
    ae.add_requested_context(Verification)
    client = ssl.create_default_context(cafile=str(cert))
    assert node.address is not None
    assoc = ae.associate("127.0.0.1", node.address[1], tls_args=(client, "127.0.0.1"))
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == SUCCESS
    assoc.release()
    with pytest.raises(ConfigError, match="need --tls-cert"):
        server_tls(None, str(key), None)


def test_the_command_refuses_unsafe_or_bad_settings(tmp_path, capsys):
    from medsr.cli import main

    base = ["listen", "--spool", str(tmp_path / "spool"), "--model", "bicubic", "--scale", "2"]
    assert main([*base, "--host", "0.0.0.0", "--send-to", "PACS@127.0.0.1:104"]) == 2
    assert "--allow-aet" in capsys.readouterr().err
    assert main([*base, "--send-to", "PACS@127.0.0.1"]) == 2
    assert "'PACS@127.0.0.1' is not AE@host:port" in capsys.readouterr().err
    assert main([*base, "--stow", "http://u:p@127.0.0.1:1/dicom-web"]) == 2
    assert "MEDSR_DICOMWEB_TOKEN" in capsys.readouterr().err
