"""Spark: the same metric definitions (``features.engine``) through Ibis's PySpark backend,
and batch scoring with the registered model as a Spark UDF.

Spark is optional (``pip install -e '.[spark]'`` or ``make spark``): nothing here is
imported unless the engine is ``spark``. There is no second copy of any metric: the
engine builds one Ibis expression, and Ibis compiles it to Spark SQL here and to
DuckDB SQL elsewhere.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from healthscore.config import EngineConfig
from healthscore.errors import HealthscoreError


INSTALL = ("run `make spark`, which installs the pinned pyspark into ./.venv (and Java 17 "
           "when there is none), or pip install -e '.[spark]'")


def require() -> None:
    """Check, before any work, that Spark can start here: pyspark importable in this
    environment, and Java to run its JVM (unless a session is already running).

    Raises:
        HealthscoreError: What is missing and how to install it.
    """
    if importlib.util.find_spec("pyspark") is None:
        raise HealthscoreError(f"the spark engine needs pyspark, which is not installed in this "
                               f"environment ({sys.prefix}); {INSTALL}")
    problem = _java_problem()
    if problem and not _session_running():
        raise HealthscoreError(f"the spark engine needs Java 17 for Spark's JVM, but {problem}; "
                               "install Java 17 (`make spark` does it on Debian and Ubuntu) or "
                               "point JAVA_HOME at one")


def _java_problem() -> str | None:
    """Why pyspark's launcher would not find ``java`` (it takes ``$JAVA_HOME/bin/java``
    when JAVA_HOME is set, else ``java`` on the PATH), or None."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home, "bin", "java")
        return None if os.access(java, os.X_OK) else f"JAVA_HOME={home} has no bin/java"
    if shutil.which("java"):
        return None
    return "there is no `java` on the PATH and JAVA_HOME is not set"


