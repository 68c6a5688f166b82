"""Real stand-ins for external services (HTTP servers on 127.0.0.1) that tests talk to."""

from __future__ import annotations

from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest

__all__ = ["FakeOpenAIServer", "RecordedRequest"]
