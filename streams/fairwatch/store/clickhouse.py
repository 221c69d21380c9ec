"""ClickHouse at the edge: one small interface over a server (clickhouse-driver) and chDB.

Both backends take the same SQL with the same client-side ``%(name)s`` parameters and return rows
as tuples with the same Python types (DateTime columns as aware UTC datetimes), so the code above
this module cannot tell them apart. The SQL itself must be accepted by ClickHouse 18.16 and by
current ClickHouse (see ARCHITECTURE.md); the DDL lives in ``schemas/clickhouse``.

Store URLs: ``clickhouse://user@host:9440/database?secure=1&ca_certs=/ca.pem&password_file=/pw``
(TLS verified against ``ca_certs``, the password read from a file, so that the URL itself holds
no secret and can be printed), ``clickhouse://user:password@host:9000/database``, or
``chdb:///path/to/dir``.
"""

from __future__ import annotations

import json
import os
import re
import weakref
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Iterable, Protocol, Sequence
from urllib.parse import parse_qs, unquote, urlencode, urlparse

import msgspec
import numpy as np
from clickhouse_driver.util.escape import escape_param

from fairwatch.store.cluster_ddl import nodes_cluster, shards_cluster

SCHEMAS_DIR = Path(os.environ.get("FAIRWATCH_SCHEMAS", Path(__file__).resolve().parents[3] / "schemas"))
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StoreError(RuntimeError):
    """A store could not be opened, migrated or queried; the message says which and why.

    ``sql`` is the statement refused, kept apart so a one-line error stays one line (``--debug``
    shows it)."""

    def __init__(self, message: str, sql: str | None = None):
        super().__init__(message)
        self.sql = sql


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise StoreError(f"naive datetime {value!r}: pass an aware datetime (fairwatch works in UTC)")
        return "'%s'" % value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return "'%s'" % value.isoformat()
    if isinstance(value, list):
        return "[%s]" % ", ".join(_literal(v) for v in value)
    if isinstance(value, tuple):  # for IN (...)
        return "(%s)" % ", ".join(_literal(v) for v in value)
    return str(escape_param(value, None))


def bind(sql: str, params: dict[str, Any] | None) -> str:
    """Substitute ``%(name)s`` parameters client-side, the same way for both backends.

    >>> bind("SELECT %(a)s, %(b)s", {"a": "it's", "b": [1, 2]})
    "SELECT 'it\\\\'s', [1, 2]"
    """
    if not params:
        return sql
    return sql % {name: _literal(value) for name, value in params.items()}


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise StoreError(f"{name!r} is not a plain identifier")
    return name


class Store(Protocol):
    url: str
    database: str
    # a server takes INSERT ... SELECT with external tables (insert_frames); chDB does not
    external_tables: bool
    # the cluster whose Distributed tables these are (None: one server)
    cluster: str | None

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]: ...

    def query_values(self, sql: str, params: dict[str, Any] | None = None) -> list[list]: ...

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int: ...

    def insert_plain(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int: ...

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[list]) -> int:
        """Rows given column by column (``data[i]`` holds ``columns[i]``); DateTime as epoch seconds."""
        ...

    def server_version(self) -> tuple[int, ...]: ...

    def prepare(self) -> None:
        """Open what the first insert would open (connections, modules), now."""
        ...

    def close(self) -> None: ...


def _epoch_seconds(value: Any) -> Any:
    """What a DateTime column stores: whole seconds since the epoch (naive datetimes are UTC)."""
    if isinstance(value, datetime):
        return int((value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)).timestamp())
    return value


def _to_utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


