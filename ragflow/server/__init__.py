"""The REST API: Pathway-compatible retrieval and answering endpoints over a ``DocumentStore``, plus health,
metrics, uploads, OpenAPI and an OpenAI-compatible chat endpoint.

Example:
    >>> from ragflow.connectors.folder import FolderSource  # doctest: +SKIP
    >>> from ragflow.connectors.upload import UploadSource  # doctest: +SKIP
    >>> uploads = UploadSource()  # doctest: +SKIP
    >>> store = DocumentStore([FolderSource("docs"), uploads])  # doctest: +SKIP
    >>> serve(create_app(store, uploads=uploads), port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

from .app import create_app, serve
from .state import Uploads

__all__ = ["Uploads", "create_app", "serve"]
