"""Import cycles among a package's modules, counting every import statement (top level
and inside functions: a lazy import upward is still an edge), except those under
``if TYPE_CHECKING:``.

    python scripts/import_cycles.py clbench      # prints each cycle; exit 1 if there is one
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(path: Path, name: str, is_package: bool, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    base = name if is_package else name.rpartition(".")[0]

    def resolve(target: str) -> None:
        while target and target not in modules:  # `from pkg.mod import name`: the module, not the name
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    resolve(alias.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    anchor = base
                    for _ in range(child.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    mod = f"{anchor}.{child.module}" if child.module else anchor
                else:
                    mod = child.module or ""
                for alias in child.names:
                    full = f"{mod}.{alias.name}"
                    resolve(full if full in modules else mod)
            visit(child)

    visit(tree)
    return found


def graph(package: Path) -> dict[str, set[str]]:
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    modules = set(files)
    return {m: imports_of(p, m, p.name == "__init__.py", modules) for m, p in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
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

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def main(argv: list[str]) -> int:
    package = Path(argv[0] if argv else "clbench").resolve()
    edges = graph(package)
    found = cycles(edges)
    for comp in found:
        members = set(comp)
        print(f"cycle of {len(comp)} modules: {', '.join(comp)}")
        for m in comp:
            inner = sorted(edges[m] & members)
            print(f"    {m} -> {', '.join(inner)}")
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(found)} cycle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
