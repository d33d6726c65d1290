"""JSON for prompts and answers: :func:`jsonable`, the ``default=`` hook of ``json.dumps`` that turns
NumPy arrays and scalars into plain lists and numbers.

Public so that prompts (the exact JSON block), backends (the simulated model's answers) and env
adapters all write the same JSON for the same state.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """``x`` as plain JSON data: ``np.ndarray`` → list, NumPy scalar → Python number; anything else
    raises ``TypeError`` (what ``json.dumps`` expects of its ``default=`` hook).

    >>> import json; json.dumps({"obs": np.zeros(2, dtype=np.float32)}, default=jsonable)
    '{"obs": [0.0, 0.0]}'
    """
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
