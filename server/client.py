"""The admin API from the command line (`imgcdn templates apply`, `imgcdn upload`).

Plain blocking HTTP with the standard library: a CLI run is one request at a time.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


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
