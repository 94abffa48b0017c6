from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor

from medsr.errors import ConfigError
from medsr.infer.selfsup import (
    DEFAULT_BUDGET,
    DEFAULT_PATIENCE,
    SelfSupConfig,
    SelfSupProgress,
    SliceAcquisition,
    ThroughPlaneNet,
    _along,
    _grid_positions,
    _PairSampler,
    _Schedule,
    _ThreadProbe,
    _train,
    cubic_matrix,
    estimate_acquisition,
    heldout_slices,
    profile_matrix,
    self_supervised_upscale,
    through_plane_axis,
)
from medsr.io import read, write
from medsr.io.image import Image
from medsr.transforms.degrade import slice_profile_weights, thick_slices

TINY = SelfSupConfig(steps=4, batch_size=2, patch=16, features=8, num_blocks=1)


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: several OpenMP threads crawl when other jobs share the CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run(image: Image, **options):
    """One thread: several OpenMP threads crawl when other jobs share the CPU."""
    return self_supervised_upscale(image, threads=1, **{"config": TINY, **options})


def phantom(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Random overlapping ellipsoids: sharp edges in every direction."""
    g = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    vol = np.zeros(shape, np.float32)
    for _ in range(25):
        c = g.uniform(0, 1, 3) * np.array(shape)
        r = g.uniform(2, 10, 3)
        inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2
        vol += g.uniform(0.2, 1.0) * (inside < 1)
    return vol


def thick_volume(truth: np.ndarray, step: int, thickness: float) -> Image:
    thick = thick_slices(
        torch.from_numpy(truth), thickness=thickness, gap=step - thickness, axis=0
    ).numpy()
    return Image(
        array=thick,
        spacing=(float(step), 1.0, 1.0),
        origin=(0.0, 0.0, (step - 1) / 2.0),
        modality="MR",
    )


# -- operators ----------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["gaussian", "rect"])
def test_profile_matrix_agrees_with_the_degradation_for_whole_steps(profile):
    ours = profile_matrix(40, step=5, thickness=4, profile=profile)
    theirs = slice_profile_weights(40, thickness=4, gap=1, profile=profile)
    torch.testing.assert_close(ours, theirs)


def test_profile_matrix_takes_real_steps_and_offsets():
    w = profile_matrix(20, step=2.5, thickness=2.5, profile="rect", offset=0.5)
    assert w.shape == (7, 20)  # floor((20 - 0.5) / 2.5)
    torch.testing.assert_close(w.sum(1), torch.ones(7, dtype=torch.float64))
    # first slice centred at 0.5 + 1.25 = 1.75 covers [0.5, 3.0]: pixels 0..2, half of 0
    torch.testing.assert_close(w[0, :4], torch.tensor([0.2, 0.4, 0.4, 0.0], dtype=torch.float64))


def test_cubic_matrix_interpolates_and_reproduces_linear_ramps():
    m = cubic_matrix(10, torch.tensor([0.0, 3.0, 4.5, 6.25]))
    ramp = torch.arange(10, dtype=torch.float64)
    torch.testing.assert_close(m @ ramp, torch.tensor([0.0, 3.0, 4.5, 6.25], dtype=torch.float64))
    torch.testing.assert_close(m.sum(1), torch.ones(4, dtype=torch.float64))
    # edge samples are replicated outside the source
    torch.testing.assert_close(
        cubic_matrix(4, torch.tensor([-3.0, 7.0])) @ ramp[:4],
        torch.tensor([0.0, 3.0], dtype=torch.float64),
    )


def test_network_upsamples_h_only_and_starts_as_bicubic():
    net = ThroughPlaneNet(scale=3, features=4, num_blocks=1)
    x = torch.rand(2, 1, 12, 9)
    y = net(x)
    assert y.shape == (2, 1, 36, 9)
    bicubic = torch.nn.functional.interpolate(x, size=(36, 9), mode="bicubic")
    torch.testing.assert_close(y, bicubic)
    with torch.no_grad():
        net.tail.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    # sub-pixel rows: row a * 3 + k gets channel k
    torch.testing.assert_close(
        net(x) - bicubic,
        torch.tensor([1.0, 2.0, 3.0]).repeat(12)[None, None, :, None].expand(2, 1, 36, 9),
    )


# -- acquisition and axis ------------------------------------------------------------------------
def test_acquisition_from_header_options_and_default():
    vol = np.zeros((6, 16, 16), np.float32)
    img = Image(array=vol, spacing=(5.0, 1.0, 1.0), metadata={"slice_thickness": 4.0})
    assert estimate_acquisition(img, 0) == SliceAcquisition(spacing=5.0, thickness=4.0)
    assert estimate_acquisition(img, 0, gap=2.0).thickness == 3.0
    assert estimate_acquisition(img, 0, thickness=6.0, profile="rect").gap == -1.0
    plain = Image(array=vol, spacing=(5.0, 1.0, 1.0))
    assert estimate_acquisition(plain, 0).thickness == 5.0  # NIfTI: contiguous slices
    with pytest.raises(ConfigError, match="thickness 3 mm \\+ gap 1 mm"):
        estimate_acquisition(img, 0, thickness=3.0, gap=1.0)
    with pytest.raises(ConfigError, match="thickness must be > 0"):
        estimate_acquisition(plain, 0, gap=6.0)
    with pytest.raises(ConfigError, match="unknown slice profile 'sinc'"):
        estimate_acquisition(plain, 0, profile="sinc")  # type: ignore[arg-type]


def test_through_plane_axis_picks_the_coarsest_and_rejects_bad_inputs():
    vol = np.zeros((16, 10, 16), np.float32)
    assert through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0))) == 1
    assert through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0)), "1") == 1
    with pytest.raises(ConfigError, match="2D image"):
        through_plane_axis(Image(array=np.zeros((16, 16), np.float32), spacing=(1.0, 1.0)))
    with pytest.raises(ConfigError, match="no through-plane axis"):
        through_plane_axis(Image(array=vol, spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(ConfigError, match="no through-plane axis"):
        through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0)), 0)
    with pytest.raises(ConfigError, match="'in-plane' is not a through-plane axis"):
        through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0)), "in-plane")


@pytest.mark.parametrize("target", [0.0, -1.0, 4.0, 9.0, float("nan")])
def test_bad_target_spacing_is_refused(target):
    img = Image(array=np.random.default_rng(0).random((5, 16, 16)), spacing=(4.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="target spacing"):
        run(img, target_spacing=target)


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="steps"):
        SelfSupConfig(steps=0)
    with pytest.raises(ConfigError, match="patch"):
        SelfSupConfig(patch=4)
    with pytest.raises(ConfigError, match="budget must be a positive number of seconds, got 0"):
        SelfSupConfig(budget=0)
    with pytest.raises(ConfigError, match="patience must be an integer >= 0"):
        SelfSupConfig(patience=-1)
    with pytest.raises(ConfigError, match="anneal must be in"):
        SelfSupConfig(anneal=1.0)


def test_default_stopping_rule_and_step_count_mode():
    default = SelfSupConfig()
    assert default.steps is None
    assert default.time_limit == DEFAULT_BUDGET and default.stop_patience == DEFAULT_PATIENCE
    exact = SelfSupConfig(steps=300)  # a step count: no budget and no early stopping...
    assert exact.time_limit is None and exact.stop_patience == 0
    both = SelfSupConfig(steps=300, budget=30.0, patience=2)  # ...unless asked for
    assert both.time_limit == 30.0 and both.stop_patience == 2
    assert SelfSupConfig(patience=0).stop_patience == 0


# -- the stopping rule (a fake clock: no timing in tests) ----------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_schedule_for_a_step_count_warms_up_holds_and_anneals_to_zero():
    clock = FakeClock()
    s = _Schedule(SelfSupConfig(steps=100, learning_rate=1.0, warmup=50), clock)
    lrs = [s.lr(k) for k in range(100)]
    assert lrs[0] == pytest.approx(1 / 25)  # warm-up: at most a tenth of the steps
    assert lrs[10:80] == [1.0] * 70
    assert lrs[80] == 1.0 and lrs[99] == pytest.approx(1 / 20)  # last fifth: linear to zero
    assert all(a > b for a, b in itertools.pairwise(lrs[80:]))
    clock.now = 1e9  # no time limit with a step count
    assert not s.finished(99) and s.finished(100)


def test_schedule_anneals_at_the_time_budget_and_stops_at_it():
    clock = FakeClock()
    s = _Schedule(SelfSupConfig(budget=100.0, patience=0, learning_rate=1.0, warmup=0), clock)
    clock.now = 79.0
    assert s.lr(400) == 1.0 and s.anneal_from is None
    clock.now = 80.0  # (1 - anneal) of the budget: the anneal starts, a quarter of the steps
    assert s.lr(400) == 1.0 and s.anneal_from == 400 and s.anneal_len == 100
    assert s.reason == "time budget 100 s"
    clock.now = 90.0  # half the time left: half the rate, whatever the step
    assert s.lr(410) == pytest.approx(0.5) and not s.finished(410)
    assert s.fraction(410) == pytest.approx(0.9)
    clock.now = 85.0  # steps faster than the clock: the step fraction rules
    assert s.lr(475) == pytest.approx(0.25)
    assert s.finished(500)
    clock.now = 100.0
    assert s.finished(420)  # the budget ends the run however few steps were made


def test_schedule_anneals_when_the_heldout_psnr_stops_improving():
    clock = FakeClock()
    config = SelfSupConfig(budget=1000.0, patience=2, min_delta=0.1, warmup=0)
    s = _Schedule(config, clock)
    assert s.check(100, 30.0) and s.check(200, 31.0)
    assert s.check(300, 31.05) and s.anneal_from is None  # best, but < 0.1 dB: stale
    assert not s.check(400, 30.9)  # two stale checks
    assert s.anneal_from == 400 and s.anneal_len == 100
    assert s.reason == "held-out PSNR not improved by 0.1 dB in 2 checks"
    assert not s.finished(499) and s.finished(500)


def test_heldout_slices_are_kept_out_of_training():
    assert heldout_slices(25) == [4, 12, 20] and heldout_slices(7) == []
    vol = torch.rand(16, 24, 24, generator=torch.Generator().manual_seed(0))
    config = SelfSupConfig(patch=16)
    acq = SliceAcquisition(spacing=4.0, thickness=4.0)
    held = heldout_slices(16)
    training = [k for k in range(16) if k not in held]
    sampler = _PairSampler(vol, acq, (1.0, 1.0), 4, config, torch.Generator(), training)
    assert sampler.slice_weights[held].sum() == 0
    assert float(sampler.slice_weights.sum()) == pytest.approx(1.0)  # float rounding


def test_sampler_degrades_the_patch_as_the_whole_slice_would():
    # the sampler degrades only the patch's columns: the same as cropping the degraded slice
    vol = torch.from_numpy(phantom((4, 40, 40), 2))
    config = SelfSupConfig(patch=16, batch_size=6, phases=1)
    acq = SliceAcquisition(spacing=4.0, thickness=4.0)
    sampler = _PairSampler(vol, acq, (1.0, 1.0), 4, config, torch.Generator().manual_seed(0))
    x, y = sampler.sample()
    assert x.shape == (6, 1, 4, 16) and y.shape == (6, 1, 16, 16)
    _, down, target = sampler.ops[0][0]  # square slices: the same operators either way
    wholes = []  # every slice, orientation and flip, degraded whole (input, target)
    for k in range(4):
        for hr in (vol[k], vol[k].T):
            for flip in (False, True):
                src = hr.flip(0) if flip else hr
                wholes.append((down @ src, target @ src))
    for xi, yi in zip(x[:, 0], y[:, 0], strict=True):
        found = False
        for lr, tg in wholes:
            for a in range(lr.shape[0] - 3):
                for c in range(lr.shape[1] - 15):
                    for mirror in (False, True):
                        px = xi.flip(1) if mirror else xi
                        py = yi.flip(1) if mirror else yi
                        found = found or (
                            torch.allclose(lr[a : a + 4, c : c + 16], px, atol=1e-5)
                            and torch.allclose(tg[4 * a : 4 * a + 16, c : c + 16], py, atol=1e-5)
                        )
        assert found


def test_thread_probe_keeps_the_faster_thread_count():
    probe = _ThreadProbe([1, 2], skip=2, rounds=3)
    assert [probe.threads(k) for k in range(8)] == [1, 1, 1, 1, 1, 2, 2, 2]
    for k in range(8):  # two threads a little faster: kept
        probe.record(k, 0.1 if probe.threads(k) == 1 else 0.09)
    assert probe.chosen == 2 and probe.threads(100) == 2
    slow = _ThreadProbe([1, 2], skip=2, rounds=3)
    for k in range(6):  # the first two-thread step is 4 times slower: dropped at once
        slow.record(k, 0.1 if slow.threads(k) == 1 else 0.4)
    assert slow.chosen == 1 and slow.times[2] == [0.4]
    assert _ThreadProbe([2, 2]).chosen == 2  # nothing to choose


def _train_on(vol: Tensor, config: SelfSupConfig, clock=None, seen=None):
    acq = SliceAcquisition(spacing=4.0, thickness=4.0)
    report = seen.append if seen is not None else (lambda status: None)
    kwargs = {} if clock is None else {"clock": clock}
    return _train(vol, acq, (1.0, 1.0), 4, config, torch.device("cpu"), report, **kwargs)


def test_training_ends_at_the_time_budget_by_the_clock():
    vol = torch.from_numpy(phantom((8, 32, 32), 4))
    clock = FakeClock()
    seen: list[SelfSupProgress] = []

    def tick(status: SelfSupProgress) -> None:
        seen.append(status)
        clock.now += 1.0  # each step takes a second

    config = SelfSupConfig(
        budget=20.0, patience=0, eval_every=5, batch_size=2, patch=16, features=4, num_blocks=1
    )
    acq = SliceAcquisition(spacing=4.0, thickness=4.0)
    trained = _train(vol, acq, (1.0, 1.0), 4, config, torch.device("cpu"), tick, clock)
    # the anneal starts at 16 s (step 16) and lasts a quarter of those steps: 4 more
    assert trained.steps == 20 and trained.stop_reason == "time budget 20 s"
    assert [p.total for p in seen] == [None] * 20
    # the 10th report comes 9 s in (the clock moves after each report): 11 s left
    assert seen[9].seconds_left == pytest.approx(11.0) and seen[-1].fraction == 1.0
    assert seen[-1].ending == "time budget 20 s" and seen[10].ending is None
    assert [h["step"] for h in trained.history] == [5, 10, 15, 20]  # one held-out slice
    assert seen[-1].heldout_psnr == trained.history[-1]["heldout_psnr"]
    assert trained.history[-1]["lr"] < trained.history[0]["lr"]


def test_training_stops_early_when_the_heldout_psnr_stalls():
    vol = torch.from_numpy(phantom((8, 32, 32), 5))
    # a learning rate too small to gain 1 dB: checks 2 and 3 are stale, the anneal starts
    # after step 6 and lasts a quarter of that (2 steps)
    config = SelfSupConfig(
        budget=1e6,
        patience=2,
        min_delta=1.0,
        eval_every=2,
        learning_rate=1e-9,
        batch_size=2,
        patch=16,
        features=4,
        num_blocks=1,
        warmup=0,
    )
    trained = _train_on(vol, config)
    assert trained.steps == 8
    assert trained.stop_reason == "held-out PSNR not improved by 1 dB in 2 checks"
    assert len(trained.history) == 4 and trained.heldout_psnr is not None


# -- the method ---------------------------------------------------------------------------------
def test_output_geometry_follows_the_slice_axis(tmp_path):
    direction = np.array([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0], [0.8, -0.6, 0.0]])
    rng = np.random.default_rng(1)
    img = Image(
        array=rng.random((20, 6, 18)).astype(np.float32) * 100,
        spacing=(0.8, 3.0, 0.8),
        origin=(10.0, -5.0, 7.0),
        direction=direction,
        modality="MR",
    )
    seen: list[SelfSupProgress] = []
    result = run(img, target_spacing=1.0, progress=seen.append)
    out = result.image
    assert result.axis == 1 and result.acquisition.spacing == 3.0
    assert out.array.shape == (20, 18, 18)  # 6 slices x 3 mm = 18 mm at 1 mm
    assert out.spacing == pytest.approx((0.8, 1.0, 0.8))
    # edges aligned: the first output sample sits (1 - 3) / 2 mm along axis 1 from the input's
    expected = np.asarray(img.origin) + direction[:, 1] * (1.0 - 3.0) / 2.0
    np.testing.assert_allclose(out.origin, expected, atol=1e-9)
    np.testing.assert_allclose(out.direction, direction)
    train = [p for p in seen if p.stage == "train"]
    apply = [p for p in seen if p.stage == "apply"]
    assert [p.done for p in train] == list(range(1, TINY.steps + 1))
    assert all(p.total == TINY.steps for p in train) and train[-1].fraction == 1.0
    assert [p.done for p in apply] == list(range(1, 20 + 18 + 1))  # both stacks of planes
    assert apply[-1].total == 38 and apply[-1].seconds_left == 0.0
    assert result.steps == TINY.steps and result.stop_reason == "4 steps"
    assert result.heldout_psnr is None  # 6 slices: none held out
    # through NIfTI: the affine carries the new spacing and origin
    path = tmp_path / "sr.nii.gz"
    write(out, path)
    back = read(path)
    assert back.array.shape == out.array.shape
    np.testing.assert_allclose(back.affine(), out.affine(), atol=1e-4)
    # default target: the in-plane spacing
    default = run(img).image
    assert default.array.shape == (20, 22, 18)  # round(18 mm / 0.8 mm)
    assert default.spacing[1] == pytest.approx(18 / 22)


def test_same_seed_same_result_other_seed_differs():
    img = thick_volume(phantom((16, 24, 24), 3), 4, 4.0)
    a = run(img).image.array
    b = run(img).image.array
    c = run(img, config=SelfSupConfig(**{**TINY.__dict__, "seed": 1})).image.array
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4
    # a step count is exact whatever the clock: a volume with held-out slices, checked
    # after every step, twice
    img8 = thick_volume(phantom((32, 24, 24), 3), 4, 4.0)
    config = SelfSupConfig(**{**TINY.__dict__, "eval_every": 1})
    d, e = run(img8, config=config), run(img8, config=config)
    np.testing.assert_array_equal(d.image.array, e.image.array)
    assert d.steps == TINY.steps and [h["step"] for h in d.history] == [1, 2, 3, 4]
    assert d.heldout_psnr == max(h["heldout_psnr"] for h in d.history)  # the best is kept


def test_recovers_thick_slices_better_than_cubic():
    truth = phantom((32, 40, 40), 0)
    img = thick_volume(truth, 4, 4.0)
    config = SelfSupConfig(steps=120, batch_size=8, patch=24, features=16, num_blocks=2)
    result = run(img, target_spacing=1.0, config=config)
    n = img.array.shape[0]
    cubic = _along(
        cubic_matrix(n, _grid_positions(n, 4.0, 32, 1.0)), torch.from_numpy(img.array)
    ).numpy()
    mse_sr = float(((result.image.array - truth) ** 2).mean())
    mse_cubic = float(((cubic - truth) ** 2).mean())
    assert result.image.array.shape == truth.shape
    assert mse_sr < 0.93 * mse_cubic, (mse_sr, mse_cubic)
    assert result.losses[-1] < result.losses[0]
    assert result.fidelity_psnr > 30.0


def test_dipy_anisotropic_volume_runs():
    dipy_data = pytest.importorskip("dipy.data", reason="dipy (the bench extra) is not installed")
    image = read(dipy_data.get_fnames(name="aniso_vox"))
    assert image.spacing == pytest.approx((5.0, 4.0, 4.0))
    result = run(image)
    assert result.axis == 0
    assert result.image.array.shape == (30, 58, 58)  # 24 x 5 mm at 4 mm
    assert np.isfinite(result.image.array).all()


def test_padding_is_kept_exact_and_ct_stays_above_air():
    vol = phantom((8, 20, 20), 5) * 1000 - 1000  # -1000 .. about 0 HU
    vol[:, :, :4] = -3024.0  # padding outside the field of view
    img = Image(array=vol, spacing=(3.0, 1.0, 1.0), modality="CT")
    img = img.replace(metadata={"padding": (-3024.0, -3024.0)})
    out = run(img, target_spacing=1.0).image.array
    assert out.shape == (24, 20, 20)
    assert np.all(out[:, :, :4] == -3024.0)
    assert out[:, :, 4:].min() >= -1024.0
