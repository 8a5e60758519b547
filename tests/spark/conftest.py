"""One real local Spark for the whole test session (CI's `spark` stage; Java 17 is installed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

#: The settings every Spark in the tests runs with (small, quiet, no UI). The JIT stops at C1 and
#: the collector is serial: tests are short-lived JVMs on small data, where C2 compilation and GC
#: threads cost more CPU than they save (measured: the driver's CPU for a session and four fits
#: 50 s -> 28 s, the first fit 36 s -> 20 s).
TEST_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.driver.memory": "1g",
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark", reason="pyspark is in the dev extra")
    from service.training.engines.spark_session import start_session

    session = start_session("local[2]", TEST_SPARK_CONF, app_name="ridgeline-tests")
    yield session
    session.stop()
