"""The boundaries the design promises, checked on the source itself."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "quant_assets"


def top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_domain_code_never_imports_dagster() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*.py")
        if not path.is_relative_to(PACKAGE / "defs")
        and path.name not in {"definitions.py", "cli.py"}
        and "dagster" in top_level_imports(path)
    ]
    assert offenders == []


def test_cli_imports_dagster_only_inside_its_commands() -> None:
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    module_level = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else node.names[0].name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    }
    assert "dagster" not in module_level


def test_importing_the_package_starts_nothing() -> None:
    code = "import sys, quant_assets; print(sorted(m for m in sys.modules if m.split('.')[0] in {'dagster','duckdb','requests'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_repository_names_no_machine_path() -> None:
    pattern = re.compile(r"/(work|tmp|root|home)/[A-Za-z]")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    offenders = []
    for name in tracked.stdout.split():
        path = REPO / name
        if path.suffix in {".py", ".md", ".toml", ".yaml", ".yml", ""} and path.is_file():
            text = path.read_text(errors="ignore")
            offenders += [f"{name}: {m.group(0)}" for m in pattern.finditer(text)]
    assert offenders == []


def test_definitions_validate() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # a temporary instance
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "quant_assets.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_tests_mirror_the_package_folders() -> None:
    tests = REPO / "quant_assets_tests"
    test_folders = {
        path.parent.relative_to(tests) for path in tests.rglob("test_*.py") if path.parent != tests
    }
    missing = sorted(str(folder) for folder in test_folders if not (PACKAGE / folder).is_dir())
    assert not missing, f"test folders with no package folder of the same name: {missing}"
