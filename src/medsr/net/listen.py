"""``medsr listen``: a DICOM node that super-resolves the series sent to it.

A Storage SCP (pynetdicom) receives instances (C-STORE) and answers C-ECHO. Every instance is
checked (decodable, with its UIDs and pixel data) and kept in the durable spool
(:mod:`medsr.net.spool`) before the C-STORE is answered; a malformed one is refused with a
failure status and the node carries on. A series that received nothing for the quiet period
is queued; the worker reads it, super-resolves it and writes the derived series, optionally
de-identified (:func:`medsr.infer.pipeline.run`, as ``medsr upscale`` does), and sends it to
a C-STORE SCP or a STOW-RS endpoint, retrying with exponential back-off. Logs name series by
a keyed hash, never by UID or patient attribute.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import logging
import os
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medsr.errors import ConfigError, MedsrError
from medsr.infer.defaults import DEFAULT_OVERLAP, DEFAULT_TILE
from medsr.net.dimse import Destination, check_ae_title, cstore_files, quiet_pynetdicom
from medsr.net.spool import Job, Spool, redact

if TYPE_CHECKING:
    from medsr.infer import pipeline
    from medsr.infer.model_source import SRModel
    from medsr.io.deidentify import DeidentificationState

logger = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 Annex B.2.3)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
MAX_BACKOFF_SECONDS = 600.0


class Sender(Protocol):
    """Sends a derived series' files; calls ``on_sent(path)`` for each instance stored."""

    description: str

    def send(self, files: Sequence[Path], on_sent: Callable[[Path], None]) -> None: ...


@dataclass(frozen=True)
class CStoreSender:
    destination: Destination
    calling_ae_title: str = "MEDSR"
    ssl_context: ssl.SSLContext | None = None

    @property
    def description(self) -> str:
        return f"C-STORE to {self.destination}"

    def send(self, files: Sequence[Path], on_sent: Callable[[Path], None]) -> None:
        cstore_files(
            files,
            self.destination,
            calling_ae_title=self.calling_ae_title,
            on_sent=on_sent,
            ssl_context=self.ssl_context,
        )


@dataclass(frozen=True)
class StowSender:
    url: str

    @property
    def description(self) -> str:
        from medsr.net.dicomweb import DicomwebTarget

        return f"STOW-RS to {DicomwebTarget.parse(self.url).base}"

    def send(self, files: Sequence[Path], on_sent: Callable[[Path], None]) -> None:
        from medsr.net.dicomweb import stow

        stow(files, self.url, on_sent=on_sent)


@dataclass(frozen=True)
class UpscaleOptions:
    """How each series is super-resolved: the model to load, the ``medsr upscale`` options
    that apply (:meth:`pipeline_options` turns them into the options of
    :class:`medsr.infer.pipeline.UpscaleOptions`) and whether the output is de-identified."""

    model: str
    scale: int | None = None
    axis: str = "in-plane"
    tile: int | None = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    deidentify: bool = False
    deid_key: str | None = None

    def pipeline_options(self, state: DeidentificationState | None) -> pipeline.UpscaleOptions:
        """The pipeline's options: always a derived DICOM series, de-identified with
        ``state`` (one for the node's life)."""
        from medsr.infer import pipeline

        return pipeline.UpscaleOptions(
            axis=self.axis,
            tile=self.tile,
            overlap=self.overlap,
            device=self.device,
            precision=self.precision,
            threads=self.threads,
            format="dicom",
            deidentify=state,
        )


@dataclass(frozen=True)
class ListenOptions:
    """The node: who may connect, where data waits, when a series is complete, retries."""

    spool: Path
    ae_title: str = "MEDSR"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_aets: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    quiet_seconds: float = 10.0
    max_attempts: int = 5
    retry_seconds: float = 5.0
    poll_seconds: float = 0.5
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title)
        for title in self.allowed_aets:
            check_ae_title(title)
        for host in self.allowed_hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError(f"allowed host {host!r} is not an IP address") from None
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port {self.port} is not in 0..65535")
        if self.quiet_seconds <= 0:
            raise ConfigError(f"quiet period {self.quiet_seconds} s must be positive")
        if self.max_attempts < 1:
            raise ConfigError(f"max attempts {self.max_attempts} must be at least 1")
        if self.retry_seconds < 0:
            raise ConfigError(f"retry delay {self.retry_seconds} s must not be negative")
        if not is_loopback(self.host) and not self.allowed_aets:
            raise ConfigError(
                f"listening on {self.host} (not loopback) needs a list of allowed calling AE "
                "titles (--allow-aet)"
            )


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_instance(ds: Any, affected_sop_uid: str | None) -> str | None:
    """Why a received dataset cannot be kept (no values quoted), or None if it can."""
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not str(ds.get(keyword, "") or "").strip():
            return f"no {keyword}"
    if affected_sop_uid and str(ds.SOPInstanceUID).strip() != str(affected_sop_uid).strip():
        return "SOPInstanceUID differs from the C-STORE request's"
    if "PixelData" not in ds:
        return "no pixel data"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as error:
        return f"pixel data not decodable ({type(error).__name__})"
    if pixels.size == 0:
        return "empty pixel data"
    return None


