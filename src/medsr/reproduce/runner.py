"""Run one reproduction: prepare the data, train every model, evaluate, reader study, report.

Everything is written under a working folder (default ``runs/reproduce/N-PROFILE``)::

    WORK/reproduce.json         the work, the profile and the data root of this folder
    WORK/stages.json            each finished stage and its wall time
    WORK/data/NAME/             medsr prepare outputs (manifest.csv, store/)
    WORK/models/NAME/           medsr train outputs (checkpoints/STAGE/ is the final model)
    WORK/benchmark/             medsr benchmark outputs (results.csv, report.md, figures/)
    WORK/study/                 the reader study (rating mode), WORK/study-tokens.txt

and the report into the report folder (``--out``; default ``benchmarks/reproductions/N`` for
the cpu and full profiles, ``WORK/report`` for smoke): ``report.md``, ``results.csv``
(per image), ``figures/`` (never from a research-only dataset) and ``benchmark.md``.

Each stage is skipped when its outputs are complete (a prepared manifest, a final
checkpoint, a finished benchmark, a study folder); an interrupted training continues from
its saved state. A working folder belongs to one work and profile: running again into it
needs ``resume=True``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr.errors import ConfigError
from medsr.reproduce.spec import CPU_TRAIN, PrepareSpec, TrainSpec, WorkSpec, check_profile
from medsr.reproduce.works import get_work
from medsr.schema import read_yaml

__all__ = [
    "ReproduceOptions",
    "ReproduceResult",
    "final_checkpoint",
    "reproduce",
    "train_config_data",
]

logger = logging.getLogger(__name__)

Log = Callable[[str], None]

VGG_PREFIX = "../shared/data/"

SMOKE_TRAIN: dict[str, Any] = {
    "train.device": "cpu",
    "train.tensorboard": False,
    "train.num_val_images": 0,
}
"""Overrides of every ``smoke`` run on top of ``--smoke``'s own shrinking."""


