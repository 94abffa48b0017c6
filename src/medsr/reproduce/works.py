"""The five source works as :class:`~medsr.reproduce.spec.WorkSpec` values.

Each model is a recipe of ``configs/`` (its ``full`` profile, unchanged) plus, for the
``cpu`` profile, overrides that keep the architecture family, the losses, the degradation
and the evaluation of the paper but shrink widths, depths, steps, patches and batches to
about 30 CPU-minutes per model on a 2-core machine. The step counts are estimates from the
network sizes (a GAN stage with the VGG16 perceptual loss costs several times a pixel-loss
step); the report states the exact reductions.
"""

from __future__ import annotations

from medsr.errors import ConfigError
from medsr.reproduce.spec import EvalSpec, PrepareSpec, StudySpec, TrainSpec, WorkSpec

__all__ = ["WORKS", "get_work"]

_SPINE = "configs/1-medsrgan-lumbar-spine.yaml"
_BRATS_LICENSE = (
    "CC BY-NC-SA 3.0 (BraTS 2013/2015; non-commercial, share-alike; cite Menze et al., "
    "IEEE TMI 34(10), 2015)"
)

# -- seed 1: MedSRGAN on lumbar spine MRI -------------------------------------------------------
_CPU_SPINE = {"data.patch_size": 64, "data.batch_size": 8}
_RWMAN_CPU = {"num_features": 32, "num_groups": 2, "num_blocks": 4}

WORK_1 = WorkSpec(
    number=1,
    slug="medsrgan-lumbar-spine",
    title="MedSRGAN on lumbar spine MRI (seed 1, Acharya et al. 2025)",
    prepare=(PrepareSpec(name="spine-mri", sources=("spine-mri",)),),
    models=(
        TrainSpec(
            name="RCAN",
            recipe=_SPINE,
            manifest="spine-mri",
            stages=("pretrain",),
            overrides={
                "model.generator": {
                    "arch": "rcan",
                    "params": {"num_features": 64, "num_groups": 10, "num_blocks": 20},
                },
                "model.discriminator": None,
            },
            cpu={
                **_CPU_SPINE,
                "model.generator.params": {"num_features": 32, "num_groups": 2, "num_blocks": 4},
                "stages.pretrain.steps": 3000,
            },
        ),
        TrainSpec(
            name="RWMAN",
            recipe=_SPINE,
            manifest="spine-mri",
            stages=("pretrain",),
            overrides={"model.discriminator": None},
            cpu={**_CPU_SPINE, "model.generator.params": _RWMAN_CPU, "stages.pretrain.steps": 3000},
        ),
        TrainSpec(
            name="ESRGAN-type",
            recipe=_SPINE,
            manifest="spine-mri",
            overrides={
                "model.generator": {
                    "arch": "rrdbnet",
                    "params": {"num_features": 64, "num_blocks": 23, "growth": 32},
                },
                # ESRGAN: VGG-style discriminator, relativistic average GAN loss
                "model.discriminator": {"arch": "srgan", "params": {"num_features": 64}},
                "stages.gan.losses.adversarial.kind": "ragan",
            },
            smoke={"model.generator.params": {"num_features": 8, "num_blocks": 1, "growth": 4}},
            cpu={
                **_CPU_SPINE,
                "model.generator.params": {"num_features": 32, "num_blocks": 3, "growth": 16},
                "model.discriminator.params": {"num_features": 32},
                "stages.pretrain.steps": 1500,
                "stages.gan.steps": 600,
            },
        ),
        TrainSpec(
            name="MedSRGAN",
            recipe=_SPINE,
            manifest="spine-mri",
            stages=("gan",),
            init_from="RWMAN",  # the recipe's L1 pre-training is the RWMAN row
            cpu={
                **_CPU_SPINE,
                "model.generator.params": _RWMAN_CPU,
                "model.discriminator.params": {"num_features": 32},
                "stages.gan.steps": 1000,
            },
        ),
    ),
    evaluation=EvalSpec(
        manifest="spine-mri",
        config={
            "title": "Reproduction of seed 1: lumbar spine MRI, x4 (Gaussian blur)",
            "splits": ["test"],
            "degradation": "configs/degradations/gaussian_blur_x4.yaml",
            "metrics": ["psnr", "ssim", "mse", "mae"],
            "tables": [{"style": "lumbar_spine"}],
            "figures": {"per_dataset": 2, "embed": False},
        },
        interpolations={"bicubic": "bicubic"},
        cpu={"every": 3},
    ),
    study=StudySpec(methods=("bicubic", "RCAN", "RWMAN", "ESRGAN-type", "MedSRGAN")),
    deviations=(
        "Data: the 32 lumbar spine volumes of ../shared/data/spine-mri (about 2,400 sagittal "
        "slices, split 80/10/10 by subject) instead of the paper's 22,532 training images.",
        "Perceptual loss: VGG16 conv5_3 features (the offline weights) for the paper's VGG-19.",
        "The paper's 'MedSRGAN' and 'Ours' rows describe one method; our one MedSRGAN run "
        "(RWMAN pre-trained with L1, then the paired-discriminator GAN) stands beside both.",
    ),
)

