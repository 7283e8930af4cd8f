"""``bremen render``: a run's policy acting in its task, as an HTML viewer page, a GIF or an MP4.

The rollout is one jitted ``lax.scan`` of the task env (vmapped over episodes) with the policy's
mean action, keeping each step's Brax ``pipeline_state``; every episode's frames run from its
reset state to its first termination (or ``steps``). ``.html`` goes through
``brax.io.html.render`` (a page whose viewer script loads from the web); ``.gif`` and ``.mp4`` draw
each frame with MuJoCo's offscreen renderer (``brax.io.image.render_array``), headless through EGL unless
``MUJOCO_GL`` says otherwise (:func:`headless_gl`); ``.mp4`` is encoded (H.264) by the ffmpeg that
the ``imageio-ffmpeg`` package ships (``pip install -e '.[video]'``).
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from bremen_jax import config as config_lib
from bremen_jax.envs import registry
from bremen_jax.run.compile import compile_cached
from bremen_jax.run.evaluate import POLICIES, check_run_dir, restore_run
from bremen_jax.run.files import atomic_write, render_output
from bremen_jax.types import check_positive_int

FRAME_SUFFIXES = (".gif", ".mp4")  # drawn frame by frame with MuJoCo offscreen
MAX_DEFAULT_STEPS = 1000


class OffscreenGLError(ValueError):
    """MuJoCo's offscreen renderer cannot start here (no EGL/OSMesa library): one line."""


check_output = render_output  # the output is checked before anything heavy is loaded


def headless_gl() -> None:
    """Points MuJoCo's renderer at EGL (offscreen, no display) unless ``MUJOCO_GL`` is set.

    MuJoCo picks its OpenGL backend when it is first imported: before that, setting
    ``MUJOCO_GL=egl`` suffices; after (another module imported it with the default GLFW backend,
    which needs a display), its context class is switched to EGL's, as that import would have.

    Raises:
        OffscreenGLError: the EGL (or ``MUJOCO_GL``'s) library cannot be loaded.
    """
    if os.environ.get("MUJOCO_GL"):
        return
    os.environ["MUJOCO_GL"] = "egl"
    if "mujoco" not in sys.modules:
        return
    try:
        from mujoco.egl import GLContext
        from mujoco.rendering.classic import gl_context
    except (ImportError, OSError, RuntimeError, AttributeError) as e:
        raise OffscreenGLError(f"offscreen rendering needs EGL: {e} (install libegl1 "
                               f"libegl-mesa0 libgl1-mesa-dri, or set MUJOCO_GL=osmesa with "
                               f"libosmesa6)") from None
    gl_context.GLContext = GLContext


def make_rollout(task, policy_fn, episodes: int, steps: int
                 ) -> Callable[[Any, jax.Array], tuple[Any, jax.Array]]:
    """``rollout(params, key) -> (pipeline states [steps + 1, N, ...], done [steps, N])``.

    Row 0 holds the reset states (one key per episode from ``key``); row ``t + 1`` the state
    after step ``t`` with ``policy_fn``'s action (rows after an episode's end are not used).
    """
    env = task.env
    act = jax.vmap(policy_fn, in_axes=(None, 0, 0))

    def rollout(params, key):
        key_reset, key_act = jax.random.split(key)
        state0 = jax.vmap(env.reset)(jax.random.split(key_reset, episodes))

        def body(state, key_step):
            state = jax.vmap(env.step)(state, act(params, state.obs,
                                                  jax.random.split(key_step, episodes)))
            return state, (state.pipeline_state, state.done)

        _, (pipes, done) = jax.lax.scan(body, state0, jax.random.split(key_act, steps))
        first = jax.tree.map(lambda x: x[None], state0.pipeline_state)
        return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first, pipes), done

    return rollout


def episode_frames(pipes: Any, done: np.ndarray, every: int) -> tuple[list, list[int]]:
    """Host-side frames: each episode's states from reset to its first ``done`` (inclusive),
    every ``every``-th; returns (list of single states, frames per episode)."""
    frames, counts = [], []
    for i in range(done.shape[1]):
        hit = np.flatnonzero(done[:, i] > 0.5)
        end = int(hit[0]) + 2 if hit.size else done.shape[0] + 1
        picked = [jax.tree.map(lambda x: x[t, i], pipes) for t in range(0, end, every)]
        frames += picked
        counts.append(len(picked))
    return frames, counts


def _check_options(policy, episodes, steps, width, height, every) -> None:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    for name, v in (("episodes", episodes), ("width", width), ("height", height),
                    ("every", every)):
        check_positive_int(v, name)
    if steps is not None:
        check_positive_int(steps, "steps")


def tracking_camera(mj_model) -> str | None:
    """``"track"`` where the model has the tracking camera of the MuJoCo locomotion XMLs
    (halfcheetah, hopper, walker2d, ant: it follows the body), else None (MuJoCo's free camera)."""
    import mujoco

    found = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0
    return "track" if found else None


