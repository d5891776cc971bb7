"""Content-type detection for uploaded attachments.

Order of trust: magic bytes, then the file extension, then the type declared
by the client (browsers are unreliable, e.g. ``.csv`` arrives as
``application/vnd.ms-excel`` and ``.ts`` as ``video/mp2t``).
"""

from __future__ import annotations

import posixpath

from .base import UnsupportedFileType, registry

PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
WEBP = "image/webp"
PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
CSV = "text/csv"
TSV = "text/tab-separated-values"
JSON = "application/json"

IMAGE_CONTENT_TYPES = frozenset({PNG, JPEG, GIF, WEBP})

#: Types that can only be established by their signature; a ``.png`` whose
#: bytes are not a PNG is refused rather than handed to the image decoder.
SIGNATURE_ONLY_TYPES = IMAGE_CONTENT_TYPES | {PDF}

#: language -> (canonical content type, extensions).  Drives both detection and
#: the ``language`` reported by the code analyser.
CODE_LANGUAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "python": ("text/x-python", (".py", ".pyi", ".pyw")),
    "javascript": ("text/javascript", (".js", ".mjs", ".cjs", ".jsx")),
    "typescript": ("text/x-typescript", (".ts", ".tsx", ".mts", ".cts")),
    "go": ("text/x-go", (".go",)),
    "rust": ("text/x-rust", (".rs",)),
    "java": ("text/x-java", (".java",)),
    "kotlin": ("text/x-kotlin", (".kt", ".kts")),
    "scala": ("text/x-scala", (".scala",)),
    "c": ("text/x-c", (".c", ".h")),
    "cpp": ("text/x-c++", (".cpp", ".cc", ".cxx", ".hpp", ".hh", ".hxx")),
    "csharp": ("text/x-csharp", (".cs",)),
    "swift": ("text/x-swift", (".swift",)),
    "ruby": ("text/x-ruby", (".rb",)),
    "php": ("text/x-php", (".php",)),
    "perl": ("text/x-perl", (".pl", ".pm")),
    "lua": ("text/x-lua", (".lua",)),
    "shell": ("text/x-shellscript", (".sh", ".bash", ".zsh")),
    "sql": ("application/sql", (".sql",)),
    "html": ("text/html", (".html", ".htm")),
    "css": ("text/css", (".css", ".scss")),
    "xml": ("application/xml", (".xml",)),
    "yaml": ("application/yaml", (".yaml", ".yml")),
    "toml": ("application/toml", (".toml",)),
    "ini": ("text/x-ini", (".ini", ".cfg")),
    "dockerfile": ("text/x-dockerfile", ()),
    "makefile": ("text/x-makefile", (".mk",)),
}

CODE_CONTENT_TYPES = frozenset(content_type for content_type, _ in CODE_LANGUAGES.values())

#: Lower-cased extension -> canonical content type.
EXTENSION_TYPES: dict[str, str] = {
    ".txt": TEXT,
    ".text": TEXT,
    ".log": TEXT,
    ".rst": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".mdown": MARKDOWN,
    ".csv": CSV,
    ".tsv": TSV,
    ".json": JSON,
    ".pdf": PDF,
    ".png": PNG,
    ".jpg": JPEG,
    ".jpeg": JPEG,
    ".gif": GIF,
    ".webp": WEBP,
}
for _content_type, _extensions in CODE_LANGUAGES.values():
    for _extension in _extensions:
        EXTENSION_TYPES[_extension] = _content_type

#: Extension-less file names that are still recognisable.
FILENAME_TYPES: dict[str, str] = {
    "dockerfile": "text/x-dockerfile",
    "makefile": "text/x-makefile",
    "gnumakefile": "text/x-makefile",
    "readme": TEXT,
    "license": TEXT,
}

