"""Recordings → the wire messages a monitor would publish, in event-time order.

Every reader yields :class:`Message` objects (topic, payload bytes, event time), so the
offline replay and ``python -m devices replay`` run the same ``ingest()`` as the live
service: replay equals live. Formats (``--format``, else detected from the file):

=================  ==========================================================
``wfdb``           PhysioNet WFDB record: ABP waveform, or numerics (ABPMean/NBPMean)
``challenge2012``  PhysioNet/CinC Challenge 2012 stays (file, directory or .tar.gz)
``long-csv``       ``time,signal,value`` rows
``wide-csv``       a time column and one column per signal
``jsonl``          wire JSON Lines, ``{"topic": …, "payload": …}``
=================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from streamproc.errors import ConfigError
from streamproc.readers.challenge2012 import read_challenge_archive
from streamproc.readers.messages import Message, merge_messages
from streamproc.readers.options import RecordingOptions, load_options, parse_start
from streamproc.readers.tables import read_long_csv, read_wide_csv, sniff_csv
from streamproc.readers.wfdb_records import is_wfdb, read_wfdb
from streamproc.readers.wire import read_jsonl_file

__all__ = [
    "FORMATS",
    "Message",
    "RecordingOptions",
    "detect_format",
    "load_options",
    "parse_start",
    "read_recording",
    "read_recordings",
]

_Reader = Callable[[Path, RecordingOptions], Iterable[Message]]

_SINGLE: Final[dict[str, _Reader]] = {
    "wfdb": read_wfdb,
    "long-csv": read_long_csv,
    "wide-csv": read_wide_csv,
    "jsonl": read_jsonl_file,
}
_ARCHIVES: Final = (".tar.gz", ".tgz", ".tar")
FORMATS: Final = ("wfdb", "challenge2012", "long-csv", "wide-csv", "jsonl")


def detect_format(path: Path, *, columns: Mapping[str, str] | None = None) -> str:
    """The format of a recording from its name and first line; ConfigError if unknown."""
    name = path.name.lower()
    if name.endswith(_ARCHIVES) or (path.is_dir() and any(path.glob("*.txt"))):
        return "challenge2012"
    if is_wfdb(path):
        return "wfdb"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if path.is_file() and name.endswith((".csv", ".txt")):
        return sniff_csv(path, columns=columns)
    raise ConfigError(f"{path}: cannot tell the format; give --format ({', '.join(FORMATS)})")


def read_recording(path: Path, options: RecordingOptions) -> list[Iterable[Message]]:
    """One ordered message stream per bed of the recording."""
    if not path.exists() and not is_wfdb(path):
        raise ConfigError(f"{path}: no such recording")
    fmt = options.format or detect_format(path, columns=options.columns)
    if fmt == "challenge2012":
        many = path.is_dir() or path.name.endswith(_ARCHIVES)
        if many and options.bed is not None:
            raise ConfigError(f"{path} holds many stays: drop --bed, each stay is a bed")
        return read_challenge_archive(path, options)
    reader = _SINGLE.get(fmt)
    if reader is None:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return [reader(path, options)]


def read_recordings(
    paths: Sequence[Path], options: Callable[[Path], RecordingOptions]
) -> Iterator[Message]:
    """Every recording's messages merged into one event-time order (a ward of beds)."""
    streams = [stream for path in paths for stream in read_recording(path, options(path))]
    return merge_messages(streams)
