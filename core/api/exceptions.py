"""One exception handler: every API error leaves in the catalogue's shape, never with a traceback."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, IntegrityError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from core.errors import ErrorCode, SwitchboardError, error_body

logger = logging.getLogger("switchboard.api")

_DRF_CODES: list[tuple[type[exceptions.APIException], ErrorCode]] = [
    (exceptions.NotAuthenticated, ErrorCode.AUTHENTICATION_REQUIRED),
    (exceptions.AuthenticationFailed, ErrorCode.AUTHENTICATION_FAILED),
    (exceptions.PermissionDenied, ErrorCode.PERMISSION_DENIED),
    (exceptions.NotFound, ErrorCode.NOT_FOUND),
    (exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.NotAcceptable, ErrorCode.NOT_ACCEPTABLE),
    (exceptions.Throttled, ErrorCode.RATE_LIMITED),
    (exceptions.ValidationError, ErrorCode.VALIDATION_ERROR),
    (exceptions.ParseError, ErrorCode.VALIDATION_ERROR),
]

_MESSAGES = {
    ErrorCode.VALIDATION_ERROR: "The request is not valid.",
    ErrorCode.INTERNAL_ERROR: "An unexpected error occurred.",
    ErrorCode.DATABASE_ERROR: "The database is unavailable; try again.",
}

# Django's own messages name settings; the client is told what to change instead.
_SUSPICIOUS_MESSAGES: dict[type[Exception], str] = {
    TooManyFieldsSent: "The request has too many fields.",
    TooManyFilesSent: "The request has too many files.",
}


def error_response(error: SwitchboardError, headers: dict[str, str] | None = None) -> Response:
    return Response(error.as_dict(), status=error.status, headers=headers)


def _validation_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return detail
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Map any exception to ``{"error": {"code", "message", "details"}}`` with the catalogue's status."""
    view = context.get("view")
    if isinstance(exc, SwitchboardError):
        return error_response(exc)
    if isinstance(exc, Http404):
        code = getattr(view, "not_found_code", ErrorCode.NOT_FOUND)
        return Response(error_body(code, "Not found."), status=404)
    if isinstance(exc, RequestDataTooBig):
        # The catalogue's one 413. Files of a multipart body are not counted, only its other fields.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body(
                ErrorCode.MESSAGE_TOO_LONG,
                f"The request body is larger than the {limit}-byte limit.",
                {"limit": limit},
            ),
            status=413,
        )
    if isinstance(exc, SuspiciousOperation):  # too many form fields or files, a malformed upload
        logger.warning("suspicious request to %s: %s", view.__class__.__name__ if view else "?", exc)
        message = _SUSPICIOUS_MESSAGES.get(type(exc), _MESSAGES[ErrorCode.VALIDATION_ERROR])
        return Response(error_body(ErrorCode.VALIDATION_ERROR, message), status=400)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), None)
        if code is None:
            code = ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.VALIDATION_ERROR
        headers: dict[str, str] = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            request = context.get("request")
            authenticator = getattr(request, "successful_authenticator", None) or (
                view.get_authenticators()[0] if view is not None and view.get_authenticators() else None
            )
            if authenticator is not None and authenticator.authenticate_header(request):
                headers["WWW-Authenticate"] = authenticator.authenticate_header(request)
        if code == ErrorCode.VALIDATION_ERROR and isinstance(exc, exceptions.ValidationError):
            body = error_body(code, _MESSAGES[code], _validation_details(exc.detail))
        else:
            body = error_body(code, str(exc.detail) if not isinstance(exc.detail, (list, dict)) else str(exc))
        status = code.status if code not in (ErrorCode.INTERNAL_ERROR,) else exc.status_code
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            status = 401
        return Response(body, status=status, headers=headers)
    if isinstance(
        exc, IntegrityError
    ):  # a uniqueness race the service did not foresee: the request conflicts
        logger.warning("integrity error in %s: %s", view.__class__.__name__ if view else "?", exc)
        return Response(
            error_body(ErrorCode.CONFLICT, "The request conflicts with existing data."), status=409
        )
    if isinstance(exc, DataError):
        # A value the database cannot take (a NUL character, a number out of range) that validation let
        # through: the request is at fault, and the same request would fail again; not an outage.
        logger.warning("data error in %s: %s", view.__class__.__name__ if view else "?", exc)
        return Response(
            error_body(ErrorCode.VALIDATION_ERROR, "A value in the request cannot be stored."), status=400
        )
    if isinstance(exc, DatabaseError):
        logger.exception("database error in %s", view.__class__.__name__ if view else "?")
        return Response(error_body(ErrorCode.DATABASE_ERROR, _MESSAGES[ErrorCode.DATABASE_ERROR]), status=503)
    logger.exception("unexpected error in %s", view.__class__.__name__ if view else "?", exc_info=exc)
    return Response(error_body(ErrorCode.INTERNAL_ERROR, _MESSAGES[ErrorCode.INTERNAL_ERROR]), status=500)
