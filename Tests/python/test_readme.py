"""README's "Using it" block runs as written: in order, in an empty directory, with `calibc` the
binary under test, every command succeeding and leaving what the next one reads."""

import os
import re
import subprocess
import sys

from conftest import CALIBC, ROOT


def using_it_block():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Using it"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_the_using_it_block_runs_in_order(tmp_path):
    block = using_it_block()
    assert block.count("calibc ") >= 10
    script = f'set -euo pipefail\ncalibc() {{ "{os.path.abspath(CALIBC)}" "$@"; }}\n' + block
    # Without nvcc the CUDA line writes the sources and says how to build them: the same everywhere.
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not os.path.exists(os.path.join(d, "nvcc")))
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PATH=path))
    assert done.returncode == 0, done.stderr[-2000:]
    for made in ("masks.json", "report.html", "merged.json", "sampled.json", "kernels/libcalibkernels.so",
                 "kernels-gpu/calib_cuda.cu", "plan.png", "plan.ir"):
        assert (tmp_path / made).exists(), made
    assert "calib.program" in done.stdout and "usage:" in done.stdout


def test_calibc_diffusers_without_diffusers_names_the_extra(tmp_path):
    """Where diffusers is not installed, importing calibc.diffusers says which extra brings it."""
    (tmp_path / "diffusers.py").write_text("raise ModuleNotFoundError('No module named diffusers', name='diffusers')\n")
    done = subprocess.run([sys.executable, "-c", "import calibc.diffusers"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert done.returncode != 0 and "pip install './python[diffusers]'" in done.stderr, done.stderr[-500:]
