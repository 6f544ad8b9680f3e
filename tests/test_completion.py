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
    assert complete(script, "plot", "") == ["available", "timeline", "listings", "share", "latency"]
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
    assert "-l format -x -a 'table json csv parquet'" in fish
    assert run_cli("completion", "tcsh").returncode == 2


def test_a_positional_choice_is_not_taken_for_a_command(script):
    # After "plot share" (a choice, not a command) the options are still plot's.
    assert "--output" in complete(script, "plot", "share", "--")
    assert complete(script, "plot", "share", "--sy") == ["--symbol"]
    assert complete(script, "plot", "share", "--k") == []


@pytest.mark.slow
def test_fish_and_zsh_complete_for_real(tmp_path):
    """The real shells (.ci/run installs them from Debian): fish's own ``complete -C`` and
    zsh running the function as its ``bashcompinit`` does (0-based arrays, zsh filters)."""
    import shutil

    for shell in ("fish", "zsh"):
        assert shutil.which(shell), f"{shell} is not installed (.ci/run installs it)"
    fish_script, zsh_script = tmp_path / "bfa.fish", tmp_path / "_bfa"
    fish_script.write_text(run_cli("completion", "fish").stdout)
    zsh_script.write_text(run_cli("completion", "zsh").stdout)
    assert subprocess.run(["fish", "-n", str(fish_script)]).returncode == 0
    assert subprocess.run(["zsh", "-n", str(zsh_script)]).returncode == 0

    def fish(line: str) -> list[str]:
        out = subprocess.run(
            ["fish", "-c", f"source {fish_script}; complete -C'{line}'"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return sorted(w.split("\t")[0] for w in out.stdout.splitlines() if w)

    assert fish("bfa sn") == ["snapshot"]
    assert fish("bfa cache st") == ["status"]
    assert fish("bfa snapshot --format ") == ["csv", "json", "parquet", "table"]
    assert fish("bfa completion ") == ["bash", "fish", "zsh"]

    def zsh(*words: str) -> set[str]:
        script = (
            f"source {zsh_script}; setopt ksharrays; COMP_WORDS=({' '.join(map(repr, words))});"
            f' COMP_CWORD={len(words) - 1}; _bfa; print -l -- "${{COMPREPLY[@]}}"'
        )
        out = subprocess.run(["zsh", "-c", script], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return {w for w in out.stdout.splitlines() if w}

    tree = command_tree(build_parser())
    assert "snapshot" in zsh("bfa", "sn")  # zsh itself keeps the matches of the prefix
    assert zsh("bfa", "cache", "st") == set(tree.children["cache"].children)
    assert zsh("bfa", "snapshot", "--format", "") == {"table", "json", "csv", "parquet"}
