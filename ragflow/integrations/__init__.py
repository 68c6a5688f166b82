"""Retrievers for the frameworks apps are built with, over an in-process ``DocumentStore``: LangChain
(``ragflow.integrations.langchain``), LlamaIndex (``ragflow.integrations.llamaindex``) and Haystack
(``ragflow.integrations.haystack``). Each module imports its framework, and only when it is imported
itself; install them with the extras ``langchain``, ``llamaindex`` and ``haystack``. See docs/embedding.md.
"""
