"""Column storage shared by the banks: one numpy array per state field, one row per series.

Rows are allocated by the owning bank; :class:`Columns` only knows each
field's shape, dtype and initial value, grows every field together (by a
quarter, :func:`grown`) and resets rows to their initial value when they are
reused.

>>> import numpy as np
>>> c = Columns({"n": ((), np.int64, 0), "buf": ((3,), np.float32, np.inf)}, capacity=2)
>>> c.grow(3)  # by a quarter, at least GROW_MIN rows
>>> c.capacity, c["buf"].shape, bool(np.isinf(c["buf"]).all())
(18, (18, 3), True)
>>> c["n"][1] = 4
>>> c.reset(np.array([1]))
>>> int(c["n"][1]), c.row_bytes()
(0, 20)
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import numpy as np

#: (shape of one row, dtype, initial value) of a field
Field = tuple[tuple[int, ...], Any, Any]

#: a full bank grows by this share of its rows (at least :data:`GROW_MIN` rows): the rows
#: allocated but not used are at most a quarter of those used (doubling: up to as many again)
GROWTH = 0.25
GROW_MIN = 16


def grown(capacity: int, need: int) -> int:
    """The capacity a bank of ``capacity`` rows grows to when it needs ``need`` rows.

    >>> grown(1024, 1025), grown(0, 1), grown(100, 1000)
    (1280, 16, 1000)
    """
    if need <= capacity:
        return capacity
    return max(need, capacity + max(GROW_MIN, int(capacity * GROWTH)))


class Columns:
    """Struct of arrays: ``self[name]`` is the ``(capacity, *shape)`` array of a field."""

    def __init__(self, spec: dict[str, Field], capacity: int = 0) -> None:
        self.spec = dict(spec)
        self.capacity = 0
        self._a: dict[str, np.ndarray] = {
            k: np.full((0, *shape), init, dtype) for k, (shape, dtype, init) in self.spec.items()
        }
        self._resize(capacity)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._a[name]

    def grow(self, need: int) -> None:
        """Make room for at least ``need`` rows (capacity :func:`grown`; new rows initialised)."""
        if need > self.capacity:
            self._resize(grown(self.capacity, need))

    def _resize(self, cap: int) -> None:
        old = self.capacity
        for k, (shape, dtype, init) in self.spec.items():
            try:
                # in place (realloc: a large array is moved by the kernel, not copied, so the old
                # and the new arrays are not both resident); refused while a view of it exists
                self._a[k].resize((cap, *shape), refcheck=True)
            except ValueError:
                new = np.full((cap, *shape), init, dtype)
                new[:old] = self._a[k]
                self._a[k] = new
            else:
                self._a[k][old:] = init
        self.capacity = cap

    def reset(self, rows: np.ndarray) -> None:
        """Put ``rows`` back to every field's initial value."""
        for k, (_, _, init) in self.spec.items():
            self._a[k][rows] = init

    def set_rows(self, rows: np.ndarray, states: list[dict[str, Any]]) -> None:
        """Set ``rows[i]`` to ``states[i]`` (every field's value), one assignment per field."""
        for k, (shape, dtype, _) in self.spec.items():
            self._a[k][rows] = np.array([s[k] for s in states], dtype).reshape(len(rows), *shape)

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """A copy of ``rows`` in every field (for :meth:`put`)."""
        return {k: a[rows] for k, a in self._a.items()}

    def put(self, rows: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """Set ``rows`` to what :meth:`take` returned (the same fields, shapes and dtypes)."""
        for k, (shape, dtype, _) in self.spec.items():
            v = state[k]
            if v.dtype != dtype or v.shape != (len(rows), *shape):
                raise ValueError(f"field {k}: {v.dtype}{v.shape} is not {np.dtype(dtype)}{(len(rows), *shape)}")
        for k in self.spec:
            self._a[k][rows] = state[k]

    def row_bytes(self) -> int:
        """Bytes one row takes in every field."""
        return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                   for shape, dtype, _ in self.spec.values())

    def nbytes(self) -> int:
        """Bytes held by every field's array (all rows, used or free)."""
        return sum(a.nbytes for a in self._a.values())


#: a parameter an object does not have (e.g. restored from a checkpoint older than it)
MISSING = "<missing>"


@lru_cache(maxsize=64)
def _init_names(cls: type) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")


def params(obj: Any) -> tuple:
    """``(name, value)`` of each ``__init__`` parameter, as River's ``_get_params`` (cached names).

    >>> from detectors.drift import ErrorDrift
    >>> params(ErrorDrift(cap=4.0))[:3]
    (('threshold', 20.0), ('slack', 2.0), ('cap', 4.0))
    """
    return tuple((n, getattr(obj, n, MISSING)) for n in _init_names(type(obj)))


def py_max(a: Any, b: Any) -> Any:
    """Python's ``max(a, b)`` elementwise: ``b`` where ``b > a``, else ``a`` (NaN as Python)."""
    return np.where(b > a, b, a)


def py_min(a: Any, b: Any) -> Any:
    """Python's ``min(a, b)`` elementwise: ``b`` where ``b < a``, else ``a`` (NaN as Python)."""
    return np.where(b < a, b, a)
