"""The configuration reference (docs/configuration.md) is generated from the config dataclasses and cannot drift."""
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from conftest import ROOT
from grporec import config_doc
from grporec.config import RLConfig


def test_the_reference_page_matches_the_dataclasses():
    assert config_doc.main(["--check", str(ROOT / "docs" / "configuration.md")]) == 0, \
        "docs/configuration.md is out of date: run python -m grporec.config_doc --write docs/configuration.md"


def test_every_key_has_a_meaning_and_every_field_a_row():
    assert config_doc.undocumented() == []
    keys = {k for _, _, rows in config_doc.sections() for k, *_ in rows}
    assert "rl.nll_coef" in keys and "model.tiny.hidden_size" in keys and "sft.train.lr" in keys and "seed" in keys
    n = len([f for f in dataclasses.fields(RLConfig)])
    assert len([k for k in keys if k.startswith("rl.")]) == n  # one row per field


@dataclass
class _Demo:
    """A demo section."""

    # the comment above
    a: int = 3  # and the one beside
    b: Literal["x", "y"] = "x"  # a "#" in a string: "not # a comment"
    c: list[float] | None = None
    d: str = "p#q"  # after a hash inside the default
    e: list[int] = field(default_factory=lambda: [1, 2])


def test_comments_types_and_defaults_by_hand():
    notes = config_doc.field_comments(_Demo)
    assert notes == {"a": "the comment above and the one beside", "b": 'a "#" in a string: "not # a comment"', "c": "",
                     "d": "after a hash inside the default", "e": ""}
    [(key, cls, rows)] = config_doc.sections(_Demo)
    assert rows == [("a", "int", "3", "the comment above and the one beside"),
                    ("b", "`x` \\| `y`", "`x`", 'a "#" in a string: "not # a comment"'),
                    ("c", "list of float or null", "null", ""), ("d", "str", "`p#q`", "after a hash inside the default"),
                    ("e", "list of int", "`[1, 2]`", "")]
    assert config_doc.markdown_text("a <b> | `<c|d>`") == "a &lt;b> \\| `<c|d>`"  # code spans kept as they are


def test_check_fails_on_a_stale_readme_and_write_repairs_it(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{config_doc.BEGIN}\n| stale |\n{config_doc.END}\n\nafter\n")
    assert config_doc.main(["--check", str(readme)]) == 1
    assert "out of date; run python -m grporec.config_doc --write" in capsys.readouterr().err
    assert config_doc.main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert config_doc.main(["--check", str(readme)]) == 0 and "| stale |" not in text and text.endswith("after\n")
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="config-reference markers are missing"):
        config_doc.main(["--check", str(readme)])


def test_sections_with_a_repeated_class_list_only_differing_defaults():
    text = config_doc.reference()
    assert "**`sft.train`**: the keys of `train`, with these defaults: `lr` 0.0003" in text
    assert text.count("| `train.lr` |") == 1 and "| `sft.train.lr` |" not in text
