"""The CLI's shared spellings: `--output` is the artifact root wherever it appears, `-o` is
the output format (text|json), internal and developer commands are hidden but callable,
shell completion is click's, and `validate -o json` has a stable shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kubetune_trainer.cli import COMMANDS, HIDDEN, main

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "examples" / "quickstart.yaml"


def invoke(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), prog_name="kubetune", env=env)


def all_commands() -> Iterator[tuple[str, click.Command]]:
    """Every command and subcommand, by its full name ("adapters list")."""
    ctx = click.Context(main)
    for name in COMMANDS:
        cmd = main.get_command(ctx, name)
        assert cmd is not None, name
        yield name, cmd
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                yield f"{name} {sub.name}", sub


def test_top_level_help_lists_user_commands_only() -> None:
    res = invoke("--help")
    assert res.exit_code == 0, res.output
    listed = {line.split()[0] for line in res.output.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("    ")}  # fmt: skip
    assert {"train", "launch", "crd", "reference"} <= HIDDEN
    assert listed == set(COMMANDS) - HIDDEN


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_hidden_commands_are_still_callable(name: str) -> None:
    res = invoke(name, "--help")
    assert res.exit_code == 0, res.output
    assert f"Usage: kubetune {name}" in res.output


def test_crd_still_prints_the_committed_crd() -> None:
    res = invoke("crd")
    assert res.exit_code == 0
    assert res.stdout == (ROOT / "crds" / "finetunejobs.kubetune.io.yaml").read_text()


def test_completion_offers_user_commands_and_options() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {"_KUBETUNE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        res = invoke(env=env)
        return [line.split(",", 1)[1] for line in res.stdout.splitlines()]

    assert complete("kubetune ", 1) == [n for n in COMMANDS if n not in HIDDEN]
    assert complete("kubetune prepare job.yaml --o", 3) == ["--output", "--output-format"]
    script = invoke(env={"_KUBETUNE_COMPLETE": "bash_source"}).stdout
    assert "_kubetune_completion()" in script and "complete " in script


def test_output_means_the_artifact_root_and_o_the_format_everywhere() -> None:
    seen = set()
    for name, cmd in all_commands():
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            if "--output" in p.opts:
                seen.add(name)
                assert p.opts == ["--output"] and not p.secondary_opts, name
                assert p.metavar == "ROOT", name
                assert (p.help or "").startswith("Artifact root"), (name, p.help)
            if "-o" in p.opts:
                assert p.opts == ["-o", "--output-format"], (name, p.opts)
                assert isinstance(p.type, click.Choice) and list(p.type.choices) == ["text", "json"]
            if "--out" in p.opts:
                assert p.hidden, f"{name}: --out is only a hidden deprecated alias"
    assert {"run", "train", "prepare", "adapters list", "datasets list"} <= seen


@pytest.mark.parametrize(
    "name", ["validate", "prepare", "eval", "adapters list", "adapters show", "jobs list"]
)
def test_json_output_is_offered(name: str) -> None:
    cmd = dict(all_commands())[name]
    assert any(p.opts == ["-o", "--output-format"] for p in cmd.params), name


def test_validate_json_shape(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.read_text().replace("maxSteps:", "maxSteps: -1\n    x:", 1))
    missing = tmp_path / "missing.yaml"
    res = invoke("validate", str(GOOD), str(bad), str(missing), "-o", "json")
    assert res.exit_code == 1
    got = json.loads(res.stdout)  # one document on stdout, nothing else
    assert got["invalid"] == 2 and [f["path"] for f in got["files"]] == [
        str(GOOD), str(bad), str(missing)
    ]  # fmt: skip
    good, broken, unread = got["files"]
    assert good == {"path": str(GOOD), "ok": True, "jobs": ["smollm2-finance-qa"], "errors": []}
    assert not broken["ok"] and broken["jobs"] == [] and broken["errors"]
    assert all(isinstance(e, str) for e in broken["errors"])
    assert not unread["ok"] and "cannot read" in unread["errors"][0]


def test_validate_json_all_valid_exits_0() -> None:
    res = invoke("validate", str(GOOD), "-o", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["invalid"] == 0
