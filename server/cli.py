"""`imgcdn serve | settings`: parse arguments, load settings, start uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from server.settings import Settings, SettingsError, settings_table

log = logging.getLogger("imgcdn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgcdn", description="image transform server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serve.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ["IMGCDN_CONFIG"]) if os.environ.get("IMGCDN_CONFIG") else None,
        help="a file of IMGCDN_*=value lines (default: $IMGCDN_CONFIG)",
    )
    commands.add_parser("settings", help="print every setting as a Markdown table")
    args = parser.parse_args(argv)

    if args.command == "settings":
        print(settings_table())
        return 0
    try:
        settings = Settings.load(os.environ, args.config)
    except SettingsError as exc:
        print(f"imgcdn: {exc}", file=sys.stderr)
        return 2
    return serve_forever(settings, args.host, args.port, args.workers, args.config)


def serve_forever(
    settings: Settings, host: str, port: int, workers: int, config: Path | None
) -> int:
    import uvicorn

    from server.app import configure_logging
    from server.runtime import admin_token_file

    configure_logging(settings.log_level)
    if not settings.admin_tokens:
        # Made here, once, before workers start: they only ever read it.
        admin_token_file(settings.data_dir)
    log.warning(
        "unsigned URLs are accepted: anyone can request any variant of any asset "
        "(URL signing is not in this release yet)"
    )
    if config is not None:
        os.environ["IMGCDN_CONFIG"] = str(config.resolve())
    log.info("imgcdn on http://%s:%d, data in %s", host, port, settings.data_dir.resolve())
    uvicorn.run(
        "server.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the app logs one JSON line per request itself
        log_level=settings.log_level,
        # Longer than a render may take, so a stop finishes the renders in flight.
        timeout_graceful_shutdown=int(settings.render_timeout_s) + 5,
    )
    return 0
