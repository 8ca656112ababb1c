"""The one-command demo, on a smaller configuration (the `tiny` preset, a few steps per stage)."""
import json
from pathlib import Path

from grporec.data import synth
from grporec.data.catalog import load_catalog
from grporec.demo import main as demo_main

ROOT = Path(__file__).resolve().parents[1]


def small_demo_overrides(tmp: Path) -> list[str]:
    p = synth.dataset_paths(tmp / "data", synth.PRESETS["tiny"].name)
    return [
        f"output_dir={tmp / 'demo'}", "data.synthetic_preset=tiny", f"data.synthetic_root={tmp / 'data'}",
        f"data.info_file={p.info}", f"data.train_file={p.train}", f"data.valid_file={p.valid}", f"data.test_file={p.test}",
        f"data.index_file={p.index}", f"data.item_file={p.item}",
        "model.tiny.hidden_size=32", "model.tiny.num_heads=2", "model.tiny.num_kv_heads=1", "model.tiny.intermediate_size=64",
        "model.tiny.tokenizer_vocab_size=400",
        "sft.train.max_steps=10", "sft.train.eval_steps=5", "sft.valid_max_rows=20", "sft.train.progress=false",
        "train.max_steps=3", "train.prompts_per_step=4", "train.micro_batch_prompts=2", "train.progress=false",
        "rl.num_generations=4", "eval.test_beams=20", "eval.max_rows=16", "eval.ks=[1,3,5,10,20]", "sasrec.epochs=3",
    ]


def test_small_demo_runs_every_stage(tmp_path, capsys):
    demo_main(["--config", str(ROOT / "configs" / "demo.yaml"), *small_demo_overrides(tmp_path)])
    out = capsys.readouterr().out
    root = tmp_path / "demo"
    for f in ("config.yaml", "sft/best/config.json", "sft/best/model.safetensors", "sft/metrics.jsonl",
              "eval-sft/metrics.json", "eval-sft/predictions.json", "grpo/metrics.jsonl", "grpo/checkpoints/step-0000003/policy",
              "eval-grpo/metrics.json", "eval-grpo/predictions.json", "sasrec/model.safetensors", "demo_results.json"):
        assert (root / f).exists(), f
    catalog = load_catalog(tmp_path / "data" / "info" / "Tiny.txt")
    for stage in ("eval-sft", "eval-grpo"):
        m = json.loads((root / stage / "metrics.json").read_text())
        assert {f"{x}@{k}" for x in ("hr", "ndcg") for k in (1, 3, 5, 10, 20)} <= set(m)
        preds = json.loads((root / stage / "predictions.json").read_text())
        assert len(preds) == 16 and all(p in catalog.ids_of_sid for r in preds for p in r["predict"])
    results = json.loads((root / "demo_results.json").read_text())
    assert set(results) >= {"SASRec", "SFT", "GRPO", "seconds"}
    assert "| GRPO |" in out and "| SASRec |" in out and "GRPO - SFT, NDCG@10" in out
    assert "By transition (seen:" in out and "| model | seen | unseen |" in out
    for name in ("Markov", "SASRec", "SFT", "GRPO"):  # every model on the same two buckets of test rows
        assert results[name]["seen"]["rows"] + results[name]["unseen"]["rows"] == results[name]["rows"], name
    # a second run reuses every finished stage
    demo_main(["--config", str(ROOT / "configs" / "demo.yaml"), *small_demo_overrides(tmp_path)])
    again = capsys.readouterr().out
    assert "[sft] reusing" in again and "[grpo] reusing" in again


def test_a_stop_during_sft_ends_the_demo_before_evaluation_and_grpo(tmp_path, capsys, monkeypatch):
    """SIGTERM during SFT ends SFT with its checkpoint (tests/test_faults.py); the demo must then stop
    too, not evaluate and run GRPO from the half-trained model."""
    from grporec import demo

    real_sft = demo.train_sft

    def sft_stopped_after_its_checkpoint(cfg, env):
        return {**real_sft(cfg, env), "stopped": True}

    monkeypatch.setattr(demo, "train_sft", sft_stopped_after_its_checkpoint)
    monkeypatch.setattr(demo, "grpo_train", lambda *a: (_ for _ in ()).throw(AssertionError("GRPO ran after a stop")))
    args = ["--config", str(ROOT / "configs" / "demo.yaml"), *small_demo_overrides(tmp_path)]
    assert demo_main(args) == 0
    assert "stopped during sft" in capsys.readouterr().out
    assert not (tmp_path / "demo" / "eval-sft").exists() and not (tmp_path / "demo" / "demo_results.json").exists()
