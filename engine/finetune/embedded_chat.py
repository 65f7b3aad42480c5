"""Embedded conversations: a chat data set that every Python installation already has.

Fine-tuning must work out of the box on a machine without a network, just as pre-training does
with :mod:`engine.data.embedded`. This module turns the same licence-clean text, CPython's own
documentation, into question-and-answer conversations about Python:

* for each public module, function, class and public method of the standard library with a
  docstring whose first paragraph says something (40 characters or more), a user asks what it
  does and the assistant answers with that paragraph; about a third of the functions get a
  second turn asking for the signature, answered with the arguments read from the source;
* for each topic of the language reference in ``pydoc_data.topics``, a user asks for an
  explanation and the assistant answers with its first paragraphs (about 800 characters at most),
  sometimes followed by "tell me more" and the next paragraphs.

Sources are read with :mod:`ast` (never imported, so nothing runs). Everything is deterministic:
modules in sorted order, definitions in source order, and the phrasing, the second turns and the
optional system messages chosen by a CRC-32 of the name, never by ``random`` or ``hash()``, so
the set is identical on every machine with the same Python version. Building takes about a
second; the result is kept in memory and written once as JSON Lines under ``cache_dir()``.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import os
import platform
import re
import textwrap
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.data.embedded import SKIP_DIRS, stdlib_root
from engine.locations import cache_dir, ensure_private_dir

#: Bump when the conversations change, so cached copies are rebuilt.
CHAT_VERSION = 1

EMBEDDED_SOURCE = (
    "The embedded conversations are built offline from documentation that ships with every "
    "CPython: the docstrings of the standard library's public modules, classes, functions and "
    "methods (read from the .py sources with ast, never imported) and the language-reference "
    "topics of pydoc_data.topics. Questions are written from a few fixed templates; the answers "
    "are the documentation's own first paragraphs and signatures. Both sources are part of CPython "
    "and distributed under the Python Software Foundation License Version 2 (PSF-2.0, "
    "https://docs.python.org/3/license.html), which permits use, modification and redistribution, "
    "including of derived works such as fine-tuned models, with the PSF notice kept."
)

Conversation = list[dict[str, str]]

#: Besides the pre-training corpus' exclusions: IDLE, generated codecs and bundled installers.
_SKIP = SKIP_DIRS | {"idlelib", "encodings", "ensurepip", "pydoc_data", "distutils"}
_MIN_ANSWER = 40
_MAX_ANSWER = 800
_MAX_SIGNATURE = 200

_ASK_FUNCTION = (
    "What does `{name}` do?",
    "Can you explain what `{name}` is for?",
    "In Python's standard library, what does `{name}` do?",
    "Briefly, what is `{name}` used for?",
    "I came across `{name}` in some code. What does it do?",
)
_ASK_CLASS = (
    "What is the `{name}` class for?",
    "Can you explain the `{name}` class?",
    "What does the class `{name}` represent?",
    "Briefly, what is `{name}` in Python's standard library?",
)
_ASK_MODULE = (
    "What is the `{name}` module for?",
    "What does Python's `{name}` module provide?",
    "Can you summarise the standard-library module `{name}`?",
)
_ASK_SIGNATURE = ("What is its signature?", "How do I call it?", "What arguments does it take?")
_ASK_TOPIC = (
    "Explain {title} in Python.",
    "What does the Python language reference say about {title}?",
    "Can you describe {title} in Python?",
)
_ASK_MORE = ("Tell me more.", "Can you go on?", "What else should I know about it?")
_SYSTEM = (
    "You are a helpful assistant who knows Python and its standard library well.",
    "You are a concise Python tutor. Answer clearly and accurately.",
    "You answer questions about Python using its official documentation.",
)


@dataclass(frozen=True)
class _Doc:
    """One documented definition: what to ask about and what to answer."""

    name: str
    kind: str  # "module", "class" or "function"
    answer: str
    signature: str | None = None


def embedded_conversations() -> list[Conversation]:
    """The embedded conversations, in their fixed order; a fresh list the caller may change."""
    return [[{"role": role, "content": content} for role, content in conv] for conv in _frozen()]


@functools.cache
def _frozen() -> tuple[tuple[tuple[str, str], ...], ...]:
    """Built once per process (immutable, so callers cannot corrupt the cache), from disk if there."""
    path = _cache_path()
    convs = _read_cache(path)
    if convs is None:
        convs = build_conversations()
        _write_cache(path, convs)
    return tuple(tuple((m["role"], m["content"]) for m in conv) for conv in convs)


def build_conversations() -> list[Conversation]:
    """Build every conversation from the sources (no cache): language topics, then modules."""
    convs = list(_topic_conversations())
    for name, path in _public_modules(stdlib_root()):
        convs.extend(_conversation(doc) for doc in _module_docs(name, path))
    return convs


# --- the cache -----------------------------------------------------------------------------------


def _cache_path() -> Path:
    key = f"chat-v{CHAT_VERSION}-{platform.python_implementation()}-{platform.python_version()}"
    return cache_dir() / "embedded" / f"{key}.jsonl"


def _read_cache(path: Path) -> list[Conversation] | None:
    """The cached conversations, or None when absent or unreadable (then they are rebuilt)."""
    try:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError):
        return None


def _write_cache(path: Path, convs: list[Conversation]) -> None:
    """Write to a temporary name, then rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ensure_private_dir(path.parent)  # owner-only, like everything under the home
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
            for conv in convs:
                fh.write(json.dumps(conv, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a rebuild next time
    finally:
        tmp.unlink(missing_ok=True)


# --- choosing deterministically ------------------------------------------------------------------


def _stable(name: str, salt: str) -> int:
    """A number that depends only on the text: unlike ``hash()``, the same in every process."""
    return zlib.crc32(f"{salt}:{name}".encode())


def _pick(options: tuple[str, ...], name: str, salt: str) -> str:
    return options[_stable(name, salt) % len(options)]


def _with_system(name: str, messages: Conversation) -> Conversation:
    """One conversation in five starts with a system message, so fine-tunes see both shapes."""
    if _stable(name, "system") % 5:
        return messages
    return [{"role": "system", "content": _pick(_SYSTEM, name, "system-text")}, *messages]


# --- standard-library docstrings -----------------------------------------------------------------


def _public_modules(root: Path) -> list[tuple[str, Path]]:
    """``(dotted name, path)`` of every public standard-library module, sorted.

    A pruned walk: ``rglob`` would descend into ``site-packages`` and take most of a second.
    """
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if d not in _SKIP and d.isidentifier() and not d.startswith(("_", "config-"))
        )
        rel = Path(folder).relative_to(root).parts
        for file in files:
            if not file.endswith(".py") or (file.startswith("_") and file != "__init__.py"):
                continue
            parts = [*rel] if file == "__init__.py" else [*rel, file[:-3]]
            if parts and all(p.isidentifier() for p in parts):
                found.append((".".join(parts), Path(folder) / file))
    return sorted(found)


def _module_docs(module: str, path: Path) -> Iterator[_Doc]:
    """The module, its public classes and functions, and their public methods, in source order."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return
    answer = _answer(ast.get_docstring(tree))
    if answer:
        yield _Doc(module, "module", answer)
    seen: set[str] = set()
    for node in _top_level_definitions(tree):
        if node.name.startswith("_") or node.name in seen:
            continue
        seen.add(node.name)
        qual = f"{module}.{node.name}"
        yield from _definition_docs(qual, node, method=False)
        if isinstance(node, ast.ClassDef):
            methods: set[str] = set()
            for child in node.body:
                if _is_function(child) and not child.name.startswith("_") and child.name not in methods:
                    methods.add(child.name)
                    yield from _definition_docs(f"{qual}.{child.name}", child, method=True)


_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _top_level_definitions(tree: ast.Module) -> Iterator[_Definition]:
    """Definitions at module level, including those under ``if``/``try`` (platform variants)."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node
        elif isinstance(node, ast.If):
            pending[:0] = [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            handlers = [stmt for handler in node.handlers for stmt in handler.body]
            pending[:0] = [*node.body, *handlers, *node.orelse, *node.finalbody]


def _is_function(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))


def _definition_docs(qual: str, node: _Definition, *, method: bool) -> Iterator[_Doc]:
    answer = _answer(ast.get_docstring(node))
    if not answer:
        return
    if isinstance(node, ast.ClassDef):
        init = next((c for c in node.body if _is_function(c) and c.name == "__init__"), None)
        signature = _signature(init, bound=True) if init is not None else None
        yield _Doc(qual, "class", answer, signature)
    else:
        yield _Doc(qual, "function", answer, _signature(node, bound=method))


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, *, bound: bool) -> str | None:
    """The arguments as written in the source, without ``self``/``cls`` of a method."""
    decorators = {_decorator_name(d) for d in node.decorator_list}
    if decorators - _SIGNATURE_KEEPING:
        return None  # a property, or a decorator that may change how it is called
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    first = positional[0].arg if positional else None
    if not bound and first == "self":
        return None  # a function written to be attached to a class elsewhere
    if bound and "staticmethod" not in decorators:
        if first not in ("self", "cls"):
            return None
        args = copy.copy(args)
        if args.posonlyargs:
            args.posonlyargs = args.posonlyargs[1:]
        else:
            args.args = args.args[1:]
    try:
        text = ast.unparse(args)
    except (ValueError, AttributeError, RecursionError):
        return None
    return text if len(text) <= _MAX_SIGNATURE else None


