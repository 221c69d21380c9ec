"""``fairwatch ingest rekognition``: logged Amazon Rekognition calls (JSON Lines) -> match events.

Each line is converted by :func:`fairwatch.contracts.rekognition.convert`; an event goes to the
``--out`` file (JSON Lines) or through the producer SDK to Kafka. A line that does not convert is
reported (``FILE:LINE: reason_code (field): detail``), written as a dead-letter record
(schemas/dead_letter.schema.json: source_topic is the input file, offset its line number,
value the line without ExternalImageId, UserId or images) and the next line is read. Exit status
1 when any line was refused, 2 for usage errors. docs/rekognition.md has the input format.
"""

from __future__ import annotations

import json
import stat
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Optional

import typer
from rich.console import Console

from fairwatch.cli.boundary import error
from fairwatch.cli.help_texts import PlainUsageCommand, WrappedHelpGroup
from fairwatch.cli.output_files import OutputError, open_output
from fairwatch.contracts.records import ContractError, MatchEvent, RejectCode, Rejection
from fairwatch.contracts.rekognition import (
    MAX_FACES_LIMIT,
    RekognitionSettings,
    check_candidate_groups,
    convert,
    load_record,
    redacted,
)
from fairwatch.contracts.topics import DEFAULT_PREFIX, MATCH_EVENTS

console = Console(stderr=True, soft_wrap=True)  # diagnostics whole, one per line
MAX_DEAD_LETTER_VALUE = 256 * 1024  # a dead-letter copy larger than this keeps no value (the line is in the input)
MIN_KEY_BYTES = 16


class IngestError(ValueError):
    """A usage or input problem found before any line is read; the message says what to fix."""


@dataclass
class Summary:
    converted: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)  # line, reason_code, field, reason


class FileOutput:
    """Events and dead letters to two JSON Lines files (0640, never over a file without --force)."""

    def __init__(self, events: Path, dead_letters: Path, force: bool):
        self.where = {"events": str(events), "dead_letters": str(dead_letters)}
        self._events: BinaryIO = open_output(events, force)
        try:
            self._dead: BinaryIO = open_output(dead_letters, force, "--dead-letter")
        except BaseException:
            self._events.close()
            raise

    def event(self, event: MatchEvent) -> None:
        self._events.write(event.to_json() + b"\n")

    def dead_letter(self, record: dict[str, Any], key: bytes | None) -> None:
        self._dead.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    def close(self) -> None:
        self._events.close()
        self._dead.close()


class KafkaOutput:
    """Events through the producer SDK; dead letters to the dead-letter topic, or to a file."""

    def __init__(self, producer, dead_letters: Path | None, force: bool):
        self.producer = producer
        try:
            self._dead = None if dead_letters is None else open_output(dead_letters, force, "--dead-letter")
        except BaseException:
            producer.close()
            raise
        self.where = {"events": producer.events_topic,
                      "dead_letters": producer.dead_letter_topic if dead_letters is None else str(dead_letters)}

    def event(self, event: MatchEvent) -> None:
        self.producer.send_event(event)

    def dead_letter(self, record: dict[str, Any], key: bytes | None) -> None:
        if self._dead is None:
            self.producer.send_dead_letter(record, key)
        else:
            self._dead.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    def close(self) -> None:
        try:
            self.producer.close()
        finally:
            if self._dead is not None:
                self._dead.close()


def open_producer(kafka: str, topic_prefix: str, signing_key: Path | None, deployment: str | None):
    """The producer SDK's producer (the seam a test replaces)."""
    from fairwatch.producer import FairwatchProducer

    return FairwatchProducer(kafka, topic_prefix=topic_prefix, signing_key=signing_key,
                             deployment=deployment if signing_key is not None else None)


def dead_letter_record(source: str, line_number: int, line: bytes, rejection: Rejection,
                       rejected_at: datetime) -> tuple[dict[str, Any], bytes | None]:
    """The dead-letter record of a refused line (as the worker writes them) and its key (the
    event_id, when the line names one). The value keeps the line without what is never stored."""
    from fairwatch.stream.processor import DeadLetter, RawMessage

    try:
        document = load_record(line)
    except ContractError:
        document = None  # not JSON: nothing can be removed from it, so nothing of it is kept
    value = b"" if document is None else json.dumps(redacted(document), separators=(",", ":"),
                                                     ensure_ascii=False).encode()
    reason = rejection.message
    if len(value) > MAX_DEAD_LETTER_VALUE:
        value, reason = b"", f"{reason} (the record, {len(value)} bytes, is kept only in the input line)"
    event_id = document.get("meta", {}).get("event_id") if isinstance(document, dict) and isinstance(
        document.get("meta"), dict) else None
    key = event_id.encode() if isinstance(event_id, str) and event_id else None
    letter = DeadLetter(RawMessage(MATCH_EVENTS, source, 0, line_number, key, value),
                        Rejection(rejection.code, reason, rejection.field), rejected_at)
    return letter.to_record(), key


