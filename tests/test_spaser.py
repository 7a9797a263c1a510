"""SPASER trajectories and statuses, computed by hand."""

import pytest

from analytics import spaser


def test_trajectory_linear_from_base_to_target():
    # base 2023 at 20 %, target 2026 at 50 %: +10 points a year
    pts = [(2023, 0.20), (2026, 0.50)]
    assert spaser.trajectory_value(pts, 2022) is None
    assert spaser.trajectory_value(pts, 2023) == pytest.approx(0.20)
    assert spaser.trajectory_value(pts, 2024) == pytest.approx(0.30)
    assert spaser.trajectory_value(pts, 2025) == pytest.approx(0.40)
    assert spaser.trajectory_value(pts, 2027) == pytest.approx(0.50)


def test_trajectory_through_milestones():
    # milestones entered by the buyer: 2024 → 30 %, 2025 → 30 %, 2026 → 60 %
    pts = [(2023, 0.10), (2024, 0.30), (2025, 0.30), (2026, 0.60)]
    assert spaser.trajectory_value(pts, 2024) == pytest.approx(0.30)
    assert spaser.trajectory_value(pts, 2025) == pytest.approx(0.30)
    assert spaser.trajectory_value(pts, 2026) == pytest.approx(0.60)


@pytest.mark.parametrize(
    "actual,traj,target,expected",
    [
        (None, 0.3, 0.5, "non disponible"),
        (0.55, 0.3, 0.5, "atteint"),
        (0.50, 0.3, 0.5, "atteint"),
        (0.35, 0.3, 0.5, "en avance"),
        (0.30, 0.3, 0.5, "en avance"),
        (0.25, 0.3, 0.5, "en retard"),
        (0.25, None, 0.5, "non disponible"),
    ],
)
def test_status(actual, traj, target, expected):
    assert spaser.status(actual, traj, target) == expected


def test_targets_defaults_and_override(con):
    df = spaser.targets(con)
    env = df[df.indicator == "environmental_clause_rate"].iloc[0]
    assert env.target == 1.0 and env.source == "défaut national"
    spaser.set_target(con, "social_clause_rate", 2026, 0.35, who="test")
    df = spaser.targets(con)
    soc = df[df.indicator == "social_clause_rate"]
    assert list(soc.target) == [0.35] and list(soc.source) == ["acheteur"]
    with pytest.raises(ValueError):
        spaser.set_target(con, "social_clause_rate", 2026, 35)
    with pytest.raises(ValueError):
        spaser.set_target(con, "unknown", 2026, 0.3)
