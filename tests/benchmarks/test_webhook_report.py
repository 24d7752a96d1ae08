"""The webhook benchmark's table and the target figures read from its rounds."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.config import positive_int
from benchmarks.webhooks import (
    IN_PROCESS,
    RunResult,
    cpu_budget,
    render,
    round_figures,
)


def _round(
    bare_before: float,
    worker: float,
    bare_after: float,
    paced_p99_ms: float,
    *,
    worker_cpu_ms: float | None = None,
    paced_cpu_ms: float | None = None,
    worker_process_cpu_ms: float | None = None,
) -> list[RunResult]:
    """One round of runs of 1,000 deliveries at the given rates.

    The worker's runs carry the machine's CPU a delivery, and the worker's run the
    worker process's, where given. The bare runs carry 0.08 ms a request for the
    sender and 0.07 ms for the receiver.
    """

    def run(
        name: str, rate: float, p99_ms: float = 5.0, **cpu: float | None
    ) -> RunResult:
        return RunResult(
            name=name,
            deliveries=1_000,
            seconds=1_000 / rate,
            p50_ms=1.0,
            p99_ms=p99_ms,
            **cpu,
        )

    bare_cpu = {"sender_cpu_ms": 0.08, "receiver_cpu_ms": 0.07}
    return [
        run("bare aiohttp loop, before", bare_before, **bare_cpu),
        run(
            "salescycle worker",
            worker,
            machine_cpu_ms=worker_cpu_ms,
            sender_cpu_ms=worker_process_cpu_ms,
        ),
        run("bare aiohttp loop, after", bare_after, **bare_cpu),
        run(
            "salescycle worker at half the rate",
            worker,
            paced_p99_ms,
            machine_cpu_ms=paced_cpu_ms,
        ),
    ]


class TestRoundFigures:
    def test_ratio_over_the_mean_of_the_bare_runs(self) -> None:
        figures = round_figures(_round(10_000, 3_000, 5_000, 800))

        assert figures.ratio == pytest.approx(0.4)
        assert figures.paced_p99_ms == 800

    def test_reference_run_left_out(self) -> None:
        results = _round(10_000, 3_000, 5_000, 800)
        results.insert(
            1,
            RunResult(
                name=IN_PROCESS, deliveries=1_000, seconds=0.01, p50_ms=1, p99_ms=1
            ),
        )

        assert round_figures(results).ratio == pytest.approx(0.4)


class TestRender:
    def test_one_round_gives_its_figures(self) -> None:
        table = render([_round(8_000, 2_000, 8_000, 1_500)], 1_000, 10)

        assert "1,000 events, concurrency 10, 1 round" in table
        assert "worker / bare: 0.25x (target >= 0.50x)" in table
        assert "p99 at half the bare rate: 1,500 ms (target < 1,000 ms)" in table

    def test_rounds_give_medians_and_ranges(self) -> None:
        measured = [
            _round(10_000, 3_000, 10_000, 2_000),
            _round(10_000, 5_000, 10_000, 500),
            _round(10_000, 4_000, 10_000, 900),
        ]

        table = render(measured, 1_000, 10)

        assert "3 rounds" in table
        assert "| 3 | salescycle worker | 4,000 |" in table
        assert (
            "worker / bare: 0.40x, the median of 3 rounds from 0.30x to 0.50x" in table
        )
        assert "900 ms, the median of 3 rounds from 500 ms to 2,000 ms" in table


class TestCpuBudget:
    def test_cpus_at_half_the_bare_rate(self) -> None:
        figures = [
            round_figures(
                _round(
                    12_000,
                    4_000,
                    8_000,
                    900,
                    worker_cpu_ms=0.3,
                    paced_cpu_ms=0.4,
                    worker_process_cpu_ms=0.24,
                )
            )
        ]

        budget = cpu_budget(figures, 2)

        assert budget == (
            "CPU at half the bare rate (5,000 a second): the worker's run 0.300 ms "
            "a delivery, 1.50 CPUs; the paced run 0.400 ms, 2.00 CPUs; this "
            "machine has 2. The worker process alone 0.240 ms, 1.20 CPUs, on one "
            "thread. The bare sender and the receiver take 0.150 ms a request."
        )

    def test_medians_over_the_rounds(self) -> None:
        figures = [
            round_figures(
                _round(
                    10_000,
                    4_000,
                    10_000,
                    900,
                    worker_cpu_ms=worker_cpu,
                    paced_cpu_ms=worker_cpu + 0.1,
                    worker_process_cpu_ms=worker_cpu / 2,
                )
            )
            for worker_cpu in (0.2, 0.6, 0.3)
        ]

        budget = cpu_budget(figures, 4)

        assert budget is not None
        assert "the worker's run 0.300 ms a delivery, 1.50 CPUs" in budget
        assert "the paced run 0.400 ms, 2.00 CPUs; this machine has 4." in budget
        assert "The worker process alone 0.150 ms, 0.75 CPUs" in budget

    def test_no_budget_without_the_machine_figures(self) -> None:
        figures = [round_figures(_round(10_000, 4_000, 10_000, 900))]

        assert cpu_budget(figures, 2) is None

    def test_table_ends_with_the_budget(self) -> None:
        table = render(
            [
                _round(
                    10_000,
                    4_000,
                    10_000,
                    900,
                    worker_cpu_ms=0.3,
                    paced_cpu_ms=0.4,
                    worker_process_cpu_ms=0.2,
                )
            ],
            1_000,
            10,
            cpus=2,
        )

        assert table.splitlines()[-1].startswith(
            "CPU at half the bare rate (5,000 a second)"
        )
        assert (
            "| 1 | salescycle worker | 4,000 | 1 | 5 | - | 0.200 | - | - | - | 0.300 |"
            in table
        )


class TestPositiveInt:
    def test_count_accepted(self) -> None:
        assert positive_int("3") == 3

    @pytest.mark.parametrize(
        ("text", "message"),
        [("0", "0 is less than 1"), ("-2", "-2 is less than 1"), ("two", "'two'")],
    )
    def test_other_text_rejected(self, text: str, message: str) -> None:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive_int(text)
