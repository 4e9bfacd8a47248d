"""The Spark engine on a real Spark standalone cluster: one master and two workers on
127.0.0.1, started from the pyspark install itself (its ``bin/spark-class``). The metric
history built there equals DuckDB's, the registered model scores through
``mlflow.pyfunc.spark_udf`` on the executors like local scoring, and both executors did
tasks. Slow (three JVMs for the cluster, one for the driver, one per executor); skipped
when pyspark is not installed, a failure in CI (see test_spark.need_spark)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from healthscore.config import Config, EngineConfig
from healthscore.simulate import SimulationConfig
from pipelines.demo_data import write_demo_data
from pipelines.features import stage_and_build
from pipelines.validate import load_data_folder
from test_spark import TOLERANCE, need_spark

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
START_TIMEOUT = 90  # seconds for the master and both workers to come up (about 10 s here)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on loopback (all held open while choosing)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


class Cluster:
    """A Spark standalone master and its workers, each its own process group."""

    def __init__(self, folder: Path):
        import pyspark

        self.folder = folder
        self.spark_home = Path(pyspark.__file__).parent
        self.port, self.webui, *self.worker_ports = _free_ports(2 + 2 * WORKERS)
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: list[tuple[subprocess.Popen, Path]] = []
        self.work_dirs = [folder / f"worker-{i}" for i in range(WORKERS)]

    def _launch(self, name: str, *args: str) -> None:
        env = {**os.environ, "SPARK_HOME": str(self.spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
               # Master and worker daemons are small; the default heap cap is 1g each.
               "SPARK_DAEMON_MEMORY": "256m"}
        log = self.folder / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([str(self.spark_home / "bin" / "spark-class"), *args],
                                       stdout=out, stderr=subprocess.STDOUT, env=env,
                                       cwd=self.folder, start_new_session=True)
        self.processes.append((process, log))

    def start(self) -> None:
        self._launch("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(self.port), "--webui-port", str(self.webui))
        for i, work_dir in enumerate(self.work_dirs):
            work_dir.mkdir()
            self._launch(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", self.url,
                         "--cores", "1", "--memory", "1g", "--host", "127.0.0.1",
                         "--port", str(self.worker_ports[2 * i]),
                         "--webui-port", str(self.worker_ports[2 * i + 1]),
                         "--work-dir", str(work_dir))
        self.wait_for_workers()

    def state(self) -> dict:
        """The master's own view (its web UI's JSON)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webui}/json/", timeout=5) as page:
            return json.load(page)

    def wait_for_workers(self) -> None:
        deadline, seen = time.monotonic() + START_TIMEOUT, "no answer from the master yet"
        while time.monotonic() < deadline:
            dead = [log.stem for process, log in self.processes if process.poll() is not None]
            if dead:
                self._fail(f"{', '.join(dead)} exited while the cluster started")
            try:
                state = self.state()
                if state.get("aliveworkers") == WORKERS:
                    return
                seen = f"{state.get('aliveworkers')} of {WORKERS} workers alive"
            except OSError as exc:
                seen = f"master's web UI not answering ({exc})"
            except ValueError:  # while it starts, the UI answers /json/ with its HTML page
                seen = "master's web UI not serving its JSON yet"
            time.sleep(0.5)
        self._fail(f"the cluster did not come up within {START_TIMEOUT} s: {seen}")

    def _fail(self, message: str) -> None:
        logs = "\n".join(f"--- {log.name}\n{_tail(log)}" for _, log in self.processes)
        pytest.fail(f"Spark standalone cluster: {message}\n{logs}", pytrace=False)

    def stop(self) -> None:
        """Stop every process group (spark-class execs java, so the group is the JVM and
        anything it forked); workers first, then the master."""
        for process, _ in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def executor_logs(self) -> list[Path]:
        """Each executor's stderr: ``<work dir>/<app id>/<executor id>/stderr``."""
        return sorted(p for d in self.work_dirs for p in d.glob("*/*/stderr"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need_spark()
    running = Cluster(tmp_path_factory.mktemp("spark-cluster"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def on_cluster(cluster):
    """A config whose Spark engine runs on the cluster, with its session started (and
    stopped after the module, so later tests get their own local one)."""
    from pyspark.sql import SparkSession

    from pipelines import spark as hs_spark

    # session() reuses a running session whatever its master: stop a local one left by
    # test_spark.py, or this test would silently run in local mode.
    if (active := SparkSession.getActiveSession()) is not None:
        active.stop()
    # Executors run this interpreter, which has the pinned packages. PySpark takes the
    # workers' Python from PYSPARK_PYTHON when the context starts (default `python3`);
    # the spark.pyspark.python setting is read only by spark-submit.
    env = pytest.MonkeyPatch()
    env.setenv("PYSPARK_PYTHON", sys.executable)
    engine = EngineConfig(
        name="spark", spark_master=cluster.url, spark_driver_memory="1g",
        spark_shuffle_partitions=4,
        spark_conf={
            # And import this checkout's code (the pickled model's classes), not an
            # installed copy.
            "spark.executorEnv.PYTHONPATH": str(ROOT),
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.executor.memory": "768m",
            # Schedule nothing until both executors are up, so both do the work.
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
        })
    try:
        spark = hs_spark.session(engine)
        assert spark.sparkContext.master == cluster.url
        yield Config(engine=engine)
    finally:
        if (active := SparkSession.getActiveSession()) is not None:
            active.stop()
        env.undo()


def _executors(spark) -> int:
    """Executors registered with the driver (the status map also lists the driver)."""
    return spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1


@pytest.mark.slow
def test_the_metric_history_on_a_standalone_cluster_equals_duckdb(cluster, on_cluster, tmp_path):
    from pyspark.sql import SparkSession

    data = tmp_path / "demo"
    write_demo_data(data, SimulationConfig(n_accounts=40, seed=11))
    tables = load_data_folder(data)
    day = tables["events"]["timestamp"].max().date()
    duck = stage_and_build(dict(tables), day, Config())
    spark = stage_and_build(dict(tables), day, on_cluster)
    assert len(duck) > 1000 and duck.shape == spark.shape
    pd.testing.assert_frame_equal(duck, spark, check_exact=False, **TOLERANCE)
    assert duck[["active_users_count_30d", "tickets_resolution_hours_mean_90d",
                 "nps_score_latest"]].notna().any().all()
    # The work ran on the cluster: the master lists the app with both workers' cores.
    session = SparkSession.getActiveSession()
    assert _executors(session) == WORKERS
    app = next(a for a in cluster.state()["activeapps"]
               if a["id"] == session.sparkContext.applicationId)
    assert app["cores"] == WORKERS


@pytest.mark.slow
def test_spark_udf_on_a_standalone_cluster_scores_like_the_duckdb_path(
        cluster, on_cluster, scoring_book, monkeypatch):
    from pyspark.sql import SparkSession

    from pipelines import registry
    from pipelines.score import scoring_snapshots
    from pipelines.spark import score_frame

    root, data, as_of = scoring_book
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    registry.connect("healthscore")
    uri = "models:/healthscore@champion"
    wrapped, _ = registry.load(uri)
    day = as_of.date() if hasattr(as_of, "date") else as_of
    tables = load_data_folder(data)
    histories = [stage_and_build(dict(tables), day, config, snapshots=scoring_snapshots(day))
                 for config in (Config(), on_cluster)]
    duck, spark = (h.loc[h["as_of_date"] == pd.Timestamp(day)].reset_index(drop=True)
                   for h in histories)
    pd.testing.assert_frame_equal(duck, spark, check_exact=False, **TOLERANCE)
    local = wrapped.predict(None, duck)
    remote = score_frame(spark[["account_id", "as_of_date", *wrapped.model.features_]], uri,
                         on_cluster.engine).set_index("account_id").loc[duck["account_id"]]
    assert len(duck) > 100
    np.testing.assert_allclose(remote["churn_probability"], local["churn_probability"], rtol=1e-9)
    np.testing.assert_allclose(remote["health_score"], local["health_score"], rtol=1e-9)
    assert SparkSession.getActiveSession().sparkContext.master == cluster.url
    # Both executors ran tasks (their own logs, in the workers' work folders).
    logs = cluster.executor_logs()
    assert len(logs) == WORKERS, logs
    finished = {log.parent.name: log.read_text(errors="replace").count("Finished task")
                for log in logs}
    assert all(n > 0 for n in finished.values()), finished
