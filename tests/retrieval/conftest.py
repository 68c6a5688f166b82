from __future__ import annotations

import pytest

from ragflow.retrieval import lexical as lexical_module


@pytest.fixture
def tokenised(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the lexical index tokenises from now on, in order."""
    seen: list[str] = []
    real = lexical_module.lexical_tokens

    def counting(text: str) -> list[str]:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(lexical_module, "lexical_tokens", counting)
    return seen
