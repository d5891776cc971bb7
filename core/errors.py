"""The error catalogue (DESIGN.md, principle 4): one code, one HTTP status, one JSON shape everywhere.

``{"error": {"code": "SESSION_NOT_FOUND", "message": "...", "details": {...}}}`` over REST, websocket and SSE.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # session
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_ALREADY_EXISTS = "SESSION_ALREADY_EXISTS"
    INVALID_STATE = "INVALID_STATE"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    SESSION_BUSY = "SESSION_BUSY"
    # message
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    MESSAGE_TOO_LONG = "MESSAGE_TOO_LONG"
    # runs
    RUN_NOT_FOUND = "RUN_NOT_FOUND"
    # tool
    TOOL_NOT_FOUND = "TOOL_NOT_FOUND"
    TOOL_CALL_NOT_FOUND = "TOOL_CALL_NOT_FOUND"
    TOOL_EXECUTION_FAILED = "TOOL_EXECUTION_FAILED"
    TOOL_TIMEOUT = "TOOL_TIMEOUT"
    INVALID_TOOL_ARGS = "INVALID_TOOL_ARGS"
    TOOL_DENIED = "TOOL_DENIED"
    EXEC_SESSIONS_DISABLED = "EXEC_SESSIONS_DISABLED"
    SANDBOX_UNAVAILABLE = "SANDBOX_UNAVAILABLE"
    EXEC_SESSION_NOT_FOUND = "EXEC_SESSION_NOT_FOUND"
    # approval
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    APPROVAL_TIMEOUT = "APPROVAL_TIMEOUT"
    APPROVAL_REJECTED = "APPROVAL_REJECTED"
    # llm
    LLM_ERROR = "LLM_ERROR"
    LLM_TIMEOUT = "LLM_TIMEOUT"
    RATE_LIMITED = "RATE_LIMITED"
    TOKEN_LIMIT = "TOKEN_LIMIT"
    # system
    INTERNAL_ERROR = "INTERNAL_ERROR"
    DATABASE_ERROR = "DATABASE_ERROR"
    CACHE_ERROR = "CACHE_ERROR"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    # rest of the API
    AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ORGANIZATION_NOT_FOUND = "ORGANIZATION_NOT_FOUND"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    TAG_NOT_FOUND = "TAG_NOT_FOUND"
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    BOOKMARK_NOT_FOUND = "BOOKMARK_NOT_FOUND"
    API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
    MEMBER_NOT_FOUND = "MEMBER_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    CONFLICT = "CONFLICT"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"

    @property
    def status(self) -> int:
        return STATUS[self]


STATUS: dict[ErrorCode, int] = {
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.SESSION_ALREADY_EXISTS: 409,
    ErrorCode.INVALID_STATE: 400,
    ErrorCode.SESSION_EXPIRED: 410,
    ErrorCode.SESSION_BUSY: 409,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.MESSAGE_TOO_LONG: 413,
    ErrorCode.RUN_NOT_FOUND: 404,
    ErrorCode.TOOL_NOT_FOUND: 404,
    ErrorCode.TOOL_CALL_NOT_FOUND: 404,
    ErrorCode.TOOL_EXECUTION_FAILED: 500,
    ErrorCode.TOOL_TIMEOUT: 504,
    ErrorCode.INVALID_TOOL_ARGS: 400,
    ErrorCode.TOOL_DENIED: 403,
    ErrorCode.EXEC_SESSIONS_DISABLED: 403,
    ErrorCode.SANDBOX_UNAVAILABLE: 503,
    ErrorCode.EXEC_SESSION_NOT_FOUND: 404,
    ErrorCode.APPROVAL_REQUIRED: 202,
    ErrorCode.APPROVAL_TIMEOUT: 408,
    ErrorCode.APPROVAL_REJECTED: 403,
    ErrorCode.LLM_ERROR: 502,
    ErrorCode.LLM_TIMEOUT: 504,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOKEN_LIMIT: 400,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.DATABASE_ERROR: 503,
    ErrorCode.CACHE_ERROR: 503,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.AUTHENTICATION_REQUIRED: 401,
    ErrorCode.AUTHENTICATION_FAILED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ORGANIZATION_NOT_FOUND: 404,
    ErrorCode.AGENT_NOT_FOUND: 404,
    ErrorCode.TAG_NOT_FOUND: 404,
    ErrorCode.TEMPLATE_NOT_FOUND: 404,
    ErrorCode.BOOKMARK_NOT_FOUND: 404,
    ErrorCode.API_KEY_NOT_FOUND: 404,
    ErrorCode.MEMBER_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.NOT_ACCEPTABLE: 406,
    ErrorCode.CONFLICT: 409,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.IDEMPOTENCY_KEY_IN_USE: 409,
}


class SwitchboardError(Exception):
    """A catalogued error raised by services, views, consumers and tasks alike."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details or {}

    @property
    def status(self) -> int:
        return self.code.status

    def as_dict(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)

    def __repr__(self) -> str:
        return f"SwitchboardError({self.code.value}, {self.message!r})"


def error_body(code: ErrorCode | str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": ErrorCode(code).value, "message": message, "details": details or {}}}


def not_found(code: ErrorCode, what: str = "object") -> SwitchboardError:
    """The one not-found error: a foreign object and a missing one look the same."""
    return SwitchboardError(code, f"{what} not found.")
