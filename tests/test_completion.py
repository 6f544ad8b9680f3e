"""``bfa completion``: scripts generated from the parser, run by a real bash."""

from __future__ import annotations

import subprocess

import pytest

from intake_bfa.cli import build_parser
from intake_bfa.cli.completion import command_tree

from .conftest import run_cli

HARNESS = """
source "$1"
shift
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
_bfa
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    res = run_cli("completion", "bash")
    assert res.returncode == 0, res.stderr
    path = tmp_path_factory.mktemp("completion") / "bfa.bash"
    path.write_text(res.stdout)
    return path


def complete(script, *words: str) -> list[str]:
    out = subprocess.run(
        ["bash", "-c", HARNESS, "harness", str(script), "bfa", *words],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_bash_completes_commands_nested_commands_options_and_choices(script):
    tree = command_tree(build_parser())
    assert complete(script, "") == list(tree.children)  # every command, in --help order
    assert complete(script, "sn") == ["snapshot"]
    assert complete(script, "cache", "st") == ["status"]
    assert set(complete(script, "cache", "")) == set(tree.children["cache"].children)
    assert complete(script, "snapshot", "--fo") == ["--format"]
    assert complete(script, "snapshot", "--format", "") == ["table", "json", "csv", "parquet"]
    assert complete(script, "versions", "--format", "j") == ["json"]
    assert complete(script, "completion", "") == ["bash", "zsh", "fish"]  # positional choices
    assert complete(script, "plot", "") == ["available", "timeline", "listings", "share"]
    assert "--json" in complete(script, "cache", "status", "--")
    # Options before the command do not lose the command.
    assert complete(script, "--repo", "a/b", "snapshot", "--max") == ["--max-rows"]


def test_zsh_and_fish_scripts_cover_every_command():
    tree = command_tree(build_parser())
    zsh = run_cli("completion", "zsh").stdout
    assert (
        zsh.startswith("#compdef bfa")
        and "bashcompinit" in zsh
        and "complete -o default -F _bfa bfa" in zsh
    )
    fish = run_cli("completion", "fish").stdout
    for name, child in tree.children.items():
        assert f"-a '{name}'" in fish, name
        for sub in child.children:
            assert f"__fish_seen_subcommand_from {name}" in fish and f"-a '{sub}'" in fish
    assert "-l format -r -a 'table json csv parquet'" in fish
    assert run_cli("completion", "tcsh").returncode == 2


def test_a_positional_choice_is_not_taken_for_a_command(script):
    # After "plot share" (a choice, not a command) the options are still plot's.
    assert "--output" in complete(script, "plot", "share", "--")
    assert complete(script, "plot", "share", "--sy") == ["--symbol"]
    assert complete(script, "plot", "share", "--k") == []
