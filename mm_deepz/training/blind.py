"""Blind data: specimens held out of training, named in a manifest; ``train`` never overlaps it.

A blind test means something only if no image of a blind specimen was trained on, nor validated
on. Pairs belong to specimens: by default each pair (a field of a pairs dataset, a stack pair) is its
own; ``--specimen-pattern REGEX`` groups them (its first group names the specimen, so the time
points ``worm3_t00``, ``worm3_t01`` ... of one worm are one specimen and are held out together).
``mm-deepz pairs split`` picks whole specimens and writes the manifest (each held-out pair's name,
specimen and the SHA-256 of its input pixels, so a renamed copy is still recognised); ``train
--blind MANIFEST`` leaves the manifest's pairs out of the data it was made from and refuses any other
overlap (a renamed copy, recognised by its pixels; a blind name on changed pixels); ``evaluate --blind
MANIFEST`` scores exactly the manifest's pairs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeepZError
from .stacks import PairedStack

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "mm-deepz-blind-manifest"
MANIFEST_VERSION = 1


class BlindManifestError(DeepZError):
    """A blind manifest that cannot be used: missing, not a manifest, or overlapping the training data."""


def specimen_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``--specimen-pattern`` (one group: the specimen's name), refused by name if unusable."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise BlindManifestError(
            f"--specimen-pattern {pattern!r} is not a regular expression ({e})."
        ) from None
    if compiled.groups < 1:
        raise BlindManifestError(
            f"--specimen-pattern {pattern!r} has no group: put the specimen's part of a pair's name in "
            "parentheses, e.g. '(.*)_t\\d+'."
        )
    return compiled


def specimen_of(name: str, pattern: re.Pattern[str] | None) -> str:
    """The specimen a pair belongs to (its own name where the pattern does not match)."""
    if pattern is not None and (m := pattern.fullmatch(name)) is not None:
        return m.group(1)
    return name


def by_specimen(pairs: list[PairedStack], pattern: re.Pattern[str] | None) -> dict[str, list[PairedStack]]:
    """The pairs grouped by specimen, in order of first appearance."""
    groups: dict[str, list[PairedStack]] = {}
    for p in pairs:
        groups.setdefault(specimen_of(p.name, pattern), []).append(p)
    return groups


def pixels_digest(pair: PairedStack) -> str:
    """SHA-256 of a pair's input pixels (as read, before registration)."""
    data = np.ascontiguousarray(pair.inputs.data)
    return hashlib.sha256(str(data.dtype).encode() + str(data.shape).encode() + data.tobytes()).hexdigest()


def make_manifest(
    pairs: list[PairedStack], fraction: float, seed: int = 0, pattern: re.Pattern[str] | None = None
) -> dict[str, Any]:
    """Hold out ``fraction`` of the specimens (at least one, never all), chosen with ``seed``."""
    groups = by_specimen(pairs, pattern)
    if len(groups) < 2:
        raise BlindManifestError(
            f"Only {len(groups)} specimen among {len(pairs)} pair(s): a blind split needs two or more "
            "(acquire more fields, or check --specimen-pattern)."
        )
    if not (math.isfinite(fraction) and 0 < fraction < 1):
        raise BlindManifestError(f"--blind-fraction must be between 0 and 1, got {fraction}.")
    names = list(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    n = min(len(names) - 1, max(1, round(fraction * len(names))))
    held = sorted(names[i] for i in order[:n])
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "fraction": fraction,
        "specimen_pattern": pattern.pattern if pattern is not None else None,
        "specimens": held,
        "pairs": [
            {"name": p.name, "specimen": s, "sha256": pixels_digest(p)} for s in held for p in groups[s]
        ],
    }


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest written by :func:`make_manifest`, checked."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise BlindManifestError(f"{path} cannot be read as a blind manifest ({e}).") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise BlindManifestError(f"{path} is not a blind manifest (made by `mm-deepz pairs split`).")
    if not isinstance(doc.get("version"), int) or doc["version"] > MANIFEST_VERSION:
        raise BlindManifestError(f"{path} is a manifest of version {doc.get('version')}: upgrade mm-deepz.")
    entries = doc.get("pairs")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("sha256"), str)
        for e in entries
    ):
        raise BlindManifestError(
            f"{path}: its pairs are not a list of names and checksums; the file is damaged."
        )
    return doc


def without_blind(pairs: list[PairedStack], manifest: dict[str, Any], where: str) -> list[PairedStack]:
    """``pairs`` less the manifest's own pairs (same name, same pixels: the dataset the split was made
    from); a renamed copy of a blind pair, or a blind name on other pixels, is refused
    (:class:`BlindManifestError`): either would train on a blind specimen or test on a changed one."""
    by_name = {e["name"]: e["sha256"] for e in manifest["pairs"]}
    digests = {e["sha256"]: e["name"] for e in manifest["pairs"]}
    kept, left_out = [], []
    for p in pairs:
        digest = pixels_digest(p)
        if by_name.get(p.name) == digest:
            left_out.append(p.name)
        elif p.name in by_name:
            raise BlindManifestError(
                f"{p.name} in the {where} is named as a blind pair but its pixels changed since the split: "
                "split the data again (`mm-deepz pairs split`)."
            )
        elif (blind := digests.get(digest)) is not None:
            raise BlindManifestError(
                f"{p.name} in the {where} has the same pixels as the blind pair {blind}: a renamed copy of a "
                "blind specimen; leave it out."
            )
        else:
            kept.append(p)
    if left_out:
        logger.info("Left out of the %s, blind: %s", where, ", ".join(left_out))
    return kept


def blind_only(pairs: list[PairedStack], manifest: dict[str, Any]) -> list[PairedStack]:
    """The manifest's pairs among ``pairs`` (by name); refused if one is missing."""
    wanted = [e["name"] for e in manifest["pairs"]]
    have = {p.name: p for p in pairs}
    if missing := [n for n in wanted if n not in have]:
        raise BlindManifestError(
            f"The blind pairs {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} are not in the data "
            "given: give the dataset the manifest was made from."
        )
    return [have[n] for n in wanted]
