"""The error tree: every failure a client can see, with its status and public code, once.

Modules raise these; `app.py` turns any of them into the JSON body of SPEC §4. Messages
are public: they name the problem, never a secret, a path on disk or a stack trace.
"""

from __future__ import annotations


class ImgcdnError(Exception):
    status = 500
    code = "internal"
    report = True  # 5xx are logged with their cause; client mistakes are not
    retry_after: int | None = None

    def __init__(self, message: str = "internal error", param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = {}  # HTTP headers the status calls for


class BadRequest(ImgcdnError):
    status, code, report = 400, "bad_request", False


class InvalidParam(BadRequest):
    code = "invalid_param"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, param=param)


class InvalidId(BadRequest):
    code = "invalid_id"


class Unauthorized(ImgcdnError):
    status, code, report = 401, "unauthorized", False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["WWW-Authenticate"] = 'Bearer realm="imgcdn"'


class NotFound(ImgcdnError):
    status, code, report = 404, "not_found", False


class AssetNotFound(NotFound):
    code = "asset_not_found"

    def __init__(self, asset_id: str) -> None:
        super().__init__(f"no asset {asset_id!r}")


class MethodNotAllowed(ImgcdnError):
    status, code, report = 405, "method_not_allowed", False

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.headers["Allow"] = allow


class TooLarge(ImgcdnError):
    status, code, report = 413, "source_too_large", False


class UnsupportedFormat(ImgcdnError):
    status, code, report = 415, "unsupported_format", False


class UnsupportedMediaType(ImgcdnError):
    """The request body is not of a kind the endpoint takes (JSON vs image bytes): about the
    Content-Type, where unsupported_format is about the image itself."""

    status, code, report = 415, "unsupported_media_type", False


class Undecodable(ImgcdnError):
    status, code, report = 422, "undecodable", False


class MaxBytesUnreachable(ImgcdnError):
    status, code, report = 422, "maxbytes_unreachable", False

    def __init__(self, message: str) -> None:
        super().__init__(message, param="maxbytes")


class QueueFull(ImgcdnError):
    status, code, report = 429, "queue_full", False
    retry_after = 1


class StorageUnavailable(ImgcdnError):
    status, code = 503, "storage_unavailable"
    retry_after = 5


class RenderTimeout(ImgcdnError):
    status, code = 504, "render_timeout"


class InvalidUrl(BadRequest):
    code = "invalid_url"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="url")


class SourceForbidden(ImgcdnError):
    status, code, report = 403, "source_forbidden", False

    def __init__(self, message: str) -> None:
        super().__init__(message, param="url")


class SourceFetchFailed(ImgcdnError):
    """The remote source could not be fetched: it is the client's URL, so a 4xx, not a 503."""

    status, code, report = 422, "source_fetch_failed", False

    def __init__(self, message: str) -> None:
        super().__init__(message, param="url")


class SourceTimeout(ImgcdnError):
    """The remote source did not finish within IMGCDN_SOURCE_TIMEOUT_S: a slow upstream.

    A 504 like any gateway's, so clients may retry; not reported: the source is the client's
    choice, and a traceback per slow URL would let anyone fill the error log.
    """

    status, code, report = 504, "source_timeout", False

    def __init__(self, message: str) -> None:
        super().__init__(message, param="url")


class InvalidSignature(ImgcdnError):
    status, code, report = 403, "invalid_signature", False


class UrlExpired(ImgcdnError):
    status, code, report = 403, "url_expired", False


class SignatureRequired(ImgcdnError):
    status, code, report = 403, "signature_required", False


class InvalidTemplate(ImgcdnError):
    status, code, report = 422, "invalid_template", False

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message, param=field_name)


class TemplateNotFound(NotFound):
    code = "template_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no template {name!r}", param="template")


class ParamNotAllowed(ImgcdnError):
    status, code, report = 403, "param_not_allowed", False

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message, param=name)


