"""The embedded corpus: real English that every Python installation already has.

A fresh machine without a network must still train out of the box, and a corpus bundled in the
wheel would add megabytes and a licence question. CPython ships ~2.3 MB of carefully written
English prose with it:

* ``pydoc_data.topics`` — the language-reference topics ``help()`` shows (~0.47 MB);
* the docstrings of the standard library's modules, classes and functions (~1.8 MB), read with
  :mod:`ast` from the ``.py`` sources (never imported, so nothing runs), excluding test suites,
  ``idlelib``'s tests, ``lib2to3``, ``turtledemo`` and ``site-packages``.

Licence: both are part of CPython and distributed under the Python Software Foundation License
Version 2 (https://docs.python.org/3/license.html), which permits use, modification and
redistribution, including of derived works such as trained models, with the PSF notice kept.

Determinism: documents come in a fixed order (topics by name, then modules by dotted name, each
module's docstrings in source order), so the corpus is byte-identical on every machine with the
same Python version and the same standard library files. Extracting it parses ~640 files (~3 s),
so it is written once to ``cache_dir()/embedded/`` (a temporary name, then a rename).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import platform
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from engine.locations import cache_dir, ensure_private_dir

#: Bump when the extraction changes, so cached corpora and prepared data are rebuilt.
CORPUS_VERSION = 1
LICENSE = "PSF-2.0 (Python Software Foundation License Version 2)"
SOURCE = "CPython's pydoc_data.topics and standard-library docstrings"
#: Standard-library folders that are not documentation (tests, demos, installed packages); the
#: embedded chat data skips these too.
SKIP_DIRS = {
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "lib2to3",
    "turtledemo",
}


def corpus_id() -> str:
    """What determines the corpus: the interpreter's version and implementation, and our extractor."""
    return f"cpython-docs-v{CORPUS_VERSION}-{platform.python_implementation()}-{platform.python_version()}"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_modules(root: Path) -> list[tuple[str, Path]]:
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & SKIP_DIRS or any(p.startswith(("config-", "plat-")) for p in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or not all(p.isidentifier() for p in parts):
            continue
        found.append((".".join(parts), path))
    return sorted(found)


def _module_document(name: str, path: Path) -> str | None:
    """The module's docstrings as one document: module, then classes and functions in source order."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return None
    parts: list[str] = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(f"Module {name}\n\n{doc}")

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{child.name}"
                text = ast.get_docstring(child)
                if text:
                    kind = "class" if isinstance(child, ast.ClassDef) else "def"
                    parts.append(f"{kind} {name}.{qual}\n\n{inspect.cleandoc(text)}")
                visit(child, f"{qual}.")

    visit(tree, "")
    return "\n\n".join(parts) if parts else None


def iter_documents() -> Iterator[str]:
    """Every document of the corpus, in its fixed order (computed, not cached)."""
    import pydoc_data.topics

    for key in sorted(pydoc_data.topics.topics):
        text = pydoc_data.topics.topics[key].strip()
        if text:
            yield text
    for name, path in _stdlib_modules(stdlib_root()):
        doc = _module_document(name, path)
        if doc:
            yield doc


def corpus_path() -> Path:
    """The corpus as JSON lines (``{"text": …}``), extracted on first use and cached."""
    target = cache_dir() / "embedded" / f"{corpus_id()}.jsonl"
    if target.is_file():
        return target
    ensure_private_dir(target.parent)  # owner-only, like everything under the home
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
            for doc in iter_documents():
                fh.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def documents() -> list[str]:
    """The corpus as a list of strings (reads the cached file)."""
    with corpus_path().open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def corpus_sha256() -> str:
    """Content hash of the corpus, for manifests and for proving determinism."""
    return hashlib.sha256(corpus_path().read_bytes()).hexdigest()


def describe() -> dict:
    return {"id": corpus_id(), "source": SOURCE, "license": LICENSE, "python": sys.version.split()[0]}
