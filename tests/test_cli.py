"""Every command as a user runs it: --help, one-line errors with exit statuses, no tracebacks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grporec.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
ENTRY_POINTS = ["grporec.loop", "grporec.sft", "grporec.demo", "grporec.evaluate", "grporec.sasrec",
                "grporec.baselines", "grporec.data.synth", "grporec.data.derive", "grporec.cli"]


def run(*args, debug=False, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("GRPOREC_DEBUG", None)
    if debug:
        env["GRPOREC_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd or ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_exits_zero_and_explains_the_overrides(module):
    r = run(module, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout and "Traceback" not in r.stdout + r.stderr
    if module not in ("grporec.data.synth", "grporec.data.derive", "grporec.cli"):
        assert "section.key=value" in r.stdout and "example:" in r.stdout


@pytest.mark.parametrize("args, status, message", [
    (["grporec.loop", "--config", "nope.yaml"], 1, "config file not found: nope.yaml"),
    (["grporec.sft", "--config", TINY, "sft.train.prompts_per_step=0"], 1, "sft.train.prompts_per_step must be at least 1, got 0"),
    (["grporec.sft", "--config", TINY, "sft.train.micro_batch_prompts=0"], 1, "sft.train.micro_batch_prompts must be at least 1"),
    (["grporec.demo", "--config", TINY, "train.lrr=1"], 1, "unknown key train.lrr (on the command line)"),
    (["grporec.evaluate", "--config", TINY, "--model", "m", "--beams", "0"], 2, "--beams must be at least 1, got 0"),
    (["grporec.evaluate", "--config", TINY, "--model", "m", "--beams", "-3"], 2, "--beams must be at least 1, got -3"),
    (["grporec.evaluate", "--config", TINY, "--model", "m", "--max-rows", "0"], 2, "--max-rows / eval.max_rows must be"),
    (["grporec.evaluate", "--config", TINY, "--model", "m", "--ks", "0"], 2, "--ks / eval.ks must be positive"),
    (["grporec.sasrec", "train", "--config", "nope.yaml"], 1, "config file not found"),
    (["grporec.baselines", "--config", TINY], 1, "runs/tiny/data/index/Tiny.index.json: file not found (config key data.index_file)"),
    (["grporec.data.synth", "--out", "x", "--seed", "-1"], 2, "--seed must be a non-negative integer, got -1"),
    (["grporec.cli", "train", "--config", "nope.yaml"], 1, "config file not found"),
    (["grporec.cli", "fly"], 2, "unknown command 'fly'"),
])
def test_user_errors_are_one_line_without_traceback(args, status, message, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == status, r.stdout + r.stderr
    assert f"error: {message}" in r.stderr, r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_debug_shows_the_traceback(tmp_path):
    r = run("grporec.loop", "--config", "nope.yaml", debug=True, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr
    r = run("grporec.loop", "--config", "nope.yaml", "--debug", cwd=tmp_path)
    assert "Traceback" in r.stderr


@pytest.mark.parametrize("module, override, message", [
    ("grporec.loop", "train.lr=-1", "train.lr must be >= 0, got -1.0 (on the command line)"),
    ("grporec.loop", "rl.beta=-0.5", "rl.beta must be >= 0, got -0.5 (on the command line)"),
    ("grporec.demo", "rl.num_generations=0", "rl.num_generations must be at least 2, got 0 (on the command line)"),
    ("grporec.demo", "trian.lr=1", "unknown key trian (on the command line)"),
])
def test_an_impossible_value_is_one_line_before_anything_loads(module, override, message, tmp_path):
    r = run(module, "--config", TINY, override, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith(f"error: {message}"), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stdout + r.stderr, r.stderr  # one line
    assert not list(tmp_path.rglob("config.yaml"))  # nothing written: the check runs as the config loads


def test_config_errors_say_whether_the_file_or_the_command_line_is_wrong(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(TINY).read_text().replace("seed: 0", "seed: x"))
    with pytest.raises(ConfigError, match=r"seed: expected an int, got str 'x' \(in .*bad\.yaml\)"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"train.lr: expected a float, got str 'fast' \(on the command line\)"):
        load_config(TINY, ["train.lr=fast"])
    # a value out of its range (config.VALUE_RANGES), likewise
    bad.write_text(Path(TINY).read_text().replace("  lr: 1.0e-3\n", "  lr: -1.0e-3\n"))
    with pytest.raises(ConfigError, match=r"train.lr must be >= 0, got -0.001 \(in .*bad\.yaml\)"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"sft.dropout must be in \[0, 1\), got 1.5 \(on the command line\)"):
        load_config(TINY, ["sft.dropout=1.5"])
    for override, message in (("train.adam_betas=[0.9]", r"train.adam_betas must be two values in \[0, 1\), got \[0.9\]"),
                              ("sft.train.weight_decay=-1", r"sft.train.weight_decay must be >= 0, got -1.0"),
                              ("train.warmup_ratio=2", r"train.warmup_ratio must be in \[0, 1\], got 2.0")):
        with pytest.raises(ConfigError, match=message):
            load_config(TINY, [override])
    # settings that need another one are refused at load, not ignored by the commands that never build the hints
    with pytest.raises(ConfigError, match=r"data.hint_counts=True changes the successor hints, but data.successor_hints "
                                          r"is 0 \(on the command line\)"):
        load_config(TINY, ["data.hint_counts=true"])
    with pytest.raises(ConfigError, match=r"data.hint_drop=0.5 changes the successor hints"):
        load_config(TINY, ["data.hint_drop=0.5"])
    with pytest.raises(ConfigError, match=r"data.successor_hints=5 needs data.prompt_text: compact .*'minionerec'"):
        load_config(TINY, ["data.successor_hints=5", "data.prompt_text=minionerec"])
    load_config(TINY, ["data.successor_hints=5", "data.prompt_text=compact", "data.hint_counts=true"])  # the valid pairing


def test_evaluate_checks_its_output_directory_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    # the model does not exist either: the output check must come first
    r = run("grporec.evaluate", "--config", TINY, "--model", str(tmp_path / "no-model"), "--out", str(blocker / "eval"),
            cwd=tmp_path)
    assert r.returncode == 1 and "error: cannot write the evaluation results to" in r.stderr, r.stderr
