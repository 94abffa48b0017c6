"""Progress on stderr: plain periodic lines when stderr is not a terminal, nothing with --quiet."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from medsr import samples
from medsr.cli import main
from medsr.cli.progress import Progress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_say_input_k_of_n_percent_and_eta():
    stream, clock = io.StringIO(), Clock()
    with Progress("medsr upscale", stream=stream, interval=10, clock=clock) as progress:
        overall = progress.add_task("inputs", total=4)
        step = progress.add_task("a.png", total=None)
        clock.now += 5
        progress.update(step, completed=1, total=10)
        assert stream.getvalue() == ""  # nothing before the interval: quick runs stay quiet
        clock.now += 15
        progress.update(step, completed=5, total=10)
        progress.remove_task(step)
        progress.advance(overall)
        clock.now += 20
        step = progress.add_task("b.png", total=None)
        progress.update(step, completed=0, total=10)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "medsr upscale: input 1 of 4 (a.png 5/10), 12% done, 20 s elapsed, ETA 2 min 20 s",
        "medsr upscale: input 2 of 4 (b.png 0/10), 25% done, 40 s elapsed, ETA 2 min 00 s",
    ]


def test_quiet_prints_nothing():
    stream, clock = io.StringIO(), Clock()
    with Progress("medsr upscale", quiet=True, stream=stream, interval=0, clock=clock) as p:
        task = p.add_task("inputs", total=2)
        clock.now += 50
        p.advance(task)
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0 s"), (59, "59 s"), (65, "1 min 05 s"), (3725, "1 h 02 min")]
)
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.fixture
def two_pngs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with PILImage.open(samples.path("chest-xray")) as im:
        for k in range(2):
            im.crop((400 + 50 * k, 300, 464 + 50 * k, 364)).save(folder / f"x{k}.png")
    return [str(folder / "x0.png"), str(folder / "x1.png")]


def test_upscale_prints_progress_lines_to_a_pipe_and_quiet_silences_them(
    two_pngs, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MEDSR_PROGRESS_SECONDS", "0")  # a line at every update
    argv = ["upscale", *two_pngs, "--model", "bicubic", "--scale", "2"]
    assert main([*argv, "-o", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "medsr upscale: input 1 of 2" in captured.err
    assert "medsr upscale: input 2 of 2" in captured.err and "% done" in captured.err
    assert "% done" not in captured.out  # stdout keeps only the results
    assert main([*argv, "-o", str(tmp_path / "b"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "medsr upscale:" not in captured.err and "ok " in captured.out


def test_a_single_input_prints_its_ok_line_and_no_table(two_pngs, tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["upscale", two_pngs[0], "-o", str(out), "--model", "bicubic", "--scale", "2"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("ok ") == 1
    assert "medsr upscale: bicubic x2" not in stdout  # the table's title
    assert main(["upscale", *two_pngs, "-o", str(tmp_path / "two"), "--model", "bicubic"]) == 0
    assert "medsr upscale: bicubic x2" in capsys.readouterr().out  # several inputs: a table