class _Frame(dict):
    """Numpy columns by name, read the way the driver reads a data frame (``frame[name].values``),
    without a pandas frame (which turns string columns into Arrow arrays and back)."""

    def __getitem__(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(values=dict.__getitem__(self, name))


UNKNOWN_DATABASE = 81  # ClickHouse's error code


class ServerStore:
    """A ClickHouse server over the native protocol (clickhouse-driver)."""

    external_tables = True

    def __init__(self, url: str, *, create_database: bool = True, connect_timeout: float = 5.0):
        from clickhouse_driver import Client

        parsed = urlparse(url)
        self.url = url
        self._numpy_client = None  # opened by the first insert_frames
        self.database = _identifier((parsed.path or "/default").lstrip("/") or "default")
        options = dict(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            connect_timeout=connect_timeout,
            settings={"use_client_time_zone": False},
        )
        query = parse_qs(parsed.query, keep_blank_values=True)
        # cluster=NAME: the tables are Distributed over NAME's shards (fairwatch.store.cluster_ddl)
        self.cluster = _identifier(query.pop("cluster")[-1]) if "cluster" in query else None
        options.update(link_options(urlencode(query, doseq=True)))  # TLS, and a password from a file
        try:
            if create_database and self.database != "default":
                bootstrap = Client(database="default", **options)
                # a user without DDL rights (the writer) may open a database that exists
                if not bootstrap.execute("SELECT count() FROM system.databases WHERE name = %(name)s",
                                         {"name": self.database})[0][0]:
                    on_cluster = f" ON CLUSTER {self.cluster}" if self.cluster else ""
                    bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}{on_cluster}")
                bootstrap.disconnect()
            self._client = Client(database=self.database, **options)
            self._client.execute("SELECT 1")
            self._options = options
            if self.cluster:
                self._check_cluster()
        except Exception as exc:  # the driver raises socket, auth and server errors alike
            where = f"{parsed.hostname}:{parsed.port}"
            if "DDL queries are prohibited" in str(exc):  # a writer asked for a database that does not exist
                raise StoreError(f"ClickHouse at {where} has no database {self.database}, and this user may not create it:"
                                 f" run `fairwatch migrate` as a user allowed DDL (the migrator) first") from exc
            if getattr(exc, "code", None) == UNKNOWN_DATABASE:
                raise StoreError(f"ClickHouse at {where} has no database {self.database}: check the URL, or create "
                                 f"it with `fairwatch migrate --store {redacted_url(url)}`") from exc
            raise StoreError(f"cannot reach ClickHouse at {where}: {_one_line(exc)}") from exc

    def _check_cluster(self) -> None:
        """A cluster store needs the cluster in the server's config and four settings in the user's
        profile (a read-only user may not set them per query): refused with what is missing."""
        where = redacted_url(self.url)
        # the shards, every node as a shard of its own, one replica of each shard
        needed = (self.cluster, nodes_cluster(self.cluster), shards_cluster(self.cluster))
        for cluster in needed:
            if not self._client.execute("SELECT count() FROM system.clusters WHERE cluster = %(c)s", {"c": cluster})[0][0]:
                raise StoreError(f"{where}: the server has no cluster {cluster!r} in its remote_servers (a cluster store"
                                 f" needs {', '.join(map(repr, needed))}: its shards, every node a shard of its own,"
                                 " one replica of each shard)")
        delay = "max_replica_delay_for_distributed_queries"
        have = dict(self._client.execute("SELECT name, value FROM system.settings WHERE name IN %(names)s",
                                         {"names": (*CLUSTER_SETTINGS, delay)}))
        wrong = [f"{name}={want} (is {have.get(name)!r})" for name, want in CLUSTER_SETTINGS.items() if have.get(name) != want]
        # 0 is no check at all: a stale replica would be read
        if not have.get(delay, "").isdigit() or not 1 <= int(have[delay]) <= CLUSTER_MAX_REPLICA_DELAY:
            wrong.append(f"{delay} from 1 to {CLUSTER_MAX_REPLICA_DELAY} (is {have.get(delay)!r})")
        if wrong:
            raise StoreError(f"{where}: a cluster store needs, in this user's profile: {', '.join(wrong)}")

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(bind(sql, params))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        rows = self._run(bind(sql, params))
        return [tuple(_to_utc(v) for v in row) for row in rows]

    def _run(self, sql: str) -> Any:
        from clickhouse_driver.errors import Error as DriverError

        try:
            return self._client.execute(sql)
        except DriverError as exc:
            raise StoreError(f"ClickHouse refused the query: {_one_line(exc)}", sql) from exc

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        rows = rows if isinstance(rows, list) else list(rows)
        if rows:
            # columnar, datetimes as epoch seconds: the driver converts each datetime through pytz
            # otherwise, which cost more than the rest of the insert
            data = [list(column) for column in zip(*rows)]
            for i, column in enumerate(data):
                if isinstance(next((v for v in column if v is not None), None), datetime):
                    if column.count(column[0]) == len(column):  # one instant (ingested_at): convert once
                        data[i] = [_epoch_seconds(column[0])] * len(column)
                    else:
                        data[i] = [_epoch_seconds(v) for v in column]
            self.insert_columns(table, columns, data)
        return len(rows)

    def query_values(self, sql: str, params: dict[str, Any] | None = None) -> list[list]:
        """Rows of plain values, for bulk reads whose SQL converts DateTime columns itself."""
        return [list(row) for row in self.query(sql, params)]

    def insert_plain(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """Rows of strings, integers and finite floats (DateTime as epoch seconds)."""
        return self.insert(table, columns, rows)

    def insert_frames(self, sql: str, tables: Sequence[tuple[str, list[tuple[str, str]], dict[str, Any]]],
                      params: dict[str, Any] | None = None) -> None:
        """Run ``sql`` (an INSERT ... SELECT) with external tables (name, structure [(column, type)],
        column -> numpy array) on a connection in the driver's numpy mode: it writes a numeric
        column's buffer as it is and a string column in one C loop, not value by value (the
        SELECT turns strings into Enum values, seconds into DateTime, joined labels into arrays)."""
        self.prepare()
        external = [{"name": name, "structure": structure, "data": _Frame(columns)} for name, structure, columns in tables]
        self._numpy_client.execute(sql, params, external_tables=external)

    def prepare(self) -> None:
        if self._numpy_client is None:
            from clickhouse_driver import Client
            options = dict(self._options, settings={**self._options["settings"], "use_numpy": True})
            client = Client(database=self.database, **options)
            client.execute("SELECT 1")  # connects, and imports the driver's numpy columns (pandas)
            self._numpy_client = client

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[list]) -> int:
        if data and len(data[0]):
            cols = ", ".join(_identifier(c) for c in columns)
            self._client.execute(f"INSERT INTO {_identifier(table)} ({cols}) VALUES", data, columnar=True)
        return len(data[0]) if data else 0

    def server_version(self) -> tuple[int, ...]:
        return parse_version(self._client.execute("SELECT version()")[0][0])

    def close(self) -> None:
        self._client.disconnect()
        if self._numpy_client is not None:
            self._numpy_client.disconnect()