# -- seed 2: chest X-ray CNN versus GAN ----------------------------------------------------------
_XRAY_LICENSES = {
    "data.licenses": {
        "chest-xray": "NIH ChestX-ray14, no usage restrictions (cite the NIH Clinical Center)",
        "chest-xray-covid": (
            "COVID-Net / COVID-19 image data collection: research use only (no licence file; "
            "images and figures are not shipped)"
        ),
        "pydicom-cr": "MIT (pydicom-data RG1_UNCR.dcm, RG3_UNCR.dcm)",
    }
}

WORK_2 = WorkSpec(
    number=2,
    slug="chest-xray-cnn-gan",
    title="Chest X-ray CNN versus GAN at 512 x 512 (seed 2, Baraiya & Kothari)",
    prepare=(
        PrepareSpec(
            name="chest-xray-512",
            sources=("chest-xray",),
            optional_sources=("chest-xray-covid",),
            pydicom_files=("RG1_UNCR.dcm", "RG3_UNCR.dcm"),
            options={"resize": (512, 512)},
        ),
    ),
    models=(
        TrainSpec(
            name="CNN",
            recipe="configs/2-chest-xray-cnn.yaml",
            manifest="chest-xray-512",
            overrides=_XRAY_LICENSES,
            cpu={
                "model.generator.params": {"num_features": 32, "num_layers": 5},
                "data.patch_size": 256,
                "data.batch_size": 8,
                "data.patches_per_slice": 4,
                # the paper's "100 iterations" left the CNN 9 dB below bicubic in the first
                # CPU run; steps cost ~1.7 s here, so 400 fit the budget
                "stages.cnn.steps": 400,
                "data.val_crop": 256,
            },
        ),
        TrainSpec(
            name="GAN",
            recipe="configs/2-chest-xray-gan.yaml",
            manifest="chest-xray-512",
            overrides=_XRAY_LICENSES,
            cpu={
                "model.generator.params": {"num_features": 32, "num_blocks": 6},
                "model.discriminator.params": {"num_features": 32},
                "data.patch_size": 256,
                "data.batch_size": 8,
                "data.patches_per_slice": 4,
                "stages.gan.steps": 400,  # the paper's "200 iterations", doubled as the CNN's
                "data.val_crop": 256,
            },
        ),
    ),
    evaluation=EvalSpec(
        manifest="chest-xray-512",
        config={
            "title": "Reproduction of seed 2: chest radiographs at 512 x 512, x4 (bicubic)",
            "splits": ["val", "test"],
            "degradation": "configs/degradations/bicubic_x4.yaml",
            "metrics": ["psnr", "ssim", "mse", "mae"],
            "tables": [{"style": "chest_xray"}],
            "figures": {"per_dataset": 1, "embed": False},
        },
        interpolations={"bicubic": "bicubic"},
    ),
    study=StudySpec(methods=("bicubic", "CNN", "GAN"), cases=8, split="val"),
    research_only=("chest-xray-covid",),
    deviations=(
        "Data: the two NIH ChestX-ray14 radiographs of ../shared/data/chest-xray, the four "
        "COVID-Net radiographs of chest-xray-covid (research use only: their images and "
        "figures stay in the working folder) and pydicom-data's CR files RG1/RG3, all resized "
        "to 512 x 512, split by subject, instead of ChestX-ray14's 112,120 images.",
        "Scale: x4 bicubic (the paper gives no scale or degradation).",
    ),
)

