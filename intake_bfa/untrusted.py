"""Decoding documents that come from outside (API answers, manifests, catalogs) within limits.

``json.loads`` and ``yaml.safe_load`` recurse once per nesting level: a document nested a
few thousand levels deep raises ``RecursionError`` (or, for YAML, takes seconds first), and
YAML aliases can make a small document expand into a huge or self-referencing one. The
functions here refuse all of that with a plain ``ValueError`` saying why; each caller turns
it into its own typed error naming the file or URL. Imports nothing of the package.
"""

from __future__ import annotations

from typing import Any

#: Nesting levels allowed (objects/arrays, mappings/sequences): ours need fewer than ten.
MAX_DEPTH = 64
#: Values allowed once YAML aliases are expanded (a "billion laughs" document is refused).
MAX_NODES = 1_000_000

_END = object()


def _children(obj: Any) -> Any:
    if isinstance(obj, dict):
        return obj.values()
    return obj


def check_depth(obj: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """Refuse a decoded document nested too deeply, too big once expanded, or self-referencing.

    Iterative (never recurses), and each shared object is measured once, so a document whose
    aliases would expand exponentially is measured in time linear in its own size.

    Parameters
    ----------
    obj
        The decoded document (dicts, lists and scalars).
    max_depth
        Nesting levels allowed.
    max_nodes
        Values allowed, counting a shared object once per place it appears.

    Returns
    -------
    Any
        ``obj`` itself.

    Raises
    ------
    ValueError
        Saying which limit the document breaks.
    """
    if not isinstance(obj, dict | list):
        return obj
    measured: dict[int, tuple[int, int]] = {}  # id -> (height, values)
    active = {id(obj)}
    stack: list[tuple[Any, Any, list[int]]] = [(obj, iter(_children(obj)), [1, 1])]
    while stack:
        node, children, acc = stack[-1]
        child = next(children, _END)
        if child is _END:
            stack.pop()
            active.discard(id(node))
            measured[id(node)] = (acc[0], acc[1])
            if stack:
                parent = stack[-1][2]
                parent[0] = max(parent[0], acc[0] + 1)
                parent[1] += acc[1]
                if parent[1] > max_nodes:
                    raise ValueError(f"more than {max_nodes} values once aliases are expanded")
            continue
        if not isinstance(child, dict | list):
            acc[1] += 1
            continue
        key = id(child)
        if key in active:
            raise ValueError("the document contains itself (a recursive alias)")
        if key in measured:
            height, count = measured[key]
            if len(stack) + height > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            acc[0] = max(acc[0], height + 1)
            acc[1] += count
            if acc[1] > max_nodes:
                raise ValueError(f"more than {max_nodes} values once aliases are expanded")
            continue
        if len(stack) >= max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        active.add(key)
        stack.append((child, iter(_children(child)), [1, 1]))
    return obj


def loads_json(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth``.

    Parameters
    ----------
    data
        JSON text (bytes are decoded as UTF-8, as :func:`json.loads` does).
    max_depth
        Nesting levels allowed.

    Returns
    -------
    Any
        The decoded document.

    Raises
    ------
    ValueError
        Invalid JSON (:class:`json.JSONDecodeError`, :class:`UnicodeDecodeError`) or a
        document nested too deeply.
    """
    import json

    try:
        doc = json.loads(data)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    return check_depth(doc, max_depth=max_depth)


def load_yaml(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load`` that refuses deep nesting and alias bombs before building anything.

    The nesting is first measured on the parser's event stream (which does not recurse), so
    a document nested thousands of levels deep is refused at once instead of after seconds
    of recursion; the loaded document is then measured again with aliases expanded.

    Parameters
    ----------
    text
        The YAML document.
    max_depth, max_nodes
        See :func:`check_depth`.

    Returns
    -------
    Any
        The decoded document.

    Raises
    ------
    yaml.YAMLError
        Invalid YAML.
    ValueError
        A document over the limits.
    """
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    try:
        doc = yaml.safe_load(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    return check_depth(doc, max_depth=max_depth, max_nodes=max_nodes)
