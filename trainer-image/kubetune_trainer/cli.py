"""The `kubetune` command line.

Each subcommand lives in its own module `kubetune_trainer.commands.<name>` exposing
`command`, and is imported only when called: `kubetune validate` must not pay for
importing torch. Internal commands (what pods and the local queue run) and developer
commands (generators of checked-in files) are hidden from `kubetune --help` but work as
before. Shell completion is click's: `eval "$(_KUBETUNE_COMPLETE=bash_source kubetune)"`
(zsh_source, fish_source for those shells; docs/cli.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from kubetune_trainer import allocator

# name -> one-line help shown in `kubetune --help` (the module holds the rest).
COMMANDS: dict[str, str] = {
    "validate": "Check FineTuneJob files against the contract.",
    "crd": "Print the FineTuneJob CustomResourceDefinition.",
    "reference": "Print the FineTuneJob field reference (Markdown).",
    "prepare": "Validate and prepare a job's dataset; print counts and fingerprint.",
    "run": "Run a FineTuneJob locally end to end (prepare, train, evaluate, report).",
    "train": "Train from a FineTuneJob spec (single process or under torchrun).",
    "launch": "Start torchrun from the operator's pod environment.",
    "eval": "Evaluate a base model or adapter on a job's validation data.",
    "compare": "Compare base vs adapter, or adapter A vs B, side by side.",
    "rubric": "Merge a reviewer's clarity/correctness scores into a comparison report.",
    "adapters": "List and show adapters in the registry.",
    "export": "Merge an adapter into its base and/or write GGUF.",
    "serve": "Serve base + adapter over HTTP.",
    "submit": "Queue a FineTuneJob (local queue or cluster) and print its job ID.",
    "jobs": "List, get, wait for, read logs/metrics of, or cancel submitted jobs.",
    "worker": "Run the local queue's jobs (started on demand by submit).",
    "serve-api": "Serve the local job queue over HTTP (submit, poll, logs, cancel).",
    "datasets": "Register, list and show datasets by name (dataset://NAME[@vN]).",
    "data": "Rewrite dataset files (finance raw values -> placeholders).",
}
# Not listed in `kubetune --help` (nor completed); still callable by name.
INTERNAL = frozenset({"train", "launch", "worker"})  # run by pods and the local queue
DEVELOPER = frozenset({"crd", "reference"})  # regenerate crds/ and docs/reference.md
HIDDEN = INTERNAL | DEVELOPER
_PKG = "kubetune_trainer.commands"


def _module(name: str) -> str:
    return f"{_PKG}.{name.replace('-', '_')}"  # `serve-api` lives in serve_api.py


def _available(name: str) -> bool:
    return importlib.util.find_spec(_module(name)) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n in COMMANDS if _available(n)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module = importlib.import_module(_module(cmd_name))
        cmd: click.Command = module.command
        cmd.short_help = COMMANDS[cmd_name]
        cmd.hidden = cmd_name in HIDDEN
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
# The installed distribution's version (importlib.metadata), the one pyproject.toml declares.
@click.version_option(package_name="kubetune", prog_name="kubetune", message="%(prog)s %(version)s")
def main() -> None:
    """kubetune: fine-tune LLMs with LoRA/QLoRA/DPO, locally or on Kubernetes."""


def entry() -> None:
    """The `kubetune` executable: a heavy command first re-executes itself with jemalloc
    (allocator.py); then the command group."""
    allocator.reexec(sys.argv)
    main()


if __name__ == "__main__":
    entry()
