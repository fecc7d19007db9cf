"""The distribution is wired as documented: packages, console script, Flower components."""

import importlib
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_flower_components_import():
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    components = _pyproject()["tool"]["flwr"]["app"]["components"]
    kinds = {"clientapp": ClientApp, "serverapp": ServerApp}
    for key, ref in components.items():
        module, attr = ref.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), kinds[key])


def test_console_script_target_exists():
    module, attr = _pyproject()["project"]["scripts"]["calcifl"].split(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text().splitlines()
    blocks = [i for i, line in enumerate(readme) if line.startswith("```")]
    first_cmd, test_cmd = readme[blocks[0] + 1], readme[blocks[2] + 1]
    assert blocks[0] < 10 and first_cmd.startswith("pip install -e . && calcifl ")
    assert "pytest" in test_cmd and readme[blocks[2] - 2] == "Run the tests:"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "Run the tests:" in ci and 'bash -c "$cmd"' in ci
