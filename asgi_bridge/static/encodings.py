"""Content codings: which precompressed variant of a file the request's Accept-Encoding takes."""

from __future__ import annotations

# The variants looked for beside a file: content coding and file suffix.
VARIANT_SUFFIXES = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}
# Names a client may use for a coding, and the coding they mean.
ALIASES = {"x-gzip": "gzip"}


def accepted_codings(value: str) -> dict[str, float]:
    """Each coding of an Accept-Encoding value and its weight; ``*`` stands for the others.

    An item with a malformed weight is left out, as if not sent.
    """
    weights: dict[str, float] = {}
    for item in value.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for parameter in parameters.split(";"):
            key, equals, number = parameter.partition("=")
            if equals and key.strip().lower() == "q":
                try:
                    weight = float(number.strip())
                except ValueError:
                    weight = -1.0
        if not 0.0 <= weight <= 1.0:
            continue
        weights[ALIASES.get(coding, coding)] = weight
    return weights


def choose_coding(value: str | None, sizes: dict[str, int]) -> str | None:
    """The coding to send among the variants (coding to size), or None for the file as it is.

    The highest weight wins, then the smaller file. The file as it is ("identity") goes only if
    the client weighs it above every variant it accepts, or accepts none of them; without
    Accept-Encoding, the file goes as it is.
    """
    if not value or not sizes:
        return None
    weights = accepted_codings(value)
    other = weights.get("*", 0.0)
    identity = weights.get("identity", other if "*" in weights else 1.0)
    best: tuple[float, int] | None = None
    chosen: str | None = None
    for coding, size in sizes.items():
        weight = weights.get(coding, other)
        if weight <= 0.0:
            continue
        rank = (weight, -size)
        if best is None or rank > best:
            best, chosen = rank, coding
    if best is None or best[0] < identity:
        return None
    return chosen
