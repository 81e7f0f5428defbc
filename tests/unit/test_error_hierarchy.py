"""tasks/errors.py documents the exception hierarchy as a tree; it must be the code's tree."""

import importlib
import pkgutil
import re

import flows
import tasks
import tasks.errors
from tasks.errors import LLMResilienceError

LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)(?:\s+(?P<module>[a-z_.]+):)?")


def documented() -> dict[str, tuple[str, str | None]]:
    """Class name -> (documented parent, documented module) from the module docstring's tree."""
    tree = tasks.errors.__doc__.split("    LLMResilienceError\n", 1)[1].split("\n\n", 1)[0]
    parents, out = ["LLMResilienceError"], {}
    for raw in tree.splitlines():
        m = LINE.match(raw.strip("\n")[4:])
        assert m, raw
        depth = len(m["indent"]) // 4  # "├── " per level below the root
        del parents[depth:]
        out[m["name"]] = (parents[-1], m["module"])
        parents.append(m["name"])
    return out


def raised_by_the_project() -> dict[str, type]:
    for package in (flows, tasks):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    importlib.import_module("deployments.stack.haproxy_runtime")
    found, todo = {}, [LLMResilienceError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.split(".")[0] in {"flows", "tasks", "deployments"}:
                found[sub.__name__] = sub
                todo.append(sub)
    return found


def test_every_project_exception_is_in_the_documented_tree_under_its_real_parent() -> None:
    doc, code = documented(), raised_by_the_project()
    assert sorted(doc) == sorted(code)
    for name, (parent, module) in doc.items():
        assert code[name].__bases__[0].__name__ == parent, name
        assert module is None or code[name].__module__ == module, (name, module)