#: Decorators that leave the call signature as written (or only bind ``self``/``cls``).
_SIGNATURE_KEEPING = {
    "staticmethod",
    "classmethod",
    "abstractmethod",
    "contextmanager",
    "asynccontextmanager",
    "cache",
    "lru_cache",
    "wraps",
}


def _decorator_name(node: ast.expr) -> str:
    """``property`` for ``@property``, ``setter`` for ``@x.setter``, ``cache`` for ``@functools.cache()``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


_SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)\s*(->.*)?$")


def _answer(doc: str | None) -> str | None:
    """The docstring's first paragraph as one clean line, or None when it is not a useful answer."""
    if not doc:
        return None
    paragraph = doc.strip().split("\n\n", 1)[0]
    text = " ".join(paragraph.split()).replace("``", "`")
    if len(text) < _MIN_ANSWER or ">>>" in text or text.endswith(":") or _SIGNATURE_LINE.match(text):
        return None
    return _capped(text)


def _capped(text: str) -> str:
    """At most ~800 characters, cut after a sentence where one ends in time."""
    if len(text) <= _MAX_ANSWER:
        return text
    cut = text.rfind(". ", 0, _MAX_ANSWER)
    return text[: cut + 1] if cut >= _MIN_ANSWER else text[:_MAX_ANSWER].rsplit(" ", 1)[0] + " …"


