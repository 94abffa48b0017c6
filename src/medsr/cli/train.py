"""``medsr train CONFIG.yaml``: run a training recipe (see docs/training.md).

``--set a.b.c=value`` overrides a config value (YAML-typed; list items by index:
``--set stages.1.optimizer.lr=1e-5``), ``--out DIR`` chooses the output folder, ``--resume``
continues the run saved there, ``--smoke`` runs a tiny version (a few steps, tiny sizes) to
check a recipe end to end. Under ``torchrun`` the same command trains with DDP.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a super-resolution model from a YAML recipe",
        description=(
            "Train a generator (and discriminator) from a YAML recipe: stages, losses, "
            "optimisers, validation in physical units, checkpoints, resume. Works under "
            "torchrun for DistributedDataParallel."
        ),
    )
    parser.add_argument("config", help="the recipe (YAML), e.g. configs/3-real-esrgan-brain.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted key, YAML value); repeatable",
    )
    parser.add_argument("--out", help="output folder (default: output_dir, else runs/<name>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run saved in the output folder"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run: 2 steps per stage, batch 2, the recipe's smoke sizes",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (YAML) and exit without training",
    )


def run(args: argparse.Namespace) -> int:
    import yaml

    from medsr.train import load_config, to_dict, train

    config = load_config(args.config, args.overrides, smoke=args.smoke)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(to_dict(config), sort_keys=False))
        return 0
    result = train(config, out_dir=args.out, resume=args.resume, config_path=args.config)
    if int(os.environ.get("RANK", "0")) == 0:
        state = "stopped early" if result.stopped_early else "finished"
        print(
            f"{state} at step {result.global_step} of {result.total_steps}; "
            f"output in {result.out_dir}",
            file=sys.stderr,
        )
        if result.validation:
            v = result.validation
            print(
                f"validation (step {v['step']}): PSNR {v['psnr']:.3f} dB, SSIM {v['ssim']:.4f} "
                f"(bicubic {v['psnr_bicubic']:.3f} dB, {v['ssim_bicubic']:.4f})",
                file=sys.stderr,
            )
        if result.checkpoint is not None:
            print(f"checkpoint: {result.checkpoint}", file=sys.stderr)
        if result.skipped_steps:
            print(f"non-finite steps skipped: {result.skipped_steps}", file=sys.stderr)
    return 0
