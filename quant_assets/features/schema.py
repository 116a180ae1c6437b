"""The schema of the feature library: column names in order, a hash of what computes them, the warm-up.

The hash changes when a value could: a feature's name, group, lookback, settle, scope or place, the
arguments bound to its computation, the code of that computation and of every feature-package
helper and module-level constant it reaches, the data model (``candles.py``), the input windows of
the sequence models (``sequences.py``), the TA-Lib version and
:data:`FEATURE_LIBRARY_VERSION`. Code is compared as its syntax tree without docstrings, so comments,
docstrings, formatting and line numbers never change it; descriptions and NaN documentation are not
part of it either. A model stores the hash, and :func:`check_schema` refuses another schema.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import textwrap
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, partial
from typing import Any

import numpy as np
import pandas as pd
import talib

from quant_assets.errors import SchemaMismatchError
from quant_assets.features import candles, sequences
from quant_assets.features.candles import FIVE_MINUTES_MS
from quant_assets.features.registry import FEATURES, Feature

# Bump when the meaning of a feature changes in a way its source cannot show (e.g. a new TA-Lib
# default). Source changes of compute functions and their helpers change the hash by themselves.
FEATURE_LIBRARY_VERSION = "1"
_PACKAGE = "quant_assets.features"


@dataclass(frozen=True)
class FeatureSchema:
    """The fingerprint of the feature library: what a model trained on it must be fed.

    Attributes:
        hash: sha256 hex of the declarations and code that compute the features (see the module
            docstring). Stable across processes and machines with the same code and Python minor
            version.
        warmup_bars: trailing bars per symbol that :func:`compute_features` needs so that its last
            row equals the value computed from any longer history within 1e-9 relative.
    """

    _names: tuple[str, ...]
    hash: str
    warmup_bars: int

    @property
    def names(self) -> list[str]:
        """Feature column names in registry order (a new list each time)."""
        return list(self._names)

    @property
    def warmup(self) -> timedelta:
        """``warmup_bars`` five-minute bars as a duration (more wall time is needed across gaps)."""
        return timedelta(milliseconds=self.warmup_bars * FIVE_MINUTES_MS)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0] if body else None
            docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if docstring and isinstance(first.value.value, str):  # type: ignore[union-attr]
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalized_source(source: str) -> str:
    """`source` as its syntax tree without docstrings: comments, formatting and line numbers drop out.

    Raises:
        SyntaxError: `source` is not a complete Python text.
    """
    return ast.dump(_strip_docstrings(ast.parse(textwrap.dedent(source))))


def _code_fingerprint(code: types.CodeType) -> str:
    """A code object without its line numbers (for code whose source is not a whole statement)."""
    consts = [_code_fingerprint(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{code.co_names}|{code.co_varnames}|{consts}"


@cache
def _function_text(fn: types.FunctionType) -> str:
    try:
        return normalized_source(inspect.getsource(fn))
    except (OSError, SyntaxError):  # a lambda inside a longer statement, or no source file
        return f"{sys.version_info[:2]} {_code_fingerprint(fn.__code__)}"


def _referenced_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _referenced_names(const)
    return names


def _is_constant(value: object) -> bool:
    return isinstance(value, int | float | str | tuple) and not isinstance(value, bool)


@cache
def _module_constants(module_name: str) -> str:
    """The module's top-level statements other than imports, functions and classes (its tables and
    constants), normalized."""
    module = sys.modules.get(module_name)
    try:
        tree = ast.parse(inspect.getsource(module)) if module is not None else None
    except (OSError, TypeError):
        return ""
    if tree is None:
        return ""
    skipped = ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    kept = [node for node in _strip_docstrings(tree).body if not isinstance(node, skipped)]
    return ast.dump(ast.Module(body=kept, type_ignores=[]))


def _source_closure(fn: types.FunctionType, seen: dict[str, str]) -> None:
    """Add `fn`'s normalized code, and that of every feature-package function and module it reaches."""
    text = _function_text(fn)
    key = f"{fn.__module__}.{fn.__qualname__}"
    if fn.__name__ == "<lambda>":  # lambdas of one function share a name: tell them apart by code
        key += f"#{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if key in seen:
        return
    seen[key] = text
    module_key = f"{fn.__module__}:<module>"
    if fn.__module__.startswith(_PACKAGE) and module_key not in seen:
        seen[module_key] = _module_constants(fn.__module__)
    reached: list[tuple[str, object]] = [
        (n, fn.__globals__.get(n)) for n in sorted(_referenced_names(fn.__code__))
    ]
    for i, cell in enumerate(fn.__closure__ or ()):
        try:
            reached.append((f"<cell {i}>", cell.cell_contents))
        except ValueError:  # an empty cell
            continue
    names = _referenced_names(fn.__code__)
    for name, value in reached:
        if isinstance(value, types.ModuleType) and value.__name__.startswith(_PACKAGE):
            # `module.helper(...)`: follow the package module's attributes this code names.
            for attribute in sorted(names):
                target = _python_function(getattr(value, attribute, None))
                if target is not None and target.__module__.startswith(_PACKAGE):
                    _source_closure(target, seen)
            continue
        if isinstance(value, partial):
            seen[f"{key}.{name}"] = _partial_text(value)
            value = _unwrap(value)
        target = _python_function(value)
        if target is not None and target.__module__.startswith(_PACKAGE):
            _source_closure(target, seen)
        elif _is_constant(value):
            seen[f"{key}.{name}"] = repr(value)


