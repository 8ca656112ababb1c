"""Command-line plumbing shared by every entry point, and the `grporec` command.

    grporec demo | recipe | sft | train | eval | recommend | sasrec | baselines | report | synth | derive  [options]

Each subcommand is its `python -m grporec.X` form (`train` is `grporec.loop`, `eval` is
`grporec.evaluate`); both keep working, as does `torchrun -m grporec.loop`. Every command:
  - takes `--config FILE` and `section.key=value` overrides after it (`train.lr=1e-5`), and has
    `--help` (exit 0);
  - prints a user error (bad config, bad data, missing model, wrong setting, unreadable or full
    disk) as one line `error: <message>` on stderr and exits 1; a usage error exits 2;
  - shows the full traceback instead with `--debug` or GRPOREC_DEBUG=1;
  - takes `--threads N` (torch CPU threads; default: torch's, i.e. the machine's cores).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable

from grporec.errors import TrainingError, UsageError, UserError  # noqa: F401 - TrainingError: re-exported for forks

OVERRIDES_HELP = ("configuration overrides, each section.key=value with the value in YAML "
                  "(e.g. train.lr=1e-5 rl.num_generations=8 rl.datasets=[sid_history]); "
                  "they replace the file's values")


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("GRPOREC_DEBUG", "") not in ("", "0")


def run(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Call `main(argv)`; errors become messages on stderr and an exit status (`report`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    try:
        return main([a for a in argv if a != "--debug"]) or 0
    except Exception as e:  # noqa: BLE001 - each kind is reported as what it is
        if debug:
            raise
        return report(e)


def debug_report(e: Exception) -> int:
    """--debug / GRPOREC_DEBUG: the full traceback of any error, and its exit status."""
    traceback.print_exception(e)
    return 2 if isinstance(e, UsageError) else 1


def report(e: Exception) -> int:
    """Print an error for the user and return the exit status.

    A `UserError` (grporec's ConfigError, DataError, SettingsError, TrainingError, ...) or an
    `OSError` (a missing, unreadable or full file) is one line, exit 1; a `UsageError`, exit 2.
    Any other exception is unexpected: its traceback is printed, then a line saying so, exit 1.
    """
    if isinstance(e, UsageError):
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    if isinstance(e, (UserError, OSError)):
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    traceback.print_exception(e)
    print(f"error: unexpected {type(e).__name__}: {e}\nThis is not a configuration or data problem that grporec "
          "recognises: it is a bug in grporec, in a library it calls, or in your own code it runs (a reward, say). "
          "The traceback above shows where; please report it with the traceback if it is grporec's.", file=sys.stderr, flush=True)
    return 1


def config_parser(prog: str, description: str, example: str, config_required: bool = True) -> argparse.ArgumentParser:
    """The parser every config-driven command starts from: --config, overrides, --threads, --debug."""
    ap = argparse.ArgumentParser(prog=prog, description=description,
                                 epilog=f"example: {example}\nset GRPOREC_DEBUG=1 (or --debug) for full tracebacks.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_config_arguments(ap, config_required)


def add_config_arguments(ap: argparse.ArgumentParser, config_required: bool = True) -> argparse.ArgumentParser:
    """Add --config, --threads, --debug and the trailing overrides to a parser (after its own positionals)."""
    ap.add_argument("--config", required=config_required, metavar="FILE",
                    help="YAML run configuration (see configs/ and docs/configuration.md)")
    ap.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: all cores)")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    ap.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDES_HELP)
    return ap


def parse_config(ap: argparse.ArgumentParser, argv: list[str], cls=None):
    """(args, typed config): parse the command line, set threads, load the config with overrides."""
    from grporec.config import Config, load_config

    args, extra = ap.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-")]
    if unknown:
        ap.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = list(args.overrides) + extra
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        ap.error(f"{bad[0]!r} is not an override: overrides look like section.key=value")
    set_threads(args.threads)
    return args, load_config(args.config, args.overrides, cls or Config)


def adopt_model_settings(cfg, model_dir, key: str, overrides: list[str]):
    """`cfg` with the prompt settings recorded beside `model_dir` (grporec.models.settings), except
    those the command line sets; each difference is printed as a note."""
    from grporec.models.settings import adopt_model_settings as adopt, override_keys

    cfg, notes = adopt(cfg, model_dir, override_keys(overrides), key)
    for note in notes:
        print(f"[settings] {note}", flush=True)
    return cfg


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def quiet_transformers() -> None:
    """No transformers progress bars ('Loading weights', 'Writing model shards') or info chatter."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


COMMANDS = {
    "demo": ("grporec.demo", "data -> SFT -> GRPO -> evaluation -> baselines, in one command"),
    "recipe": ("grporec.recipe", "a staged recipe (the config's recipe: list): SFT stages, then GRPO, each scored"),
    "sft": ("grporec.sft", "supervised warm start"),
    "train": ("grporec.loop", "GRPO training (also: torchrun -m grporec.loop)"),
    "eval": ("grporec.evaluate", "constrained-beam evaluation, HR@K / NDCG@K"),
    "recommend": ("grporec.recommend", "top-K recommendations of a model for user histories"),
    "sasrec": ("grporec.sasrec", "train / evaluate the SASRec baseline"),
    "baselines": ("grporec.baselines", "most-popular and first-order Markov baselines"),
    "report": ("grporec.report", "training curves and a comparison of runs (needs matplotlib)"),
    "synth": ("grporec.data.synth", "write a synthetic dataset"),
    "derive": ("grporec.data.derive", "derive a training split from a valid split"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        print("usage: grporec COMMAND [--config FILE] [section.key=value ...]\n\ncommands:")
        for name, (module, text) in COMMANDS.items():
            print(f"  {name:{width}s}  {text} (python -m {module})")
        print("\n`grporec COMMAND --help` explains each command's options.")
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:], prog=f"grporec {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