@dataclass(frozen=True)
class ReproduceOptions:
    """``work`` 1-5; ``profile`` cpu, full or smoke; ``data``: the shared data root;
    ``out``: the report folder; ``work_dir``: the working folder; ``resume``: continue an
    existing working folder."""

    work: int
    profile: str = "cpu"
    data: Path = Path("../shared/data")
    out: Path | None = None
    work_dir: Path | None = None
    resume: bool = False
    study: bool = True

    def __post_init__(self) -> None:
        check_profile(self.profile)
        get_work(self.work)

    @property
    def work_folder(self) -> Path:
        if self.work_dir is not None:
            return Path(self.work_dir)
        return Path("runs") / "reproduce" / f"{self.work}-{self.profile}"

    @property
    def report_folder(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        if self.profile == "smoke":
            return self.work_folder / "report"
        return Path("benchmarks") / "reproductions" / str(self.work)


@dataclass
class ReproduceResult:
    report: Path
    work_dir: Path
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------ stage bookkeeping
class Stages:
    """``stages.json``: stage name -> {"seconds": wall time, ...}."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "stages.json"
        self.data: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))

    def done(self, name: str) -> bool:
        return name in self.data

    def record(self, name: str, seconds: float, **extra: Any) -> None:
        self.data[name] = {"seconds": round(seconds, 1), **extra}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def _claim_folder(options: ReproduceOptions, folder: Path) -> None:
    marker = folder / "reproduce.json"
    info = {"work": options.work, "profile": options.profile, "data": str(options.data)}
    if folder.exists() and any(folder.iterdir()):
        if not options.resume:
            raise ConfigError(
                f"working folder {folder} exists: pass --resume to continue it, or choose "
                "another folder"
            )
        if marker.is_file():
            saved = json.loads(marker.read_text(encoding="utf-8"))
            for key in ("work", "profile"):
                if saved.get(key) != info[key]:
                    raise ConfigError(
                        f"{folder} holds {key} {saved.get(key)!r}, not {info[key]!r}: choose "
                        "another working folder"
                    )
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------- prepare
def _pydicom_folder() -> Path | None:
    try:
        import data_store  # the import name of pydicom-data
    except ImportError:
        return None
    folder = Path(data_store.__file__).parent / "data"
    return folder if folder.is_dir() else None


def prepare_sources(spec: PrepareSpec, data_root: Path, work: Path, notes: list[str]) -> list[Path]:
    """The source folders of ``spec`` that exist (required ones must)."""
    sources = []
    for name in spec.sources:
        path = data_root / name
        if not path.exists():
            raise ConfigError(f"data folder {path} does not exist (set --data to the shared data)")
        sources.append(path)
    for name in spec.optional_sources:
        path = data_root / name
        if path.exists():
            sources.append(path)
        else:
            notes.append(f"optional data {path} is absent: not used")
    if spec.pydicom_files:
        found = _pydicom_folder()
        if found is None:
            notes.append("pydicom-data is not installed: its CR files are not used")
        else:
            linked = work / "sources" / spec.pydicom_dataset
            linked.mkdir(parents=True, exist_ok=True)
            for name in spec.pydicom_files:
                src = found / name
                if not src.is_file():
                    notes.append(f"pydicom-data has no {name}: not used")
                    continue
                # one subfolder per file: the folder given to prepare is then a dataset
                # named pydicom_dataset, not a DICOM series of its own
                target = linked / Path(name).stem / name
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, target)
            if any(linked.iterdir()):
                sources.append(linked)
    return sources


def run_prepare(spec: PrepareSpec, data_root: Path, work: Path, notes: list[str], log: Log) -> Path:
    from medsr.data.manifest import PrepareOptions, prepare

    out = work / "data" / spec.name
    if (out / "manifest.csv").is_file():
        log(f"prepare {spec.name}: done earlier")
        return out
    sources = prepare_sources(spec, data_root, work, notes)
    log(f"prepare {spec.name}: {', '.join(str(s) for s in sources)}")
    prepare(sources, out, PrepareOptions(**dict(spec.options)), overwrite=True)
    return out


# ------------------------------------------------------------------------------------ train
def _get_path(data: Any, path: str) -> tuple[bool, Any]:
    node = data
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif (
            isinstance(node, list)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _stage_keys(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Overrides with stage names (``stages.gan.steps``) turned into indices."""
    names = [str(s.get("name")) for s in data.get("stages", [])]
    out = []
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "stages" and len(parts) > 1 and not parts[1].lstrip("-").isdigit():
            if parts[1] not in names:
                raise ConfigError(f"override {key}: no stage {parts[1]!r}; stages: {names}")
            parts[1] = str(names.index(parts[1]))
        out.append((".".join(parts), value))
    return out


def train_config_data(
    spec: TrainSpec,
    profile: str,
    *,
    manifest: Path | None = None,
    data_root: Path | None = None,
    init: Path | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The raw config mapping of ``spec`` under ``profile`` (not yet parsed)."""
    from medsr.train.config import apply_overrides, apply_smoke

    check_profile(profile)
    recipe = Path(spec.recipe)
    if not recipe.is_file():
        raise ConfigError(
            f"recipe {recipe} not found: run medsr reproduce from the repository root"
        )
    data = read_yaml(recipe, what="training config")
    if spec.stages:
        by_name = {s.get("name"): s for s in data.get("stages", [])}
        missing = [n for n in spec.stages if n not in by_name]
        if missing:
            raise ConfigError(f"{recipe} has no stage(s) {missing}; stages: {list(by_name)}")
        data["stages"] = [by_name[n] for n in spec.stages]
    data = apply_overrides(data, _stage_keys(data, spec.overrides))
    if profile == "smoke":
        # the recipe's smoke block shrinks its own networks; keys under a network this
        # model removed (a discriminator set to null) are dropped
        smoke = {
            key: value
            for key, value in (data.get("smoke") or {}).items()
            if not any(
                _get_path(data, ".".join(key.split(".")[:k])) == (True, None)
                for k in range(1, len(key.split(".")))
            )
        }
        data["smoke"] = smoke
        data = apply_smoke(data)
        data = apply_overrides(data, _stage_keys(data, {**SMOKE_TRAIN, **spec.smoke}))
    elif profile == "cpu":
        data = apply_overrides(data, _stage_keys(data, {**CPU_TRAIN, **spec.cpu}))
    data["smoke"] = {}
    if manifest is not None:
        data.setdefault("data", {})["manifest"] = str(manifest)
    if init is not None:
        data["model"]["init_generator"] = str(init)
    for stage in data["stages"]:
        losses = stage.get("losses") or {}
        perceptual = losses.get("perceptual")
        if not perceptual:
            continue
        weights = str(perceptual.get("weights") or "")
        if data_root is not None and weights.startswith(VGG_PREFIX):
            weights = str(data_root / weights[len(VGG_PREFIX) :])
            perceptual["weights"] = weights
        if profile == "smoke" and weights and not Path(weights).is_file():
            losses["perceptual"] = None
            if notes is not None:
                notes.append(
                    f"{spec.name}, stage {stage['name']}: the VGG weights {weights} are absent, "
                    "so the smoke run leaves out the perceptual loss"
                )
    return data


def final_checkpoint(folder: Path, config: Any) -> Path:
    """Where ``medsr train`` leaves the generator of the last stage."""
    return folder / "checkpoints" / config.stages[-1].name


def run_train(
    spec: TrainSpec,
    profile: str,
    work: Path,
    manifests: Mapping[str, Path],
    data_root: Path,
    notes: list[str],
    log: Log,
    *,
    datasets: tuple[Any, Any] | None = None,
) -> tuple[Path, bool]:
    """Train one model (or find it trained); returns the final checkpoint and whether it ran."""
    from medsr.train import parse_config, train

    folder = work / "models" / spec.name
    init = None
    if spec.init_from is not None:
        marker = work / "models" / spec.init_from / "final.json"
        if not marker.is_file():
            raise ConfigError(f"{spec.name} starts from {spec.init_from}, which is not trained")
        init = Path(json.loads(marker.read_text(encoding="utf-8"))["checkpoint"])
    data = train_config_data(
        spec,
        profile,
        manifest=manifests.get(spec.manifest),
        data_root=data_root,
        init=init,
        notes=notes,
    )
    config = parse_config(data)
    final = final_checkpoint(folder, config)
    marker = folder / "final.json"
    if marker.is_file() and (final / "model.safetensors").is_file():
        log(f"train {spec.name}: done earlier")
        return final, False
    resume = (folder / "state" / "last.pt").is_file()
    log(f"train {spec.name}: {config.total_steps} steps{' (resuming)' if resume else ''}")
    train_dataset, val_dataset = datasets if datasets is not None else (None, None)
    result = train(
        config,
        out_dir=folder,
        resume=resume,
        train_dataset=train_dataset,
        val_dataset=val_dataset,
    )
    if not result.finished:
        raise ConfigError(f"training of {spec.name} stopped at step {result.global_step}")
    marker.write_text(
        json.dumps({"checkpoint": str(final), "steps": result.global_step}, indent=2) + "\n",
        encoding="utf-8",
    )
    return final, True


# --------------------------------------------------------------------------------- evaluate
def benchmark_config(
    work: WorkSpec, profile: str, manifest: Path, checkpoints: Mapping[str, Path]
) -> Any:
    from medsr.eval.config import parse_config

    spec = work.evaluation
    if spec is None:
        raise ConfigError(f"work {work.number} has no benchmark evaluation")
    data = dict(spec.config)
    data["manifest"] = str(manifest)
    data["methods"] = [{"name": k, "model": v} for k, v in spec.interpolations.items()] + [
        {"name": name, "model": str(path)} for name, path in checkpoints.items()
    ]
    data["reference"] = "bicubic" if "bicubic" in spec.interpolations else None
    data["seed"] = 0
    if profile == "cpu":
        data.update(spec.cpu)
    elif profile == "smoke":
        data.update(spec.smoke)
    return parse_config(data, where=f"work {work.number} evaluation")


def run_study(work: WorkSpec, profile: str, config: Any, folder: Path, log: Log) -> Path | None:
    """The reader-study folder (created once): the HR slice and each method's output for the
    slices of the study's split with the most foreground."""
    import numpy as np

    from medsr.eval.benchmark import eval_settings, load_methods
    from medsr.eval.evaluate import Evaluator
    from medsr.study import create_study

    spec = work.study
    if spec is None:
        return None
    target = folder / "study"
    if (target / "study.sqlite").exists() or (target.is_dir() and any(target.iterdir())):
        log("reader study: done earlier")
        return target
    methods = [m for m in load_methods(config) if m.name in spec.methods]
    evaluator = Evaluator(
        eval_settings(config), neighbours=max(m.in_channels // 2 for m in methods)
    )
    rows = evaluator.dataset.rows
    candidates = [i for i in evaluator.indices if rows[i].split == spec.split]
    if not candidates:
        candidates = list(evaluator.indices)
    count = spec.smoke_cases if profile == "smoke" else spec.cases
    chosen = sorted(candidates, key=lambda i: (-rows[i].foreground_fraction, i))[:count]
    cases: dict[str, dict[str, np.ndarray]] = {}
    for k, index in enumerate(chosen):
        sample = evaluator.sample(index)
        images = {"hr": np.asarray(sample.hr_physical, dtype=np.float32)}
        for method in methods:
            sr, _ = evaluator.super_resolve(method, sample)
            physical = sample.normaliser.inverse(np.squeeze(sr.numpy()))
            images[method.name] = np.asarray(physical, dtype=np.float32)
        cases[f"case-{k + 1:02d}"] = images
    with create_study(
        target,
        cases=cases,
        readers=spec.readers,
        seed=0,
        mode="rating",
        title=f"Reproduction of work {work.number}: {work.title}",
        reference_method="hr",
    ) as study:
        tokens = folder / "study-tokens.txt"
        with open(tokens, "w", encoding="utf-8") as handle:
            os.chmod(tokens, 0o600)
            for label, token in study.issued_tokens.items():
                handle.write(f"{label}\t{token}\n")
    log(f"reader study: {len(cases)} cases -> {target} (tokens in {tokens})")
    return target


# ------------------------------------------------------------------------------------ main
def reproduce(options: ReproduceOptions, *, log: Log | None = None) -> ReproduceResult:
    """Run (or continue) the reproduction ``options.work``; returns where the report is."""
    from medsr.reproduce.report import write_report

    log = log or logger.info
    work = get_work(options.work)
    folder = options.work_folder
    _claim_folder(options, folder)
    stages = Stages(folder)
    result = ReproduceResult(report=options.report_folder, work_dir=folder)
    notes: list[str] = []
    data_root = Path(options.data)

    started = time.monotonic()
    manifests: dict[str, Path] = {}
    thick = None
    if work.number == 5:
        from medsr.reproduce import thickthin

        thick = thickthin.prepare_pairs(data_root, folder, options.profile, log)
        manifests["thin"] = thick.manifest
    for spec in work.prepare:
        manifests[spec.name] = run_prepare(spec, data_root, folder, notes, log)
    if not stages.done("prepare"):
        stages.record("prepare", time.monotonic() - started)

    checkpoints: dict[str, Path] = {}
    for spec in work.models:
        started = time.monotonic()
        datasets = None
        if thick is not None:
            datasets = thick.datasets(spec, options.profile)
        checkpoints[spec.name], ran = run_train(
            spec, options.profile, folder, manifests, data_root, notes, log, datasets=datasets
        )
        (result.ran if ran else result.skipped).append(f"train {spec.name}")
        if ran or not stages.done(f"train {spec.name}"):
            stages.record(f"train {spec.name}", time.monotonic() - started)

    started = time.monotonic()
    bench_dir = folder / "benchmark"
    config = None
    if work.evaluation is not None:
        from medsr.eval.benchmark import run_benchmark

        config = benchmark_config(
            work, options.profile, manifests[work.evaluation.manifest], checkpoints
        )
        if stages.done("evaluate") and (bench_dir / "report.md").is_file():
            log("evaluate: done earlier")
            result.skipped.append("evaluate")
        else:
            log(f"evaluate: {len(config.methods)} methods on {', '.join(config.splits)}")
            run_benchmark(config, out=bench_dir, resume=True)
            stages.record("evaluate", time.monotonic() - started)
            result.ran.append("evaluate")
    elif thick is not None:
        if stages.done("evaluate") and (bench_dir / "results.csv").is_file():
            result.skipped.append("evaluate")
        else:
            thick.evaluate(checkpoints, bench_dir, log)
            stages.record("evaluate", time.monotonic() - started)
            result.ran.append("evaluate")

    study_dir = None
    if options.study and work.study is not None and config is not None:
        started = time.monotonic()
        existed = (folder / "study").exists()
        study_dir = run_study(work, options.profile, config, folder, log)
        if not existed:
            stages.record("study", time.monotonic() - started)

    write_report(
        work,
        options,
        folder=folder,
        report=options.report_folder,
        stages=stages.data,
        notes=notes,
        study_dir=study_dir,
        data_root=data_root,
    )
    log(f"report: {options.report_folder / 'report.md'}")
    return result
