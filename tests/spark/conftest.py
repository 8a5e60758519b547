"""One real local Spark for the whole test session (CI's `spark` stage; Java 17 is installed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

#: The settings every Spark in the tests runs with (small, quiet, no UI).
TEST_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.driver.memory": "1g",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark", reason="pyspark is in the dev extra")
    from service.training.engines.spark_session import start_session

    session = start_session("local[2]", TEST_SPARK_CONF, app_name="ridgeline-tests")
    yield session
    session.stop()