LINK_PARAMETERS = ("secure", "ca_certs", "password_file", "verify")
# a cluster store's profile: joins and IN over Distributed tables read their whole right side (right
# however a table is sharded), inserts return once every shard has them, and reads and inserts go to
# a shard's first live replica (reads see what was just written while it is up)
CLUSTER_SETTINGS = {"distributed_product_mode": "global", "insert_distributed_sync": "1", "load_balancing": "in_order"}
# ... and reads pass over a replica more than this many seconds behind on fetching its shard's inserts
# (a first replica back from a stop; ClickHouse's default, 300, would read it and miss what its shard
# took meanwhile; 0 checks nothing): set max_replica_delay_for_distributed_queries from 1 to this
CLUSTER_MAX_REPLICA_DELAY = 5


def link_options(query: str) -> dict[str, Any]:
    """clickhouse-driver's TLS and password options from a store URL's query string.

    >>> link_options("secure=1")
    {'secure': True, 'verify': True}
    >>> link_options("secure=1&verify=0")
    {'secure': True, 'verify': False}
    >>> link_options("")
    {}
    """
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(params) - set(LINK_PARAMETERS))
    if unknown:
        raise StoreError(f"unknown store URL parameter {', '.join(unknown)} (known: {', '.join(LINK_PARAMETERS)})")
    flags = {}
    for name in ("secure", "verify"):
        if name in params:
            if params[name].lower() not in ("1", "0", "true", "false"):
                raise StoreError(f"store URL parameter {name} must be 1 or 0, got {params[name]!r}")
            flags[name] = params[name].lower() in ("1", "true")
    if flags.get("secure") is False and ("ca_certs" in params or "verify" in flags):
        raise StoreError("store URL: secure=0 contradicts ca_certs / verify (they are TLS settings)")
    if "verify" in flags and not flags.get("secure") and "ca_certs" not in params:
        raise StoreError("store URL parameter verify needs secure=1 (it is a TLS setting)")
    out: dict[str, Any] = {}
    if flags.get("secure") or "ca_certs" in params:
        out["secure"] = True
        out["verify"] = flags.get("verify", True)  # an unverified TLS link is asked for by name
        if "ca_certs" in params:
            if not Path(params["ca_certs"]).is_file():
                raise StoreError(f"store URL parameter ca_certs: no file {params['ca_certs']}")
            out["ca_certs"] = params["ca_certs"]
    if "password_file" in params:
        path = Path(params["password_file"])
        try:
            out["password"] = path.read_text().strip()
        except OSError as exc:
            raise StoreError(f"store URL parameter password_file: cannot read {path}: {exc.strerror}") from None
    return out


