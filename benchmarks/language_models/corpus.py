"""The benchmark's documents: tiny Shakespeare cut into documents, plus canary documents.

A canary (Carlini et al. 2019) is a random secret of a fixed format, e.g. ``the secret code is
4821``. Each inserted canary is the whole text of several documents (so a short training run
memorises it, as personal data repeated across records would be; a document is its own block, so
every copy must come from memory, not from the text above it); forgetting a canary means forgetting
every document that holds it. The never-inserted canaries are drawn from the same format, held out,
and tell what exposure a secret the model never saw has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.engine.lm_metrics import CanaryFormat, make_canaries
from workers.engine.text import TextDataset, parse_jsonl


@dataclass(frozen=True)
class Corpus:
    dataset: TextDataset
    canaries: dict[str, str]  # inserted: canary name -> secret sentence
    copies: dict[str, list[str]]  # canary name -> the IDs of the documents holding it
    forgotten: list[str]  # canary names the requests forget (all their documents)
    kept: list[str]  # inserted canaries that stay
    never_inserted: list[str]  # secrets of the format no training document holds
    never_ids: list[str]  # held-out (test-split) documents holding them: comparable unseen data

    def documents_of(self, names: list[str]) -> list[str]:
        return [d for n in names for d in self.copies[n]]

    fmt: CanaryFormat


def shakespeare_documents(path: Path, doc_chars: int, max_chars: int | None = None) -> list[str]:
    """Consecutive speeches (blank-line separated) joined until a document holds ``doc_chars``."""
    text = path.read_text(encoding="utf-8")
    if max_chars is not None:
        text = text[:max_chars]
    docs, current = [], ""
    for speech in text.split("\n\n"):
        current = f"{current}\n\n{speech}" if current else speech
        if len(current) >= doc_chars:
            docs.append(current)
            current = ""
    if current:
        docs.append(current)
    return docs


def generated_documents(n: int, words_per_doc: int, seed: int) -> list[str]:
    """Seeded word salad for the quick mode (no data files)."""
    words = ["the", "a", "king", "queen", "lord", "lady", "sword", "crown"]
    words += ["night", "day", "love", "war", "house", "field", "river", "stone"]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, words_per_doc)) + "." for _ in range(n)]


def build(
    texts: list[str],
    *,
    fmt: str,
    inserted: int,
    forgotten: int,
    never_inserted: int,
    repeats: int,
    seed: int,
    never_repeats: int = 4,
    prefix: str = "shakespeare",
) -> Corpus:
    f = CanaryFormat(fmt)
    secrets = make_canaries(inserted + never_inserted, f, np.random.default_rng(seed))
    canaries = {f"canary-{i:02d}": secrets[i] for i in range(inserted)}
    never = {f"canary-never-{i:02d}": s for i, s in enumerate(secrets[inserted:])}
    lines = [{"id": f"{prefix}-{i:04d}", "text": t} for i, t in enumerate(texts)]
    # Parsed as an upload would be: prose documents go to a split by the stable hash of their ID;
    # inserted canaries are training documents, the never-inserted ones held out (the ascent's
    # calibration compares the forgotten documents with these: unseen data of the same kind).
    copies: dict[str, list[str]] = {}
    for split, group, n in (("train", canaries, repeats), ("test", never, never_repeats)):
        for name, sentence in group.items():
            copies[name] = [f"{name}-copy-{k:02d}" for k in range(n)]
            lines += [{"id": d, "text": sentence, "split": split} for d in copies[name]]
    dataset = parse_jsonl("\n".join(json.dumps(line) for line in lines).encode("utf-8"))
    order = list(canaries)
    return Corpus(
        dataset=dataset,
        canaries=canaries,
        forgotten=order[:forgotten],
        kept=order[forgotten:],
        copies={n: copies[n] for n in canaries},
        never_inserted=list(never.values()),
        never_ids=[d for n in never for d in copies[n]],
        fmt=f,
    )
