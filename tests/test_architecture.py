"""The design card as checks: layers import one way, no module reaches into another object's
private fields, modules stay small, one place chooses the backend, adapters meet their Protocol."""
import ast
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "adamax_engine")
PACKAGE = "adamax_engine"
MAX_LINES = 400
#: a private-attribute access is allowed on a line carrying this marker and a reason
JUSTIFIED = re.compile(r"#.*\bprivate-ok:\s*\S")
#: NamedTuple's public API, underscored only so that it cannot clash with field names
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def modules():
    """{module name: (path, source)} of every module of the package."""
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                name = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
                with open(path) as fh:
                    out[name] = (path, fh.read())
    return out


MODULES = modules()


def imports_of(name, path, source):
    """Modules of the package that ``name`` imports, at module level or inside functions."""
    is_package = path.endswith("__init__.py")
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[:len(base) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:  # "from pkg import module" names the module itself
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_lazy_imports_included():
    graph = {m: imports_of(m, *MODULES[m]) for m in MODULES}
    # a package's __init__ that re-exports its own submodules is not a cycle of layers
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not (d.startswith(m + ".") or m.startswith(d + "."))}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def private_reach_ins(source):
    """(line, text) of every ``x._name`` where x is not self/cls, and every import of another
    module's _private name, unless the line says ``# private-ok: <why>``."""
    lines = source.splitlines()
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            name = node.attr
            owner = node.value
            if not name.startswith("_") or name.startswith("__") or name in NAMEDTUPLE_API:
                continue
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
        elif isinstance(node, ast.ImportFrom) and node.level:
            if not any(a.name.startswith("_") and not a.name.startswith("__")
                       for a in node.names):
                continue
        else:
            continue
        line = lines[node.lineno - 1]
        if not JUSTIFIED.search(line):
            hits.append((node.lineno, line.strip()))
    return hits


def test_no_module_reaches_into_another_objects_private_fields():
    found = {m: private_reach_ins(src) for m, (_, src) in MODULES.items()}
    assert {m: h for m, h in found.items() if h} == {}
    justified = sum(len(JUSTIFIED.findall(src)) for _, src in MODULES.values())
    assert justified <= 5  # a handful at most, each with its reason on the line


def test_the_reach_in_scan_sees_a_reach_in():
    assert private_reach_ins("def f(opt):\n    return opt._cuda\n") == [(2, "return opt._cuda")]
    assert private_reach_ins("from .x import _kernels\n") == [(1, "from .x import _kernels")]
    assert private_reach_ins("x = self._a + cls._b + y.__dict__\n") == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    path, source = MODULES[name]
    assert len(source.splitlines()) <= MAX_LINES, f"{path}: split it by concept"


def test_one_place_chooses_the_backend():
    """Steppers are built only by step/stepper.make_stepper (and the sharded twins' factory)."""
    builders = {m for m, (_, src) in MODULES.items()
                if re.search(r"(?<!class )\b(HostStepper|CudaStepper)\(", src)}
    assert builders == {f"{PACKAGE}.step.stepper"}


def test_every_adapter_meets_the_protocol():
    from adamax_engine.adapters import ADAPTERS
    from adamax_engine.adapters.protocol import Adapter
    for adapter in ADAPTERS:
        assert isinstance(adapter, Adapter), adapter.__name__
        assert adapter.device in ("cpu", "cuda")
        assert adapter.default_mode in ("adopt", "borrow")
    torch_like = [a for a in ADAPTERS if a.__name__.startswith("Torch")]
    assert all(a.row_sparse is not None and a.snapshot is not None for a in torch_like)
    numpy_adapter = [a for a in ADAPTERS if a.__name__ == "NumpyAdapter"][0]
    assert numpy_adapter.snapshot is None and numpy_adapter.row_sparse is None


def test_the_adapters_are_called_only_by_the_registry():
    """``adapter.<method>(`` calls live in params/ (the registry and its entries) and adapters/
    (one framework's helpers) -- nowhere else."""
    allowed = (f"{PACKAGE}.params.", f"{PACKAGE}.adapters")
    callers = {m for m, (_, src) in MODULES.items()
               if re.search(r"\b(adapter_for\(|e\.adapter\.|\.adapter\.(data|grad|numpy)\()",
                            src)}
    assert {m for m in callers if not m.startswith(allowed)} == set()
