from __future__ import annotations

from ragflow.retrieval.tokens import lexical_tokens


def test_code_identifiers_are_kept_whole_and_cut_into_parts() -> None:
    assert lexical_tokens("os.path.join") == ["os.path.join", "os", "path", "join"]
    assert lexical_tokens("snake_case") == ["snake_case", "snake", "case"]
    assert lexical_tokens("CamelCase parseHTTPResponse") == [
        "camelcase", "camel", "case", "parsehttpresponse", "parse", "http", "response",
    ]  # fmt: skip


def test_prose_is_lower_cased_without_stop_words() -> None:
    assert lexical_tokens("How do I make a Backup of THE database?") == ["make", "backup", "database"]


def test_punctuation_and_empty_text_give_no_terms() -> None:
    assert lexical_tokens("") == []
    assert lexical_tokens("... --- !!! ?") == []
