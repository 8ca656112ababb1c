"""The `grporec` command: dispatches to each command's module (nothing else lives here).

    grporec demo | recipe | sft | train | eval | recommend | sasrec | baselines | report | synth | derive  [options]

Each subcommand is its `python -m grporec.X` form (`train` is `grporec.loop`, `eval` is
`grporec.evaluate`); both keep working, as does `torchrun -m grporec.loop`. What every command
shares (options, one-line errors, exit statuses) is in `grporec.commandline`.
"""
from __future__ import annotations

import importlib
import sys


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