# -- seed 3: Real-ESRGAN on BraTS ----------------------------------------------------------------
WORK_3 = WorkSpec(
    number=3,
    slug="real-esrgan-brats",
    title="Real-ESRGAN on BraTS brain MRI (seed 3)",
    prepare=(
        PrepareSpec(name="brats-256", sources=("brain-mri-brats2013",), options={"pad_to": 256}),
    ),
    models=(
        TrainSpec(
            name="Real-ESRGAN",
            recipe="configs/3-real-esrgan-brain.yaml",
            manifest="brats-256",
            cpu={
                "model.generator.params": {"num_features": 32, "num_blocks": 3, "growth": 16},
                "model.discriminator.params": {"num_features": 16, "skip_connection": True},
                "data.patch_size": 128,
                "data.batch_size": 2,
                "stages.gan.steps": 1200,
                # Real-ESRGAN's EMA (0.999) averages over ~1,000 steps: over 1,200 steps the
                # validated (EMA) weights would still be mostly the random start
                "train.ema_decay": 0.99,
                "train.val_every": 400,
                "train.log_every": 20,
            },
        ),
    ),
    evaluation=EvalSpec(
        manifest="brats-256",
        config={
            "title": "Reproduction of seed 3: BraTS, zero-padded to 256, x4 (bilinear)",
            "splits": ["test"],
            "degradation": "configs/degradations/bilinear_x4.yaml",
            "metrics": ["psnr", "ssim", "mse", "mae", "nrmse_mean", "vif"],
            "tables": [{"style": "brats"}],
            "figures": {"per_dataset": 2, "embed": False},
        },
        interpolations={"bilinear": "bilinear", "bicubic": "bicubic"},
        cpu={"every": 2},
    ),
    deviations=(
        "Data: BraTS 2013 FLAIR and T1c of four patients (../shared/data) instead of the 285 "
        "BraTS 2018 T1 volumes; split 80/10/10 by subject instead of 80/20.",
        "Perceptual loss: VGG16 features (the offline weights) for the paper's VGG19.",
        "NRMSE: the shared BraTS 2013 volumes are z-scored (subtrMeanDivStd) and scored after "
        "the 0.5/99.5 percentile normalisation, so the background is near 0 and the "
        "ground-truth mean of a slice is small: our NRMSE (by the mean) is on a different "
        "scale from the paper's; compare it between methods, not with the paper's column.",
    ),
)

# -- seed 4: SRGAN and ESPCN, tumour versus normal region ----------------------------------------
_LESION = {
    "name": "lesion",
    "mask": "zscore:2",
    "datasets": ["brain-mri-brats2013"],
    "volumes": "Flair",
    "min_pixels": 250,
}

