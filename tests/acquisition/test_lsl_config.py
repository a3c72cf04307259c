"""liblsl's start-up lines are gone by default; a lab's own lsl_api.cfg still decides."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

SCRIPT = """
import uuid, pylsl
from bci_app.acquisition.lsl_config import quiet_liblsl
print(quiet_liblsl())
name = "quiet-" + uuid.uuid4().hex[:8]
outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 1, 100.0, pylsl.cf_float32, name))
"""


def _run(tmp_path, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


def test_quiet_by_default(tmp_path):
    out = _run(tmp_path, {"HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert "INFO|" not in out.stderr, out.stderr


def test_a_lab_config_file_wins(tmp_path):
    cfg = tmp_path / f"lab-{uuid.uuid4().hex[:6]}.cfg"
    cfg.write_text("[log]\nlevel = 0\n")
    out = _run(tmp_path, {"HOME": str(tmp_path), "LSLAPICFG": str(cfg)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert "INFO|" in out.stderr  # the lab's level 0 (info) applies
