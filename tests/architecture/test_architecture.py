"""The package's structure holds: no import cycle (every import statement counted,
those inside functions included), no module imports the package root, the layers of
docs/architecture.md (import-linter's contracts in .importlinter), and a plain
``import mobilenet_zoo`` that defines names and does nothing else."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mobilenet_zoo"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(importer, imported module of the package, inside a function) for every import."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        in_function = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(fn)}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package
                    for _ in range(node.level - 1):
                        parent = parent.rpartition(".")[0]
                    base = f"{parent}.{base}".rstrip(".")
                # `from pkg import sub` imports pkg.sub; `from pkg import name` imports pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target.split(".")[0] == "mobilenet_zoo" and (module := resolve(target)) != name:
                    edges.append((name, module, id(node) in in_function))
    return edges


def test_no_import_cycle_counting_imports_inside_functions():
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for src, dst, _ in _imports(modules):
        graph[src].add(dst)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_module_imports_the_package_root():
    offenders = [(src, dst) for src, dst, _ in _imports(_modules()) if dst == "mobilenet_zoo"]
    assert not offenders, offenders


def _imports_tensorflow_at_module_level(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
               and getattr(node.value.func, "id", "") == "import_tensorflow" for node in tree.body)


def test_imports_inside_functions_are_the_command_line_or_tensorflow_modules():
    # A sub-command parses its flags, then imports the models (`--help` answers at once);
    # a module that needs TensorFlow when imported (a tf.data source, the recipe runner) is
    # imported where it is used, so the models run without TensorFlow. Everything else
    # imports at the top of the module.
    modules = _modules()
    inner = sorted({(src, dst) for src, dst, in_function in _imports(modules)
                    if in_function and not src.startswith("mobilenet_zoo.cli")
                    and not _imports_tensorflow_at_module_level(modules[dst])})
    assert not inner, inner


def test_import_linter_contracts_hold():
    done = subprocess.run(["lint-imports", "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "0 broken" in done.stdout


def test_import_mobilenet_zoo_imports_no_keras_and_writes_no_environment():
    script = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "import mobilenet_zoo\n"
        "print(json.dumps({'keras': 'keras' in sys.modules, 'tensorflow': 'tensorflow' in sys.modules,\n"
        "                  'env_changed': dict(os.environ) != before,\n"
        "                  'dir_has_all': set(mobilenet_zoo.__all__) <= set(dir(mobilenet_zoo))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-c", script, "--some", "argv"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"keras": False, "tensorflow": False, "env_changed": False,
                                       "dir_has_all": True}


def test_public_names_are_visible_to_type_checkers_and_load_on_first_use():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    checked = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {a.asname or a.name for n in checked.body for a in n.names}
    import mobilenet_zoo

    assert seen | {"__version__"} == set(mobilenet_zoo.__all__)
    from mobilenet_zoo import SSD, MobileNetBackbone
    from mobilenet_zoo.detection.ssd import SSD as defined

    assert SSD is defined and MobileNetBackbone.__module__ == "mobilenet_zoo.backbone"
    for name in mobilenet_zoo.__all__:
        assert getattr(mobilenet_zoo, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        mobilenet_zoo.NotAName  # noqa: B018


@pytest.mark.parametrize("command", [[], ["presets"], ["detect"], ["classify"], ["export"], ["convert"],
                                     ["presets", "fetch"]])
def test_every_sub_command_help_imports_neither_keras_nor_tensorflow(command):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mobilenet_zoo", *command, "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not imported & {"keras", "tensorflow", "jax", "torch"}


def test_task_registry_builds_models_by_name_without_importing_them_first():
    script = (
        "import sys\n"
        "from mobilenet_zoo.hub.tasks import get_task, task_names\n"
        "assert 'mobilenet_zoo.detection.ssd' not in sys.modules\n"
        "cls = get_task('SSD')\n"
        "print(cls.__module__, sorted(task_names()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("mobilenet_zoo.detection.ssd ")
    from mobilenet_zoo.hub.tasks import get_task, register_task

    with pytest.raises(ValueError, match="Unknown task 'Nope'; the known tasks are"):
        get_task("Nope")
    with pytest.raises(ValueError, match="Task name 'SSD' is the built-in mobilenet_zoo.detection.ssd.SSD"):
        register_task("SSD")(type("Other", (), {}))
    mine = register_task("MyTask")(type("MyTask", (), {}))
    assert get_task("MyTask") is mine
    with pytest.raises(ValueError, match="Task name 'MyTask' is taken by test_architecture.MyTask"):
        register_task("MyTask")(type("Another", (), {}))


def test_task_registry_refuses_what_would_break_it():
    from mobilenet_zoo.hub.tasks import get_task, register_task

    with pytest.raises(TypeError, match=r"write @register_task\(\)"):
        register_task(type("Bare", (), {}))
    with pytest.raises(TypeError, match="non-empty str"):
        register_task(123)
    with pytest.raises(ValueError, match="is the built-in mobilenet_zoo.backbone.MobileNetBackbone"):
        register_task("MobileNetBackbone")(type("Impostor", (), {}))
    with pytest.raises(ValueError, match="Did you mean 'SSD'"):
        get_task("ssd")
    with pytest.raises(TypeError, match="A task name is a str"):
        get_task(None)


def test_a_keras_backend_that_does_not_exist_is_one_clear_error():
    env = dict(os.environ, KERAS_BACKEND="nonsense")
    done = subprocess.run([sys.executable, "-m", "mobilenet_zoo", "detect", "nothere.jpg", "--out",
                           "unused"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: KERAS_BACKEND names the Keras backend 'nonsense', which Keras does not have; use "
        "one of tensorflow, jax, torch, numpy, openvino (or leave it unset).")
    script = "import mobilenet_zoo\ntry:\n    mobilenet_zoo.SSD\nexcept Exception as e:\n    print(type(e).__name__)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.stdout.strip() == "BackendError", done.stderr[-2000:]


def test_moved_training_names_say_where_they_went():
    import mobilenet_zoo.training as training

    with pytest.raises(AttributeError, match="are in mobilenet_zoo.training.run"):
        training.RunContext  # noqa: B018


def test_load_model_says_what_is_wrong_with_its_path(tmp_path):
    import mobilenet_zoo

    with pytest.raises(FileNotFoundError, match="No such .keras file"):
        mobilenet_zoo.load_model(tmp_path / "missing.keras")
    with pytest.raises(TypeError, match="must be a path to a .keras file"):
        mobilenet_zoo.load_model(123)
