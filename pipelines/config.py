"""Loading the YAML config file into :class:`healthscore.config.Config`."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from healthscore.config import Config, EngineConfig
from healthscore.errors import HealthscoreError


def load_config(path: Path | None) -> Config:
    """Read ``path`` (YAML), or return the defaults when it is None.

    Raises:
        HealthscoreError: The file is missing, not YAML, or has unknown or invalid keys.
    """
    if path is None:
        return Config()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise HealthscoreError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise HealthscoreError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise HealthscoreError(f"{path}: the config must be a mapping of keys to values")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise HealthscoreError(f"{path}: invalid config: {problems}") from None


AUTO_CAP_MB = 2560


def memory_size(text: str) -> str:
    """A DuckDB memory size such as ``2GB`` or ``512MB``, checked by the config's rule
    (it goes into SQL); ``auto`` is half of the physical memory, at most 2.5 GB (on 100,000
    accounts that kept a whole first run under 4 GB, about 10% slower than 12 GB:
    docs/benchmarks.md).

    >>> memory_size(" 2 gb ")
    '2GB'
    """
    try:
        size = EngineConfig(memory_limit=text).memory_limit.strip().upper().replace(" ", "")
    except ValidationError:
        raise HealthscoreError(f"memory limit {text!r}: use a size such as 2GB or 512MB, "
                               "or auto") from None
    if size == "AUTO":
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        size = f"{max(min(physical // 2 // 2**20, AUTO_CAP_MB), 512)}MB"
    return size