def _session_running() -> bool:
    """A Spark session already runs in this process (a Databricks notebook, a test)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return False
    return SparkSession.getActiveSession() is not None


def session(engine: EngineConfig, app: str = "healthscore"):
    """A Spark session for ``engine.spark_master`` (reused when one is running)."""
    require()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # present but broken (a half-finished install)
        raise HealthscoreError(f"the spark engine cannot import pyspark ({exc}); "
                               f"{INSTALL}") from None
    if engine.spark_master.startswith("local"):
        # One machine: bind to loopback, not to whatever the host name resolves to, and
        # run Python workers (UDFs) in this interpreter's environment. On a cluster the
        # workers' Python is the cluster's (see docs/spark.md).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {"spark.sql.session.timeZone": "UTC",
                "spark.driver.memory": engine.spark_driver_memory,
                "spark.sql.shuffle.partitions": str(engine.spark_shuffle_partitions),
                "spark.sql.execution.arrow.pyspark.enabled": "true",
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.warehouse.dir": tempfile.mkdtemp(prefix="healthscore-spark-"),
                **engine.spark_conf}
    try:
        builder = SparkSession.builder.master(engine.spark_master).appName(app)
        for key, value in settings.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    except Exception as exc:  # py4j/JVM start-up failures have no common base class
        raise HealthscoreError(f"cannot start Spark at {engine.spark_master}: "
                               f"{str(exc).splitlines()[0][:300]}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def connect(engine: EngineConfig):
    """An Ibis connection over the Spark session."""
    import ibis

    require()
    try:
        backend = ibis.pyspark
    except ImportError as exc:  # Ibis's own hint names its extra, not the pinned pyspark
        cause = exc.__cause__ or exc
        raise HealthscoreError(f"the spark engine: Ibis cannot load its pyspark backend "
                               f"({type(cause).__name__}: {cause}); {INSTALL}") from None
    return backend.connect(session(engine))


def read_staged(con, folder: Path) -> dict:
    """Ibis tables over staged ``folder/<source>.parquet`` files (Spark reads them itself;
    on a cluster the folder must be on storage every executor sees)."""
    return {p.stem: con.read_parquet(str(p), table_name=f"src_{p.stem}")
            for p in sorted(folder.glob("*.parquet"))}


def stager(con):
    """Spark's way to compute an intermediate once: a temporary view, cached eagerly (the
    engine reuses the daily aggregates several times; uncached, Spark would recompute them
    for each use). Not ``Table.cache()``: in ibis 12 that skips registering the in-memory
    snapshot dates with Spark."""
    counter = itertools.count()

    def keep(table):
        name = f"_stage_{next(counter)}"
        view = con.create_view(name, table, overwrite=True)
        con.raw_sql(f"CACHE TABLE `{name}`")
        keep.names.append(name)
        return view

    def release() -> None:
        """Free the cached intermediates (a long-lived session would otherwise keep them)."""
        # Uncache while every view still exists (a view is analysed through the ones it
        # reads), then drop the newest first.
        for name in keep.names:
            con.raw_sql(f"UNCACHE TABLE IF EXISTS `{name}`")
        for name in reversed(keep.names):
            con.raw_sql(f"DROP VIEW IF EXISTS `{name}`")  # ibis 12's drop_view loses the name
        keep.names.clear()

    keep.names = []
    keep.release = release
    return keep


def score_frame(metrics: pd.DataFrame, model_uri: str, engine: EngineConfig) -> pd.DataFrame:
    """Churn probability and health score of every row of ``metrics``, computed on Spark
    by the registered model as a ``mlflow.pyfunc.spark_udf``.

    The UDF is the same pyfunc ``score`` loads locally, so the numbers are the same.
    ``metrics`` is sent from this process and the scores come back to it, so both must
    fit in its memory: Spark's executors share the model's work, not the data's size.
    For a metric history that does not fit, keep it a Spark DataFrame and apply the same
    UDF there (docs/spark.md, "Batch scoring on Spark").
    """
    import mlflow

    spark = session(engine)
    udf = mlflow.pyfunc.spark_udf(spark, model_uri,
                                  result_type="churn_probability double, health_score double",
                                  env_manager="local")
    frame = spark.createDataFrame(metrics)
    features = [c for c in metrics.columns if c not in ("account_id", "as_of_date")]
    scored = frame.withColumn("_out", udf(*features)).select(
        "account_id", "as_of_date", "_out.churn_probability", "_out.health_score")
    return scored.toPandas()


def to_arrow(con, expr):
    """The rows of an Ibis expression computed by Spark, as an Arrow table (Spark's own
    ``toArrow``; Ibis 12's ``to_pyarrow`` goes through pandas)."""
    from ibis.formats.pyarrow import PyArrowData

    table = expr.as_table()
    con._run_pre_execute_hooks(table)  # registers the expression's in-memory tables
    frame = con._session.sql(con.compile(table))
    if not hasattr(frame, "toArrow"):  # pyspark before 4.0
        return con.to_pyarrow(table)
    return PyArrowData.convert_table(frame.toArrow(), table.schema())


class InSpark:
    """The metric store's engine on Spark (see :mod:`pipelines.store`): the same
    expressions over Parquet mirrors of the store's tables, their rows back as Arrow.

    Each table the engine reads is mirrored as ``<store>.parquet/<table>/<version>.parquet``
    (DuckDB's ``COPY``), rewritten only when the table's version (:meth:`Store.version`)
    moved since; older versions' files are deleted when the run ends. Slices of the store
    (the changed days' events, the stale accounts) go as one-run files under
    ``<store>.parquet/_scratch/``. On a cluster the folder must be on storage every
    executor reads.
    """

    name = "spark"

    def __init__(self, store) -> None:
        self.store = store
        self.root = store.path.with_name(f"{store.path.stem}.parquet")
        self._con = None
        self._keep = None
        self._handles: dict[tuple[str, str], object] = {}
        self._views: list[str] = []  # Spark's temporary views over the Parquet files
        self._scratch = itertools.count()

    @property
    def con(self):
        if self._con is None:
            self._con = connect(self.store.config.engine)
            self._keep = stager(self._con)
        return self._con

    def table(self, name: str, rows: bool = True):
        """Store table ``name`` read by Spark from its mirror, written first if the mirror
        is not current. ``rows=False``: only its columns are read, so an empty file with
        them stands in (no mirror of the whole table)."""
        if not rows:
            return self.from_store(self.store.ibis.table(name).limit(0))
        version = self.store.version(name)
        if (name, version) not in self._handles:
            file = self.root / name / f"{version}.parquet"
            if not file.exists():
                self._copy(f"SELECT * FROM {name}", file)
            self._handles[name, version] = self._read(file, f"hs_{name}_{version}")
        return self._handles[name, version]

    def from_store(self, expr):
        """A DuckDB expression over the store, written as a one-run Parquet file that
        Spark reads."""
        n = next(self._scratch)
        file = self.root / "_scratch" / f"{os.getpid()}-{n}.parquet"
        self._copy(self.store.ibis.compile(expr), file)
        return self._read(file, f"hs_scratch_{os.getpid()}_{n}")

    def _read(self, file: Path, view: str):
        self._views.append(view)
        return self.con.read_parquet(str(file), table_name=view)

    def stage(self, expr):
        self.con
        return self._keep(expr)

    def insert(self, name: str, expr) -> int:
        return self.store.insert_arrow(name, to_arrow(self.con, expr))

    def close(self, failed: bool = False) -> None:
        """Free Spark's cached intermediates and views, delete the scratch files and (when
        the run succeeded) the mirror files of versions no longer current. ``failed``:
        the run is being rolled back, so DuckDB is not asked anything."""
        if self._keep is not None:
            self._keep.release()
            for view in self._views:
                self._con.raw_sql(f"DROP VIEW IF EXISTS `{view}`")
        self._views.clear()
        self._handles.clear()
        shutil.rmtree(self.root / "_scratch", ignore_errors=True)
        if failed or not self.root.exists():
            return
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.name.startswith("_"):
                continue
            row = self.store.con.execute("SELECT value FROM _meta WHERE key = ?",
                                         [f"version:{folder.name}"]).fetchall()
            current = f"{row[0][0]}.parquet" if row else None
            for file in folder.iterdir():
                if file.name != current:
                    file.unlink(missing_ok=True)
            if current is None:
                folder.rmdir()

    def _copy(self, query: str, file: Path) -> None:
        """DuckDB writes ``query``'s rows to ``file`` (Parquet), atomically."""
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.tmp")
        path = str(tmp.resolve()).replace("'", "''")
        self.store.con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)")
        os.replace(tmp, file)
