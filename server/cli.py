"""`imgcdn serve | sign | templates apply | upload | keys | settings`: parse arguments, act.

The admin commands (templates apply, upload, keys) live with their HTTP client in client.py.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.settings import Settings, SettingsError, settings_table

if TYPE_CHECKING:
    import uvicorn

    from server.client import AdminClient

log = logging.getLogger("imgcdn")
Parser = argparse.ArgumentParser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "settings":
        print(settings_table())
        return 0
    try:
        settings = Settings.load(os.environ, args.config)
    except SettingsError as exc:
        print(f"imgcdn: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve_forever(settings, args.host, args.port, args.workers, args.config)
    if args.command == "sign":
        return sign(settings, args.url, args.expires_in)
    from server.client import ClientError, apply_templates, keys_command, upload

    try:
        if args.command == "templates":
            return apply_templates(_client(settings, args), args.file)
        if args.command == "keys":
            return keys_command(_client(settings, args), args)
        return upload(_client(settings, args), args.paths, args.prefix)
    except ClientError as exc:
        print(f"imgcdn: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcdn", description="image transform server")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ["IMGCDN_CONFIG"]) if os.environ.get("IMGCDN_CONFIG") else None,
        help="a file of IMGCDN_*=value lines (default: $IMGCDN_CONFIG)",
    )
    remote = argparse.ArgumentParser(add_help=False, parents=[config])
    remote.add_argument(
        "--url",
        default=os.environ.get("IMGCDN_URL", "http://127.0.0.1:8080"),
        help="the server (default: $IMGCDN_URL or http://127.0.0.1:8080)",
    )
    remote.add_argument(
        "--token",
        default=os.environ.get("IMGCDN_TOKEN"),
        help="admin token (default: $IMGCDN_TOKEN, the first of IMGCDN_ADMIN_TOKENS, "
        "or <data dir>/admin-token)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server", parents=[config])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    sign_cmd = commands.add_parser(
        "sign",
        help="print a signed delivery URL (with the last IMGCDN_SIGNING_KEYS)",
        parents=[config],
    )
    sign_cmd.add_argument("url", metavar="PATH?QUERY", help="e.g. '/t/_/photo.jpg?w=800'")
    sign_cmd.add_argument("--expires-in", type=int, metavar="S", help="add exp: now + S seconds")
    templates = commands.add_parser("templates", help="manage templates")
    actions = templates.add_subparsers(dest="action", required=True)
    apply = actions.add_parser(
        "apply", help="create or update templates from a JSON/YAML file", parents=[remote]
    )
    apply.add_argument("file", type=Path, help="{name: {params, allow, public, cache_control}}")
    up = commands.add_parser("upload", help="upload image files or folders", parents=[remote])
    up.add_argument("paths", nargs="+", type=Path, metavar="DIR|FILE")
    up.add_argument("--prefix", default="", help="id prefix, e.g. products/")
    _keys_parser(commands, remote)
    commands.add_parser("settings", help="print every setting as a Markdown table")
    return parser


def _keys_parser(commands: argparse._SubParsersAction[Any], remote: Parser) -> None:
    keys = commands.add_parser("keys", help="manage processing-API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="make a key; prints it (shown this once) on stdout", parents=[remote]
    )
    create.add_argument("name", help="who or what the key is for")
    create.add_argument("--rate-per-s", type=float, help="average requests per second")
    create.add_argument("--burst", type=int, help="requests at once above the rate")
    create.add_argument("--daily-quota", type=int, help="requests per UTC day")
    create.add_argument("--expires-at", help="RFC 3339 (2030-01-31T00:00:00Z) or unix seconds")
    create.add_argument(
        "--scope", action="append", dest="scopes", help="allow this scope (repeat; default all)"
    )
    create.add_argument("--prefix", help="confine the key's assets to this folder, e.g. acme/")
    actions.add_parser("list", help="every key, without secrets", parents=[remote])
    for action, what in (("disable", "refuse a key from now on"), ("delete", "remove a key")):
        command = actions.add_parser(action, help=what, parents=[remote])
        command.add_argument("id", help="the key id (the part after ik_)")


def _port(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 5 or not 0 <= int(raw) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in 0..65535, got {raw!r}")
    return int(raw)


def serve_forever(
    settings: Settings, host: str, port: int, workers: int, config: Path | None
) -> int:
    import uvicorn

    from server.app import configure_logging
    from server.runtime import admin_token_file

    try:
        # Before anything is said or made: a taken port is then one line, not a banner, a
        # started app and uvicorn's error after it.
        sock = _listen(host, port)
    except OSError as exc:
        print(f"imgcdn: {_listen_error(host, port, exc)}", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        stack.callback(sock.close)  # whatever fails from here on
        port = sock.getsockname()[1]  # --port 0: the one the system chose
        configure_logging(settings.log_level)
        if not settings.admin_tokens:
            # Made here, once, before workers start: they only ever read it.
            admin_token_file(settings.data_dir)
        if settings.unsigned_policy == "allow":
            log.warning(
                "unsigned URLs are accepted: anyone can request any variant of any asset "
                "(set IMGCDN_SIGNING_KEYS to require signatures)"
            )
        if config is not None:
            os.environ["IMGCDN_CONFIG"] = str(config.resolve())
        shown = f"[{host}]" if ":" in host else host
        log.info("imgcdn on http://%s:%d, data in %s", shown, port, settings.data_dir.resolve())
        if workers > 1:
            # Workers keep their metrics in files here, so /metrics sums them whichever
            # worker answers. New for each run (values of an earlier run must not count)
            # and per server (the data dir may be shared); under $TMPDIR. Workers are
            # spawned, so each imports prometheus_client after this is set.
            folder = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="imgcdn-metrics-", ignore_cleanup_errors=True)
            )
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
            if settings.render_threads == Settings().render_threads:
                # 2 x cores renders at once keeps the cores busy; that many in every worker
                # only adds memory (bench/run.py, 24 MP renders at c=16: 330 MB a worker
                # against 236, for the same throughput).
                share = max(1, -(-settings.render_threads // workers))
                os.environ["IMGCDN_RENDER_THREADS"] = str(share)
        options = uvicorn.Config(
            "server.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,  # the app logs one JSON line per request itself
            log_config=None,  # uvicorn's records reach our JSON lines, not its own format
            log_level=settings.log_level,
            # Longer than a render may take, so a stop finishes the renders in flight.
            timeout_graceful_shutdown=int(settings.render_timeout_s) + 5,
        )
        return _run(options, sock)


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound as uvicorn binds its own (which it then listens on).
    The protocol is named: asyncio's loop turns Nagle off (TCP_NODELAY) only on connections
    whose socket says IPPROTO_TCP, and with Nagle on, a response written in two pieces
    waits for the client's delayed ACK: 40 ms a request (bench: repeated requests at c=1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)  # workers are processes of their own
    return sock


def _listen_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use (stop what holds it, or choose another with --port)"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port} (below 1024 needs privileges; see --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (see --host)"
    if isinstance(exc, socket.gaierror):
        return f"--host {host}: {exc.strerror}"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _run(config: uvicorn.Config, sock: socket.socket) -> int:
    """What uvicorn.run does, on the socket serve bound (uvicorn.run binds its own), with two
    changes to how it stops (tests/test_shutdown.py).

    --workers N: the supervisor closes its own copy of the listening socket once told to
    stop. uvicorn's kept it open until the last worker had drained, so new connections
    were queued by the kernel, left unanswered, then reset, instead of refused at once.

    One worker: uvicorn drains, then raises the SIGTERM it caught again, to end the process
    by it. Exit 0 instead, as the supervisor of --workers N does: the stop went as asked.
    (Before uvicorn takes SIGTERM over, the handler ends start-up at once.)"""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:  # once, when the workers are to stop
            for listening in self.sockets:
                listening.close()
            super().terminate_all()

    with contextlib.suppress(KeyboardInterrupt):
        if config.workers > 1:
            Supervisor(config, sockets=[sock]).run()
            return 0
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        return 0 if server.started else STARTUP_FAILURE
    return 0


def sign(settings: Settings, url: str, expires_in: int | None) -> int:
    from server import urls

    if not settings.signing_keys:
        print("imgcdn: IMGCDN_SIGNING_KEYS is not set: nothing to sign with", file=sys.stderr)
        return 2
    if not url.startswith("/t/"):
        print("imgcdn: give the path and query, e.g. '/t/_/photo.jpg?w=800'", file=sys.stderr)
        return 2
    if expires_in is not None and expires_in <= 0:
        print("imgcdn: --expires-in must be positive", file=sys.stderr)
        return 2
    print(urls.finish(url, settings.signing_keys, expires_in)[0])
    return 0


def _client(settings: Settings, args: argparse.Namespace) -> AdminClient:
    from server.client import AdminClient, ClientError
    from server.runtime import read_admin_token

    token = args.token or (settings.admin_tokens[0] if settings.admin_tokens else None)
    if token is None:
        token = read_admin_token(settings.data_dir)
        if token is None:
            raise ClientError("no admin token: pass --token or set IMGCDN_TOKEN")
    return AdminClient(args.url, token)
