"""The ``metadata`` of the generator checkpoints a training run writes (docs/training.md).

Most of it is fixed when the run starts (the input, the normalisation policy, the
degradation, the training data and their licences, the recipe, the hardware):
:func:`describe_run` builds that part once, reading the prepare step's ``report.json``
once. :func:`checkpoint_metadata` adds what changes as the run goes (steps, stage, the last
validation) each time a checkpoint is saved.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medsr import __version__
from medsr.train.config import RunConfig, to_dict

__all__ = ["RunDescription", "checkpoint_metadata", "describe_run", "read_prepare_report"]

logger = logging.getLogger(__name__)

# report.json ``options`` key -> normalisation policy key
POLICY_OPTIONS = {"normaliser": "method", "ct_window": "window", "percentiles": "percentiles"}
# report.json ``options`` keys that say how the slices were cut and sized
PREPARE_OPTIONS = ("slice_axis", "crop_border", "pad_to", "pad_multiple", "resize")


@dataclass(frozen=True)
class RunDescription:
    """The parts of the checkpoint metadata fixed for the whole run (built by
    :func:`describe_run`), each already in its JSON form."""

    config: RunConfig
    scale: int
    degradation: list[dict[str, Any]]
    modality_degradation: dict[str, list[dict[str, Any]]]
    normalisation: dict[str, Any]
    normalisation_details: dict[str, Any]
    training_data: dict[str, Any]
    config_path: str | None
    processes: int
    precision: str
    device: str
    weights: str


def read_prepare_report(manifest: str) -> dict[str, Any] | None:
    """The ``report.json`` that ``medsr prepare`` wrote beside ``manifest`` (a file or its
    folder); None when there is none or it cannot be read (the metadata then says so)."""
    path = Path(manifest)
    folder = path if path.is_dir() else path.parent
    report = folder / "report.json"
    if not report.is_file():
        return None
    try:
        return json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def describe_run(
    config: RunConfig,
    *,
    scale: int,
    degradation: list[dict[str, Any]],
    rows: Sequence[Any] | None,
    modality_degradation: dict[str, list[dict[str, Any]]] | None = None,
    config_path: str | None,
    processes: int,
    precision: str,
    device: str,
    ema: bool,
    warn: bool = True,
) -> RunDescription:
    """The fixed part of the metadata. ``rows`` are the training dataset's rows (records with
    ``dataset``, ``subject_id``, ``modality`` and ``normaliser_dict()``) when it has them;
    ``warn`` logs each dataset without a licence (once per run, on one process)."""
    report = read_prepare_report(config.data.manifest)
    options: dict[str, Any] = (report or {}).get("options", {}) or {}
    normalisation, details = _normalisation(options, rows)
    return RunDescription(
        config=config,
        scale=scale,
        degradation=degradation,
        modality_degradation=modality_degradation or {},
        normalisation=normalisation,
        normalisation_details=details,
        training_data=_training_data(config, options, rows, warn=warn),
        config_path=config_path,
        processes=processes,
        precision=precision,
        device=device,
        weights="ema" if ema else "model",
    )


def checkpoint_metadata(
    run: RunDescription,
    *,
    checkpoint: str,
    global_step: int,
    stage_index: int,
    stage_step: int,
    nonfinite_total: int,
    last_validation: dict[str, Any] | None,
    best: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``metadata`` of checkpoint ``checkpoint`` (``last``, ``best`` or a stage name)
    saved at ``global_step``."""
    cfg = run.config
    k = cfg.data.neighbours
    return {
        "task": "super-resolution",
        "checkpoint": checkpoint,
        "medsr_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": run.scale,
        "input": {
            "channels": 2 * k + 1,
            "neighbours": k,
            "description": (
                f"2.5D: the slice and {k} neighbour(s) on each side as channels, centre "
                f"at channel {k}; the output is the centre slice"
                if k
                else "one 2D slice"
            ),
            "range": [0.0, 1.0],
        },
        "normalisation": run.normalisation,
        "normalisation_details": run.normalisation_details,
        "degradation": run.degradation,
        # modality -> the stages its slices were degraded with instead (empty: none)
        "modality_degradation": run.modality_degradation,
        "training_data": run.training_data,
        "recipe": {
            "name": cfg.name,
            "description": cfg.description,
            "source": cfg.source,
            "path": run.config_path,
            "config": to_dict(cfg),
        },
        "training": {
            "steps": global_step,
            "total_steps": cfg.total_steps,
            "stage": cfg.stages[stage_index].name,
            "stage_step": stage_step,
            "stages": [s.name for s in cfg.stages],
            "weights": run.weights,
            "ema_decay": cfg.train.ema_decay,
            "seed": cfg.seed,
            "processes": run.processes,
            "global_batch": cfg.data.batch_size * run.processes,
            "precision": run.precision,
            "device": run.device,
            "nonfinite_steps_skipped": nonfinite_total,
        },
        "validation": _validation(cfg, last_validation, best),
    }


