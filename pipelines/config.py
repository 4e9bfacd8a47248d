"""Loading the YAML config file into :class:`healthscore.config.Config`."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from healthscore.config import Config
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
