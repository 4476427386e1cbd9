"""Column storage shared by the banks: one numpy array per state field, one row per series.

Rows are allocated by the owning bank; :class:`Columns` only knows each
field's shape, dtype and initial value, grows every field together (by
doubling) and resets rows to their initial value when they are reused.

>>> import numpy as np
>>> c = Columns({"n": ((), np.int64, 0), "buf": ((3,), np.float32, np.inf)}, capacity=2)
>>> c.grow(3)  # doubles: 4 rows
>>> c.capacity, c["buf"].shape
(4, (4, 3))
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


class Columns:
    """Struct of arrays: ``self[name]`` is the ``(capacity, *shape)`` array of a field."""

    def __init__(self, spec: dict[str, Field], capacity: int = 0) -> None:
        self.spec = dict(spec)
        self.capacity = 0
        self._a: dict[str, np.ndarray] = {
            k: np.full((0, *shape), init, dtype) for k, (shape, dtype, init) in self.spec.items()
        }
        self.grow(capacity)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._a[name]

    def grow(self, need: int) -> None:
        """Make room for at least ``need`` rows (capacity doubles; new rows initialised)."""
        if need <= self.capacity:
            return
        cap = max(need, 2 * self.capacity, 1)
        for k, (shape, dtype, init) in self.spec.items():
            new = np.full((cap, *shape), init, dtype)
            new[: self.capacity] = self._a[k]
            self._a[k] = new
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
