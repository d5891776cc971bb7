"""Writes of the history app, one module per concern.

``bookmarks`` (private marks), ``attachments`` (files on user messages), ``checkpoints`` (checkpoints
and forks), ``exports`` and ``imports`` (the lossless JSONL format and friends). The bookmark functions
are re-exported here, where they lived before the package was split.
"""

from history_app.services.bookmarks import bookmark_create, bookmark_delete, bookmark_update

__all__ = ["bookmark_create", "bookmark_delete", "bookmark_update"]
