"""The layers of addons/dlproxy hold: engine/, extract/ and inspect/ are pure (no mitmproxy, no proxy/, no ops/);
ops/ does not import proxy/. Checked statically over every module, and by running `dlproxy scan` with mitmproxy
made unimportable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tokens import github_token

PACKAGE = Path(__file__).resolve().parents[1] / "addons" / "dlproxy"
PURE = ("engine", "extract", "inspect", "scan")
FORBIDDEN = {
    **{layer: ("mitmproxy", "dlproxy.proxy", "dlproxy.ops") for layer in PURE},
    "ops": ("dlproxy.proxy",),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module, wherever it is (functions included)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_the_import_resolver_sees_relative_imports():
    names = {name for _, name in imports_of(PACKAGE / "proxy" / "streamguard.py")}
    assert {"mitmproxy", "dlproxy.inspect.policy", "dlproxy.proxy.enforce", "dlproxy.ops.metrics"} <= names
    assert "dlproxy.engine.vocab" in {name for _, name in imports_of(PACKAGE / "extract" / "core.py")}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer):
    modules = sorted((PACKAGE / layer).rglob("*.py"))
    assert modules, f"no modules in {layer}/"
    bad = [f"{path.relative_to(PACKAGE)}:{line}: imports {name}"
           for path in modules for line, name in imports_of(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer])]
    assert not bad, "\n".join(bad)


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class NoMitmproxy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "mitmproxy" or name.startswith("mitmproxy."):
                raise ImportError(f"mitmproxy is blocked in this test ({name})")
            return None

    sys.meta_path.insert(0, NoMitmproxy())
""")


def test_scan_runs_without_mitmproxy(tmp_path):
    token = github_token("ghp_", "layers")
    target = tmp_path / "notes.txt"
    target.write_text(f"the key is {token}\n")
    code = BLOCKER + textwrap.dedent(f"""
        import dlproxy.cli
        import dlproxy.engine, dlproxy.extract, dlproxy.inspect.policy, dlproxy.inspect.scanning
        import dlproxy.inspect.redact, dlproxy.inspect.stream, dlproxy.inspect.sse
        status = dlproxy.cli.main(["scan", "--format", "json", "--backend", "pyahocorasick", {str(target)!r}])
        assert not any(m == "mitmproxy" or m.startswith("mitmproxy.") for m in sys.modules)
        sys.exit(status)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr  # 1: findings
    findings = json.loads(r.stdout)["findings"]
    assert [f["entry"] for f in findings] == ["github-classic-pat"] and token not in r.stdout


def test_the_blocker_blocks():
    r = subprocess.run([sys.executable, "-c", BLOCKER + "import mitmproxy.http"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "mitmproxy is blocked" in r.stderr