def _python_function(value: object) -> types.FunctionType | None:
    """The Python function behind `value`: itself, or the source of a compiled (numba) kernel."""
    if isinstance(value, types.FunctionType):
        return value
    compiled = getattr(value, "py_func", None)
    return compiled if isinstance(compiled, types.FunctionType) else None


def _unwrap(compute: Callable[..., Any]) -> Callable[..., Any]:
    while isinstance(compute, partial):
        compute = compute.func
    return compute


def _partial_text(compute: partial[Any]) -> str:
    text = ""
    while isinstance(compute, partial):
        text = f"args={compute.args!r} keywords={sorted(compute.keywords.items())!r}\n" + text
        compute = compute.func
    return text


def definition_source(compute: Callable[..., Any]) -> str:
    """The normalized text that defines a compute function: the arguments a ``partial`` binds, then
    the syntax trees of the function and of the helpers and module constants it reaches."""
    bound = _partial_text(compute) if isinstance(compute, partial) else ""
    fn = _unwrap(compute)
    seen: dict[str, str] = {}
    if isinstance(fn, types.FunctionType):
        _source_closure(fn, seen)
    else:
        seen[repr(fn)] = repr(fn)
    return bound + "\n".join(f"# {key}\n{seen[key]}" for key in sorted(seen))


def _talib_version() -> str:
    # __ta_version__ reads like b"0.6.4 (Jan  1 2025 00:00:00)": keep the version, not the build date.
    raw = talib.__ta_version__
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return text.split(" ", 1)[0]


# Modules hashed whole: the data model every feature reads, and the input windows of the sequence
# models (a model trained on one window rule must not be served another).
HASHED_MODULES: tuple[types.ModuleType, ...] = (candles, sequences)


def schema_hash(
    features: Sequence[Feature] = FEATURES, *, modules: Sequence[types.ModuleType] = HASHED_MODULES
) -> str:
    """sha256 hex fingerprint of `features` in order and of the code of `modules` (see the module
    docstring)."""
    digest = hashlib.sha256()
    digest.update(f"library={FEATURE_LIBRARY_VERSION}\ntalib={_talib_version()}\n".encode())
    for module in modules:
        digest.update(normalized_source(inspect.getsource(module)).encode())
    for f in features:
        header = f"\n{f.name}|{f.group}|{f.lookback}|{f.settle}|{f.scope}\n"
        digest.update(header.encode())
        digest.update(definition_source(f.compute).encode())
    return digest.hexdigest()


@cache
def feature_schema() -> FeatureSchema:
    """Names (registry order), hash and warm-up of :data:`FEATURES`."""
    return FeatureSchema(
        _names=tuple(f.name for f in FEATURES),
        hash=schema_hash(FEATURES),
        warmup_bars=max(f.warmup_bars for f in FEATURES),
    )


def feature_catalog() -> pd.DataFrame:
    """One row per feature, in order: ``name, group, description, lookback_bars`` (the catalog view)."""
    return pd.DataFrame(
        {
            "name": [f.name for f in FEATURES],
            "group": [f.group for f in FEATURES],
            "description": [f.description for f in FEATURES],
            "lookback_bars": np.array([f.lookback for f in FEATURES], dtype=np.int32),
        }
    )


def check_schema(expected: str | Sequence[str] | FeatureSchema) -> FeatureSchema:
    """Refuse to feed a model built on another feature schema; return the current schema if it matches.

    Args:
        expected: what the model was trained on: its schema hash, its ordered feature names, or a
            :class:`FeatureSchema`.

    Raises:
        SchemaMismatchError: the hash differs, or the names differ; the message names the missing,
            extra or reordered features.
    """
    current = feature_schema()
    if isinstance(expected, FeatureSchema):
        check_schema(expected.names)
        expected = expected.hash
    if isinstance(expected, str):
        if expected != current.hash:
            raise SchemaMismatchError(
                f"feature schema hash mismatch: the model expects {expected}, this library computes "
                f"{current.hash}; feature definitions changed since the model was built: retrain it"
            )
        return current
    wanted, have = list(expected), current.names
    if wanted == have:
        return current
    missing = [n for n in wanted if n not in have]
    extra = [n for n in have if n not in wanted]
    parts = [f"the model expects {len(wanted)} features, this library computes {len(have)}"]
    if missing:
        parts.append(f"missing from the library: {missing}")
    if extra:
        parts.append(f"not expected by the model: {extra}")
    if not missing and not extra and len(wanted) != len(have):
        repeated = sorted({n for n in wanted if wanted.count(n) > 1})
        parts.append(f"the model's list repeats {repeated}")
    elif not missing and not extra:
        position = next(i for i, (a, b) in enumerate(zip(wanted, have, strict=True)) if a != b)
        parts.append(
            f"same features in another order: position {position} is {wanted[position]!r} for the model "
            f"and {have[position]!r} here"
        )
    raise SchemaMismatchError("; ".join(parts))
