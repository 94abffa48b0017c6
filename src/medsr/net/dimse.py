"""DICOM networking (DIMSE) helpers: destinations ``AE@host:port`` and a C-STORE sender."""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medsr.errors import ConfigError

logger = logging.getLogger(__name__)

# PS3.5 AE titles: up to 16 characters, no backslash or control characters
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_DESTINATION = re.compile(r"^(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d+)$")


def check_ae_title(title: str) -> str:
    """``title`` if it is a valid AE title (1-16 characters, no backslash), else ConfigError."""
    if not _AE_TITLE.match(title) or not title.strip():
        raise ConfigError(
            f"AE title {title!r} is not valid: 1 to 16 printable characters, no backslash"
        )
    return title


@dataclass(frozen=True)
class Destination:
    """A C-STORE SCP: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@host:port`` (an IPv6 host in brackets) -> Destination."""
        match = _DESTINATION.match(text.strip())
        if match is None:
            raise ConfigError(
                f"destination {text!r} is not AE@host:port (e.g. ORTHANC@127.0.0.1:4242)"
            )
        port = int(match["port"])
        if not 0 < port < 65536:
            raise ConfigError(f"destination {text!r}: port {port} is not in 1..65535")
        host = match["host"].strip("[]")
        return cls(check_ae_title(match["aet"]), host, port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class SendError(Exception):
    """A destination refused or could not take an instance (retried by ``medsr listen``)."""


def quiet_pynetdicom() -> None:
    """pynetdicom logs association details and, at debug level, dataset elements (patient
    identifiers among them): medsr logs what happens itself."""
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def cstore_files(
    files: Sequence[Path],
    destination: Destination,
    *,
    calling_ae_title: str = "MEDSR",
    on_sent: Callable[[Path], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 60.0,
) -> None:
    """Send ``files`` (DICOM files) to ``destination`` by C-STORE over one association.

    ``on_sent(path)`` is called after each instance the destination accepted (status success
    or warning). Raises SendError on the first failure (association refused, a failure status).
    """
    if not files:
        return
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    quiet_pynetdicom()
    headers = [dcmread(path, stop_before_pixels=True) for path in files]
    contexts: dict[str, set[str]] = {}
    for ds in headers:
        syntaxes = contexts.setdefault(str(ds.SOPClassUID), set())
        syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, syntaxes in contexts.items():
        ordered = sorted(syntaxes | {ExplicitVRLittleEndian, ImplicitVRLittleEndian})
        ae.add_requested_context(sop_class, ordered)
    tls = (ssl_context, destination.host) if ssl_context is not None else None
    assoc = ae.associate(
        destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls
    )
    if not assoc.is_established:
        raise SendError(f"{destination}: association refused or not answered")
    try:
        for path in files:
            status = assoc.send_c_store(path)
            code = int(status.Status) if status is not None and "Status" in status else None
            if code is None:
                raise SendError(f"{destination}: no answer to a C-STORE (connection lost)")
            # 0x0000 success, 0xB000/0xB007/0xB006 warnings: stored
            if code != 0x0000 and code not in (0xB000, 0xB006, 0xB007):
                raise SendError(f"{destination}: C-STORE refused with status 0x{code:04X}")
            if on_sent is not None:
                on_sent(path)
    finally:
        if assoc.is_established:
            assoc.release()