class Node:
    """The Storage SCP, the spool and the worker of ``medsr listen``.

    ``start()`` opens the port and starts the worker thread; ``stop()`` closes both. Tests
    and embedders may instead call ``work_once()`` to seal and run due jobs synchronously.
    """

    def __init__(
        self,
        options: ListenOptions,
        upscale: UpscaleOptions,
        sender: Sender,
        *,
        model: SRModel | None = None,
    ) -> None:
        self.options = options
        self.upscale = upscale
        self.sender = sender
        self.spool = Spool(options.spool)
        if model is None:
            from medsr.infer.model_source import load_model

            model = load_model(upscale.model, scale=upscale.scale)
        self.model = model
        self.deid_state = self._deidentification_state()
        self.pipeline_options = upscale.pipeline_options(self.deid_state)
        self._stop = threading.Event()
        self._ae: Any = None
        self._threads: list[threading.Thread] = []
        self.address: tuple[str, int] | None = None
        self.sent_series = 0
        self.failed_series = 0

    def _deidentification_state(self) -> DeidentificationState | None:
        if not self.upscale.deidentify:
            return None
        from medsr.io.deidentify import KEY_ENV_VAR, DeidentificationState

        # a restart must map UIDs as before (a series split by a restart stays one series):
        # without a key, one derived from the spool's secret (not the secret itself, which
        # keys the names in logs: those must not be linkable to the output's UIDs)
        key = self.upscale.deid_key or os.environ.get(KEY_ENV_VAR)
        if not key:
            key = hmac.new(self.spool.secret, b"medsr listen --deidentify", "sha256").digest()
        return DeidentificationState(key=key)

    # -- the Storage SCP ------------------------------------------------------------------------
    def _on_store(self, event: Any) -> int:
        from pydicom import dcmread

        peer = event.assoc.requestor.ae_title
        try:
            data = event.encoded_dataset()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(io.BytesIO(data))
        except Exception as error:
            logger.warning(
                "refused an instance from %s: not decodable (%s)", peer, type(error).__name__
            )
            return CANNOT_UNDERSTAND
        problem = check_instance(ds, getattr(event.request, "AffectedSOPInstanceUID", None))
        if problem is not None:
            logger.warning("refused an instance from %s: %s", peer, problem)
            return DATA_SET_DOES_NOT_MATCH
        try:
            key = self.spool.store(
                data, series_uid=str(ds.SeriesInstanceUID), sop_uid=str(ds.SOPInstanceUID)
            )
        except OSError as error:
            logger.error("could not keep an instance: %s", redact(str(error)))
            return OUT_OF_RESOURCES
        logger.debug("series %s: instance received from %s", key, peer)
        return SUCCESS

    def _on_rejected(self, event: Any) -> None:
        logger.warning(
            "association from %s (AE %s) rejected (calling AE title not allowed, or too many "
            "associations)",
            event.assoc.requestor.address,
            event.assoc.requestor.ae_title,
        )

    def start(self, *, worker: bool = True) -> tuple[str, int]:
        """Open the port (bound to ``options.host``) and start the worker (unless ``worker`` is
        false: then ``work_once`` runs jobs); returns the address (the actual port when
        ``options.port`` is 0)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
        from pynetdicom.transport import ThreadedAssociationServer

        quiet_pynetdicom()
        allowed_hosts = frozenset(self.options.allowed_hosts)

        class Server(ThreadedAssociationServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                if allowed_hosts and client_address[0] not in allowed_hosts:
                    logger.warning(
                        "connection from %s refused: host not allowed", client_address[0]
                    )
                    return False
                return True

        ae = AE(ae_title=self.options.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.options.allowed_aets:
            ae.require_calling_aet = list(self.options.allowed_aets)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected)]
        server = ae.make_server(
            (self.options.host, self.options.port),
            ssl_context=self.options.ssl_context,
            evt_handlers=handlers,
            server_class=Server,
        )
        ae._servers.append(server)  # as AE.start_server does: AE.shutdown() then closes it
        self._ae = ae
        self.address = (self.options.host, int(server.server_address[1]))
        serving = threading.Thread(target=server.serve_forever, name="medsr-scp", daemon=True)
        self._threads = [serving]
        if worker:
            self._threads.append(
                threading.Thread(target=self._work, name="medsr-worker", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        logger.info(
            "AE %s listening on %s:%d; %d series waiting in the spool, %d queued",
            self.options.ae_title,
            *self.address,
            len(self.spool.pending()),
            len(self.spool.jobs()),
        )
        return self.address

    def stop(self, timeout: float = 30.0) -> None:
        """Close the port and stop the worker (after the job it is running)."""
        self._stop.set()
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
        for thread in self._threads:
            thread.join(timeout)

    def request_stop(self) -> None:
        """Make ``wait()`` return (safe from a signal handler)."""
        self._stop.set()

    def wait(self) -> None:
        """Block until ``stop()`` is called (from another thread or a signal handler)."""
        while not self._stop.wait(1.0):
            pass

    # -- the worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.work_once()
            except Exception:  # a bug: keep the node up, say so
                logger.exception("worker error (the job stays queued)")
                busy = False
            if not busy:
                self._stop.wait(self.options.poll_seconds)

    def work_once(self, now: float | None = None) -> bool:
        """Queue the quiet series and run one due job; whether a job ran."""
        for job in self.spool.seal_quiet(self.options.quiet_seconds, now):
            logger.info("series %s: %d instance(s) queued", _series(job), len(job.instances()))
        job = self.spool.next_job(now)
        if job is None:
            return False
        self.run_job(job)
        return True

    def run_job(self, job: Job) -> None:
        """Super-resolve ``job`` (unless its output exists) and send what is not sent yet."""
        name = _series(job)
        if not job.output.is_dir():
            start = time.perf_counter()
            try:
                count = self._upscale(job)
            except Exception as error:  # the same input fails the same way: no retry
                text = str(error) if isinstance(error, MedsrError) else repr(error)
                self.spool.give_up(job, f"super-resolution failed: {text}")
                self.failed_series += 1
                logger.error("series %s: super-resolution failed: %s", name, redact(text))
                return
            logger.info(
                "series %s: %d -> %d instance(s) super-resolved (%s x%d) in %.1f s",
                name,
                len(job.instances()),
                count,
                self.model.name,
                self.model.scale,
                time.perf_counter() - start,
            )
        state = job.state()
        done = set(state.sent)
        files = [p for p in job.outputs() if str(p.relative_to(job.output)) not in done]

        def on_sent(path: Path) -> None:
            state.sent.append(str(path.relative_to(job.output)))
            job.save(state)

        try:
            self.sender.send(files, on_sent)
        except Exception as error:
            state.attempts += 1
            state.error = redact(f"{type(error).__name__}: {error}")
            if state.attempts >= self.options.max_attempts:
                job.save(state)
                self.spool.give_up(job, f"sending failed {state.attempts} times: {state.error}")
                self.failed_series += 1
                logger.error(
                    "series %s: %s failed %d times, given up (%s)",
                    name,
                    self.sender.description,
                    state.attempts,
                    state.error,
                )
                return
            delay = min(self.options.retry_seconds * 2 ** (state.attempts - 1), MAX_BACKOFF_SECONDS)
            state.next_try = time.time() + delay
            job.save(state)
            logger.warning(
                "series %s: %s failed (attempt %d of %d), retry in %.0f s: %s",
                name,
                self.sender.description,
                state.attempts,
                self.options.max_attempts,
                delay,
                state.error,
            )
            return
        self.spool.finish(job)
        self.sent_series += 1
        logger.info(
            "series %s: %d instance(s) sent (%s)", name, len(state.sent), self.sender.description
        )

    def _upscale(self, job: Job) -> int:
        """The pipeline (:func:`medsr.infer.pipeline.run`) into ``output.partial``, renamed
        ``output`` at the end: a volume of single-frame files becomes the folder ``series``, a
        2D image or a multi-frame file ``series.dcm``. Raises what failed."""
        from medsr.infer.pipeline import Job as Input
        from medsr.infer.pipeline import run

        outcome = run(
            Input(job.input, Path("series"), job.partial), self.model, self.pipeline_options
        )
        if outcome.exception is not None:
            raise outcome.exception
        os.rename(job.partial, job.output)
        return len(outcome.written)


def _series(job: Job) -> str:
    """The job's series key (its folder name without the time prefix)."""
    return job.name.split("-", 1)[-1]
