"""Stable hashes: of files (sha256) and of JSON-able inputs (cache keys, config hashes)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal inputs give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def options_fingerprint(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options with every value that names a file replaced by (path, sha256), for cache keys: a rewritten file
    changes the key even though its path does not."""
    fingerprint: dict[str, Any] = {}
    for key, value in options.items():
        path = Path(str(value)).expanduser()
        fingerprint[key] = [str(path.resolve()), sha256_file(path)] if isinstance(value, str) and path.is_file() else value
    return fingerprint