def _conversation(doc: _Doc) -> Conversation:
    if doc.kind == "module":
        question = _pick(_ASK_MODULE, doc.name, "ask")
    elif doc.kind == "class":
        question = _pick(_ASK_CLASS, doc.name, "ask")
    else:
        question = _pick(_ASK_FUNCTION, doc.name, "ask")
    messages = [
        {"role": "user", "content": question.format(name=doc.name)},
        {"role": "assistant", "content": doc.answer},
    ]
    if doc.signature is not None and _stable(doc.name, "signature") % 3 == 0:
        messages += [
            {"role": "user", "content": _pick(_ASK_SIGNATURE, doc.name, "ask-signature")},
            {"role": "assistant", "content": f"`{doc.name}({doc.signature})`"},
        ]
    return _with_system(doc.name, messages)


# --- the language reference ----------------------------------------------------------------------


def _topic_conversations() -> Iterator[Conversation]:
    """One conversation per language-reference topic (by title; ``if`` and ``else`` share one)."""
    import pydoc_data.topics

    titles: set[str] = set()
    for key in sorted(pydoc_data.topics.topics):
        lines = pydoc_data.topics.topics[key].strip().splitlines()
        if len(lines) < 3 or lines[0] in titles:
            continue
        titles.add(lines[0])
        paragraphs = _prose_paragraphs("\n".join(lines[2:]))
        first, rest = _take(paragraphs)
        if not first:
            continue
        title = _topic_phrase(lines[0])
        messages = [
            {"role": "user", "content": _pick(_ASK_TOPIC, key, "ask-topic").format(title=title)},
            {"role": "assistant", "content": first},
        ]
        more, _ = _take(rest)
        if more and _stable(key, "more") % 2 == 0:
            messages += [
                {"role": "user", "content": _pick(_ASK_MORE, key, "ask-more")},
                {"role": "assistant", "content": more},
            ]
        yield _with_system(key, messages)


