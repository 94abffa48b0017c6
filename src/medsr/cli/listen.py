"""``medsr listen``: a DICOM node that super-resolves the series sent to it (docs/pacs.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from pathlib import Path

from medsr.cli.deidentify import add_deidentify_arguments
from medsr.errors import ConfigError
from medsr.infer.defaults import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    DEVICES,
    PRECISIONS,
    default_model,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen",
        help="a DICOM node: receive series (C-STORE), super-resolve, send them on",
        description=(
            "Run a DICOM Storage SCP that answers C-ECHO and receives instances by C-STORE into "
            "an on-disk spool (survives restarts), treats a series as complete after a quiet "
            "period, super-resolves it and sends the derived series (a new series of the same "
            "study, marked not for primary diagnosis) to a C-STORE SCP (--send-to) or a "
            "DICOMweb STOW-RS endpoint (--stow). Binds to 127.0.0.1 unless told otherwise. "
            "Logs never show patient attributes or UIDs. See docs/pacs.md."
        ),
    )
    p.add_argument("--spool", required=True, metavar="DIR", help="spool and queue folder")
    p.add_argument("--ae-title", default="MEDSR", help="this node's AE title (default MEDSR)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=11112, help="port (default 11112; 0: any free)")
    p.add_argument(
        "--allow-aet",
        action="append",
        default=[],
        metavar="AET",
        help="a calling AE title allowed to connect (repeat; default: any, on loopback only)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="IP",
        help="a peer IP address allowed to connect (repeat; default: any)",
    )
    p.add_argument(
        "--quiet",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a series is complete after this long without a new instance (default 10)",
    )
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument(
        "--send-to", metavar="AE@HOST:PORT", help="send derived series by C-STORE to this SCP"
    )
    dest.add_argument(
        "--stow",
        metavar="URL",
        help="send derived series by STOW-RS to this DICOMweb root (credentials from "
        "MEDSR_DICOMWEB_TOKEN or MEDSR_DICOMWEB_USER/PASSWORD)",
    )
    p.add_argument(
        "--max-attempts", type=int, default=5, help="sending attempts per series (default 5)"
    )
    p.add_argument(
        "--retry-seconds",
        type=float,
        default=5.0,
        help="first retry delay, doubled after each failure (default 5)",
    )
    p.add_argument("--model", default=None, help="as for `medsr upscale` (default: by scale)")
    p.add_argument("--scale", type=int, default=None, help="scale factor")
    p.add_argument("--axis", default="in-plane", help="in-plane or through-plane")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size (0: whole slices)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: CUDA, else CPU")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    tls = p.add_argument_group("TLS (DICOM over TLS, PS3.15 Annex B)")
    tls.add_argument("--tls-cert", metavar="PEM", help="this node's certificate chain")
    tls.add_argument("--tls-key", metavar="PEM", help="this node's private key")
    tls.add_argument(
        "--tls-ca", metavar="PEM", help="CA certificates: peers must present a certificate"
    )
    add_deidentify_arguments(p)


def server_tls(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext | None:
    """The TLS context of the SCP (None without ``--tls-cert``)."""
    if cert is None:
        if key is not None or ca is not None:
            raise ConfigError("--tls-key and --tls-ca need --tls-cert")
        return None
    for path in (cert, key, ca):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file {path} not found")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def run(args: argparse.Namespace) -> int:
    from medsr.net.dimse import Destination
    from medsr.net.listen import CStoreSender, ListenOptions, Node, StowSender, UpscaleOptions

    options = ListenOptions(
        spool=Path(args.spool),
        ae_title=args.ae_title,
        host=args.host,
        port=args.port,
        allowed_aets=tuple(args.allow_aet),
        allowed_hosts=tuple(args.allow_host),
        quiet_seconds=args.quiet,
        max_attempts=args.max_attempts,
        retry_seconds=args.retry_seconds,
        ssl_context=server_tls(args.tls_cert, args.tls_key, args.tls_ca),
    )
    upscale = UpscaleOptions(
        model=args.model or default_model(args.scale),
        scale=args.scale,
        axis=args.axis,
        tile=args.tile,
        overlap=args.overlap,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        deidentify=args.deidentify,
        deid_key=args.deid_key,
    )
    if args.send_to:
        sender: CStoreSender | StowSender = CStoreSender(
            Destination.parse(args.send_to), calling_ae_title=args.ae_title
        )
    else:
        from medsr.net.dicomweb import DicomwebTarget

        DicomwebTarget.parse(args.stow)  # refuse a bad URL before listening
        sender = StowSender(args.stow)
    # the node's own activity is what an operator watches (still no identifiers in it)
    if args.verbose == 0:
        logging.getLogger("medsr.net").setLevel(logging.INFO)
    node = Node(options, upscale, sender)
    host, port = node.start()
    print(
        f"medsr listen: AE {options.ae_title} on {host}:{port}, model {node.model.name} "
        f"x{node.model.scale}, {sender.description}; spool {options.spool}",
        flush=True,
    )

    def stop(signum: int, frame: object) -> None:
        node.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    node.wait()
    print("medsr listen: stopping", file=sys.stderr, flush=True)
    node.stop()
    return 0
