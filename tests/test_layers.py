"""The package's layers, read from its source: every `grporec` import, module-level or inside a
function, parsed with `ast` (no module is imported), so a lazy import cannot hide a layer crossing."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "grporec"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def grporec_imports(path: Path) -> set[str]:
    """Every grporec module `path` imports (`from grporec import x` counts as grporec.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("grporec")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grporec"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def defines_main(path: Path) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(path.read_text()).body)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}
IMPORTS = {name: grporec_imports(p) for name, p in MODULES.items()}


def importers_of(target: str) -> set[str]:
    return {name for name, imports in IMPORTS.items() if any(i == target or i.startswith(target + ".") for i in imports)}


def test_the_parser_sees_lazy_and_from_imports():
    """The scan itself: commandline's run_main imports grporec.dist inside a function, and
    grporec.sft imports build_catalog_trie from grporec.decode inside one too."""
    assert "grporec.dist" in IMPORTS["grporec.commandline"]
    assert "grporec.decode" in IMPORTS["grporec.sft"]


def test_only_the_commands_import_the_command_line_plumbing_and_nothing_imports_the_dispatcher():
    """grporec.cli dispatches and nothing imports it; grporec.commandline (parsing, one-line
    errors, launching) is imported only by command modules, the ones with a `main`."""
    assert importers_of("grporec.cli") == set()
    importers = importers_of("grporec.commandline") - {"grporec.commandline"}
    assert importers, "no command imports grporec.commandline: the scan is broken"
    assert {m for m in importers if not defines_main(MODULES[m])} == set()
    cli_defs = {n.name for n in ast.parse(MODULES["grporec.cli"].read_text()).body
                if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert cli_defs == {"main"}


def test_infrastructure_does_not_import_the_command_line():
    for low in ("grporec.dist", "grporec.failfast", "grporec.checkpoint", "grporec.config", "grporec.errors"):
        assert not {i for i in IMPORTS[low] if i.startswith(("grporec.cli", "grporec.commandline"))}, low


def test_models_and_training_math_do_not_import_the_decoder():
    """Attention and the forward's inputs are model concerns (grporec.models.attention, .inputs):
    the decoder and training both import them from below, never training from the decoder."""
    below = [m for m in MODULES if m.startswith(("grporec.models", "grporec.loss"))] + ["grporec.logprobs"]
    crossing = {m: sorted(i for i in IMPORTS[m] if i.startswith("grporec.decode")) for m in below}
    assert {m: c for m, c in crossing.items() if c} == {}
    assert "grporec.models.attention" in IMPORTS["grporec.decode.stepper"]
