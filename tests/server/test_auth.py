"""The keys a server accepts, from the configuration: each way of giving a secret (``${ENV}``, a key file
relative to the configuration file, a SHA-256, the single legacy key) yields a key that ``KeyRing.find``
recognises by the secret, and a key file that cannot serve is refused naming the file, never the secret."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from ragflow.config import load_config
from ragflow.errors import ConfigError
from ragflow.server.auth import LEGACY_KEY_NAME, KeyRing, Role

SECRETS = {
    "support-bot": "from-the-environment-0123",
    "ingest": "from-a-key-file-0123456789",
    "ops": "only-its-sha256-0123456789",
    LEGACY_KEY_NAME: "the-legacy-single-key-0123",
}
CONFIG = """
server:
  api_key: ${RAGFLOW_API_KEY}
  api_keys:
    - name: support-bot
      key: ${SUPPORT_BOT_KEY}
      scope: {filepath_globpattern: "**/support/**"}
    - name: ingest
      key_file: secrets/ingest
      role: write
    - name: ops
      key_sha256: %s
      role: admin
"""


def keyring(folder: Path, key_file_text: str | None = SECRETS["ingest"]) -> KeyRing:
    (folder / "secrets").mkdir(exist_ok=True)
    if key_file_text is not None:
        (folder / "secrets" / "ingest").write_text(key_file_text)
    config = folder / "app.yaml"
    config.write_text(textwrap.dedent(CONFIG % hashlib.sha256(SECRETS["ops"].encode()).hexdigest()))
    environ = {"RAGFLOW_API_KEY": SECRETS[LEGACY_KEY_NAME], "SUPPORT_BOT_KEY": SECRETS["support-bot"]}
    return KeyRing.from_config(load_config(config, environ=environ).server)


def test_every_way_of_giving_a_secret_yields_a_key_found_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)  # the key file is found from the configuration's folder, not here
    keys = keyring(tmp_path, key_file_text=f"\n  {SECRETS['ingest']}  \n")
    found = {name: keys.find(secret.encode()) for name, secret in SECRETS.items()}
    assert {name: key.name for name, key in found.items() if key is not None} == {n: n for n in SECRETS}
    assert [(key.name, key.role) for key in keys.keys] == [
        (LEGACY_KEY_NAME, Role.ADMIN),
        ("support-bot", Role.READ),
        ("ingest", Role.WRITE),
        ("ops", Role.ADMIN),
    ]
    support = found["support-bot"]
    assert support is not None and support.scope is not None
    assert support.scope.allows({"path": "/docs/support/faq.md"})
    assert keys.find(b"not-a-key-0123456789") is None
    assert all(secret not in repr(keys.keys) for secret in SECRETS.values())


@pytest.mark.parametrize(("text", "message"), [(None, "cannot read key_file"), ("short", "at least 16")])
def test_a_key_file_that_cannot_serve_is_refused_naming_it(
    tmp_path: Path, text: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        keyring(tmp_path, key_file_text=text)
    assert str(tmp_path / "secrets" / "ingest") in str(caught.value) and "'ingest'" in str(caught.value)
    if text is not None:
        assert text not in str(caught.value).replace("'ingest'", "")


def test_two_keys_with_one_secret_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two API keys have the same secret"):
        keyring(tmp_path, key_file_text=SECRETS["support-bot"])
