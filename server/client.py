"""The admin API from the command line (`imgcdn templates apply`, `imgcdn upload`,
`imgcdn keys ...`).

Plain blocking HTTP with the standard library: a CLI run is one request at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif", ".heic", ".heif"}
IMAGE_SUFFIXES |= {".bmp", ".tif", ".tiff"}  # the server reads these too (docs/delivery.md)


class ClientError(Exception):
    """A failed admin call, with the server's error message when it sent one.

    `stop` says why no later call can succeed either (the token is refused, the server
    cannot be reached), so a run of many calls ends at the first instead of repeating it."""

    def __init__(self, message: str, stop: str | None = None) -> None:
        super().__init__(message)
        self.stop = stop


@dataclass(frozen=True, slots=True)
class AdminClient:
    base_url: str
    token: str
    timeout_s: float = 60.0

    def call(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310  # base_url is the operator's own server
            self.base_url.rstrip("/") + path, data=body, method=method
        )
        request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                return 404, None
            stop = "the token was refused (check --token or IMGCDN_TOKEN)"
            raise ClientError(
                f"{method} {path}: {exc.code} {_message(exc)}",
                stop if exc.code in (401, 403) else None,
            ) from None
        except urllib.error.URLError as exc:
            raise ClientError(
                f"cannot reach {self.base_url}: {exc.reason}", "the server cannot be reached"
            ) from None

    def get_template(self, name: str) -> Any:
        status, body = self.call("GET", f"/v1/templates/{quote(name)}")
        return body if status == 200 else None

    def put_template(self, name: str, body: Any) -> Any:
        payload = json.dumps(body).encode()
        return self.call("PUT", f"/v1/templates/{quote(name)}", payload, "application/json")[1]

    def put_asset(self, asset_id: str, data: bytes) -> Any:
        path = f"/v1/assets/{quote(asset_id, safe='/')}"
        return self.call("PUT", path, data, "application/octet-stream")[1]


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(exc.reason)


def apply_templates(client: AdminClient, path: Path) -> int:
    """PUT every template in the file whose content differs from the server's: running it
    twice changes nothing, so template versions (and variant keys) only move on real edits."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"{path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ClientError(f"{path}: not valid YAML: {problem}{where}") from None
    else:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ClientError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ClientError(f"{path}: expected an object of template name -> template")
    for name, body in document.items():
        current = client.get_template(name)
        if current is not None and _same(current, body):
            print(f"{name}: unchanged (version {current['version']})")
            continue
        result = client.put_template(name, body)
        print(
            f"{name}: {'created' if current is None else 'updated'} (version {result['version']})"
        )
    return 0


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    fields = {"params": {}, "allow": [], "public": False, "cache_control": None}
    return all(current.get(k, d) == (wanted.get(k, d) or d) for k, d in fields.items())


def upload(client: AdminClient, paths: list[Path], prefix: str) -> int:
    files: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.suffix.lower() in IMAGE_SUFFIXES:
                    files.append((found, found.relative_to(path).as_posix()))
        elif path.is_file():
            files.append((path, path.name))
        else:
            print(f"imgcdn: {path}: no such file or folder", file=sys.stderr)
            return 2
    failed = 0
    for number, (path, relative) in enumerate(files, 1):
        _progress(number, len(files), relative)
        try:
            client.put_asset(prefix + relative, path.read_bytes())
        except (ClientError, OSError) as exc:  # report each failure, keep uploading...
            failed += 1
            print(f"\nimgcdn: {relative}: {exc}", file=sys.stderr)
            if isinstance(exc, ClientError) and exc.stop:  # ...unless every file would fail
                uploaded = number - failed
                print(
                    f"imgcdn: stopped: {exc.stop}; {uploaded} of {len(files)} uploaded",
                    file=sys.stderr,
                )
                return 1
    print(f"\n{len(files) - failed} uploaded, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def _progress(done: int, total: int, name: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{total} {name[-40:]:<40}")
    sys.stderr.flush()


def keys_command(client: AdminClient, args: argparse.Namespace) -> int:
    """`imgcdn keys create|list|disable|delete`."""
    if args.action == "create":
        body: dict[str, Any] = {"name": args.name}
        for name in ("rate_per_s", "burst", "daily_quota", "scopes", "prefix"):
            if getattr(args, name) is not None:
                body[name] = getattr(args, name)
        if args.expires_at is not None:
            raw = args.expires_at
            body["expires_at"] = int(raw) if raw.isascii() and raw.isdigit() else raw
        key = client.call("POST", "/v1/keys", json.dumps(body).encode(), "application/json")[1]
        print(
            f"created key {key['id']} ({key['name']}): keep it now, it is not shown again",
            file=sys.stderr,
        )
        print(key["key"])  # alone on stdout: KEY=$(imgcdn keys create ...)
        return 0
    if args.action == "list":
        _list_keys(client)
        return 0
    path = f"/v1/keys/{quote(args.id, safe='')}"
    if args.action == "disable":
        payload = json.dumps({"state": "disabled"}).encode()
        client.call("PATCH", path, payload, "application/json")
        print(f"{args.id}: disabled")
        return 0
    client.call("DELETE", path)
    print(f"{args.id}: deleted")
    return 0


def _list_keys(client: AdminClient) -> None:
    columns = ("id", "state", "rate_per_s", "burst", "daily_quota", "expires_at", "prefix", "name")
    print("\t".join(columns))
    cursor = ""
    while True:
        page = client.call("GET", f"/v1/keys?limit=1000&cursor={quote(cursor)}")[1]
        for key in page["items"]:
            print("\t".join("-" if key[c] in (None, "") else str(key[c]) for c in columns))
        if not page["next_cursor"]:
            return
        cursor = page["next_cursor"]
