"""Every option of every subcommand is documented, and the README's command table matches."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bci_app.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("bci-app has no subcommands")


SUBCOMMANDS = _subparsers(build_parser())


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_has_help(name):
    missing = [a.option_strings[0] if a.option_strings else a.dest
               for a in _options(SUBCOMMANDS[name])
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, f"bci-app {name}: options without help text: {missing}"
    assert SUBCOMMANDS[name].format_help()  # a stray '%' in a help string would raise here


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_default_is_stated(name):
    """An option with a value and a default says the default (or that it is required)."""
    unstated = []
    for a in _options(SUBCOMMANDS[name]):
        if not a.option_strings or a.nargs == 0:  # positionals and flags (store_true, ...)
            continue
        if "default" not in a.help and "required" not in a.help:
            unstated.append(a.option_strings[0])
    assert not unstated, f"bci-app {name}: help does not state the default of {unstated}"


def test_config_help_lists_the_tables():
    from bci_app.config import APP_TABLES, TRAIN_TABLES

    for name, tables in (("train", TRAIN_TABLES), ("live", APP_TABLES), ("record", ("acquisition",))):
        action = next(a for a in SUBCOMMANDS[name]._actions if "--config" in a.option_strings)
        for t in tables:
            assert f"[{t}]" in action.help, f"bci-app {name} --config help lacks [{t}]"


def _readme_table() -> dict[str, set[str]]:
    """``{subcommand: {options shown}}`` from the README's ``| command | what it does |`` table."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\|\s*command\s*\|\s*what it does\s*\|", line))
    rows: dict[str, set[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        m = re.match(r"^\|\s*`bci-app (\w+)([^`]*)`", line)
        assert m, f"README command table row does not start with `bci-app COMMAND ...`: {line[:80]}"
        rows.setdefault(m.group(1), set()).update(re.findall(r"--[a-z][a-z0-9-]*", m.group(2)))
    return rows


def test_readme_table_lists_every_subcommand():
    table = _readme_table()
    assert set(table) == set(SUBCOMMANDS), (
        f"README command table: missing {sorted(set(SUBCOMMANDS) - set(table))}, "
        f"unknown {sorted(set(table) - set(SUBCOMMANDS))}"
    )


def test_readme_table_options_exist():
    table = _readme_table()
    wrong = {}
    for name, shown in table.items():
        known = {s for a in SUBCOMMANDS[name]._actions for s in a.option_strings}
        if shown - known:
            wrong[name] = sorted(shown - known)
    assert not wrong, f"README command table shows options that --help does not have: {wrong}"


def _shown_commands() -> list[tuple[str, str]]:
    """``bci-app ...`` lines of the README's code blocks and of the configs' comments."""
    root = README.parent
    found = []
    for line in README.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^    (?:.*&& )?(bci-app .*)$", line)
        if m and not line.startswith("    pip "):
            found.append(("README.md", m.group(1)))
    for toml in sorted((root / "configs").glob("*.toml")):
        lines = toml.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^#\s+(bci-app \S.*)$", line)
            if m:
                cmd = m.group(1)
                while cmd.endswith("\\") and i + 1 < len(lines):  # continued on the next comment line
                    i += 1
                    cmd = cmd[:-1] + " " + lines[i].lstrip("# ")
                found.append((f"configs/{toml.name}", cmd))
    return [(where, re.split(r"\s{2,}(?:#|\()", cmd)[0].strip()) for where, cmd in found]


@pytest.mark.parametrize(("where", "command"), _shown_commands())
def test_shown_commands_parse(where, command, capsys):
    import shlex

    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `{command}` does not parse: {capsys.readouterr().err.strip()}")