def ingest(path: Path, settings: RekognitionSettings, output, on_refused=lambda number, rejection: None,
           signs_for: str | None = None) -> Summary:
    """Convert every line of ``path``; events and dead letters go to ``output``. With ``signs_for``
    (a signing producer's deployment) an event of another deployment is refused, as the producer would."""
    summary = Summary()
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                event = convert(load_record(line), settings)
                if signs_for is not None and event.deployment != signs_for:
                    raise ContractError(Rejection(
                        RejectCode.DEPLOYMENT_MISMATCH,
                        f"event {event.event_id} names deployment {event.deployment!r}, but --signing-key signs "
                        f"for {signs_for!r}", "meta.deployment"))
            except ContractError as exc:
                rejection = exc.rejection
                record, key = dead_letter_record(str(path), number, line, rejection, datetime.now(timezone.utc))
                output.dead_letter(record, key)
                summary.refused.append({"line": number, "reason_code": rejection.code.value, "field": rejection.field,
                                        "reason": rejection.message})
                on_refused(number, rejection)
                continue
            output.event(event)
            summary.converted += 1
    return summary


def load_candidate_groups(path: Path) -> dict[str, dict[str, str]]:
    try:
        return check_candidate_groups(load_record(path.read_bytes()), f"--candidate-groups {path}")
    except ContractError as exc:
        raise IngestError(f"--candidate-groups {path}: {exc.rejection.message}") from None


def read_candidate_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IngestError(f"--candidate-key {path} can be read by others (mode {stat.S_IMODE(mode):04o}): chmod 600 it")
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise IngestError(f"--candidate-key {path} holds {len(key)} bytes; a key needs at least {MIN_KEY_BYTES} "
                          "(e.g. head -c 32 /dev/urandom | base64)")
    return key


def default_dead_letter_path(out: Path) -> Path:
    """Next to the events file: ``events.jsonl`` -> ``events.dead-letter.jsonl``."""
    return out.with_name(out.name.removesuffix(".jsonl") + ".dead-letter.jsonl")


