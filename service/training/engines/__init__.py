"""Engines that fit a kind somewhere other than the training child (Apache Spark)."""
