"""The benchmark's scenarios, each a ``run(bench, ...)`` that records into ``bench.results``."""
