"""Open a weights-only pickle whose custom objects cannot be imported, without running any code.

A checkpoint such as ``{"model_state_dict": sd, "vocab": <the user's Vocab>}`` needs the global
``vocab_mod.Vocab``, which torch's weights-only unpickler refuses. Here each such class is replaced by
an *inert stand-in*: a class made by lstmviz that has no behaviour and never imports, looks up or
calls anything of the original. The weights-only unpickler then still decides everything else.

What a stand-in allows, exactly (the pickle opcodes that can reach it):

- GLOBAL ``mod.Name`` pushes the stand-in class instead of importing ``mod`` (nothing is imported);
- NEWOBJ with empty arguments (how protocol 2 rebuilds a plain object) makes an empty stand-in;
- BUILD hands it the pickled state, which the stand-in only stores (``__slots__``, no ``__dict__``,
  so no state can shadow a method); a second BUILD is refused.

Anything else refuses the whole file: calling the class (REDUCE, ``copyreg`` reconstructors, a
``__reduce__`` that returns the class with arguments, ``torch._tensor._rebuild_from_type_v2``),
NEWOBJ with arguments (``__getnewargs__``), and every global of the standard library (``os``,
``builtins``, ``subprocess``, ``functools``, ...), of torch (``torch._C``, ``torch.nn``), NumPy and
other libraries that execute code, or of a private top-level module (``_posixsubprocess``). Those
never become stand-ins (nor do the Python 2 names pickle writes for them, such as ``commands`` for
``subprocess``): the file stays refused with the list of globals it needs.
"""

from __future__ import annotations

import _compat_pickle
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Top-level packages whose globals are never plain data of the user's own: they execute code,
# or (torch.nn modules) need their real classes. Beside these, the whole standard library.
_DENIED_PACKAGES = frozenset({
    "torch", "torchvision", "torchaudio", "torchtext", "numpy", "pandas", "scipy", "sklearn", "joblib",
    "dill", "cloudpickle", "tensorflow", "keras", "jax", "IPython", "pip", "setuptools", "pkg_resources",
    "_pytest", "pytest", "lstmviz_cli", "typer", "click", "rich", "jinja2", "matplotlib", "safetensors",
    "yaml", "requests", "urllib3",
})
# Python 2 names of standard modules, which pickle still writes at protocols < 3 (subprocess is
# saved as "commands", builtins as "__builtin__"): the standard library under its old names.
_PY2_STDLIB = frozenset(
    {name.split(".")[0] for name in _compat_pickle.IMPORT_MAPPING}
    | {module.split(".")[0] for module, _ in _compat_pickle.NAME_MAPPING}
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_WALK = 10_000  # objects visited when listing stand-ins (a vocabulary's strings are not walked)


class StandInRefused(Exception):
    """The pickle uses a stand-in in a way that would run the original class's code."""


class _StandInType(type):
    """Metaclass of every stand-in: calling a stand-in class (what REDUCE does) is refused."""

    lstmviz_global: str

    def __call__(cls, *args: object, **kwargs: object) -> object:
        raise StandInRefused(f"it calls {cls.lstmviz_global}(...) to build an object")


class StandIn(metaclass=_StandInType):
    """An object of a class lstmviz did not import: the class's name and the state the file gave it."""

    __slots__ = ("state", "_built")
    lstmviz_global = ""
    state: object  # what the pickle's BUILD gave it
    _built: bool

    def __new__(cls, *args: object) -> StandIn:
        if args:  # NEWOBJ with arguments: the class builds itself from them (__getnewargs__)
            raise StandInRefused(f"it builds {cls.lstmviz_global} from constructor arguments")
        obj = object.__new__(cls)
        obj.state = None
        obj._built = False
        return obj

    def __setstate__(self, state: object) -> None:
        if self._built:
            raise StandInRefused(f"it sets the state of a {type(self).lstmviz_global} twice")
        self.state = state
        self._built = True

    def __repr__(self) -> str:
        return f"<{type(self).lstmviz_global} opened as plain data>"


def refusal(name: str) -> str | None:
    """Why the global `name` ("module.qualname") may not become a stand-in; None when it may."""
    parts = name.split(".")
    if len(parts) < 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        return "not a plain class name"
    top = parts[0]
    if top == "__main__":
        return None  # a class of the script that saved the file (torch.save from train.py)
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top in _PY2_STDLIB:
        return "a standard-library global"
    if top.startswith("_"):
        return "a private module's global"
    if top in _DENIED_PACKAGES:
        return f"a global of the {top} library"
    return None


def standins_for(names: Iterable[str]) -> dict[str, type] | None:
    """One inert stand-in class per global, or None when any of them may not be one."""
    classes: dict[str, type] = {}
    for name in names:
        if refusal(name) is not None:
            return None
        short = name.rsplit(".", 1)[1]
        classes[name] = _StandInType(short, (StandIn,), {"__slots__": (), "lstmviz_global": name})
    return classes


@dataclass(frozen=True)
class SkippedObject:
    """An object of the checkpoint that was opened as a stand-in: where it sits and its class."""

    path: str  # e.g. "vocab" or "extras/tokenizer"
    cls: str  # the global the file names, e.g. "vocab_mod.Vocab"



def find_standins(obj: object) -> list[SkippedObject]:
    """Every outermost stand-in inside `obj` (dicts, lists, tuples), with its path, in order."""
    found: list[SkippedObject] = []
    for path, value in _walk(obj, ""):
        if isinstance(value, StandIn):
            found.append(SkippedObject(path or "(the whole file)", type(value).lstmviz_global))
    return found


def _walk(obj: object, path: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of containers and stand-ins, depth first; does not descend into stand-ins."""
    stack = [(path, obj)]
    seen = 0
    while stack and seen < _MAX_WALK:
        where, value = stack.pop()
        seen += 1
        yield where, value
        if isinstance(value, Mapping):
            items = [(f"{where}/{key}" if where else str(key), item) for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            items = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
        else:
            continue
        stack.extend(item for item in reversed(items) if isinstance(item[1], (Mapping, list, tuple, StandIn)))


def plain_state(obj: StandIn, *, depth: int = 3) -> dict[str, Any] | None:
    """A stand-in's state as plain data (str/int/float/bool/None in lists and dicts), else None.

    The state of a plain object is its ``__dict__`` (or ``(__dict__, slots)``); entries that are not
    plain data (tensors, other objects) are left out, nested stand-ins are read the same way.
    """
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], Mapping)):
        merged: dict[Any, Any] = dict(state[0] or {})
        if isinstance(state[1], Mapping):
            merged.update(state[1])
        state = merged
    if not isinstance(state, Mapping):
        return None
    plain: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, StandIn):
            if depth > 0 and (inner := plain_state(value, depth=depth - 1)) is not None:
                plain[key] = inner
        elif is_plain(value):
            plain[key] = value
    return plain


def is_plain(value: object, _depth: int = 0) -> bool:
    """JSON-like data: str, int, float, bool, None in lists, tuples and str/int-keyed dicts.

    Nested at most 32 deep (a pickle can nest lists far deeper than Python can recurse).
    """
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if _depth >= 32:
        return False
    if isinstance(value, (list, tuple)):
        return all(is_plain(v, _depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, (str, int)) and is_plain(v, _depth + 1) for k, v in value.items())
    return False
