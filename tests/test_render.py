"""``bremen render``: an HTML viewer page and an offscreen GIF of a run's policy, frames from the
rollout, and one-line errors for bad output paths (checked before the run is loaded).

One ``bremen train --config test`` run for the module. The GIF test needs offscreen OpenGL (EGL,
or ``MUJOCO_GL=osmesa``); where none can start it is skipped, saying why.
"""

import numpy as np
import pytest

from bremen_jax import cli
from bremen_jax.run.render import OffscreenGLError, episode_frames, render_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--config", "test", "--workdir", str(workdir),
                     "--no-progress"]) == 0
    return workdir


def test_html_holds_the_brax_viewer(run_dir, tmp_path, capsys):
    out = tmp_path / "episode.html"
    # the GIF test's rollout program (compiled once): steps 0, 5, ..., 25
    assert cli.main(["render", str(run_dir), "--out", str(out), "--steps", "25",
                     "--every", "5"]) == 0
    assert f"{out}: 6 frames of the target policy" in capsys.readouterr().out
    page = out.read_text()
    assert "<title>Brax visualizer</title>" in page and "viewer.js" in page
    assert "system_json_b64" not in page  # the template's placeholder was filled in


def test_gif_frames_move_and_are_not_blank(run_dir, tmp_path):
    from PIL import Image, ImageSequence

    out = tmp_path / "episode.gif"
    try:
        info = render_run(run_dir, out, policy="bc", steps=25, every=5, width=64, height=64)
    except OffscreenGLError as e:
        pytest.skip(f"offscreen OpenGL unavailable here: {e}")
    assert info["policy"] == "bc" and info["checkpoint"]["deployment"] == 2
    frames = [np.asarray(f.convert("RGB"), np.float64)
              for f in ImageSequence.Iterator(Image.open(out))]
    # the steps 0, 5, ..., 25 (the clone keeps the pendulum up for 25 steps on this seed)
    assert len(frames) == info["frames"] == 6
    assert all(f.shape == (64, 64, 3) and f.std() > 0 for f in frames)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(frames, frames[1:]))


def test_mp4_frames_move_and_are_not_blank(run_dir, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the [video] extra")
    out = tmp_path / "episode.mp4"
    with pytest.raises(ValueError, match="even width and height"):
        render_run(run_dir, out, steps=5, width=63, height=64)
    try:
        info = render_run(run_dir, out, policy="bc", steps=25, every=5, width=64, height=64)
    except OffscreenGLError as e:
        pytest.skip(f"offscreen OpenGL unavailable here: {e}")
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = [np.frombuffer(b, np.uint8).reshape(64, 64, 3).astype(np.float64) for b in reader]
    assert meta["size"] == (64, 64) and len(frames) == info["frames"] == 6
    assert all(f.std() > 0 for f in frames)
    # H.264 is lossy: a small motion between two frames can be quantised away (the GIF of this
    # rollout differs in 138-256 pixels per pair; its MP4 once showed one pair identical), so
    # the video moves as a whole: 4 of the 5 pairs differ, and the last frame is not the first
    moved = [np.abs(a - b).max() > 0 for a, b in zip(frames, frames[1:])]
    assert sum(moved) >= 4, moved
    assert np.abs(frames[-1] - frames[0]).max() > 0


def test_episode_frames_stop_at_each_episodes_end():
    # 2 episodes, 4 steps: the first ends at step 1 (frames 0..2), the second runs out
    pipes = {"q": np.arange(5 * 2).reshape(5, 2)}
    done = np.array([[0, 0], [1, 0], [0, 0], [1, 0]], np.float32)
    frames, counts = episode_frames(pipes, done, every=1)
    assert counts == [3, 5]
    assert [int(f["q"]) for f in frames] == [0, 2, 4, 1, 3, 5, 7, 9]
    frames, counts = episode_frames(pipes, done, every=2)
    assert counts == [2, 3] and [int(f["q"]) for f in frames] == [0, 4, 1, 5, 9]


@pytest.mark.parametrize("out, message", [
    ("{tmp}/movie.avi", "must end in .html, .gif or .mp4"),
    ("{tmp}/missing/movie.gif", "which does not exist"),
    ("{tmp}", "must end in .html, .gif or .mp4"),
])
def test_bad_output_is_one_line(run_dir, tmp_path, capsys, out, message):
    assert cli.main(["render", str(run_dir), "--out", out.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_missing_run_is_one_line(tmp_path, capsys):
    assert cli.main(["render", str(tmp_path / "none"), "--out", str(tmp_path / "x.html")]) == 2
    assert "is not a bremen run directory" in capsys.readouterr().err


def test_python_api_checks_the_output_first(tmp_path):
    with pytest.raises(ValueError, match="must end in .html, .gif or .mp4"):
        render_run(tmp_path / "not-a-run", tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="not a bremen run directory"):
        render_run(tmp_path / "not-a-run", tmp_path / "x.html")
