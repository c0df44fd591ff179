"""One source of defaults: a config dataclass is also its command line and its notebook's parameters.

Every run config (``SFTRunConfig``, ``GRPORunConfig``, ``ZeroShotConfig``, ``DataConfig``, ``WorldConfig``) is a
dataclass with a docstring under each field. Its defaults are flat literals (``0`` = "no limit", ``""`` = "none"),
so the same values can sit in a notebook's ``parameters`` cell, and:

* :func:`cli_parser` turns the dataclass into ``transformers.HfArgumentParser`` (every field a flag, ``--max_steps``
  and ``--max-steps`` alike, bools as ``--bf16`` / ``--no-resume``, lists as ``--lora-target-modules q_proj v_proj``)
  with each field's docstring as its help; :func:`parse_cli` also reads a run's saved ``config.json``;
* :func:`from_parameters` builds the config from a notebook's globals (the names that are fields; a comma string
  for a list field), so a notebook never copies defaults by hand (``tests/test_config.py`` checks that every
  parameters cell agrees with its dataclass).

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Demo:
...     steps: int = 10
...     names: list[str] = field(default_factory=lambda: ["a"])
>>> from_parameters(Demo, {"steps": 3, "names": "x, y", "unrelated": 1})
Demo(steps=3, names=['x', 'y'])
>>> from sgglib.data.synthetic import WorldConfig
>>> field_docs(WorldConfig)["p_nested"]
'Probability that a frame holds a small content object (predicate ``inside``).'
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}``: the string literal right under each annotated field of a dataclass (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # defined in a doctest or the REPL: no source to read
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _is_list(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(tp) if a is not type(None))
    return origin is list or tp is list


def from_parameters(cls: type[T], params: Mapping[str, Any], **overrides: Any) -> T:
    """Build ``cls`` from a notebook's parameters (e.g. ``globals()``): every name that is a field of ``cls``;
    other names are ignored. A comma-separated string fills a list field (``"open,closed"`` → ``["open",
    "closed"]``). ``overrides`` win (for values built in the notebook, e.g. a nested config)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif f.name in params:
            value = params[f.name]
            if isinstance(value, str) and _is_list(hints[f.name]):
                value = [s.strip() for s in value.split(",") if s.strip()]
            kwargs[f.name] = value
    return cls(**kwargs)


def cli_parser(cls: type, description: str | None = None):
    """``HfArgumentParser`` for one config dataclass, each field's docstring as its ``--help`` line."""
    from transformers import HfArgumentParser

    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        # Field.metadata is the dataclasses extension point HfArgumentParser reads its help text from
        if "help" not in f.metadata and f.name in docs:
            f.metadata = types.MappingProxyType({**f.metadata, "help": docs[f.name]})
    return HfArgumentParser(cls, description=description)


def parse_cli(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None) -> T:
    """The config from a command line: flags, or one path to a ``config.json`` (a run directory's own record,
    so ``python -m sgglib.train.sft reports/sft-ref/config.json`` reruns it) optionally followed by flags that
    override it."""
    parser = cli_parser(cls, description)
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0].endswith(".json") and not args[0].startswith("-"):
        saved = json.loads(Path(args[0]).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        defaults = {k: v for k, v in saved.items() if k in names}
        parser.set_defaults(**defaults)
        args = args[1:]
    (config,) = parser.parse_args_into_dataclasses(args=args)
    return config

