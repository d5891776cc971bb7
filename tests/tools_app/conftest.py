"""The runtime fixtures (a real OpenAI-compatible server and ``use_llm``) for the tools' tests too."""

from tests.sessions_app.conftest import llm, use_llm  # noqa: F401
