"""Where aigw keeps its state: everything under AIGW_HOME when set, else platformdirs locations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "aigw"


@dataclass(frozen=True, slots=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if environ is None else environ
        home = env.get("AIGW_HOME")
        if home:
            root = Path(home).expanduser()
            return cls(config_dir=root, data_dir=root, cache_dir=root / "cache", log_dir=root / "logs")
        import platformdirs

        return cls(
            config_dir=platformdirs.user_config_path(APP_NAME),
            data_dir=platformdirs.user_data_path(APP_NAME),
            cache_dir=platformdirs.user_cache_path(APP_NAME),
            log_dir=platformdirs.user_log_path(APP_NAME),
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def database(self) -> Path:
        return self.data_dir / "aigw.db"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "aigw.pid"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "aigw.lock"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "aigw.log"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin_token"

    @property
    def chat_history_file(self) -> Path:
        return self.data_dir / "chat_history"

    def ensure(self) -> None:
        for d in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