def rekognition_command(
    records: Path = typer.Argument(..., exists=True, dir_okay=False,
                                   help="JSON Lines, one logged Rekognition call a line (docs/rekognition.md)."),
    out: Optional[Path] = typer.Option(None, "--out", dir_okay=False,
                                       help="Write the match events here, JSON Lines (wins over --kafka)."),
    dead_letter: Optional[Path] = typer.Option(
        None, "--dead-letter", dir_okay=False,
        help="Refused lines go here, as dead-letter records (default: next to --out, NAME.dead-letter.jsonl; with"
             " --kafka: the dead-letter topic)."),
    force: bool = typer.Option(False, "--force", help="Replace the output files if they exist (never a symlink)."),
    kafka: Optional[str] = typer.Option(None, "--kafka", envvar="FAIRWATCH_KAFKA",
                                        help="Kafka bootstrap servers: produce the events there (producer SDK)."),
    topic_prefix: str = typer.Option(DEFAULT_PREFIX, "--topic-prefix", envvar="FAIRWATCH_TOPIC_PREFIX"),
    signing_key: Optional[Path] = typer.Option(None, "--signing-key", exists=True, dir_okay=False,
                                               help="Kafka: sign the envelopes with this site key (needs --deployment)."),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="For records whose meta names none."),
    algorithm: Optional[str] = typer.Option(
        None, "--algorithm", help="For records whose meta names none (default: rekognition-face-model-<FaceModelVersion>,"
                                  " and rekognition-compare-faces for CompareFaces)."),
    similarity_threshold: Optional[float] = typer.Option(
        None, "--similarity-threshold", min=0.0, max=100.0,
        help="CompareFaces' SimilarityThreshold for records whose request omits it (AWS's default is 80)."),
    face_match_threshold: Optional[float] = typer.Option(
        None, "--face-match-threshold", min=0.0, max=100.0,
        help="The searches' FaceMatchThreshold for records whose request omits it (AWS's default is 80)."),
    max_faces: Optional[int] = typer.Option(None, "--max-faces", min=1, max=MAX_FACES_LIMIT,
                                            help="The searches' MaxFaces for records whose request omits it."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", min=0.0, max=100.0,
        help="Decision threshold for records whose meta names none (default: the request's threshold)."),
    gallery_size: Optional[int] = typer.Option(None, "--gallery-size", min=0,
                                               help="Faces in the collection searched, for records whose meta names none."),
    candidate_groups: Optional[Path] = typer.Option(
        None, "--candidate-groups", exists=True, dir_okay=False,
        help="JSON object FaceId -> demographic labels, from your own records: the candidates' groups."),
    candidate_key: Optional[Path] = typer.Option(
        None, "--candidate-key", exists=True, dir_okay=False,
        help="A secret (0600 file, at least 16 bytes): candidate ids become HMAC-SHA-256 of the FaceId."),
    max_errors: int = typer.Option(20, "--max-errors", min=0, help="Print at most this many refused lines."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary (every refused line) on stdout."),
) -> None:
    """Turn logged Amazon Rekognition calls (CompareFaces, SearchFacesByImage, SearchFaces) into match events.

    Refused lines are listed, kept as dead-letter records, and the rest converted. Exit status 1
    when any line was refused."""
    try:
        if out is None and not kafka:
            raise IngestError("give --out FILE (JSON Lines) or --kafka BOOTSTRAP (or set FAIRWATCH_KAFKA)")
        if signing_key is not None and (out is not None or not deployment):
            raise IngestError("--signing-key signs what goes to Kafka for one deployment: give --kafka and "
                              "--deployment, without --out")
        dead_path = dead_letter if dead_letter is not None or out is None else default_dead_letter_path(out)
        if out is not None and dead_path.resolve() == out.resolve():
            raise IngestError(f"--dead-letter {dead_path} is the --out file: name another")
        for path, option in ((out, "--out"), (dead_path, "--dead-letter")):
            if path is not None and not force and (path.exists() or path.is_symlink()):
                raise OutputError(f"{option} {path} exists: add --force to replace it, or write elsewhere")
        settings = RekognitionSettings(
            deployment=deployment, algorithm=algorithm, similarity_threshold=similarity_threshold,
            face_match_threshold=face_match_threshold, max_faces=max_faces, threshold=threshold,
            gallery_size=gallery_size,
            candidate_groups=load_candidate_groups(candidate_groups) if candidate_groups else {},
            candidate_key=read_candidate_key(candidate_key) if candidate_key else None)
    except (IngestError, OutputError) as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    shown = 0

    def report(number: int, rejection: Rejection) -> None:
        nonlocal shown
        if not as_json and shown < max_errors:
            console.print(f"{records}:{number}: {rejection}", markup=False, highlight=False)
        shown += 1

    if out is not None:
        try:
            output = FileOutput(out, dead_path, force)
        except OutputError as exc:
            error(str(exc))
            raise typer.Exit(2) from None
        with closing(output):
            summary = ingest(records, settings, output, report)
    else:
        from kafka.errors import KafkaError

        from fairwatch.contracts.keys import BadKey
        from fairwatch.stream.topics import TopicError

        try:
            output = KafkaOutput(open_producer(kafka, topic_prefix, signing_key, deployment), dead_path, force)
            with closing(output):  # closing flushes: a delivery error is raised there
                summary = ingest(records, settings, output, report, signs_for=deployment if signing_key else None)
        except (OutputError, BadKey, TopicError) as exc:
            error(str(exc))
            raise typer.Exit(2) from None
        except KafkaError as exc:
            hint = (" (a producer principal may not write the dead-letter topic: give --dead-letter FILE)"
                    if "Authorization" in type(exc).__name__ else "")
            error(f"Kafka at {kafka}: {exc!r}{hint}")
            raise typer.Exit(2) from None
    document = {"input": str(records), "converted": summary.converted, "refused": len(summary.refused),
                "output": output.where, "refused_lines": summary.refused}
    if as_json:
        print(json.dumps(document))
    else:
        if shown > max_errors:
            console.print(f"... and {shown - max_errors} more refused lines (all of them with --json)", markup=False)
        print(f"{summary.converted} converted, {len(summary.refused)} refused; events: {output.where['events']}; "
              f"dead letters: {output.where['dead_letters']}")
    raise typer.Exit(1 if summary.refused else 0)


def register(app) -> None:
    """Add ``fairwatch ingest rekognition`` to the CLI."""
    group = typer.Typer(rich_markup_mode=None, cls=WrappedHelpGroup, no_args_is_help=True,
                        help="Turn another system's logged output into match events (Amazon Rekognition).")
    group.command("rekognition", cls=PlainUsageCommand)(rekognition_command)
    app.add_typer(group, name="ingest")
