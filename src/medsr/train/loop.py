"""The training engine: stages, validation, checkpoints, resume, logs, DDP.

``train(config)`` (or ``medsr train CONFIG.yaml``) writes into the output folder::

    OUT/config.yaml                 the resolved config (every default spelled out)
    OUT/state/last.pt               training state for --resume (see medsr.train.state)
    OUT/checkpoints/last/           latest generator: model.safetensors, config.json,
                                    train_config.yaml (the EMA weights when EMA is on)
    OUT/checkpoints/best/           best validation `best_metric` within the current stage
    OUT/checkpoints/<stage name>/   the generator at the end of each stage
    OUT/metrics.csv                 losses and validation metrics (medsr.train.logging)
    OUT/tensorboard/                TensorBoard event files
    OUT/samples/step-NNNNNNN/       validation panels [LR | bicubic | SR | HR] as PNG

Every checkpoint folder is a ``medsr.models.save`` folder (``medsr.models.load`` reads it);
its ``config.json`` ``metadata`` describes the normalisation, the degradation, the training
data and their licences, the recipe, the steps and the validation metrics
(:mod:`medsr.train.metadata`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from medsr import distributed
from medsr.errors import ConfigError, TrainingError
from medsr.models import EDSR, build_discriminator, build_generator, load, save
from medsr.train import ddp
from medsr.train.config import ModelSpec, RunConfig, StageConfig, parse_config, to_dict
from medsr.train.data import (
    BatchStream,
    ResumableBatchSampler,
    build_datasets,
    build_degradation_from_config,
    build_modality_degradations,
    validation_indices,
)
from medsr.train.ema import EMA
from medsr.train.gan import (
    DiscriminatorPair,
    StepOutcome,
    Stepper,
    build_losses,
    build_optimizer,
)
from medsr.train.logging import MetricsCSV, ProgressBar, TensorBoard
from medsr.train.metadata import checkpoint_metadata, describe_run
from medsr.train.schedules import Schedule
from medsr.train.state import capture_rng, load_state, restore_rng, save_state
from medsr.train.validation import ValidationResult, save_panel, validate

__all__ = ["RESUMABLE_CHANGES", "TrainResult", "Trainer", "train"]

logger = logging.getLogger(__name__)

STATE_FILE = Path("state") / "last.pt"

# Keys that may differ between a run and its resumption (they change no computed value).
RESUMABLE_CHANGES = (
    "train.stop_after",
    "train.progress",
    "train.tensorboard",
    "train.log_every",
    "train.val_every",
    "train.checkpoint_every",
    "train.num_val_images",
    "data.num_workers",
    "output_dir",
    "description",
)


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    out_dir: Path
    global_step: int
    total_steps: int
    stopped_early: bool
    checkpoint: Path | None
    validation: dict[str, float] | None
    best: dict[str, Any] | None
    skipped_steps: int
    step_times: list[float] = field(default_factory=list)
    step_cpu_times: list[float] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.global_step >= self.total_steps


def train(
    config: RunConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
    config_path: str | Path | None = None,
) -> TrainResult:
    """Run (or ``resume``) a training recipe; see the module docstring for the outputs.

    ``train_dataset``/``val_dataset`` replace the datasets built from ``config.data``
    (see :mod:`medsr.train.data` for the interface they must follow).
    """
    trainer = Trainer(
        config,
        out_dir=out_dir,
        resume=resume,
        train_dataset=train_dataset,
        val_dataset=val_dataset,
        config_path=config_path,
    )
    return trainer.run()


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(data, list | tuple):
        out = {}
        for i, value in enumerate(data):
            out.update(_flatten(value, f"{prefix}.{i}"))
        return out or {prefix: []}
    return {prefix: data}


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ (ignoring :data:`RESUMABLE_CHANGES`)."""
    a, b = _flatten(saved), _flatten(current)
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if a.get(k, "<absent>") != b.get(k, "<absent>")
        and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)
    ]


@dataclass
class _StageRun:
    """The objects one stage trains with (built by :meth:`Trainer._start_stage`); the
    optimisers and schedules go into the training state with every checkpoint."""

    stage: StageConfig
    stepper: Stepper
    g_optimizer: torch.optim.Optimizer
    g_schedule: Schedule
    d_optimizer: torch.optim.Optimizer | None
    d_schedule: Schedule | None


