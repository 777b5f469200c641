"""Turns pydantic validation errors into one line that names every bad field and never echoes a value."""

from __future__ import annotations

from pydantic import ValidationError

# pydantic adds the branch of a union or a validator to an error's location; operators know fields only.
_NOISE_PREFIXES = ("function-", "constrained-", "lax-", "strict-", "json-or-python")
_NOISE = frozenset({"float", "int", "str", "bool", "list", "dict", "tuple", "datetime", "date"})


def field_path(location: tuple[int | str, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for part in location:
        text = str(part)
        if text in _NOISE or text.startswith(_NOISE_PREFIXES):
            continue
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        else:
            parts.append(text)
    return ".".join(parts) or "(document)"


def describe(exc: ValidationError, prefix: str = "") -> str:
    seen: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False):
        seen.setdefault(field_path(error["loc"], prefix), error["msg"])
    return "; ".join(f"{path}: {message}" for path, message in seen.items())