class InvalidOp(BadRequest):
    """A `process` step that is malformed: param names it, e.g. `ops[2].params.width`."""

    code = "invalid_op"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, param=param)


class NotAvailable(ImgcdnError):
    """A feature whose engine is not in this install (SPEC §4: 501, saying what is missing)."""

    status, code, report = 501, "not_available", False


class TargetUnreachable(ImgcdnError):
    status, code, report = 422, "target_unreachable", False


class SourceUnavailable(ImgcdnError):
    """A remote source that failed in a way a retry can fix (refused, reset, 5xx)."""

    status, code, report = 503, "source_unavailable", False
    retry_after = 5

    def __init__(self, message: str) -> None:
        super().__init__(message, param="url")


class TransformationExists(ImgcdnError):
    """POST /v1/image/transformation/create of a name in use: creating never replaces a
    template live URLs render with (the admin API's PUT does that, on purpose)."""

    status, code, report = 409, "transformation_exists", False

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a transformation (template) named {name!r} exists: pick another name, or "
            f"change it with PUT /v1/templates/{name}",
            param="name",
        )


class ResultNotFound(NotFound):
    """A result id with nothing stored: never made, or swept after it expired."""

    code = "result_not_found"

    def __init__(self) -> None:
        super().__init__("no such result: it expired and was swept, or never existed")


class KeyNotFound(NotFound):
    code = "key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key {key_id!r}", param="id")


class KeyDisabled(ImgcdnError):
    status, code, report = 403, "key_disabled", False


class KeyExpired(ImgcdnError):
    status, code, report = 403, "key_expired", False


class ScopeDenied(ImgcdnError):
    status, code, report = 403, "scope_denied", False


class RateLimited(ImgcdnError):
    """Over the key's per-second rate (after its burst): retry after the given seconds."""

    status, code, report = 429, "rate_limited", False

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(ImgcdnError):
    """The key's requests for this UTC day are spent: retry after midnight UTC."""

    status, code, report = 429, "quota_exceeded", False

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StateUnavailable(ImgcdnError):
    """The shared state (limits, quotas, idempotency records) failed: a 503, never a 500,
    since the request itself was fine and a retry can succeed."""

    # Logged as one warning line, not a traceback per request: while Redis restarts every
    # keyed request fails alike, and the cause is the message (app.py).
    status, code, report = 503, "state_unavailable", False
    retry_after = 2


class IdempotencyInProgress(ImgcdnError):
    status, code, report = 409, "idempotency_in_progress", False
    retry_after = 1

    def __init__(self, message: str) -> None:
        super().__init__(message, param="idempotency_key")


class IdempotencyKeyReused(ImgcdnError):
    status, code, report = 422, "idempotency_key_reused", False

    def __init__(self, message: str) -> None:
        super().__init__(message, param="idempotency_key")


class WebhookForbidden(BadRequest):
    """A `webhook_url` the SSRF guard refuses (a loopback, private or metadata address):
    refused at submit, as a source URL would be, but a 400 since it is the request's own
    field that is wrong, not a fetch that was denied."""

    code = "webhook_forbidden"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, param=param)


class TooManyItems(BadRequest):
    """A batch over IMGCDN_BATCH_MAX_ITEMS items."""

    code = "too_many_items"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="items")


class JobNotFound(NotFound):
    """No such job, or another key's (keys see only their own jobs)."""

    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}", param="id")


class OcrUnavailable(ImgcdnError):
    """Tesseract (or its language data) is not installed or failed: a 503 and no text,
    never an empty or invented answer (SPEC §9). Logged: the install is what is wrong."""

    status, code = 503, "ocr_unavailable"
    retry_after = 30


class TaskNotFound(NotFound):
    """Seed 003: no correction task with this id, another key's, or one past its hour."""

    code = "task_not_found"


class UnknownOperation(NotFound):
    """Seed 000: /api/v1/image-processing/{operation} with an operation it does not have."""

    code = "unknown_operation"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="operation")