#: Non-canonical spellings clients send -> canonical content type.
CONTENT_TYPE_ALIASES: dict[str, str] = {
    "text/x-markdown": MARKDOWN,
    "application/csv": CSV,
    "text/x-csv": CSV,
    "text/comma-separated-values": CSV,
    "text/json": JSON,
    "application/x-json": JSON,
    "application/x-pdf": PDF,
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
    "application/x-python": "text/x-python",
    "application/x-python-code": "text/x-python",
    "text/x-script.python": "text/x-python",
    "application/javascript": "text/javascript",
    "application/x-javascript": "text/javascript",
    "application/typescript": "text/x-typescript",
    "application/x-typescript": "text/x-typescript",
    "text/x-csrc": "text/x-c",
    "text/x-chdr": "text/x-c",
    "text/x-c++src": "text/x-c++",
    "text/x-c++hdr": "text/x-c++",
    "application/x-sh": "text/x-shellscript",
    "application/x-shellscript": "text/x-shellscript",
    "text/x-sh": "text/x-shellscript",
    "text/x-sql": "application/sql",
    "text/xml": "application/xml",
    "application/x-yaml": "application/yaml",
    "text/yaml": "application/yaml",
    "text/x-yaml": "application/yaml",
    "text/x-toml": "application/toml",
    "application/x-ruby": "text/x-ruby",
}

# Signatures of formats we recognise only in order to refuse them with a precise
# type: otherwise e.g. a zip renamed to .txt would be reported as "not UTF-8".
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"\x7fELF", "application/x-elf"),
    (b"\x1f\x8b", "application/gzip"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"\xca\xfe\xba\xbe", "application/java-vm"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
)


def sniff_signature(data: bytes) -> str | None:
    """Return the content type implied by ``data``'s magic bytes, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    # Some producers emit whitespace before the header; readers accept it, so do we.
    if data[:1024].lstrip().startswith(b"%PDF-"):
        return PDF
    for signature, content_type in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return content_type
    return None


def normalize_content_type(declared: str | None) -> str:
    """Lower-case, drop parameters (``; charset=...``) and resolve aliases."""
    if not declared:
        return ""
    base = declared.split(";", 1)[0].strip().lower()
    return CONTENT_TYPE_ALIASES.get(base, base)


def content_type_for_filename(filename: str | None) -> str | None:
    """Canonical content type implied by ``filename`` (extension or well-known name)."""
    if not filename:
        return None
    # Uploads may carry Windows paths; only the final component matters.
    name = posixpath.basename(filename.replace("\\", "/")).lower()
    _, extension = posixpath.splitext(name)
    if extension in EXTENSION_TYPES:
        return EXTENSION_TYPES[extension]
    return FILENAME_TYPES.get(name)


def language_for(filename: str | None, content_type: str | None = None) -> str | None:
    """Programming language for ``filename``, falling back to ``content_type``."""
    candidates = (content_type_for_filename(filename), normalize_content_type(content_type))
    for candidate in candidates:
        if candidate == JSON:
            return "json"
        for language, (language_type, _) in CODE_LANGUAGES.items():
            if candidate == language_type:
                return language
    return None


def detect_content_type(data: bytes, filename: str | None, declared: str | None) -> str:
    """Return the canonical content type to analyse ``data`` as.

    Raises :class:`UnsupportedFileType` for unknown or disallowed types, and for
    files claiming to be an image/PDF without carrying the matching signature.
    """
    signature_type = sniff_signature(data)
    if signature_type is not None:
        if not registry.supports(signature_type):
            raise UnsupportedFileType(signature_type)
        return signature_type

    for candidate in (content_type_for_filename(filename), normalize_content_type(declared)):
        if not candidate or not registry.supports(candidate):
            continue
        if candidate in SIGNATURE_ONLY_TYPES:
            # Signature checked above and absent: the name/declared type is lying.
            raise UnsupportedFileType(candidate, "file content does not match its type")
        return candidate

    raise UnsupportedFileType(normalize_content_type(declared) or "application/octet-stream")
