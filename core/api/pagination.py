"""Cursor pagination: stable pages over lists that grow while a client reads them."""

from rest_framework.pagination import CursorPagination


class DefaultCursorPagination(CursorPagination):
    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 200


class SeqCursorPagination(CursorPagination):
    """Oldest first by per-session ``seq``, for messages."""

    ordering = "seq"
    page_size_query_param = "page_size"
    max_page_size = 500
