"""The house's rules, read from the code: imports run one way, from the entry points down (docs/architecture.md draws
the layers); no module is over 400 lines and no function over 60."""

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

# Each module's layer, by the longest name that begins it: a module imports only from lower layers, or from its own
# room (sub-package) in its own layer. A new module gets a line here, or one of its room's.
LAYERS = {
    "core": 0,
    "longjobs.validation": 1,
    "longjobs.catalog.rscript": 1,
    "longjobs.workers.scripts": 1,
    "longjobs.workers.rqinternals": 1,
    "longjobs.operations.schemas": 1,
    "longjobs.http": 2,
    "longjobs.catalog": 2,
    "longjobs.lifecycle.schemas": 2,
    "longjobs.workflows.schemas": 2,
    "longjobs.push.schemas": 2,
    "tasks": 3,
    "longjobs.lifecycle": 4,
    "longjobs.workflows": 5,
    "longjobs.push": 6,
    "longjobs.workers": 6,
    "longjobs.operations": 7,
    "longjobs.lifecycle.tasks_api": 7,
    "longjobs.lifecycle.models_api": 7,
    "longjobs.workflows.sweeps_api": 7,
    "longjobs.workflows.schedules_api": 7,
    "longjobs.push.events_api": 7,
    "longjobs.push.webhooks_api": 7,
    "app": 8,
    "worker": 9,
    "clock": 9,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def our_modules() -> dict[str, Path]:
    """The service's modules by import name: the entry points at the top, and the package."""
    modules = {path.stem: path for path in ROOT.glob("*.py") if path.stem in LAYERS}
    for path in (ROOT / "longjobs").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    del modules["longjobs"]  # the package's docstring, the map of its rooms
    return modules


def layer(module: str) -> int:
    prefixes = [name for name in LAYERS if module == name or module.startswith(f"{name}.")]
    assert prefixes, f"{module} has no layer: give it one in LAYERS"
    return LAYERS[max(prefixes, key=len)]


def room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours a module imports, wherever in it (`from longjobs import lifecycle` names the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_imports_run_one_way_from_the_entry_points_down() -> None:
    modules = our_modules()
    assert {"core", "tasks", "app", "worker", "clock", "longjobs.lifecycle", "longjobs.push.outbox"} <= set(modules)
    upward = []
    for module, path in modules.items():
        for other in imported(path, modules) - {module}:
            if module.startswith(f"{other}."):  # a module of a room may use what the room's __init__ holds
                continue
            if layer(other) > layer(module) or (layer(other) == layer(module) and room(other) != room(module)):
                upward.append(f"{module} (layer {layer(module)}) imports {other} (layer {layer(other)})")
    assert upward == []


def test_the_users_models_import_nothing_of_the_service() -> None:
    modules = our_modules()
    assert {path.name: imported(path, modules) for path in (ROOT / "models").glob("*.py")} == {
        path.name: set() for path in (ROOT / "models").glob("*.py")
    }


def test_no_module_is_over_400_lines_and_no_function_over_60() -> None:
    code = [*our_modules().values(), *(ROOT / "bench").glob("*.py"), *(ROOT / "models").glob("*.py")]
    code += [*(ROOT / "tests").glob("*.py"), *(ROOT / "tests" / "models").glob("*.py")]
    scripts = [ROOT / "static" / "page.js", *(ROOT / "static" / "page").glob("*.js")]
    long = [f"{path.name}: {n} lines" for path in code + scripts if (n := len(path.read_text().splitlines())) > 400]
    for path in code:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:  # type: ignore[operator]
                    long.append(f"{path.name}: {node.name} is {n} lines")
    for path in scripts:  # a function ends where its braces close
        depth, start = 0, None
        for number, line in enumerate(path.read_text().splitlines()):
            if depth == 0 and (match := re.match(r"(export )?(async )?function (\w+)", line)):
                start, name = number, match[3]
            depth += line.count("{") - line.count("}")
            if depth == 0 and start is not None:
                if number - start + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}: {name} is {number - start + 1} lines")
                start = None
    assert long == []
