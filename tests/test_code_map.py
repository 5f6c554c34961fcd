"""The house plan: wings by concept, imports pointing one way, no import circles, no crowded folder
or very long module, and docs/code-map.md naming exactly the modules the tree has."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("estimator", "profiler")
WINGS = ("catalog", "model", "records", "timing")
# The layers, bottom first: a module may import its own layer or one below it (docs/code-map.md).
BASE = {"estimator.errors", "estimator.vocab", "estimator.numbers", "estimator.request", "estimator"}
LAYERS = ["base", "catalog", "model", "records", "timing", "top", "cli", "profiler"]
MAX_MODULES_PER_FOLDER = 15
MAX_LINES_PER_MODULE = 800


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours that ``name`` imports, at module level or inside a function."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            related = target.startswith(name + ".") or name.startswith(target + ".")
            if target and target != name and not related:
                found.add(target)
    return found


EDGES = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> str:
    if name in BASE:
        return "base"
    parts = name.split(".")
    if parts[0] == "profiler":
        return "profiler"
    if len(parts) >= 3 and parts[1] in (*WINGS, "cli"):
        return parts[1]
    return "top"


def test_no_two_modules_import_each_other_even_through_others():
    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in EDGES[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reach = {name: reachable(name) for name in MODULES}
    circles = sorted({" <-> ".join(sorted({m} | {o for o in reach[m] if m in reach[o]})) for m in MODULES if m in reach[m]})
    assert circles == []


def test_imports_point_down_the_layers():
    upward = [f"{m} -> {t}" for m, targets in EDGES.items() for t in targets
              if LAYERS.index(_layer(t)) > LAYERS.index(_layer(m))
              and not (_layer(m) == "cli" and _layer(t) == "profiler")]  # only the profile commands, lazily
    assert upward == []


@pytest.mark.parametrize("folder", sorted({p.parent for p in MODULES.values()}), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_folder_is_crowded_and_every_package_says_what_it_owns(folder):
    modules = sorted(folder.glob("*.py"))
    assert len(modules) <= MAX_MODULES_PER_FOLDER, [m.name for m in modules]
    docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
    assert docstring and docstring.strip(), f"{folder}/__init__.py has no docstring"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_very_long(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES_PER_MODULE, f"{MODULES[name]} has {lines} lines"


def test_the_code_map_names_every_module_and_only_those():
    text = (ROOT / "docs" / "code-map.md").read_text(encoding="utf-8")
    named = set()
    for section, body in re.findall(r"^## (\S+/)[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S):
        for cell in re.findall(r"^\| (.+?) \|", body, flags=re.M):
            for module in re.findall(r"`([\w*]+\.py)`", cell):
                named.add(section + module)
        for folder in re.findall(r"^\| `(\w+)/` \|", body, flags=re.M):
            named.add(f"{section}{folder}/")
    top = "estimator/"
    actual = set()
    for path in MODULES.values():
        rel = path.relative_to(ROOT)
        if rel.name in ("__init__.py", "__main__.py"):
            continue
        folder = f"{rel.parent.as_posix()}/"
        if folder == "estimator/cli/":  # the CLI is mapped as one folder, one module per command group
            actual.add("estimator/cli/")
            continue
        actual.add(folder + rel.name)
    expanded = set()
    for item in named:
        if "*" in item:
            pattern = re.compile(item.replace(".", r"\.").replace("*", r"\w*") + "$")
            expanded |= {a for a in actual if pattern.match(a)}
        else:
            expanded.add(item)
    assert top + "cli/" in actual
    assert sorted(actual - expanded) == [], "modules missing from docs/code-map.md"
    assert sorted(expanded - actual) == [], "docs/code-map.md names modules that do not exist"
