"""The upscaling API (``/api/info``, ``/api/jobs...``) as a router of its own.

:func:`jobs_router` needs only a :class:`~medsr.web.jobs.JobManager`, an
:class:`~medsr.web.uploads.UploadReader` and what ``/api/info`` reports, so it can be served
and tested without the pages, the security middleware or a study.
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict

from medsr import __version__
from medsr.errors import ConfigError, MedsrError
from medsr.web.jobs import METHODS, JobManager, JobRecord, ModelChoice, UnknownJobError
from medsr.web.limits import UPLOAD_KINDS, UploadRejected
from medsr.web.uploads import UploadReader, problem, read_status

__all__ = ["JobsInfo", "ModelInfo", "ServerInfo", "jobs_router"]

View = Literal["lr", "bicubic", "sr", "consistency", "difference", "reference"]
Plane = Literal["axial", "coronal", "sagittal"]
Method = Literal["in-plane", "through-plane", "self-supervised"]


class ModelInfo(BaseModel):
    name: str
    scales: list[int]
    trained: bool


class ServerInfo(BaseModel):
    version: str
    models: list[ModelInfo]
    methods: list[str]
    selfsup_budget_s: float | None
    default_model: str
    upload_kinds: dict[str, str]
    max_upload_bytes: int
    max_pixels: int
    deidentify: bool
    retention_hours: float
    study: bool


class RegionIn(BaseModel):
    """A region drawn on one slice of the comparison view: a polygon (a rectangle is four
    points) of (x, y) output pixels, x along the slice's columns and y along its rows."""

    model_config = ConfigDict(extra="forbid")
    plane: Plane = "axial"
    index: int = 0
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class JobsInfo:
    """What ``/api/info`` says besides the models and limits: the retention of finished
    jobs (hours), whether a reader study is served, and the time budget of a
    self-supervised job (seconds; None: none)."""

    retention_hours: float = 24.0
    study: bool = False
    selfsup_budget_s: float | None = None


