"""The package's layering (``.importlinter``): envs -> data/models -> algo -> run -> datasets ->
sweep/bench -> cli, no host I/O below run/, and no imports of the repo's experiments/benchmarks."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports") or str(pathlib.Path(sys.executable).parent / "lint-imports")
    out = subprocess.run([exe, "--config", str(ROOT / ".importlinter"), "--no-cache"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_the_phase_order_is_written_once():
    """Only algo/schedule.py sequences the phases (collect, fit_dynamics, fit_bc, improve)."""
    hits = []
    for path in (ROOT / "bremen_jax").rglob("*.py"):
        text = path.read_text()
        if all(f"p.{name}" in text or f".{name}(" in text for name in
               ("collect", "fit_dynamics", "fit_bc", "improve")):
            hits.append(path.relative_to(ROOT).as_posix())
    assert hits == ["bremen_jax/algo/schedule.py"], hits
