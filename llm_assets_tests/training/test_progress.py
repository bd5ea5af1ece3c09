"""Which training reports reach Dagster: the chart's spacing and the time-based pacing."""

from llm_assets.training.progress import ChartPoints, Throttle, TrainProgress


def _train(step: int, max_steps: int = 100) -> TrainProgress:
    return TrainProgress(kind="train", step=step, max_steps=max_steps, message=f"step {step}")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_passes_one_training_report_per_interval_and_always_evaluations_and_the_end() -> None:
    clock = Clock()
    paced = Throttle(2.0, clock=clock)
    passed = []
    for step in range(10, 101, 10):  # a report every 0.5 s
        clock.now += 0.5
        passed.append(step) if paced(_train(step)) else None
        if step == 50:
            assert paced(TrainProgress(kind="eval", step=50, max_steps=100, message="eval"))
            assert paced(TrainProgress(kind="notice", step=50, max_steps=100, message="saved"))
    # The first at once, then one every 2 s (4 reports), and the last step whatever the time.
    assert passed == [10, 50, 90, 100]


def test_throttle_of_zero_passes_everything() -> None:
    paced = Throttle(0.0, clock=lambda: 1.0)
    assert all(paced(_train(step)) for step in range(1, 20))


def test_chart_points_space_a_long_run_and_keep_its_last_step() -> None:
    charted = ChartPoints(max_points=10)
    steps = [s for s in range(10, 1001, 10) if charted(_train(s, 1000))]
    assert steps == list(range(10, 1001, 100)) + [1000]
