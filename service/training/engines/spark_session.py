"""A SparkSession with Ridgeline's defaults under the configured master and extra settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Settings applied unless RIDGELINE_SPARK_CONF overrides them.
DEFAULT_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


def start_session(
    master: str, conf: Mapping[str, str], *, app_name: str = "ridgeline"
) -> SparkSession:
    """Start (or join) this process's Spark driver; one per process, stopped by its owner."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {**DEFAULT_CONF, **conf}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
