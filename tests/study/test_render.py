"""Rendering with a fixed window, study creation, and blinding of everything readers see."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsr.errors import ConfigError, FileError
from medsr.study import Study, auto_window, create_study, render_png, window_from_center_width
from medsr.study.design import is_opaque_id, reader_order


def _decode(png: bytes) -> np.ndarray:
    image = PILImage.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def test_render_png_maps_the_window_to_0_255_and_clips() -> None:
    array = np.array([[-100.0, 0.0, 255.0, 100.0], [510.0, 600.0, np.nan, np.inf]])
    pixels = _decode(render_png(array, window=(0.0, 510.0)))
    # x -> x * 255 / 510 = x / 2: 255 -> 127.5 rounds half to even -> 128; NaN -> black
    assert pixels.tolist() == [[0, 0, 128, 50], [255, 255, 0, 255]]
    assert render_png(array, window=(0.0, 510.0)) == render_png(array, window=(0.0, 510.0))


def test_render_png_carries_no_metadata() -> None:
    png = render_png(np.arange(16.0).reshape(4, 4), window=(0, 15))
    chunks = []
    pos = 8
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        chunks.append(png[pos + 4 : pos + 8])
        pos += 12 + length
    assert chunks == [b"IHDR", b"IDAT", b"IEND"]


@pytest.mark.parametrize(
    ("array", "window", "message"),
    [
        (np.zeros((2, 2, 2)), (0, 1), "2-D"),
        (np.zeros((2, 2)), (1, 1), "low < high"),
        (np.zeros((2, 2)), (0, np.inf), "finite"),
        (np.zeros((2, 2), dtype=complex), (0, 1), "real"),
    ],
)
def test_render_png_errors(array: np.ndarray, window: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_png(array, window=window)


def test_auto_window_and_center_width() -> None:
    values = np.arange(1001.0)
    assert auto_window(values, percentiles=(10, 90)) == pytest.approx((100.0, 900.0))
    assert auto_window(np.full((3, 3), 7.0)) == (6.5, 7.5)
    assert window_from_center_width(40, 400) == (-160, 240)
    with pytest.raises(ConfigError, match="percentiles"):
        auto_window(values, percentiles=(90, 10))


def test_every_method_of_a_case_uses_the_hr_window(tmp_path: Path) -> None:
    hr = np.linspace(0.0, 100.0, 16).reshape(4, 4)
    sr = hr * 2  # twice as bright: would look identical with a per-image window
    study = create_study(
        tmp_path / "s",
        cases={"c": {"hr": hr, "sr": sr}},
        readers=1,
        seed=0,
        percentiles=(0, 100),
    )
    with study:
        assert study.info.windows["c"] == (0.0, 100.0)
        reader = study.readers()[0]
        shown = {}
        for item in study.reader_items(reader):
            method = study.unblind(reader, item.item_id).methods[0]
            shown[method] = _decode(study.image_path(item.images[0]).read_bytes())
    assert shown["hr"].max() == 255 and shown["hr"].min() == 0
    # The same physical value gives the same grey level; brighter values clip.
    np.testing.assert_array_equal(shown["sr"][:2].ravel()[:4], shown["hr"].ravel()[[0, 2, 4, 6]])
    assert (shown["sr"][2:] == 255).all()


def test_window_options(tmp_path: Path, make_cases: Callable) -> None:
    cases = make_cases(2, ["a", "b"])
    with create_study(tmp_path / "fixed", cases=cases, readers=1, seed=0, window=(0, 200)) as s:
        assert set(s.info.windows.values()) == {(0.0, 200.0)}
    per_case = {"case-00": (0, 1), "case-01": (5, 6)}
    with create_study(tmp_path / "map", cases=cases, readers=1, seed=0, window=per_case) as s:
        assert s.info.windows == {"case-00": (0.0, 1.0), "case-01": (5.0, 6.0)}
    with pytest.raises(ConfigError, match="no 'hr' image"):
        create_study(tmp_path / "x", cases=cases, readers=1, seed=0)
    with pytest.raises(ConfigError, match="no entry for cases \\['case-01'\\]"):
        create_study(tmp_path / "x", cases=cases, readers=1, seed=0, window={"case-00": (0, 1)})
    with create_study(tmp_path / "ref", cases=cases, readers=1, seed=0, reference_method="b") as s:
        assert s.info.windows["case-00"] == pytest.approx(
            auto_window(cases["case-00"]["b"]), rel=1e-12
        )


def test_create_study_writes_one_png_per_image_and_the_store(
    new_study: Callable[..., Study], make_cases: Callable, methods: tuple[str, ...]
) -> None:
    study = new_study(cases=make_cases(4), readers=2)
    files = sorted((study.directory / "images").iterdir())
    assert len(files) == 4 * len(methods)
    names = {p.name for p in study.directory.iterdir()}
    assert names - {"study.sqlite-wal", "study.sqlite-shm"} == {"images", "study.sqlite"}
    assert study.info.cases == ("case-00", "case-01", "case-02", "case-03")
    assert study.info.methods == tuple(sorted(methods))
    assert study.info.n_items == 12
    assert sorted(study.issued_tokens) == ["reader-1", "reader-2"]
    assert study.store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_study_refuses_bad_input_and_leaves_nothing_behind(
    tmp_path: Path, make_cases: Callable
) -> None:
    cases = make_cases(2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileError, match="exists already"):
        create_study(tmp_path / "full", cases=cases, readers=1, seed=0)
    with pytest.raises(ConfigError, match="2-D"):
        create_study(tmp_path / "s", cases={"c": {"hr": np.zeros((2, 3, 3))}}, readers=1, seed=0)
    with pytest.raises(ConfigError, match="at least one reader"):
        create_study(tmp_path / "s", cases=cases, readers=0, seed=0)
    with pytest.raises(ConfigError, match="unique"):
        create_study(tmp_path / "s", cases=cases, readers=["r", "r"], seed=0)
    with pytest.raises(ConfigError, match="different methods"):
        create_study(
            tmp_path / "s", cases={**cases, "z": {"hr": np.zeros((3, 3))}}, readers=1, seed=0
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    (tmp_path / "empty").mkdir()
    with create_study(tmp_path / "empty", cases=cases, readers=["ann", "bob"], seed=0) as study:
        assert [r.label for r in study.readers()] == ["ann", "bob"]


def test_nothing_a_reader_sees_names_a_method_or_case(
    new_study: Callable[..., Study], methods: tuple[str, ...]
) -> None:
    names = [*methods, "case-0"]
    for mode in ("rating", "pairwise"):
        study = new_study(name=mode, mode=mode)
        seen: list[str] = []
        for label, token in study.issued_tokens.items():
            reader = study.authenticate(token)
            for item in study.reader_items(reader):
                assert is_opaque_id(item.item_id)
                assert all(is_opaque_id(i) for i in item.images)
                seen += [item.item_id, *item.images, repr(item)]
                for image in item.images:
                    path = study.image_path(image)
                    seen.append(path.name)
                    png = path.read_bytes()
                    assert not any(name.encode() in png for name in names)
            assert reader.label == label
        text = "\n".join(seen).lower()
        assert not any(name in text for name in names), mode
        served = {p.name for p in (study.directory / "images").iterdir()}
        assert all(is_opaque_id(name.removesuffix(".png")) for name in served)


def test_ids_are_random_while_the_order_is_reproducible(new_study: Callable[..., Study]) -> None:
    first, second = new_study(name="a", seed=5), new_study(name="b", seed=5)
    third = new_study(name="c", seed=6)

    def sequence(study: Study, index: int) -> tuple[list, list]:
        reader = study.readers()[index]
        items = study.reader_items(reader)
        return [study.unblind(reader, i.item_id) for i in items], [i.item_id for i in items]

    for index in range(3):
        keys_a, ids_a = sequence(first, index)
        keys_b, ids_b = sequence(second, index)
        assert keys_a == keys_b  # same seed: same case/method sequence for each reader
        assert not set(ids_a) & set(ids_b)  # but fresh, unrelated ids
        assert keys_a == reader_order(keys_a, seed=5, reader_index=index)
    assert sequence(first, 0)[0] != sequence(first, 1)[0]
    assert sequence(first, 0)[0] != sequence(third, 0)[0]


def test_pairwise_left_right_is_randomised_per_reader(
    new_study: Callable[..., Study], make_cases: Callable
) -> None:
    study = new_study(mode="pairwise", cases=make_cases(6), readers=2)
    layouts = []
    for reader in study.readers():
        sides = []
        for item in study.reader_items(reader):
            spec = study.unblind(reader, item.item_id)
            sides.append(spec.methods == tuple(sorted(spec.methods)))
            left, right = item.images
            assert left != right
        layouts.append(sides)
        assert 0 < sum(sides) < len(sides)  # 18 pairs: both layouts occur
    assert layouts[0] != layouts[1]
