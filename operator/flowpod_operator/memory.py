"""Memory quantities as Kubernetes writes them (``256Mi``, ``1G``, ``2147483648``): read into
bytes, raised by a factor up to a cap, and written back in the largest binary unit that is
exact. Pure; used to give the attempt after an OOMKill more memory."""

from __future__ import annotations

import math
import re

__all__ = ["format_memory", "parse_memory", "raised_limit"]

_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?\s*$")


def parse_memory(quantity: str | int | float) -> int:
    """Bytes of a memory quantity; ValueError for anything else."""
    if isinstance(quantity, int | float):
        return int(quantity)
    match = _QUANTITY.match(str(quantity))
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r} (e.g. 256Mi, 1Gi, 500M)")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def format_memory(size: int) -> str:
    """``size`` bytes in the largest binary unit that divides it (``512Mi``), else rounded up
    to whole Mi."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{math.ceil(size / _UNITS['Mi'])}Mi"


def raised_limit(current: str | int | float, factor: float, cap: str | int | float) -> str | None:
    """``current`` times ``factor``, at most ``cap``; None when it cannot grow any more."""
    now, most = parse_memory(current), parse_memory(cap)
    if now >= most:
        return None
    return format_memory(min(math.ceil(now * factor), most))