@dataclass
class _LossInterval:
    """The loss terms summed since the last log row: ``count`` steps, ``taken`` of them not
    skipped (a skipped step's NaN would hide the interval's losses, so it adds nothing)."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0
    taken: int = 0

    def add(self, outcome: StepOutcome) -> None:
        if not outcome.skipped:
            for name, value in outcome.parts.items():
                self.sums[name] = (
                    self.sums[name] + value if name in self.sums else value.detach().clone()
                )
            self.taken += 1
        self.count += 1


class Trainer:
    """Builds everything from a :class:`RunConfig` and runs the stages (:meth:`run`).

    Every attribute is created here: the models, the counters (restored from the state with
    ``resume``), the batch stream, and closed stand-ins for the logs that :meth:`run` opens.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        train_dataset: Dataset | None = None,
        val_dataset: Dataset | None = None,
        config_path: str | Path | None = None,
    ) -> None:
        self.dist = distributed.setup(config.train.device)
        try:
            self._init(config, out_dir, resume, train_dataset, val_dataset, config_path)
        except BaseException:
            distributed.teardown(self.dist)
            raise

    # ---------------------------------------------------------------------------- set-up
    def _init(self, config, out_dir, resume, train_dataset, val_dataset, config_path) -> None:
        self.out = Path(out_dir or config.output_dir or Path("runs") / config.name)
        self.state_path = self.out / STATE_FILE
        self.resume = resume
        if not resume and self.state_path.exists():
            raise ConfigError(
                f"{self.out} already holds a training run ({self.state_path}); continue it "
                "with --resume, or choose another output folder (--out)"
            )
        self.device = self.dist.device
        self.degradation = build_degradation_from_config(config.data)
        self.modality_degradations = build_modality_degradations(config.data)
        self.factors = tuple(self.degradation.factors)
        self.config = self._resolve(config)
        run = self.config.train

        if train_dataset is None:
            train_dataset, built_val = build_datasets(
                self.config.data,
                seed=self.config.seed,
                degradation=self.degradation,
                modality_degradations=self.modality_degradations,
            )
            if val_dataset is None:
                val_dataset = built_val
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset if self.dist.is_main else None
        self.bf16 = self._use_bf16(run.precision)
        self._build_models()

        # counters (overwritten by a resumed state)
        self.stage_index = 0
        self.stage_step = 0
        self.global_step = 0
        self.data_position = {"epoch": 0, "position": 0}
        self.nonfinite_in_row = 0
        self.nonfinite_total = 0
        self.best: dict[str, Any] | None = None
        self.last_validation: dict[str, Any] | None = None
        # the optimiser and schedule states of the stage a resumed run continues
        self._resumed_optimisers: dict[str, Any] | None = None
        self.resumed_step: int | None = None
        if resume:
            state = load_state(self.state_path)
            self._check_resumable(state)
            if self.dist.is_main:
                self._remove_stale_temporaries()
            self._restore(state)
        self.stop_at = run.stop_after
        if self.stop_at is not None and self.stop_at <= self.global_step:
            logger.info(
                "train.stop_after %d is behind the resumed step %d: ignored",
                self.stop_at,
                self.global_step,
            )
            self.stop_at = None

        self.stream = BatchStream(
            self.train_dataset,
            ResumableBatchSampler(
                len(self.train_dataset),  # type: ignore[arg-type]
                batch_size=self.config.data.batch_size,
                seed=self.config.seed,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
            ),
            num_workers=self.config.data.num_workers,
            pin_memory=self.device.type == "cuda",
            seed=self.config.seed,
            epoch=self.data_position["epoch"],
            position=self.data_position["position"],
        )
        self.current: _StageRun | None = None
        self.step_times: list[float] = []
        self.step_cpu_times: list[float] = []
        # opened by run() on the main process
        self.csv: MetricsCSV | None = None
        self.tb = TensorBoard(self.out / "tensorboard", enabled=False)
        self.progress = ProgressBar(total=0, completed=0, enabled=False)
        self.description = describe_run(
            self.config,
            scale=self.factors[0],
            degradation=self.degradation.to_config(),
            modality_degradation={m: d.to_config() for m, d in self.modality_degradations.items()},
            rows=getattr(self.train_dataset, "rows", None),
            config_path=str(config_path) if config_path is not None else None,
            processes=self.dist.world_size,
            precision="bf16" if self.bf16 else "fp32",
            device=self.device.type,
            ema=self.ema is not None,
            warn=self.dist.is_main,
        )

    def _build_models(self) -> None:
        """The generator (the same initial weights on every rank; DDP also broadcasts rank
        0's), the discriminator when a stage is adversarial, the EMA, and their training
        forms: wrapped once for the whole run, as DDP hooks must not be registered twice."""
        run = self.config.train
        spec = self.config.model
        torch.manual_seed(self.config.seed)
        self.generator = build_generator(spec.generator.arch, spec.generator.params).to(self.device)
        if spec.init_generator is not None:
            self._load_init(spec.init_generator)
        self.discriminator: nn.Module | None = None
        if spec.discriminator is not None and any(s.adversarial for s in self.config.stages):
            self.discriminator = build_discriminator(
                spec.discriminator.arch, spec.discriminator.params
            ).to(self.device)
        if run.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            if self.discriminator is not None:
                self.discriminator.to(memory_format=torch.channels_last)
        self.ema = EMA(self.generator, decay=run.ema_decay) if run.ema_decay else None
        self.g_train: nn.Module = ddp.wrap(self.generator, self.dist)
        if run.compile:
            self.g_train = torch.compile(self.g_train)
        self.d_pair: nn.Module | None = None
        if self.discriminator is not None:
            self.d_pair = ddp.wrap(DiscriminatorPair(self.discriminator), self.dist)

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporary files that writes killed with the previous run left (e.g.
        ``checkpoints/best/.model.safetensors.*.tmp``); only the files of the checkpoint and
        state names medsr writes are touched."""
        from medsr.models.checkpoint import CONFIG_NAME, WEIGHTS_NAME
        from medsr.tempfiles import remove_stale

        targets = [self.state_path]
        for folder in sorted((self.out / "checkpoints").glob("*/")):
            targets += [folder / WEIGHTS_NAME, folder / CONFIG_NAME]
        removed = [path for target in targets for path in remove_stale(target)]
        if removed:
            logger.info("removed %d temporary file(s) of the killed run", len(removed))

    def _resolve(self, config: RunConfig) -> RunConfig:
        """Fill the channels and scale the data imply into the model parameters (and check
        the ones given): generator ``in_channels = 2 * neighbours + 1``, ``out_channels = 1``
        for 2.5D, ``scale`` = the degradation's; discriminator ``in_channels`` = the
        generator's output, and for paired ones ``lr_channels`` and ``scale``."""
        fh, fw = self.factors
        if fh != fw:
            raise ConfigError(
                f"data.degradation has factors {self.factors}: 2D generators upscale both axes "
                "alike, so training needs an isotropic degradation"
            )
        k = config.data.neighbours
        gen = dict(config.model.generator.params)
        implied = {"scale": fh, "in_channels": 2 * k + 1}
        if k > 0:
            implied["out_channels"] = 1
        for key, value in implied.items():
            if key in gen and gen[key] != value:
                raise ConfigError(
                    f"model.generator.params.{key} is {gen[key]!r} but the data imply {value} "
                    f"(degradation factors {self.factors}, data.neighbours {k})"
                )
            gen.setdefault(key, value)
        model = dataclasses.replace(
            config.model, generator=ModelSpec(arch=config.model.generator.arch, params=gen)
        )
        if config.model.discriminator is not None:
            from medsr.models import DISCRIMINATORS

            arch = config.model.discriminator.arch
            if arch not in DISCRIMINATORS:
                raise ConfigError(
                    f"unknown discriminator {arch!r}; known: {', '.join(DISCRIMINATORS)}"
                )
            disc = dict(config.model.discriminator.params)
            disc.setdefault("in_channels", gen.get("out_channels", gen["in_channels"]))
            if DISCRIMINATORS[arch].paired:
                disc.setdefault("lr_channels", gen["in_channels"])
                disc.setdefault("scale", fh)
            model = dataclasses.replace(model, discriminator=ModelSpec(arch=arch, params=disc))
        resolved = dataclasses.replace(config, model=model)
        return parse_config(to_dict(resolved))  # re-checked as a whole

    def _use_bf16(self, precision: str) -> bool:
        if precision == "bf16":
            if self.device.type != "cuda":
                raise ConfigError(
                    "train.precision bf16 runs on CUDA only; CPU training is fp32 "
                    "(use precision: auto or fp32)"
                )
            return True
        return precision == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _load_init(self, path: str) -> None:
        """Start the generator from the checkpoint at ``path``: the same architecture and
        hyper-parameters, except that the scale may differ (EDSR's practice of starting x4
        from x2): then every tensor whose name and shape match is copied and the others (a
        scale's extra sub-pixel step) keep their initialisation, as the log says. An EDSR may
        also start from one with fewer blocks and otherwise the same hyper-parameters (scale
        included): :meth:`EDSR.deepen_from`."""
        source = load(path)
        if isinstance(self.generator, EDSR) and self.generator.deepening_problem(source) is None:
            self.generator.deepen_from(source)
            logger.info(
                "generator initialised from the %d-block EDSR %s; blocks %d-%d start as the "
                "identity",
                source.num_blocks,
                path,
                source.num_blocks + 1,
                self.generator.num_blocks,
            )
            return
        own = {k: v for k, v in self.generator.hparams().items() if k != "scale"}
        theirs = {k: v for k, v in source.hparams().items() if k != "scale"}
        if type(source) is not type(self.generator) or own != theirs:
            raise ConfigError(
                f"model.init_generator {path} holds a {type(source).__name__} "
                f"{source.hparams()}, not the configured {type(self.generator).__name__} "
                f"{self.generator.hparams()} (only the scale may differ, or an EDSR's "
                "num_blocks may grow)"
            )
        if source.scale == self.generator.scale:
            self.generator.load_state_dict(source.state_dict())
            logger.info("generator initialised from %s", path)
            return
        target = self.generator.state_dict()
        copied = {
            name: tensor
            for name, tensor in source.state_dict().items()
            if name in target and target[name].shape == tensor.shape
        }
        self.generator.load_state_dict(copied, strict=False)
        fresh = sorted(set(target) - set(copied))
        logger.info(
            "generator initialised from the x%d model %s: %d of %d tensors copied; "
            "initialised afresh: %s",
            source.scale,
            path,
            len(copied),
            len(target),
            ", ".join(fresh) or "none",
        )

    def _check_resumable(self, state: dict[str, Any]) -> None:
        differences = config_differences(state["config"], to_dict(self.config))
        if differences:
            raise ConfigError(
                f"cannot resume {self.state_path}: the config differs from the saved one in "
                f"{', '.join(differences)} (only {', '.join(RESUMABLE_CHANGES)} may change)"
            )

    def _restore(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        if self.discriminator is not None and state.get("discriminator") is not None:
            self.discriminator.load_state_dict(state["discriminator"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.stage_index = int(state["stage_index"])
        self.stage_step = int(state["stage_step"])
        self.global_step = int(state["global_step"])
        self.data_position = dict(state["data"])
        self.nonfinite_in_row = int(state["nonfinite"]["in_row"])
        self.nonfinite_total = int(state["nonfinite"]["total"])
        self.best = state.get("best")
        self.last_validation = state.get("validation")
        self._resumed_optimisers = {
            key: state[key] for key in ("g_optimizer", "g_schedule", "d_optimizer", "d_schedule")
        }
        self.resumed_step = self.global_step
        restore_rng(state["rng"])
        logger.info(
            "resuming %s at step %d (stage %s, step %d of it)",
            self.out,
            self.global_step,
            self.config.stages[self.stage_index].name,
            self.stage_step,
        )

    # ------------------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        """Train every stage not finished yet (or until ``train.stop_after``), then close
        the logs and the process group."""
        run = self.config.train
        stopped = False
        # process-wide switches, restored when the run ends
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        benchmark_before = torch.backends.cudnn.benchmark
        try:
            if run.deterministic:
                torch.use_deterministic_algorithms(True)
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = not run.deterministic
            self._open_logs()
            for index, stage in enumerate(self.config.stages):
                if index < self.stage_index:
                    continue
                if index == self.stage_index and self.stage_step >= stage.steps:
                    continue  # this stage was finished (and saved) before the resume
                stopped = self._run_stage(index, stage)
                if stopped:
                    break
        finally:
            torch.use_deterministic_algorithms(deterministic_before)
            torch.backends.cudnn.benchmark = benchmark_before
            self._close()
        return self._result(stopped)

    def _open_logs(self) -> None:
        """The main process writes the resolved config and opens the CSV, TensorBoard and
        the progress bar (a resumed run drops the rows written after its state)."""
        if not self.dist.is_main:
            return
        run = self.config.train
        self.out.mkdir(parents=True, exist_ok=True)
        _write_yaml(self.out / "config.yaml", to_dict(self.config))
        self.csv = MetricsCSV(self.out / "metrics.csv", resume_step=self.resumed_step)
        self.tb = TensorBoard(
            self.out / "tensorboard", enabled=run.tensorboard, purge_step=self.resumed_step
        )
        self.progress = ProgressBar(
            total=self.config.total_steps, completed=self.global_step, enabled=run.progress
        )

    def _close(self) -> None:
        self.progress.close()
        self.stream.close()
        if self.csv is not None:
            self.csv.close()
        self.tb.close()
        distributed.teardown(self.dist)

    def _result(self, stopped: bool) -> TrainResult:
        last = self.out / "checkpoints" / "last"
        return TrainResult(
            out_dir=self.out,
            global_step=self.global_step,
            total_steps=self.config.total_steps,
            stopped_early=stopped,
            checkpoint=last if last.is_dir() else None,
            validation=self.last_validation,
            best=self.best,
            skipped_steps=self.nonfinite_total,
            step_times=self.step_times,
            step_cpu_times=self.step_cpu_times,
        )

    def _run_stage(self, index: int, stage: StageConfig) -> bool:
        """Run one stage to its end (True when stopped early by ``stop_after``): steps with a
        log row every ``log_every``, validation every ``val_every``, a checkpoint every
        ``checkpoint_every``; at the end a validation and the stage's own checkpoint."""
        self.current = self._start_stage(index, stage)
        run = self.config.train
        interval = _LossInterval()
        while self.stage_step < stage.steps:
            interval.add(self._train_step())
            end_of_stage = self.stage_step >= stage.steps
            if run.log_every and (self.global_step % run.log_every == 0 or end_of_stage):
                self._log_train(stage, interval)
                interval = _LossInterval()
            if end_of_stage:
                break
            if run.val_every and self.global_step % run.val_every == 0:
                self._validate(stage)
            if run.checkpoint_every and self.global_step % run.checkpoint_every == 0:
                self._checkpoint(stage)
            if self.stop_at is not None and self.global_step >= self.stop_at:
                self._checkpoint(stage)
                logger.info("stopped after step %d (train.stop_after)", self.global_step)
                return True
            self.progress.update(step=self.global_step, stage=stage.name)
        if interval.count and not run.log_every:
            self._log_train(stage, interval)
        self._validate(stage)
        self._checkpoint(stage, stage_folder=True)
        self.progress.update(step=self.global_step, stage=stage.name)
        return self.stop_at is not None and self.global_step >= self.stop_at

    def _start_stage(self, index: int, stage: StageConfig) -> _StageRun:
        """The stage's losses, optimisers and schedules. A fresh stage starts from the
        previous stage's weights (EMA or raw) and restarts the EMA and the best-checkpoint
        tracking; the stage a resumed run continues gets its saved optimiser states."""
        # a resumed run's first stage: the one its state was saved in, unless that had ended
        resumed = self._resumed_optimisers if index == self.stage_index else None
        self._resumed_optimisers = None
        if resumed is None:
            if index > 0 and stage.init_from == "ema" and self.ema is not None:
                self.generator.load_state_dict(self.ema.state_dict())
            if self.ema is not None:
                self.ema.copy_from(self.generator)
            self.stage_index, self.stage_step = index, 0
            self.best = None
            logger.info("stage %s: %d steps", stage.name, stage.steps)
        g_params = [p for p in self.generator.parameters() if p.requires_grad]
        g_opt = build_optimizer(g_params, stage.optimizer)
        g_sched = Schedule(
            g_opt, stage.schedule, base_lr=stage.optimizer.lr, total_steps=stage.steps
        )
        d_opt = d_sched = None
        if stage.adversarial:
            assert self.discriminator is not None
            d_cfg = stage.d_optimizer or stage.optimizer
            d_opt = build_optimizer(
                [p for p in self.discriminator.parameters() if p.requires_grad], d_cfg
            )
            d_sched = Schedule(
                d_opt, stage.d_schedule or stage.schedule, base_lr=d_cfg.lr, total_steps=stage.steps
            )
        if resumed is not None:
            g_opt.load_state_dict(resumed["g_optimizer"])
            g_sched.load_state_dict(resumed["g_schedule"])
            if d_opt is not None and d_sched is not None:
                d_opt.load_state_dict(resumed["d_optimizer"])
                d_sched.load_state_dict(resumed["d_schedule"])
        self.generator.train()
        if self.discriminator is not None:
            self.discriminator.train()
        stepper = Stepper(
            generator=self.g_train,
            generator_raw=self.generator,
            losses=build_losses(stage.losses, self.device),
            g_optimizer=g_opt,
            g_schedule=g_sched,
            grad_clip=stage.grad_clip,
            autocast=self._autocast,
            dist=self.dist,
            discriminator_pair=self.d_pair if stage.adversarial else None,
            discriminator_raw=self.discriminator,
            d_optimizer=d_opt,
            d_schedule=d_sched,
        )
        return _StageRun(stage, stepper, g_opt, g_sched, d_opt, d_sched)

    def _train_step(self) -> StepOutcome:
        """One batch through the current stage's stepper: counters, non-finite accounting
        (:meth:`_diverged` after ``max_nonfinite`` in a row), the EMA, the step's times."""
        assert self.current is not None
        stage = self.current.stage
        start = time.perf_counter()
        cpu_start = time.process_time()
        batch = self.stream.next()
        lr = batch["lr"].to(self.device, non_blocking=True)
        hr = batch["hr"].to(self.device, non_blocking=True)
        if self.config.train.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
            hr = hr.contiguous(memory_format=torch.channels_last)
        outcome = self.current.stepper(lr, hr, self.stage_step)
        self.stage_step += 1
        self.global_step += 1
        if outcome.skipped:
            self.nonfinite_in_row += 1
            self.nonfinite_total += 1
            logger.warning(
                "step %d: non-finite loss or gradient (%s update skipped; %d in a row)",
                self.global_step,
                "generator" if outcome.g_skipped else "discriminator",
                self.nonfinite_in_row,
            )
            if self.nonfinite_in_row >= self.config.train.max_nonfinite:
                self._diverged(stage, outcome.parts)
        else:
            self.nonfinite_in_row = 0
        if self.ema is not None and not outcome.g_skipped:
            self.ema.update(self.generator)
        self.step_times.append(time.perf_counter() - start)
        self.step_cpu_times.append(time.process_time() - cpu_start)
        return outcome

    # ------------------------------------------------------------------ logs and checks
    def _log_train(self, stage: StageConfig, interval: _LossInterval) -> None:
        """One CSV/TensorBoard row: the mean of each loss term over the steps taken since
        the last row, the learning rate, seconds per step, and the skipped steps."""
        count, taken = interval.count, interval.taken
        if not count or not self.dist.is_main:
            return
        assert self.current is not None
        values = {k: float(v) / taken for k, v in interval.sums.items()}  # one sync per row
        values["lr"] = self.current.g_schedule.lr_at(max(self.stage_step - 1, 0))
        recent = self.step_times[-count:]
        values["step_seconds"] = sum(recent) / len(recent)
        if taken < count:
            values["skipped_steps"] = float(count - taken)
        assert self.csv is not None
        self.csv.write(self.global_step, stage.name, "train", values)
        self.tb.scalars(self.global_step, "train", values)
        shown = {k: v for k, v in values.items() if k in ("g_total", "d_total")}
        self.progress.update(step=self.global_step, stage=stage.name, losses=shown)

    def _diverged(self, stage: StageConfig, parts: dict[str, torch.Tensor]) -> None:
        where = (
            f"the last good state is {self.state_path}"
            if self.state_path.exists()
            else "no training state was saved before it"
        )
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())
        raise TrainingError(
            f"training stopped: {self.nonfinite_in_row} steps in a row with a non-finite "
            f"(NaN/Inf) loss or gradient (stage {stage.name}, step {self.global_step}; "
            f"{shown}); {where}. Lower the learning rate, set stages[i].grad_clip, or check "
            f"the data for NaN values (train.max_nonfinite = {self.config.train.max_nonfinite})"
        )

    def _export_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.generator

    def _validate(self, stage: StageConfig) -> None:
        if self.dist.is_main and self.val_dataset is not None:
            run = self.config.train
            indices = validation_indices(len(self.val_dataset), self.config.data.val_max_slices)  # type: ignore[arg-type]
            result: ValidationResult = validate(
                self._export_model(),
                self.val_dataset,
                indices,
                factors=self.factors,  # type: ignore[arg-type]
                device=self.device,
                crop=self.config.data.val_crop,
                num_images=run.num_val_images,
                autocast=self._autocast,
                channels_last=run.channels_last,
            )
            metrics = result.metrics
            assert self.csv is not None
            self.csv.write(self.global_step, stage.name, "val", metrics)
            self.tb.scalars(self.global_step, "val", metrics)
            folder = self.out / "samples" / f"step-{self.global_step:07d}"
            for index, panel in result.panels:
                save_panel(panel, folder / f"slice-{index:05d}.png")
                self.tb.image(self.global_step, f"val/slice-{index:05d}", panel)
            self.tb.flush()
            self.last_validation = {**metrics, "step": self.global_step, "stage": stage.name}
            logger.info(
                "step %d validation: PSNR %.3f dB, SSIM %.4f (bicubic %.3f dB, %.4f)",
                self.global_step,
                metrics["psnr"],
                metrics["ssim"],
                metrics["psnr_bicubic"],
                metrics["ssim_bicubic"],
            )
            key = self.config.train.best_metric
            value = metrics[key]
            if not math.isnan(value) and (self.best is None or value > self.best["value"]):
                self.best = {
                    "metric": key,
                    "value": value,
                    "step": self.global_step,
                    "stage": stage.name,
                }
                self._save_model("best")
        distributed.barrier(self.dist)

    def _save_model(self, name: str) -> Path:
        folder = self.out / "checkpoints" / name
        save(self._export_model(), folder, metadata=self.metadata(checkpoint=name))
        _write_yaml(folder / "train_config.yaml", to_dict(self.config))
        return folder

    def _checkpoint(self, stage: StageConfig, *, stage_folder: bool = False) -> None:
        """Rank 0 writes the last (and stage) generator checkpoint, then the state."""
        if self.dist.is_main:
            self._save_model("last")
            if stage_folder:
                self._save_model(stage.name)
            save_state(self._state(), self.state_path)
        distributed.barrier(self.dist)

    def _state(self) -> dict[str, Any]:
        assert self.current is not None
        current = self.current
        return {
            "config": to_dict(self.config),
            "stage_index": self.stage_index,
            "stage_step": self.stage_step,
            "global_step": self.global_step,
            "data": self.stream.state(),
            "generator": self.generator.state_dict(),
            "discriminator": (
                self.discriminator.state_dict() if self.discriminator is not None else None
            ),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "g_optimizer": current.g_optimizer.state_dict(),
            "g_schedule": current.g_schedule.state_dict(),
            "d_optimizer": _state_dict(current.d_optimizer),
            "d_schedule": _state_dict(current.d_schedule),
            "scaler": None,  # bf16 autocast needs no loss scaling
            "rng": capture_rng(),
            "nonfinite": {"in_row": self.nonfinite_in_row, "total": self.nonfinite_total},
            "best": self.best,
            "validation": self.last_validation,
        }

    # ------------------------------------------------------------------------- metadata
    def metadata(self, *, checkpoint: str) -> dict[str, Any]:
        """The ``metadata`` of the generator checkpoints (see :mod:`medsr.train.metadata`)."""
        return checkpoint_metadata(
            self.description,
            checkpoint=checkpoint,
            global_step=self.global_step,
            stage_index=self.stage_index,
            stage_step=self.stage_step,
            nonfinite_total=self.nonfinite_total,
            last_validation=self.last_validation,
            best=self.best,
        )


def _state_dict(stateful: Any) -> dict[str, Any] | None:
    return stateful.state_dict() if stateful is not None else None


def _write_yaml(path: Path, data: Any) -> None:
    import yaml

    from medsr.train.state import atomic_write_bytes

    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write_bytes(path, text.encode("utf-8"))
