"""Copy a trained checkpoint into the package as a shipped model, with its model card.

    python scripts/ship_pretrained.py NAME CHECKPOINT [--results benchmarks/pretrained/records.json]

Writes ``src/medsr/models/pretrained/NAME/`` with ``config.json`` (the checkpoint's, with the
metadata it was trained with), ``model.safetensors`` (fp16 when the fp16 model's output on the
bundled samples stays within 0.01 dB PSNR of the fp32 output and above 60 dB against it;
else fp32) and ``MODEL_CARD.md`` (architecture, data and licences, degradation, recipe and
command, validation metrics from the benchmark records, intended use, warning) and
``model.onnx`` (the deployed network exported to ONNX, fp32, checked against the PyTorch
output within 1e-5: the CPU runs it on ONNX Runtime with no export at start-up).
``--onnx-only`` rewrites just ``model.onnx`` of a shipped model. Add the entry to
``medsr.models.zoo.PRETRAINED`` by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / "src" / "medsr" / "models" / "pretrained"

WARNING = (
    "**Not for primary diagnosis.** Super-resolved images are estimates: a network can "
    "smooth away or invent fine structures (small lesions, fractures, calcifications). Use "
    "them for viewing, research and pre-processing; read the original acquisition for any "
    "clinical decision."
)


def _samples() -> list[np.ndarray]:
    from medsr import samples
    from medsr.io import read
    from medsr.transforms.intensity import fit_normaliser

    out = []
    for key, sample in samples.SAMPLES.items():
        image = read(samples.path(key), modality=sample.modality)
        array = image.array if image.array.ndim == 2 else image.array[image.array.shape[0] // 2]
        norm = fit_normaliser(array, modality=image.modality)
        h, w = array.shape
        centre = array[(h - 128) // 2 : (h + 128) // 2, (w - 128) // 2 : (w + 128) // 2]
        out.append(np.clip(norm.forward(centre), 0, 1).astype(np.float32))
    if not out:
        rng = np.random.default_rng(0)
        out.append(rng.random((64, 64), dtype=np.float32))
    return out


def write_onnx(out: Path) -> float:
    """Export the shipped model in ``out`` to ``out/model.onnx``; the max difference from its
    PyTorch output (normalised units). Removes the file and raises if it exceeds 1e-5."""
    from medsr.infer import load_model
    from medsr.infer.export import check_onnx, export_onnx
    from medsr.infer.model_source import DEPLOYED_ONNX

    path = out / DEPLOYED_ONNX
    model = load_model(out)  # as a folder: the PyTorch form, never a shipped ONNX
    export_onnx(model, path, overwrite=True)
    diff = check_onnx(model, load_model(path))
    if diff > 1e-5:
        path.unlink()
        raise SystemExit(f"{path}: ONNX output differs from PyTorch by {diff:.2e} (> 1e-5)")
    path.chmod(0o644)
    return diff


def fp16_ok(model: torch.nn.Module) -> tuple[bool, float]:
    """Whether the fp16-rounded weights give (almost) the same output; and that PSNR."""
    half = {
        k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    copy = type(model)(**model.hparams())
    copy.load_state_dict(half)
    copy.eval()
    worst = float("inf")
    with torch.inference_mode():
        for img in _samples():
            s = model.scale
            lr = torch.from_numpy(img[: img.shape[0] // s * s, : img.shape[1] // s * s])[None, None]
            a, b = model(lr), copy(lr)
            mse = float(((a - b) ** 2).mean())
            worst = min(worst, 10 * np.log10(1.0 / max(mse, 1e-20)))
    return worst > 60.0, worst


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def metrics_table(name: str, scale: int, records: list[dict]) -> list[str]:
    lines = [
        "| set | images | bicubic PSNR / SSIM | this model PSNR / SSIM | gain (dB / SSIM) |",
        "|---|---|---|---|---|",
    ]
    sets = list(dict.fromkeys(r["set"] for r in records if r["scale"] == scale))
    for set_name in sets:
        sel = [r for r in records if r["scale"] == scale and r["set"] == set_name]
        sel = [r for r in sel if not r["esrgan_subset"]]
        mine = [r for r in sel if r["method"] == name]
        bic = {r["image"]: r for r in sel if r["method"] == "bicubic"}
        if not mine:
            continue
        p, s = _mean([r["psnr"] for r in mine]), _mean([r["ssim"] for r in mine])
        bp = _mean([bic[r["image"]]["psnr"] for r in mine])
        bs = _mean([bic[r["image"]]["ssim"] for r in mine])
        lines.append(
            f"| {set_name} | {len(mine)} | {bp:.2f} / {bs:.4f} | {p:.2f} / {s:.4f} | "
            f"{p - bp:+.2f} / {s - bs:+.4f} |"
        )
    if not any(
        r["scale"] == scale and r["method"] == "Real-ESRGAN x4plus" for r in records
    ):  # x3: its x4 output has no integer resize
        return [*lines, "", f"Real-ESRGAN x4plus is not compared at x{scale}."]
    lines += [
        "",
        "Against Real-ESRGAN x4plus (centre 192 x 192 crops of 2 images per set, the same "
        "pixels for all three; at x2 Real-ESRGAN's x4 output is resized down by 2):",
        "",
        "| set | images | bicubic PSNR / SSIM | Real-ESRGAN x4plus PSNR / SSIM "
        "| this model PSNR / SSIM |",
        "|---|---|---|---|---|",
    ]
    for set_name in sets:
        sel = [r for r in records if r["scale"] == scale and r["set"] == set_name]
        sub = [r for r in sel if r["esrgan_subset"]]
        esr = [r for r in sub if r["method"] == "Real-ESRGAN x4plus"]
        mine = [r for r in sub if r["method"] == name]
        bic = [r for r in sub if r["method"] == "bicubic"]
        if not esr or not mine:
            continue

        def fmt(rows: list[dict]) -> str:
            return (
                f"{_mean([r['psnr'] for r in rows]):.2f} / {_mean([r['ssim'] for r in rows]):.4f}"
            )

        lines.append(f"| {set_name} | {len(mine)} | {fmt(bic)} | {fmt(esr)} | {fmt(mine)} |")
    return lines


def training_profile(meta: dict) -> dict:
    """What the model was trained on, for the out-of-distribution check
    (``medsr.infer.ood``): DICOM modalities (the keys of ``normalisation_details.kinds``),
    grey or colour, and body parts (the first word of each training data set's name)."""
    kinds = (meta.get("normalisation_details") or {}).get("kinds") or {}
    datasets = (meta.get("training_data") or {}).get("datasets") or []
    return {
        "modalities": sorted(kinds),
        "colour": int((meta.get("input") or {}).get("channels", 1)) == 3,
        "body_parts": sorted({str(d["name"]).split("-")[0] for d in datasets}),
        "source": "normalisation_details.kinds and training_data.datasets",
    }


def ood_section(meta: dict) -> list[str]:
    """The model card's section on the out-of-distribution warnings of `medsr upscale`."""
    profile = meta.get("training_profile") or training_profile(meta)
    colour = "colour" if profile["colour"] else "grey"
    return [
        "## Out-of-distribution warnings",
        "",
        f"Trained on {colour} images of modalities {', '.join(profile['modalities'])} "
        f"(body parts: {', '.join(profile['body_parts'])}); `config.json` records this as "
        "`metadata.training_profile`. `medsr upscale` warns, in words, and flags the summary "
        "and the DICOM SeriesDescription (`OOD: ...`) when an input lies outside it: a DICOM "
        "modality never seen (e.g. US, PT, NM, OT; CR and DR count as DX), an RGB image, or an "
        "unusual intensity distribution after normalisation (more than 5 % of the pixels "
        "beyond the window, or almost no contrast). A warning means the output is less "
        "trustworthy than the validation numbers above suggest; no warning does not make it "
        "safe. The web app (`medsr serve`) shows the same warnings, in words, in a framed box "
        "under the result's facts, for in-plane and through-plane jobs. See "
        "docs/inference.md, 'Out-of-distribution warnings'.",
        "",
    ]


def _terms(datasets: list[dict]) -> str:
    """What the training data's licences demand of the weights, from the licence texts."""
    # licence names as words ("UNCR" in a file name is not NC)
    nc = re.compile(r"\bBY-NC\b|\bNC\b|non-commercial", re.IGNORECASE)
    noncommercial = [d["name"] for d in datasets if nc.search(str(d.get("license", "")))]
    research = [d["name"] for d in datasets if "research use" in str(d.get("license", ""))]
    parts = []
    if noncommercial:
        share = any(re.search(r"-SA\b", str(d.get("license", ""))) for d in datasets)
        parts.append(
            f"{', '.join(noncommercial)} carry non-commercial licences, so treat the weights as "
            "**non-commercial" + (", share-alike**" if share else "**")
        )
    if research:
        parts.append(f"{', '.join(research)} are for research use with citation")
    return ("; ".join(parts) + ".") if parts else "no restrictive terms."


def describe_degradation(stages: list[dict] | None) -> str:
    """Words for a training degradation's stages (the mixed downsampling spelled out)."""
    from medsr.transforms.degrade import MIXED_KIND_TEXT

    if not stages:
        return "not recorded"
    words = []
    for stage in stages:
        if stage.get("name") != "mixed_downsample":
            words.append(f"`{json.dumps(stage)}`")
            continue
        kinds = stage["kinds"]
        probs = stage.get("probs") or [1.0] * len(kinds)
        total = sum(probs)
        drawn = ", ".join(
            f"{MIXED_KIND_TEXT.get(k, k)} ({100 * p / total:.0f} %)"
            for k, p in zip(kinds, probs, strict=True)
            if p > 0
        )
        text = f"per training patch one downsampling is drawn: {drawn}"
        if stage.get("noise_prob", 0) > 0:
            lo, hi = stage.get("snr", (20.0, 40.0))
            text += (
                f"; then Rician noise (SNR {lo:g}..{hi:g}) on "
                f"{100 * stage['noise_prob']:.0f} % of patches"
            )
        words.append(text)
    return "; then ".join(words)


def degradation_lines(meta: dict) -> list[str]:
    """The model card's degradation paragraph(s): the default stages, and the stages of each
    modality that had its own (``data.modality_degradation``)."""
    deg = meta.get("degradation")
    by_modality = meta.get("modality_degradation") or {}
    if not by_modality:
        lines = [f"`{json.dumps(deg)}`: {describe_degradation(deg)}."]
    else:
        lines = [
            f"Slices of modality {', '.join(sorted(by_modality))} had their own degradation; "
            f"all other slices `{json.dumps(deg)}`: {describe_degradation(deg)}.",
        ]
    for modality, stages in sorted(by_modality.items()):
        lines += ["", f"{modality}: `{json.dumps(stages)}`: {describe_degradation(stages)}."]
    data = ((meta.get("recipe") or {}).get("config") or {}).get("data") or {}
    if data.get("intensity_scale"):
        low, high = data["intensity_scale"]
        lines += [
            "",
            f"Before it was degraded, every training patch was multiplied by a factor drawn "
            f"uniformly from [{low:g}, {high:g}] (`data.intensity_scale`), so that the model "
            "saw the same anatomy at other brightnesses.",
        ]
    return lines


def _recipe_start(path: Path, recipe: dict) -> str | None:
    """``model.init_generator`` of the recipe file ``path`` if it exists, else the one in the
    checkpoint's recorded recipe."""
    model = recipe.get("config", {}).get("model") or {}
    if path.is_file():
        import yaml

        model = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model") or {}
    return model.get("init_generator")


def _runs_first(run: str, recipe: dict) -> list[str]:
    """The runs that the recipe ``run`` needs before it, oldest first: a recipe that continues
    another recipe's run (``model.init_generator: runs/BASE/...``) needs that run, which may
    continue another. The repository's recipe files have the last word (a run that continued
    the shipped copy of a model it then replaced names ``runs/BASE`` there)."""
    chain: list[str] = []
    start = _recipe_start(REPO / f"configs/pretrained/{run}.yaml", recipe)
    while start:
        parts = Path(start).parts
        if len(parts) <= 2 or parts[0] != "runs" or parts[1] in (run, *chain):
            break
        chain.insert(0, parts[1])
        start = _recipe_start(REPO / f"configs/pretrained/{parts[1]}.yaml", {})
    return chain


def card_note(text: str) -> str:
    """The note paragraph(s) of a model card written by :func:`card` ("" if none): what
    follows the recipe's own paragraph in its section, so that ``--card-only`` keeps it."""
    if "## Recipe" not in text:
        return ""
    section = text.split("## Recipe", 1)[1].split("\n## ", 1)[0]
    after = section.split("```", 2)[-1]  # past the commands block
    paragraphs = [p.strip() for p in after.strip().split("\n\n") if p.strip()]
    return "\n\n".join(p for p in paragraphs if not p.startswith("Recipe `"))


def card(
    name: str, config: dict, records: list[dict], dtype: str, fp16_psnr: float, note: str = ""
) -> str:
    meta = config["metadata"]
    recipe = meta.get("recipe", {})
    training = meta.get("training", {})
    data = meta.get("training_data", {})
    val = meta.get("validation") or {}
    scale = config["scale"]
    hp = config["hparams"]
    repeats = recipe.get("config", {}).get("data", {}).get("dataset_repeats", {}) or {}

    def slices(d: dict) -> str:
        k = repeats.get(d["name"], 1)
        n = d.get("train_slices", 0)
        if k == 1:
            return f"{n} training slices"
        return f"{n // k} training slices, each listed {k} times (`dataset_repeats`)"

    datasets = "\n".join(
        f"- `{d['name']}`: {slices(d)} from {d.get('train_subjects', '?')} subject(s); "
        f"licence: {d.get('license', 'unknown')}"
        for d in data.get("datasets", [])
    )
    run = recipe.get("name", name)
    recipe_path = f"configs/pretrained/{run}.yaml"
    first = [
        f"nice -n 10 medsr train configs/pretrained/{base}.yaml --out runs/{base}"
        + ("  # first" if i == 0 else "")
        for i, base in enumerate(_runs_first(run, recipe))
    ]
    lines = [
        f"# Model card: `{name}`",
        "",
        WARNING,
        "",
        "## Summary",
        "",
        f"- Task: single-image super-resolution, x{scale}, one channel (grey), input in [0, 1] "
        "after medsr's normalisation (CT window, MR percentiles, X-ray bit depth; "
        "`medsr upscale` does it).",
        f"- Architecture: `{config['arch']}` {json.dumps(hp)}; "
        f"{config.get('num_parameters', '?'):,} parameters; weights stored as {dtype}"
        + (
            " (the fp16 model's output is over 60 dB PSNR from the fp32 output on the bundled "
            "samples: lossless for practical purposes)"
            if dtype == "fp16"
            else ""
        )
        + ".",
        f"- Kind: {'GAN (perceptual)' if 'gan' in name else 'PSNR-oriented (L1 loss)'}.",
        "- Load: `medsr.infer.load_model(" + repr(name) + ")`, or "
        f"`medsr upscale IMAGE --model {name}`.",
        "",
        "## Training data and licences",
        "",
        datasets or "- (see config.json)",
        "",
        "Subject-level splits by `medsr prepare` (80/10/10 by subject, seed 0; a dataset "
        "with one subject trains only): no slice of a validation subject was seen in training. "
        "Small datasets are repeated (`dataset_repeats`, above). The weights are released "
        "under the medsr licence (MIT), but the terms of the training data follow them: "
        + _terms(data.get("datasets", []))
        + " Cite the data sources above. The research-only COVID-Net radiographs were "
        "**not** used for training (external test only).",
        "",
        "## Degradation (how the low-resolution inputs were made)",
        "",
        *degradation_lines(meta),
        "",
        "## Recipe",
        "",
        "```bash",
        "# the data preparation command is in the recipe's header and docs/pretrained.md",
        *first,
        f"nice -n 10 medsr train {recipe_path} --out runs/{run}",
        f"python scripts/ship_pretrained.py {name} runs/{run}/checkpoints/last",
        "```",
        "",
        f"Recipe `{recipe_path}`: {recipe.get('description', '')} "
        f"Trained {training.get('steps', '?')} steps of batch {training.get('global_batch', '?')} "
        f"on {training.get('device', 'cpu')} ({training.get('precision', 'fp32')}), EMA "
        f"{training.get('ema_decay')}, seed {training.get('seed')}. This was a CPU-only run on "
        "a 2-core machine: far shorter than a normal super-resolution schedule (see "
        "Limitations).",
        "",
        *([note, ""] if note else []),
        "## Validation metrics (antialiased bicubic degradation)",
        "",
        'From `python benchmarks/bench_pretrained.py` (benchmarks/RESULTS.md, "Pretrained '
        'models (issue 9)"): PSNR in dB and SSIM on the training normalisation (data range '
        "1), borders of `scale` pixels shaved. Sets marked *val* are the validation split of "
        "the training data (subjects never trained on); sets marked *external* come from "
        "sources kept out of training entirely (other sites and scanners: stroke T1/T2/FLAIR, "
        "a thick-slice T1 brain, abdominal CT, pydicom-data CT files, COVID-Net radiographs).",
        "",
        *metrics_table(name, scale, records),
        "",
    ]
    if val:
        m = val.get("metrics", {})
        lines += [
            f"Training-time validation (step {m.get('step')}, {val.get('max_slices')} val slices, "
            f"centre crop {val.get('crop')}, the training degradation): PSNR "
            f"{m.get('psnr', float('nan')):.2f} dB vs bicubic "
            f"{m.get('psnr_bicubic', float('nan')):.2f}.",
            "",
        ]
    lines += [
        "## Intended use",
        "",
        "Upscaling grey medical images (MRI slices, CT slices, radiographs) for viewing, "
        "research and as a pre-processing step, with `medsr upscale` or the web app "
        "(`medsr serve`), which report the fidelity check (downsampling the output should "
        "give back the input). Through-plane use on thick-slice volumes "
        "(`--axis through-plane`, the web app's *through-plane* method) runs this 2D model on "
        "the planes through the slice axis: it was trained on in-plane slices with an "
        "in-plane degradation, not on real slice profiles, so through-plane outputs are "
        "further from its validation conditions than in-plane ones; compare with the bicubic "
        "baseline, look at the consistency map, and prefer `--self-supervised` (which learns "
        "the volume's own slice profile) when the slices are much thicker than the pixels. "
        "In the web app, PSNR/SSIM against an uploaded high-resolution reference (over the "
        "output or a drawn region) measure closeness to that reference, not diagnostic "
        "quality.",
        "",
        *ood_section(meta),
        "## Limitations",
        "",
        "- Trained on a 2-core CPU (no GPU): a GPU run of the same recipe "
        "(hundreds of thousands of patches instead of tens of thousands) would be better.",
        "- Small training data (the subjects listed above); other anatomies, scanners and "
        "contrasts are out of distribution (`medsr upscale` warns about some of them).",
        "- Not evaluated for any diagnostic task.",
        "",
        WARNING,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from medsr.models import load, read_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name")
    parser.add_argument(
        "checkpoint", type=Path, nargs="?", help="the trained checkpoint folder (to ship it)"
    )
    parser.add_argument(
        "--results", type=Path, default=REPO / "benchmarks" / "pretrained" / "records.json"
    )
    parser.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="rewrite the model card of a shipped model (keeping its note unless --note is given)",
    )
    parser.add_argument(
        "--onnx-only", action="store_true", help="rewrite model.onnx of a shipped model"
    )
    parser.add_argument("--note", default="", help="a paragraph added to the card's recipe")
    args = parser.parse_args(argv)
    out = DEST / args.name
    if args.onnx_only:
        diff = write_onnx(out)
        print(f"wrote {out / 'model.onnx'} (max difference from PyTorch {diff:.1e})")
        return 0
    if args.card_only:
        config = read_config(out)
        records = json.loads(args.results.read_text()) if args.results.is_file() else []
        import safetensors

        with safetensors.safe_open(str(out / "model.safetensors"), "pt") as fh:
            dtype = "fp16" if fh.get_tensor(fh.keys()[0]).dtype == torch.float16 else "fp32"
        path = out / "MODEL_CARD.md"
        note = args.note or (card_note(path.read_text(encoding="utf-8")) if path.is_file() else "")
        text = card(args.name, config, records, dtype, float("nan"), note)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if args.checkpoint is None:
        parser.error("give the CHECKPOINT folder to ship (or --card-only / --onnx-only)")
    model = load(args.checkpoint)
    config = read_config(args.checkpoint)
    config["metadata"]["training_profile"] = training_profile(config["metadata"])
    ok, fp16_psnr = fp16_ok(model)
    use_fp16 = ok and not args.fp32
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if use_fp16 and v.is_floating_point() else v).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    save_file(
        state, str(out / "model.safetensors"), metadata={"format": "pt", "arch": config["arch"]}
    )
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    records = json.loads(args.results.read_text()) if args.results.is_file() else []
    text = card(args.name, config, records, "fp16" if use_fp16 else "fp32", fp16_psnr, args.note)
    (out / "model.safetensors").chmod(0o644)
    (out / "fp16_check.json").write_text(json.dumps({"fp16_vs_fp32_psnr_db": fp16_psnr}) + "\n")
    (out / "MODEL_CARD.md").write_text(text, encoding="utf-8")
    diff = write_onnx(out)
    size = (out / "model.safetensors").stat().st_size
    print(
        f"wrote {out} ({size / 1e6:.2f} MB, {'fp16' if use_fp16 else 'fp32'}; "
        f"fp16 PSNR {fp16_psnr:.1f} dB; model.onnx within {diff:.1e} of PyTorch)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