def _prose_paragraphs(text: str) -> list[str]:
    """The topic as answer-ready blocks: prose joined into lines, examples fenced as code.

    Grammar rules (``::=``) and tables read badly in chat and are left out; a sentence that
    introduced one ends with a full stop instead of a dangling colon.
    """
    text = re.sub(r"(\w-)\n\s*(\w)", r"\1\2", text)  # "comma-\nseparated" -> "comma-separated"
    out: list[str] = []
    for block in text.split("\n\n"):
        lines = block.strip("\n").splitlines()
        if not lines or not block.strip():
            continue
        if len(lines) > 1 and lines[1].strip() and set(lines[1].strip()) <= set("=-*~^"):
            continue  # a section heading
        if "::=" in block or lines[0].lstrip().startswith(("+-", "|", "+=")):
            if out and out[-1].endswith(":") and not out[-1].startswith("```"):
                out[-1] = out[-1][:-1].rstrip() + "."
            continue
        if lines[0].startswith(" ") and not _indented_prose(block):
            out.append("```\n" + textwrap.dedent(block.strip("\n")).rstrip() + "\n```")
            continue
        out.append(re.sub(r"\s*\[\d+\]", "", " ".join(block.split())))
    return out


_LIST_OR_NOTE = re.compile(
    r"(\*|-|\d+\.)\s|(Note|See also|Warning|New in version|Changed in version|Deprecated since)\b"
)


def _indented_prose(block: str) -> bool:
    """An indented block that is a sentence (a note, a list item's continuation), not an example."""
    text = " ".join(block.split())
    if _LIST_OR_NOTE.match(text):
        return True
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    return (
        text.rstrip(")").endswith((".", ":"))
        and len(text.split()) >= 6
        and ">>>" not in text
        and not any(line.endswith((":", "(", ",")) for line in lines[:-1])
    )


def _take(paragraphs: list[str]) -> tuple[str, list[str]]:
    """Whole paragraphs up to ~800 characters (at least one, capped), and the ones left over."""
    if not paragraphs:
        return "", []
    if paragraphs[0].startswith("```") and len(paragraphs[0]) > _MAX_ANSWER:
        return "", paragraphs[1:]  # never cut an example in half
    taken = [paragraphs[0]]
    for paragraph in paragraphs[1:]:
        if sum(len(p) + 2 for p in taken) + len(paragraph) > _MAX_ANSWER:
            break
        taken.append(paragraph)
    while len(taken) > 1 and taken[-1].endswith(":"):
        taken.pop()  # the example it introduces did not fit: end before the colon
    answer = _capped("\n\n".join(taken))
    return (answer if len(answer) >= _MIN_ANSWER else ""), paragraphs[len(taken) :]


def _topic_phrase(title: str) -> str:
    """``The "with" statement`` → ``the `with` statement``, fit to follow "Explain"."""
    phrase = re.sub(r'"([^"\s]+)"', r"`\1`", title)
    words = phrase.split()
    if words and words[0][:1].isupper() and all(not w[:1].isupper() for w in words[1:]):
        phrase = phrase[0].lower() + phrase[1:]
    return phrase
