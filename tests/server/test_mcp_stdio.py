"""``ragflow mcp``: the real command launched by the SDK's own stdio client, as a desktop client launches
it, over a folder and an OpenAI-compatible embedding API served by this test (no model to load): the
tools are listed and each answers, a bad argument is a tool error, and stdout carries nothing but the
protocol (the client would fail on a stray line)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
sources:
  - kind: folder
    root: docs
embedder:  # an OpenAI-compatible API served by this test
  kind: openai
  model: fake-embed
  base_url: {base_url}
  api_key: ${{FAKE_OPENAI_KEY}}
  dim: 16
persistence:
  state_dir: state
"""


def payload(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content.get("result", result.structured_content)


def test_ragflow_mcp_serves_the_tools_over_stdio(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lantern.md").write_text("The harbor lantern is lit at dusk by the keeper.")
    (docs / "falcon.md").write_text("The falcon nests on the canyon summit.")
    with FakeOpenAIServer(dim=16) as embeddings:
        config = tmp_path / "app.yaml"
        config.write_text(CONFIG.format(base_url=embeddings.base_url))
        parameters = StdioServerParameters(
            command=sys.executable,
            args=["-m", "ragflow.cli", "mcp", "--config", str(config)],
            env={**os.environ, "PYTHONPATH": str(REPO), "FAKE_OPENAI_KEY": embeddings.api_key},
            cwd=str(tmp_path),
        )

        async def session() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            async with Client(parameters, read_timeout_seconds=60) as client:
                seen["tools"] = {tool.name for tool in (await client.list_tools()).tools}
                deadline = time.monotonic() + 60
                while True:  # the command answers at once; the folder is indexed in the background
                    listed = payload(await client.call_tool("list_documents", {}))
                    if len(listed) == 2 and all(d["status"] == "indexed" for d in listed):
                        break
                    assert time.monotonic() < deadline, listed
                    await asyncio.sleep(0.2)
                seen["documents"] = listed
                seen["retrieve"] = payload(
                    await client.call_tool(
                        "retrieve", {"query": "The harbor lantern is lit at dusk by the keeper.", "k": 1}
                    )
                )
                seen["answer"] = payload(await client.call_tool("answer", {"question": "Who lights it?"}))
                seen["status"] = payload(await client.call_tool("document_status", {"doc_id": "falcon.md"}))
                seen["bad"] = await client.call_tool("retrieve", {"query": "lantern", "k": 0})
            return seen

        seen = asyncio.run(session())
    assert seen["tools"] == {"retrieve", "answer", "list_documents", "document_status"}
    assert {d["doc_id"] for d in seen["documents"]} == {"lantern.md", "falcon.md"}
    (hit,) = seen["retrieve"]
    assert hit["path"].endswith("lantern.md") and hit["start"] == 0 and hit["dist"] is not None
    assert seen["answer"]["extractive"] and seen["answer"]["citations"]
    assert seen["status"]["status"] == "indexed" and seen["status"]["chunks"] == 1
    bad = seen["bad"]
    assert bad.is_error and "k" in "".join(p.text for p in bad.content if isinstance(p, TextContent))
