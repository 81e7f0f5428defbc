"""Great Expectations check of a regression run's results table.

The same thresholds the gate applies are restated as expectations over the per-sample results
of the version under test (pass rate as the mean of `passed`, p95 latency as a quantile, error
rate as the share of null `error`), plus integrity checks of the table itself (one row per
version x case x sample, pass flags only where no error). The validation result is part of the
run's report, so a reader can see the thresholds were checked by an independent tool.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from tasks.prompt_gate import Thresholds
from tasks.prompt_runner import SampleResult


def results_frame(results: list[SampleResult]) -> pd.DataFrame:
    return pd.DataFrame([
        {"version": r.version, "case": r.case_id, "sample": r.sample,
         "passed": None if r.passed is None else float(r.passed),
         "latency_ms": r.latency_ms if r.error is None else None, "error": r.error}
        for r in results
    ])


def validate_results(results: list[SampleResult], version: int, thresholds: Thresholds) -> dict[str, Any]:
    """Run the expectation suite on ``version``'s rows; a JSON-able summary of the validation."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    frame = results_frame([r for r in results if r.version == version])
    context = gx.get_context(mode="ephemeral")
    try:  # no tqdm bars in flow logs
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - older/newer GX layouts
        pass
    asset = context.data_sources.add_pandas("prompt-regression").add_dataframe_asset("results")
    batch = asset.add_batch_definition_whole_dataframe("run").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=f"prompt-thresholds-v{version}")
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["version", "case", "sample"]))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="case"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="passed", value_set=[0.0, 1.0]))
    suite.add_expectation(gxe.ExpectColumnMeanToBeBetween(column="passed", min_value=thresholds.min_pass_rate,
                                                          max_value=1.0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeNull(column="error", mostly=max(1e-9, 1 - thresholds.max_error_rate)))
    if frame["latency_ms"].notna().any():
        suite.add_expectation(gxe.ExpectColumnQuantileValuesToBeBetween(
            column="latency_ms", quantile_ranges={"quantiles": [0.95], "value_ranges": [[0, thresholds.max_p95_latency_ms]]},
            allow_relative_error=0.0))
    result = batch.validate(suite)
    failures = []
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            observed = (r.result or {}).get("observed_value")
            failures.append(f"{cfg.type} {cfg.kwargs.get('column', cfg.kwargs.get('column_list', ''))}"
                            + (f": observed {observed}" if observed is not None else ""))
    return {"success": bool(result.success), "version": version, "evaluated": len(result.results),
            "failed": len(failures), "failures": failures}
