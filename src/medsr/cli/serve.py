"""``medsr serve``: the web app (upload, compare, download; reader-study pages).

Binds to 127.0.0.1 by default. Any other host needs an access token (``--token`` or the
``MEDSR_TOKEN`` environment variable): the command refuses to start without one.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
from pathlib import Path

from medsr.errors import ConfigError

logger = logging.getLogger(__name__)

TOKEN_ENV_VAR = "MEDSR_TOKEN"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="web app: upload, upscale, compare, download; reader-study pages",
        description=(
            "Serve the medsr web app: upload a DICOM file, a zipped DICOM series, a NIfTI "
            "volume or a PNG/JPEG/TIFF image, upscale it in the background, compare LR, "
            "bicubic and SR, download the result. With --study, readers answer a reader study "
            "at /study. Binds to 127.0.0.1 unless told otherwise; another host needs a token. "
            "See docs/web.md (what is stored, for how long)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("medsr-web-data"),
        help="where uploads (until their job ends) and results are kept (default ./medsr-web-data)",
    )
    p.add_argument(
        "--token",
        default=None,
        help=f"access token required on every request (default: ${TOKEN_ENV_VAR}); needed "
        "for any host other than loopback. Prefer the environment variable",
    )
    p.add_argument(
        "--retention-hours",
        type=float,
        default=24.0,
        help="delete finished jobs (results, views) after this many hours (default 24)",
    )
    p.add_argument("--max-jobs", type=int, default=200, help="keep at most this many jobs")
    p.add_argument("--workers", type=int, default=1, help="jobs run at once (default 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per job")
    p.add_argument(
        "--selfsup-budget",
        type=float,
        default=2.0,
        metavar="MINUTES",
        help="training time of one self-supervised job (default 2 minutes; with --threads "
        "this bounds the CPU a web user can take)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="offer a trained model (checkpoint folder or .onnx) under NAME; repeatable. "
        "The interpolations are always offered",
    )
    p.add_argument("--default-model", default=None, help="the model selected on the page")
    p.add_argument("--max-upload-mb", type=float, default=512, help="request size cap (MiB)")
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=64,
        help="pixels (voxels) an input may have, in millions (default 64)",
    )
    p.add_argument(
        "--deidentify",
        action="store_true",
        help="de-identify DICOM uploads on arrival (PS3.15 Basic Confidentiality Profile), "
        "before they are read or stored",
    )
    p.add_argument(
        "--deid-key",
        default=None,
        help="secret key for a reproducible UID mapping (default: $MEDSR_DEID_KEY, else random)",
    )
    p.add_argument("--study", type=Path, default=None, help="serve this reader study at /study")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_from_args(args: argparse.Namespace):
    """The app's settings; ``ConfigError`` when a non-loopback host has no token."""
    from medsr.io.deidentify import KEY_ENV_VAR
    from medsr.web.app import ServeSettings, default_models
    from medsr.web.limits import Limits

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV_VAR) or None
    if token is not None and len(token) < 16:
        raise ConfigError("the access token is too short: use at least 16 random characters")
    if not is_loopback(args.host) and token is None:
        raise ConfigError(
            f"refusing to serve on {args.host} without an access token: anyone who can reach "
            f"it could upload and download images. Set {TOKEN_ENV_VAR} (e.g. "
            f"{TOKEN_ENV_VAR}={secrets.token_urlsafe(24)}) or pass --token, or bind 127.0.0.1"
        )
    extra = {}
    for text in args.model:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--model {text!r}: expected NAME=PATH")
        extra[name] = path
    models = default_models(extra)
    if args.default_model is not None and args.default_model not in models:
        raise ConfigError(
            f"--default-model {args.default_model!r} is not offered; choose one of "
            f"{', '.join(models)}"
        )
    if args.study is not None and not (args.study / "study.sqlite").is_file():
        raise ConfigError(f"--study {args.study}: not a reader study folder")
    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        max_output_pixels=max(int(args.max_megapixels * 1e6) * 4, 256 * 2**20),
    )
    deid_key = args.deid_key if args.deid_key is not None else os.environ.get(KEY_ENV_VAR)
    return ServeSettings(
        data_dir=args.data_dir,
        token=token,
        limits=limits,
        workers=args.workers,
        retention_hours=args.retention_hours,
        max_jobs=args.max_jobs,
        deidentify=args.deidentify,
        deid_key=deid_key or None,
        models=models,
        default_model=args.default_model,
        study_dir=args.study,
        threads=args.threads,
        selfsup=_selfsup_config(args.selfsup_budget),
        # Without a token the app trusts loopback only: refuse other Host names, so that
        # a web page cannot reach it by pointing a domain of its own at 127.0.0.1.
        allowed_hosts=None if token is not None else list(LOOPBACK_NAMES),
    )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as error:
        raise ConfigError("medsr serve needs the web extra: pip install 'medsr[web]'") from error
    from medsr.web.app import create_app

    settings = settings_from_args(args)
    app = create_app(settings)
    where = f"http://{args.host}:{args.port}/"
    print(
        f"medsr serve: {where} (data in {settings.data_dir}, results kept "
        f"{settings.retention_hours:g} h)"
    )
    if settings.token is not None:
        print(f"access token required: log in at {where}login (or send it as a Bearer token)")
    if settings.study_dir is not None:
        print(f"reader study at {where}study (readers log in with their own tokens)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _selfsup_config(minutes: float):
    """The training settings of self-supervised web jobs: a time budget of ``minutes``."""
    import math

    from medsr.infer.selfsup import SelfSupConfig

    if not (math.isfinite(minutes) and minutes > 0):
        raise ConfigError(f"--selfsup-budget must be a positive number of minutes, got {minutes:g}")
    return SelfSupConfig(budget=60.0 * minutes)
