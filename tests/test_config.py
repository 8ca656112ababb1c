import pytest

from grporec.config import ConfigError, dump_config, load_config

BASE = """
seed: 3
data:
  info_file: data/info.txt
  train_file: data/train.csv
model:
  path: ckpt/sft
  tiny:
    hidden_size: 64
"""


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_defaults_and_values(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.seed == 3
    assert cfg.data.info_file == "data/info.txt"
    assert cfg.data.valid_file is None  # documented default
    assert cfg.data.max_history == 10
    assert cfg.model.tiny.hidden_size == 64
    assert cfg.model.tiny.num_layers == 2  # default kept beside an explicit sibling
    assert cfg.model.dtype == "float32"


def test_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["model.tiny.hidden_size=32", "data.valid_file=v.csv", "model.dtype=bfloat16"])
    assert cfg.model.tiny.hidden_size == 32
    assert cfg.data.valid_file == "v.csv"
    assert cfg.model.dtype == "bfloat16"


def test_float_field_accepts_yaml_exponent_string():
    # YAML 1.1 reads `1e-5` as the string "1e-5"; a float field must still accept it.
    from dataclasses import dataclass

    from grporec.config import from_dict

    @dataclass
    class C:
        lr: float = 0.1

    assert from_dict(C, {"lr": "1e-5"}).lr == 1e-5
    assert from_dict(C, {"lr": 2}).lr == 2.0
    with pytest.raises(ConfigError, match="lr: expected a float"):
        from_dict(C, {"lr": "fast"})
    with pytest.raises(ConfigError, match="lr: expected a float, got bool"):
        from_dict(C, {"lr": True})


def test_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["data.valid_file=v.csv"])
    dumped = write(tmp_path, dump_config(cfg), "dump.yaml")
    again = load_config(dumped)
    assert again == cfg
    assert dump_config(again) == dump_config(cfg)


def test_unknown_key_names_key_and_file(tmp_path):
    p = write(tmp_path, BASE + "    num_layerz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key model\.tiny\.num_layerz \(in .*c\.yaml\)"):
        load_config(p)


def test_unknown_override_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key data\.trian_file"):
        load_config(write(tmp_path, BASE), ["data.trian_file=x.csv"])


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.tiny\.hidden_size: expected an int, got str 'big'"):
        load_config(write(tmp_path, BASE), ["model.tiny.hidden_size=big"])
    with pytest.raises(ConfigError, match=r"seed: expected an int, got float"):
        load_config(write(tmp_path, BASE), ["seed=1.5"])
    with pytest.raises(ConfigError, match=r"model\.dtype: 'fp8' is not one of"):
        load_config(write(tmp_path, BASE), ["model.dtype=fp8"])


def test_missing_required_key(tmp_path):
    p = write(tmp_path, "data:\n  train_file: t.csv\nmodel:\n  path: m\n")
    with pytest.raises(ConfigError, match=r"missing required key data\.info_file \(in .*c\.yaml\)"):
        load_config(p)


def test_section_must_be_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"model: expected a mapping"):
        load_config(write(tmp_path, "data:\n  info_file: i\nmodel: 3\n"))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")):
        load_config(path)


def test_partly_given_section_keeps_its_own_defaults(tmp_path):
    # sft.train defaults differ from train's (lr 3e-4, max_grad_norm 1.0, micro-batch 16); giving
    # only sft.train.lr must keep the others at sft.train's defaults, not at TrainConfig's.
    cfg = load_config(write(tmp_path, BASE), ["sft.train.lr=1e-3"])
    assert cfg.sft.train.lr == 1e-3
    assert cfg.sft.train.max_grad_norm == 1.0 and cfg.sft.train.micro_batch_prompts == 16
    assert cfg.train.max_grad_norm == 0.3 and cfg.train.micro_batch_prompts == 4  # GRPO's defaults untouched
    with pytest.raises(ConfigError, match=r"unknown key sft\.train\.lrr"):
        load_config(write(tmp_path, BASE), ["sft.train.lrr=1"])
