"""CLI: ``perovflow config`` shows the effective settings and where they come from."""

from __future__ import annotations

import re

import typer

from perovflow.cli._common import JsonOpt, emit


def _mask(uri: str | None) -> str | None:
    """Hide credentials in a MongoDB URI (user:password@ -> ***@)."""
    return None if uri is None else re.sub(r"//[^@/]+@", "//***@", uri)


def register(app: typer.Typer) -> None:
    """Register ``config`` on ``app``."""

    @app.command("config")
    def config(as_json: JsonOpt = False) -> None:
        """Show the effective settings (YAML file, PEROVFLOW_* variables, defaults)."""
        from perovflow.settings import config_file, get_settings

        s = get_settings()
        data = s.model_dump(mode="json")
        data["store"]["uri"] = _mask(s.store.uri)
        data["config_file"] = str(config_file())
        emit(data, as_json)
