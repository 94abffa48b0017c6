"""``medsr export MODEL --onnx OUT.onnx``: an ONNX file with dynamic batch, height and width."""

from __future__ import annotations

import argparse

from medsr.errors import InferenceError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from medsr.infer.defaults import DEFAULT_OPSET

    p = sub.add_parser(
        "export",
        help="export a model to ONNX (dynamic batch, height, width)",
        description=(
            "Export a model (a medsr checkpoint folder, ESRGAN .pth/.safetensors weights or an "
            "interpolation name) to ONNX with dynamic batch, height and width. The file records "
            "the scale, channels, normalisation and training degradation, so `medsr upscale "
            "--model OUT.onnx` uses it like the checkpoint. The export is checked: ONNX Runtime "
            "and PyTorch outputs must agree within --tolerance on random inputs."
        ),
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint folder, weights or name")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    p.add_argument("--scale", type=int, default=None, help="scale (interpolation names only)")
    p.add_argument(
        "--dynamo",
        action="store_true",
        help="use PyTorch's torch.export-based exporter (slower; needs onnxscript)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest allowed |ONNX - PyTorch| in normalised units (default 1e-4)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    from medsr.infer.export import check_onnx, export_onnx
    from medsr.infer.model_source import load_model

    model = load_model(args.checkpoint, scale=args.scale)
    path = export_onnx(
        model, args.onnx, opset=args.opset, dynamo=args.dynamo, overwrite=args.overwrite
    )
    exported = load_model(path)
    difference = check_onnx(model, exported)
    size = path.stat().st_size
    print(
        f"wrote {path} ({size / 1e6:.1f} MB, opset {args.opset}, {model.name} x{model.scale}, "
        f"{model.in_channels} -> {model.out_channels} channel(s)); max |ONNX - PyTorch| = "
        f"{difference:.2e}"
    )
    if difference > args.tolerance:
        path.unlink()
        raise InferenceError(
            f"the ONNX model differs from PyTorch by {difference:.2e} > {args.tolerance:g}; "
            "removed it (try --dynamo or another --opset)"
        )
    return 0