def _validation(
    cfg: RunConfig, last: dict[str, Any] | None, best: dict[str, Any] | None
) -> dict[str, Any] | None:
    if last is None:
        return None
    return {
        "split": cfg.data.val_split,
        # JSON has no NaN/Inf: those are written as strings
        "metrics": {
            k: (v if not (isinstance(v, float) and not math.isfinite(v)) else str(v))
            for k, v in last.items()
        },
        "best": best,
        "units": "physical (normaliser.inverse of SR and HR)",
        "data_range": "width of each volume's normaliser window (bounds high - low)",
        "crop": cfg.data.val_crop,
        "max_slices": cfg.data.val_max_slices,
    }


def _normalisation(
    options: dict[str, Any], rows: Sequence[Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(policy, details)``. The policy is the fitting policy inference applies to a new
    input (``method``, ``window``, ``percentiles``, ``clip``): the ``medsr prepare`` options
    of the training data (prepare's defaults when there is no report). Its ``clip`` is false
    whatever training used, as medsr.infer advises: clipping an input to the window cannot be
    inverted and would flatten the values outside it (metal, bright vessels); the training
    data's own clip is in the details, with where the policy came from and the normaliser
    kinds the training volumes got, per modality."""
    # without a report: prepare's defaults (unclipped, as said above)
    policy: dict[str, Any] = {
        "method": "auto",
        "window": "wide",
        "percentiles": [0.5, 99.5],
        "clip": False,
    }
    details: dict[str, Any] = {
        "fitted": "per volume (medsr.transforms.intensity.fit_normaliser)",
        "range": [0.0, 1.0],
        "training_clip": True,
        "source": "medsr prepare defaults (no report.json beside the manifest)",
    }
    if options:
        details["source"] = "report.json of the prepared training data"
        for key, name in POLICY_OPTIONS.items():
            if key in options:
                value = options[key]
                policy[name] = list(value) if isinstance(value, list | tuple) else value
        if "clip" in options:
            details["training_clip"] = bool(options["clip"])
    if rows:
        kinds: dict[str, set[str]] = {}
        for row in rows:
            record = row.normaliser_dict() if hasattr(row, "normaliser_dict") else None
            if record:
                kinds.setdefault(row.modality, set()).add(record["kind"])
        details["kinds"] = {m: sorted(v) for m, v in sorted(kinds.items())}
    return policy, details


def _training_data(
    cfg: RunConfig, options: dict[str, Any], rows: Sequence[Any] | None, *, warn: bool
) -> dict[str, Any]:
    licenses = cfg.data.licenses
    datasets: dict[str, dict[str, Any]] = {}
    if rows:
        for row in rows:
            entry = datasets.setdefault(
                row.dataset, {"name": row.dataset, "slices": 0, "subjects": set()}
            )
            entry["slices"] += 1
            entry["subjects"].add(row.subject_id)
    else:
        for name in cfg.data.datasets or []:
            datasets[name] = {"name": name, "slices": None, "subjects": set()}
    listed = []
    for name, entry in sorted(datasets.items()):
        license_text = licenses.get(name)
        if license_text is None and warn:
            logger.warning("no licence given for dataset %s (data.licenses)", name)
        listed.append(
            {
                "name": name,
                "license": license_text or "unknown (not given in data.licenses)",
                "train_slices": entry["slices"],
                "train_subjects": len(entry["subjects"]) if entry["subjects"] else None,
            }
        )
    prepare = {key: options[key] for key in PREPARE_OPTIONS if key in options}
    return {
        "manifest": cfg.data.manifest,
        "prepare": prepare or None,
        "train_split": cfg.data.train_split,
        "val_split": cfg.data.val_split,
        "datasets": listed,
        "patch_size": cfg.data.patch_size,
    }