def _http(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def jobs_router(
    jobs: JobManager,
    uploads: UploadReader,
    *,
    models: Mapping[str, ModelChoice],
    default_model: str,
    about: JobsInfo | None = None,
) -> APIRouter:
    """The routes of the upscaling API for ``jobs`` (uploads read by ``uploads``)."""
    about = about or JobsInfo()
    limits = uploads.limits
    router = APIRouter(tags=["upscale"])

    def job(job_id: str) -> JobRecord:
        try:
            return jobs.get(job_id)
        except UnknownJobError as error:
            raise _http(404, str(error)) from None

    def view_slice(job_id: str, view: str, index: int, plane: str) -> np.ndarray:
        try:
            return jobs.view_slice(job_id, view, index, plane)
        except UnknownJobError as error:
            raise _http(404, str(error)) from None
        except MedsrError as error:
            raise _http(422, str(error)) from None

    @router.get("/api/info", response_model=ServerInfo)
    def info() -> ServerInfo:
        """Models, accepted uploads and limits (what the upload page needs)."""
        return ServerInfo(
            version=__version__,
            models=[
                ModelInfo(name=m.name, scales=list(m.scales), trained=m.trained)
                for m in models.values()
            ],
            methods=list(METHODS),
            selfsup_budget_s=about.selfsup_budget_s,
            default_model=default_model,
            upload_kinds=UPLOAD_KINDS,
            max_upload_bytes=limits.max_upload_bytes,
            max_pixels=limits.max_pixels,
            deidentify=uploads.deidentifies,
            retention_hours=about.retention_hours,
            study=about.study,
        )

    @router.post("/api/jobs", status_code=202)
    def create_job(
        file: Annotated[
            UploadFile, File(description="DICOM, zipped DICOM series, NIfTI, PNG, JPEG or TIFF")
        ],
        model: Annotated[str | None, Form()] = None,
        scale: Annotated[int | None, Form()] = None,
        method: Annotated[Method, Form()] = "in-plane",
    ) -> dict[str, Any]:
        """Upload an image and queue its upscaling; answers the job (poll ``/api/jobs/{id}``).

        ``method``: ``in-plane`` (every slice grows by ``scale``), ``through-plane`` (the
        slice axis of a volume grows by ``scale`` with the 2D ``model``) or
        ``self-supervised`` (the slice axis grows to the in-plane spacing by a network
        trained on the volume itself; ``model`` and ``scale`` are not used).

        The file is checked (type, size, pixels, zip members, NIfTI header) and read before
        the job is queued, so a bad file is refused here with a 4xx and a message.
        """
        if method == "self-supervised":
            name, s = "self-supervised", 1
        else:
            name = model or default_model
            choice = models.get(name)
            if choice is None:
                raise _http(422, f"unknown model {name!r}; choose one of {', '.join(models)}")
            s = scale if scale is not None else choice.scales[0]
            if s not in choice.scales:
                allowed = ", ".join(str(v) for v in choice.scales)
                raise _http(422, f"{name} upscales by {allowed}, not {s}")
        job_id, folder = jobs.new_job_dir()
        try:
            kind, image = uploads.accept(
                file.file,
                file.filename or "",
                folder / "upload",
                scale=s,
                growth=None if method == "in-plane" else _growth(method, s),
            )
            if method == "self-supervised":
                s = _selfsup_scale(image)
            elif method == "through-plane" and not image.is_volume:
                raise _http(
                    422,
                    f"through-plane SR needs a volume (slices); this image is 2D "
                    f"{'x'.join(map(str, image.spatial_shape))}: choose in-plane",
                )
        except UploadRejected as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise _http(error.status, str(error)) from None
        except MedsrError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise _http(read_status(error), problem(error)) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        record = jobs.submit(
            job_id,
            kind=kind,
            model=name,
            scale=s,
            image=image,
            deidentified=uploads.deidentifies and kind.startswith("dicom"),
            method=method,
        )
        return record.public()

    @router.post("/api/jobs/{job_id}/reference")
    def upload_reference(
        job_id: str,
        file: Annotated[UploadFile, File(description="the high-resolution reference image")],
    ) -> dict[str, Any]:
        """A high-resolution reference on the output grid of a finished job (same shape as
        the SR output; 422 naming both shapes otherwise): answers PSNR and SSIM of SR and of
        bicubic against it, and makes it the view ``reference``. Checked like an upload;
        only its pixels are kept (``views/reference.npy``), never the file."""
        record = job(job_id)
        if record.status != "done":
            raise _http(409, f"job {job_id} is not finished (status: {record.status})")
        folder = jobs.job_dir(job_id)
        try:
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                _, image = uploads.accept(file.file, file.filename or "", Path(tmp), scale=1)
            return jobs.set_reference(job_id, image)
        except UploadRejected as error:
            raise _http(error.status, str(error)) from None
        except UnknownJobError as error:
            raise _http(404, str(error)) from None
        except ConfigError as error:
            raise _http(422, str(error)) from None
        except MedsrError as error:
            raise _http(read_status(error), problem(error)) from None

    @router.post("/api/jobs/{job_id}/region")
    def score_region(job_id: str, region: RegionIn) -> dict[str, Any]:
        """PSNR and SSIM of SR and bicubic inside and outside a region drawn on one slice,
        against the job's reference (422 without one)."""
        job(job_id)
        try:
            return jobs.region_scores(
                job_id, region.plane, region.index, [list(p) for p in region.points]
            )
        except UnknownJobError as error:
            raise _http(404, str(error)) from None
        except MedsrError as error:
            raise _http(422, str(error)) from None

    @router.get("/api/jobs")
    def list_jobs() -> list[dict[str, Any]]:
        """All jobs kept (newest first)."""
        return [r.public() for r in jobs.list()]

    @router.get("/api/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        """A job's status, progress (``progress_done`` of ``progress_total`` tiles) and,
        when done, its shapes, window and download links."""
        data = job(job_id).public()
        data["queue_position"] = jobs.queue_position(job_id)
        return data

    @router.get(
        "/api/jobs/{job_id}/views/{view}/{index}",
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def get_view(job_id: str, view: View, index: int, plane: Plane = "axial") -> Response:
        """One slice of a view as raw little-endian float32 (row-major ``H x W`` or
        ``H x W x 3``), in physical units; its shape is in the ``X-Shape`` header. ``plane``
        cuts a volume ``(Z, Y, X)`` along Z (axial), Y (coronal) or X (sagittal)."""
        job(job_id)
        array = view_slice(job_id, view, index, plane)
        body = np.ascontiguousarray(array, dtype="<f4").tobytes()
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"X-Shape": ",".join(str(n) for n in array.shape)},
        )

    @router.get("/api/jobs/{job_id}/download")
    def download(job_id: str) -> Response:
        """The result in the input's format (a DICOM series as a zip of the derived series)."""
        job(job_id)
        try:
            path = jobs.result_path(job_id)
        except UnknownJobError as error:
            raise _http(404, str(error)) from None
        return FileResponse(path, filename=path.name, media_type=_media_type(path))

    @router.get("/api/jobs/{job_id}/png")
    def download_png(
        job_id: str,
        view: View = "sr",
        index: Annotated[int | None, Query(description="slice (default: the middle)")] = None,
        low: float | None = None,
        high: float | None = None,
        plane: Plane = "axial",
    ) -> Response:
        """One slice as an 8-bit PNG displayed with the window ``low..high`` (default: the
        job's window). Coronal and sagittal slices are resampled to square pixels."""
        from PIL import Image as PILImage

        from medsr.display import to_uint8

        record = job(job_id)
        shape = record.input_shape if view == "lr" else record.output_shape
        spacing = record.input_spacing if view == "lr" else record.output_spacing
        axis = ("axial", "coronal", "sagittal").index(plane)
        z = index if index is not None else (shape[axis] // 2 if record.slices > 1 else 0)
        array = view_slice(job_id, view, z, plane)
        window = record.window
        if record.consistency is not None and view in record.consistency.get("display", {}):
            window = record.consistency["display"][view]  # a map has its own window
        lo = low if low is not None else window[0]
        hi = high if high is not None else window[1]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise _http(400, f"the window needs finite numbers for low and high, got {lo}..{hi}")
        if not hi > lo:
            raise _http(422, f"the window needs low < high, got {lo}..{hi}")
        if array.ndim == 3:
            pixels = np.stack([to_uint8(array[..., c], window=(lo, hi)) for c in range(3)], -1)
            im = PILImage.fromarray(pixels, mode="RGB")
        else:
            im = PILImage.fromarray(to_uint8(array, window=(lo, hi)), mode="L")
        if plane != "axial":  # rows are slices: stretch them to the in-plane pixel size
            rows = spacing[0] / spacing[2 if plane == "coronal" else 1]
            height = max(1, round(im.height * rows))
            im = im.resize((im.width, height), PILImage.Resampling.BILINEAR)
        buffer = io.BytesIO()
        im.save(buffer, format="PNG")
        where = f"-{plane}{z}" if record.slices > 1 else ""
        name = f"medsr-{job_id}-{view}{where}.png"
        return Response(
            buffer.getvalue(),
            media_type="image/png",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router


def _growth(method: str, scale: int):
    """How many times the pixels of ``image`` the result of ``method`` has (one axis grows
    through-plane; self-supervised: up to the in-plane spacing)."""

    def growth(image) -> float:
        if method == "through-plane":
            return float(scale)
        return float(max(image.spacing) / max(min(image.spacing), 1e-9))

    return growth


def _selfsup_scale(image) -> int:
    """The whole factor a self-supervised job grows the slice axis by (for the page; the
    output reaches the in-plane spacing). 422 when the image cannot be done this way."""
    from medsr.infer.selfsup import through_plane_axis

    try:
        axis = through_plane_axis(image)
    except ConfigError as error:
        raise _http(422, str(error)) from None
    in_plane = [image.spacing[a] for a in range(3) if a != axis]
    return max(2, round(image.spacing[axis] / (sum(in_plane) / 2)))


def _media_type(path: Path) -> str:
    name = path.name.lower()
    for suffix, media in (
        (".zip", "application/zip"),
        (".dcm", "application/dicom"),
        (".nii.gz", "application/gzip"),
        (".png", "image/png"),
        (".tif", "image/tiff"),
    ):
        if name.endswith(suffix):
            return media
    return "application/octet-stream"