def redacted_url(url: str) -> str:
    """``url`` without its password, for printing.

    >>> redacted_url("clickhouse://writer:s3cret@db:9440/fairwatch?secure=1")
    'clickhouse://writer@db:9440/fairwatch?secure=1'
    >>> redacted_url("chdb:///tmp/fw")
    'chdb:///tmp/fw'
    >>> redacted_url("clickhouse://w:s@[::1]:9000/fw")
    'clickhouse://w@[::1]:9000/fw'
    """
    parsed = urlparse(url)
    userinfo, at, host = parsed.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return parsed._replace(netloc=f"{userinfo.partition(':')[0]}@{host}").geturl()


def without_passwords(text: str) -> str:
    """``text`` with the password of every URL in it removed (an error message quoting a URL).

    >>> without_passwords("Client error '401' for url 'http://am:s3cret@alerts:9093/api/v2/alerts'")
    "Client error '401' for url 'http://am@alerts:9093/api/v2/alerts'"
    """
    return re.sub(r"(://[^:/@\s'\"]+):[^@\s/'\"]*@", r"\1@", text)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:4])


_COMPACT = msgspec.json.Encoder()


def _finite(values: Sequence[Any]) -> bool:
    try:
        return bool(np.isfinite(np.asarray(values, dtype=float)).all())
    except (TypeError, ValueError):  # not all numbers (None, text): the slow path judges them
        return False


def _compact_rows(columns: list[Sequence[Any]]) -> bytes | None:
    """JSONCompactEachRow of the rows whose columns are given, encoded in C; None when a column
    holds what only :func:`_json_default`'s path writes as ClickHouse reads it (non-finite floats,
    which the C encoder would write as null; types it does not know)."""
    prepared = []
    for column in columns:
        first = next((v for v in column if v is not None), None)
        if isinstance(first, datetime):
            column = [_json_default(v) if isinstance(v, datetime) else v for v in column]
        elif isinstance(first, float) and not _finite(column):
            return None
        elif isinstance(first, (list, tuple)):
            flat = [x for v in column for x in v if isinstance(x, float)]
            if flat and not _finite(flat):
                return None
            if any(isinstance(x, datetime) for v in column for x in v):
                return None
        prepared.append(column)
    try:
        return b"\n".join(map(_COMPACT.encode, map(list, zip(*prepared))))
    except TypeError:
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise StoreError(f"naive datetime {value!r}: pass an aware datetime")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    raise TypeError(f"cannot store {type(value).__name__}")


def _from_json(value: Any, type_name: str) -> Any:
    if value is None:
        return None
    inner = type_name
    while inner.startswith(("Nullable(", "LowCardinality(")):
        inner = inner[inner.index("(") + 1 : -1]
    if inner.startswith("Array("):
        return [_from_json(v, inner[6:-1]) for v in value]
    if inner.startswith("DateTime"):
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    if inner.startswith("Date"):
        return date.fromisoformat(value)
    if re.match(r"U?Int(64|128|256)$", inner):
        return int(value)
    if inner.startswith("Float"):
        return float(value)  # whole numbers come as JSON ints; inf / nan come quoted
    return value