WORK_4 = WorkSpec(
    number=4,
    slug="srgan-espcn-tumour",
    title="SRGAN and ESPCN on brain tumour MRI, tumour versus normal region (seed 4)",
    prepare=(PrepareSpec(name="brats", sources=("brain-mri-brats2013",)),),
    models=(
        TrainSpec(
            name="SRGAN",
            recipe="configs/4-brain-tumour-srgan.yaml",
            manifest="brats",
            cpu={
                "model.generator.params": {"num_features": 32, "num_blocks": 4},
                "model.discriminator.params": {"num_features": 32},
                "data.patch_size": 64,
                "data.batch_size": 8,
                "stages.srresnet.steps": 2000,
                "stages.srgan.steps": 800,
            },
        ),
        TrainSpec(
            name="ESPCN",
            recipe="configs/4-brain-tumour-espcn.yaml",
            manifest="brats",
            cpu={"stages.espcn.steps": 3300},
        ),
    ),
    evaluation=EvalSpec(
        manifest="brats",
        config={
            "title": "Reproduction of seed 4: BraTS FLAIR, x4 (bicubic), tumour versus normal",
            "splits": ["test"],
            "degradation": "configs/degradations/bicubic_x4.yaml",
            "metrics": ["psnr", "ssim", "mse", "mae"],
            "region_metrics": ["ssim", "psnr"],
            "regions": [_LESION],
            "tables": [
                {"style": "brain_tumour", "volumes": "Flair", "region": "lesion"},
                {"style": "lumbar_spine", "title": "Whole images"},
            ],
            "figures": {"per_dataset": 2, "embed": False},
        },
        interpolations={"bicubic": "bicubic"},
        cpu={"every": 2},
        # slices through the middle of the volumes, where the tumour is
        smoke={"every": 25},
    ),
    deviations=(
        "Data: the BraTS 2013 gliomas of ../shared/data instead of the figshare brain tumour "
        "MAT files (medsr reads their cjdata layout with tumorMask; they are not in the "
        "shared data).",
        "Tumour mask: the shared BraTS volumes carry only a brain mask, so the tumour region "
        "is the FLAIR hyperintensity proxy (z-score > 2 inside the brain, at least 250 "
        "pixels): a proxy, not a segmentation. The normal region is the rest of the slice.",
        "Whole-image numbers are in physical units of the z-scored volumes with the data "
        "range of each volume's window, not 8-bit values: they do not compare in absolute "
        "terms with the slides' numbers.",
    ),
)

# -- seed 5: thick/thin SRGAN --------------------------------------------------------------------
_THICK = "configs/5-thick-thin-srgan.yaml"

WORK_5 = WorkSpec(
    number=5,
    slug="thick-thin-srgan",
    title="SRResNet then SRGAN on thick/thin slice pairs, 2.5D (seed 5)",
    prepare=(),  # see medsr.reproduce.thickthin: DICOM series are synthesised and paired
    models=(
        TrainSpec(
            name="SRResNet",
            recipe=_THICK,
            manifest="thin",
            stages=("srresnet",),
            overrides={"model.discriminator": None},
            cpu={
                "model.generator.params": {"num_features": 32, "num_blocks": 6},
                "data.patch_size": 64,
                "data.batch_size": 8,
                # the recipe's 170 (paper: 5 epochs) left the first CPU run below bicubic
                # with checkerboard artefacts: pixel-loss steps are cheap (~0.1 s), so more
                "stages.srresnet.steps": 2000,
            },
        ),
        TrainSpec(
            name="SRGAN",
            recipe=_THICK,
            manifest="thin",
            stages=("srgan",),
            init_from="SRResNet",
            cpu={
                "model.generator.params": {"num_features": 32, "num_blocks": 6},
                "model.discriminator.params": {"num_features": 32},
                "data.patch_size": 64,
                "data.batch_size": 8,
                "stages.srgan.steps": 670,  # the recipe's (paper: 20 epochs)
            },
        ),
    ),
    evaluation=None,
    study=None,
    deviations=(
        "Data: no paired thick/thin acquisitions are in the shared data. From each BraTS "
        "volume (1 mm) we write a thin DICOM series and a thick one (5 mm, Gaussian slice "
        "profile, contiguous) of the same study and frame of reference, and pair their "
        "slices by patient position with medsr pair (the paper's pairing). The LR input is "
        "the thick slice and its two thick neighbours, bicubic x4 in-plane; the target is "
        "the paired thin slice.",
        "Real thick volumes (brain-mri-thick, head-ct) have no thin truth: the trained model "
        "is applied to them and only the consistency score (the SR output degraded again "
        "against the input) and figures are reported.",
        "Only the paper's Model 2 (2.5D input) is run; its Model 1 column has no number of ours.",
        "Perceptual loss: VGG16 relu5_3 (the offline weights) for the paper's VGG19 54.",
    ),
)

WORKS: dict[int, WorkSpec] = {1: WORK_1, 2: WORK_2, 3: WORK_3, 4: WORK_4, 5: WORK_5}


def get_work(number: int) -> WorkSpec:
    try:
        return WORKS[number]
    except KeyError:
        raise ConfigError(f"unknown work {number!r}; valid: {', '.join(map(str, WORKS))}") from None