def _draw(sys_, frames: list, width: int, height: int) -> list[np.ndarray]:
    """``[height, width, 3]`` uint8 images of ``frames`` (Brax pipeline states), MuJoCo offscreen."""
    from brax.io import image

    vis = sys_.mj_model.vis.global_
    vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
    try:
        arrays = image.render_array(sys_, frames, height=height, width=width,
                                    camera=tracking_camera(sys_.mj_model))
    except Exception as e:  # mujoco/PyOpenGL raise many types when no GL context starts
        raise OffscreenGLError(f"offscreen rendering failed (MUJOCO_GL="
                               f"{os.environ.get('MUJOCO_GL')}): {type(e).__name__}: {e}") from None
    return [np.asarray(a, np.uint8) for a in arrays]


def _write_gif(tmp: pathlib.Path, images: list[np.ndarray], frame_ms: float) -> None:
    from PIL import Image

    pil = [Image.fromarray(a) for a in images]
    pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:],
                duration=max(20, int(round(frame_ms))), loop=0)


def _write_mp4(tmp: pathlib.Path, images: list[np.ndarray], frame_ms: float) -> None:
    """H.264 in yuv420p (plays everywhere); ``frame_ms`` per frame."""
    import imageio_ffmpeg

    h, w = images[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=1000.0 / max(frame_ms, 1.0),
                                         macro_block_size=2, ffmpeg_log_level="error",
                                         output_params=["-f", "mp4"])
    writer.send(None)
    for a in images:
        writer.send(np.ascontiguousarray(a))
    writer.close()


def _write_frames(path: pathlib.Path, sys_, frames: list, width: int, height: int,
                  frame_ms: float) -> None:
    """Draws ``frames`` and writes them as a GIF or an MP4 (through a temporary file)."""
    images = _draw(sys_, frames, width, height)
    tmp = path.with_name(f"{path.name}.tmp")
    (_write_mp4 if path.suffix.lower() == ".mp4" else _write_gif)(tmp, images, frame_ms)
    os.replace(tmp, path)


def render_run(run_dir: str | pathlib.Path, out: str | pathlib.Path, *,
               deployment: int | None = None, policy: str = "target", episodes: int = 1,
               steps: int | None = None, width: int = 320, height: int = 240, every: int = 1,
               seed: int = 0) -> dict[str, Any]:
    """Renders ``episodes`` deterministic episodes of a run's policy to ``out`` (.html/.gif/.mp4).

    Args:
        deployment: the end of this deployment (default: the latest checkpoint).
        policy: ``"target"`` or ``"bc"`` (the behaviour clone).
        steps: at most this many steps per episode (default: the episode length, at most 1000).
        width, height: frame size in pixels (GIF, MP4: even sizes); every: keep every k-th
            frame.
    Returns:
        ``{"out", "frames", "frames_per_episode", "checkpoint": {"step", "deployment", "chunk"}}``.
    Raises:
        ValueError: bad output path or option, a task without a Brax system (custom tasks),
            offscreen GL unavailable (:class:`OffscreenGLError`).
    """
    path = check_output(out)
    check_run_dir(run_dir)
    _check_options(policy, episodes, steps, width, height, every)
    if path.suffix.lower() in FRAME_SUFFIXES:
        if path.suffix.lower() == ".mp4" and (width % 2 or height % 2):
            raise ValueError(f"an .mp4 needs an even width and height (H.264), got {width}x"
                             f"{height}")
        headless_gl()
    run = restore_run(run_dir, deployment)
    task = run.phases.task
    if task.backend == "custom" or getattr(task.env, "sys", None) is None:
        raise ValueError(f"task {task.name!r} has no Brax system to render (a custom task); "
                         f"render works on Brax tasks")
    static = config_lib.split(run.cfg)[0]
    steps = steps or min(task.episode_length, MAX_DEFAULT_STEPS)
    fn = make_rollout(task, run.phases.policy.act_deterministic, episodes, steps)
    params, key = run.params(policy), jax.random.key(seed)
    exe = compile_cached(("render", static, task.name, episodes, steps), fn, params, key,
                         precision=static.precision, effort=static.compile_effort,
                         kind="env", persist=registry.is_builtin(task.name)).fn
    pipes, done = jax.device_get(exe(params, key))
    frames, counts = episode_frames(pipes, np.asarray(done), every)
    if path.suffix.lower() == ".html":
        from brax.io import html

        atomic_write(path, html.render(task.env.sys, frames))
    else:
        _write_frames(path, task.env.sys, frames, width, height,
                      1000 * float(task.env.dt) * every)
    d, c = run.position
    return {"out": str(path), "frames": len(frames), "frames_per_episode": counts,
            "policy": policy, "checkpoint": {"step": run.step, "deployment": d, "chunk": c}}
