"""Command-line plumbing every entry point shares: parsing, one-line errors, launching a job.

The layer below the commands: `grporec.cli` (the `grporec` dispatcher) and every `python -m
grporec.X` command import it; nothing below the commands does. Every command:
  - takes `--config FILE` and `section.key=value` overrides after it (`train.lr=1e-5`), and has
    `--help` (exit 0);
  - prints a user error (bad config, bad data, missing model, wrong setting, unreadable or full
    disk) as one line `error: <message>` on stderr and exits 1; a usage error exits 2;
  - shows the full traceback instead with `--debug` or GRPOREC_DEBUG=1;
  - takes `--threads N` (torch CPU threads; default: torch's, i.e. the machine's cores).
Training commands run through `run_main`, which sets up the process group (`grporec.dist`) and
ends every rank when one fails (`run_ranked`, `grporec.failfast`).
"""
from __future__ import annotations

import argparse
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


def add_blend_arguments(ap: argparse.ArgumentParser) -> None:
    """--blend DIR, or --blend-a / --blend-sasrec / --blend-w: rank by the blended recommender (grporec.blend)."""
    ap.add_argument("--blend", default=None, metavar="DIR",
                    help="rank by the blend a recipe's blend stage fitted (DIR/blend.json: its model, SASRec, a and w); "
                         "--model defaults to the blend's model")
    ap.add_argument("--blend-a", type=float, default=None, metavar="A",
                    help="rank by the blend of the model with the training split's Markov counts, p = (c(last -> i) + "
                         "A q(i)) / (c(last) + A), q the model's probability (grporec.blend; A fitted on valid: bench/blend.py)")
    ap.add_argument("--blend-sasrec", default=None, metavar="DIR",
                    help="with --blend-a: a trained SASRec (grporec sasrec train) in the prior, q ~ p_model^(1 - W) p_SASRec^W")
    ap.add_argument("--blend-w", type=float, default=None, metavar="W", help="SASRec's weight W in the prior, 0..1 (with --blend-sasrec; fit on valid: bench/blend.py --sasrec)")


def check_blend_arguments(args) -> None:
    """Usage errors of the --blend* options, before a model is loaded; --blend DIR fills in the
    others from DIR/blend.json (and --model, when not given)."""
    if args.blend is not None:
        from grporec.blend_stage import read_blend

        given = [o for o, v in (("--blend-a", args.blend_a), ("--blend-sasrec", args.blend_sasrec), ("--blend-w", args.blend_w))
                 if v is not None]
        if given:
            raise UsageError(f"--blend DIR carries the blend's a, w and SASRec: not with {given[0]}")
        kept = read_blend(args.blend)
        args.blend_a, args.blend_sasrec = kept["a"], kept["sasrec"]
        args.blend_w = kept["w"] if kept["sasrec"] is not None else None
        args.model = args.model or kept["model"]
    if args.model is None:
        raise UsageError("--model DIR is required (or --blend DIR, whose blend.json names its model)")
    if args.blend_a is None:
        if args.blend_sasrec is not None or args.blend_w is not None:
            raise UsageError("--blend-sasrec and --blend-w need --blend-a")
        return
    if not args.blend_a > 0:
        raise UsageError(f"--blend-a must be > 0, got {args.blend_a}")
    if (args.blend_sasrec is None) != (args.blend_w is None):
        raise UsageError("--blend-sasrec DIR and --blend-w W go together")
    if args.blend_w is not None and not 0.0 <= args.blend_w <= 1.0:
        raise UsageError(f"--blend-w must lie in [0, 1], got {args.blend_w}")


def blend_settings(args, cfg, catalog, device):
    """The `grporec.blend.Blend` the --blend* options ask for (None without them): the training
    split's transition counts and, with a SASRec, the SASRec loaded on `device`."""
    if args.blend_a is None:
        return None
    from grporec.blend_stage import load_blend

    return load_blend(cfg, {"sasrec": args.blend_sasrec, "a": args.blend_a, "w": args.blend_w or 0.0}, catalog, device)


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

def run_main(job, argv, prog: str, description: str, example: str, model_of=None) -> int:
    """Entry point of a training command: parse `--config FILE [a.b=value ...]`, set up, run, tear
    down; user errors are printed as one line (`report`). `model_of(cfg)` -> (the model
    directory the job starts from or None, the key naming it): its recorded prompt settings are
    adopted unless the command line sets them (grporec.models.settings)."""
    from grporec import dist

    def body(args_list):
        ap = config_parser(prog, description, example)
        args, cfg = parse_config(ap, args_list)
        if model_of is not None:
            cfg = adopt_model_settings(cfg, *model_of(cfg), args.overrides)
        quiet_transformers()
        env = dist.setup()
        run_ranked(env, lambda: job(cfg, env))

    return run(body, argv)


def run_ranked(env, work) -> None:
    """Run `work()` on this rank so that a failure on any rank ends all of them promptly
    (`grporec.failfast`): the first rank to fail raises its error as usual (printed once, by
    `run`); the others print one line naming it and exit 1. Tears the group down after success."""
    from grporec import dist, failfast

    watch = failfast.Watch(env.rank) if env.distributed else None
    ok = False
    try:
        work()
        ok = True
    except Exception as e:
        if not env.distributed:
            raise
        other = failfast.failed_rank(watch.store)
        if other is not None and other != env.rank:  # this rank's error is the other's consequence
            failfast.say_stopped(env.rank, other)
            os._exit(1)
        code = debug_report(e) if debug_requested(sys.argv) else report(e)  # printed before the others stop
        watch.stop()  # this rank's own watcher must not poll a store that may go away with the others
        failfast.record_failure(env.rank)
        sys.stdout.flush()
        os._exit(code)  # not through teardown: destroying the group could wait on ranks that are gone
    finally:
        if watch is not None:
            watch.stop()
        if ok:  # after a failure, destroying the group could wait on the ranks that are gone
            dist.teardown()