class EmbeddedStore:
    """chDB: ClickHouse in this process, its data in a directory (one process per directory)."""

    external_tables = False
    # chDB serves one directory per process at a time: a store left open blocks every other path
    opened: ClassVar[weakref.WeakSet] = weakref.WeakSet()
    cluster = None  # one process: never a cluster

    def __init__(self, url: str, *, create: bool = True):
        try:
            from chdb import session as chdb_session
        except ImportError as exc:
            raise StoreError("chdb:// stores need chDB: pip install 'fairwatch[embedded]'") from exc
        parsed = urlparse(url)
        path = unquote(parsed.netloc + parsed.path)
        if not path:
            raise StoreError(f"{url!r} names no directory; use chdb:///path/to/dir")
        self.database = "fairwatch"
        if not create and not Path(path).is_dir():
            raise StoreError(f"no store at {path}: the directory does not exist (check the path)")
        if not create and not (Path(path) / "metadata" / f"{self.database}.sql").exists():
            # checked before a session opens: opening one writes chDB's own files into the folder
            raise StoreError(f"{path} is not a fairwatch store (no {self.database} database in it): check the path")
        Path(path).mkdir(parents=True, exist_ok=True)
        self.url = url
        self.path = path
        self._session = chdb_session.Session(path)
        EmbeddedStore.opened.add(self)
        self._run(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self._run(f"USE {self.database}")

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        try:
            result = self._session.query(sql, fmt)
        except Exception as exc:
            raise StoreError(f"chDB refused the query: {_one_line(exc)}", sql) from exc
        if result is not None and getattr(result, "has_error", lambda: False)():
            raise StoreError(f"chDB refused the query: {_one_line(result.error_message())}", sql)
        return result

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(bind(sql, params))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        result = self._run(bind(sql, params), "JSONCompact")
        text = result.bytes() if result is not None else b""
        if not text:
            return []
        document = json.loads(text)
        types = [column["type"] for column in document["meta"]]
        return [tuple(_from_json(v, t) for v, t in zip(row, types)) for row in document["data"]]

    def query_values(self, sql: str, params: dict[str, Any] | None = None) -> list[list]:
        """Rows as JSON gives them (no DateTime or Date conversion): the fast path for bulk reads
        whose SQL converts such columns itself, decoded in C."""
        result = self._run(bind(sql, params) + " SETTINGS output_format_json_quote_64bit_integers = 0",
                           "JSONCompactEachRow")
        text = result.bytes() if result is not None else b""
        return msgspec.json.decode(b"[" + text.rstrip().replace(b"\n", b",") + b"]") if text.strip() else []

    def query_row_binary(self, sql: str, params: dict[str, Any] | None = None) -> bytes:
        """The result in ClickHouse's RowBinary format: for bulk reads of fixed-width columns."""
        result = self._run(bind(sql, params), "RowBinary")
        return result.bytes() if result is not None else b""

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        names = [_identifier(c) for c in columns]
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return 0
        body = _compact_rows(list(zip(*rows)))
        if body is not None:
            self._run(f"INSERT INTO {_identifier(table)} ({', '.join(names)}) FORMAT JSONCompactEachRow\n"
                      + body.decode())
            return len(rows)
        lines = [json.dumps(dict(zip(names, row)), default=_json_default) for row in rows]
        self._run(f"INSERT INTO {_identifier(table)} ({', '.join(names)}) FORMAT JSONEachRow\n" + "\n".join(lines))
        return len(lines)

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[list]) -> int:
        return self.insert(table, columns, zip(*data))

    def insert_plain(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """Rows of strings, integers and finite floats only (DateTime as epoch seconds), encoded in C:
        for bulk writes such as the evidence log's."""
        if rows:
            names = ", ".join(_identifier(c) for c in columns)
            body = b"\n".join(map(msgspec.json.encode, rows))
            self._run(f"INSERT INTO {_identifier(table)} ({names}) FORMAT JSONCompactEachRow\n" + body.decode())
        return len(rows)

    def prepare(self) -> None:
        pass  # in this process, opened already

    def server_version(self) -> tuple[int, ...]:
        return parse_version(self.query("SELECT version()")[0][0])

    def close(self) -> None:
        EmbeddedStore.opened.discard(self)
        self._session.close()


def holds_schema_migrations(store: Store) -> bool:
    """Whether the store's database has fairwatch's migration ledger (it was migrated at least once)."""
    return bool(store.query("SELECT count() FROM system.tables WHERE database = currentDatabase()"
                            " AND name = 'schema_migrations'")[0][0])


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store named by ``url`` (default: ``FAIRWATCH_CLICKHOUSE``).

    ``create=False`` is for readers: nothing is created (a read-only user will do), and a store
    without fairwatch's tables is refused by name, so a mistyped path or database is an error
    rather than an empty answer."""
    url = url or os.environ.get("FAIRWATCH_CLICKHOUSE")
    if not url:
        raise StoreError("no store configured: pass --store URL or set FAIRWATCH_CLICKHOUSE")
    scheme = urlparse(url).scheme
    if scheme == "clickhouse":
        store: Store = ServerStore(url, create_database=create)
    elif scheme == "chdb":
        store = EmbeddedStore(url, create=create)
    else:
        raise StoreError(f"unknown store scheme {scheme!r} in {redacted_url(url)!r}; use clickhouse://... or chdb:///path")
    if not create:
        try:
            migrated = holds_schema_migrations(store)
        except StoreError:
            store.close()
            raise
        if not migrated:
            store.close()
            raise StoreError(f"{redacted_url(url)} holds no fairwatch tables: check the URL, or create "
                             f"them with `fairwatch migrate --store {redacted_url(url)}`")
    return store


def _one_line(error: object) -> str:
    """An engine's error message on one line, without ClickHouse's C++ stack trace and without
    the query it quotes back ("In scope SELECT ..."), which the caller keeps apart."""
    text = str(error).split("Stack trace:")[0].split(" In scope ")[0]
    return " ".join(text.split())


# ---------------------------------------------------------------------------------- migrations


