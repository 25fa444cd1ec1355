"""The README tells the truth: its commands, its configuration table and CI agree with the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import bokeh_plot
import fake_data
import matplotlib_plot
import save2sql

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
SCRIPTS = {
    "fake_data.py": fake_data,
    "save2sql.py": save2sql,
    "matplotlib_plot.py": matplotlib_plot,
    "bokeh_plot.py": bokeh_plot,
}


def shell_blocks(text: str) -> list[str]:
    """The lines of every ```sh block."""
    return [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]


def config_constants(path: Path) -> dict[str, str]:
    """The constants of a script's configuration block, name to source text of the value."""
    source = path.read_text()
    block = source.split("# --- Configuration", 1)[1].split("\n\n", 1)[0]
    constants = {}
    for node in ast.parse(block.split("\n", 1)[1]).body:
        if isinstance(node, ast.Assign):
            constants[node.targets[0].id] = ast.get_source_segment(block.split("\n", 1)[1], node.value)
    return constants


def readme_table() -> dict[str, dict[str, tuple[str, str]]]:
    """The configuration table: script to constant to (default, flag)."""
    table: dict[str, dict[str, tuple[str, str]]] = {}
    script = ""
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[1].startswith("`") and cells[0] != "script":
            script = cells[0].strip("`") or script
            table.setdefault(script, {})[cells[1].strip("`")] = (cells[2].strip("`"), cells[3].strip("`"))
    return table


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the README's test command exactly as written."""
    commands = [line for line in shell_blocks(README) if "pytest" in line]
    assert len(commands) == 1
    assert commands[0] in (REPO / ".ci" / "run").read_text().splitlines()


def test_readme_quick_start_runs_the_procfile() -> None:
    """The one-command start installs the project and runs every process of the Procfile."""
    assert any(line.endswith("pip install -e . && honcho start") for line in shell_blocks(README))
    procfile = (REPO / "Procfile").read_text()
    for script in ("fake_data.py", "save2sql.py", "bokeh serve --show bokeh_plot.py"):
        assert script in procfile


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_constant_is_in_the_readme_with_its_default(script: str) -> None:
    """Each constant of the configuration block has a row with its default value."""
    documented = readme_table()[script]
    for name, value in config_constants(REPO / script).items():
        assert name in documented, f"{script}: {name} is not in the README's table"
        # Both sides are literals or arithmetic on literals (256 * 1024), from our own files.
        assert eval(documented[name][0]) == eval(value), f"{script}: {name} = {value}, README differs"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_is_in_the_readme(script: str, capsys) -> None:
    """Each command-line flag appears in the table, beside the constant it overrides."""
    with pytest.raises(SystemExit):
        SCRIPTS[script].parse_args(["--help"])
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", capsys.readouterr().out)) - {"--help", "--args"}
    documented = {flag for _, flag in readme_table()[script].values() if flag}
    assert flags == documented
