"""Gate statistics across checkpoints: training order from names, the timeline page as data, and
`lstmviz check epoch_*.pt` whose timeline is each checkpoint's own `check --json`, against an independent answer.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lstmviz_cli.analysis.measures import Measure
from lstmviz_cli.analysis.timeline import (
    Timeline,
    TimelinePoint,
    lines,
    training_order,
)
from lstmviz_cli.cli import main
from lstmviz_cli.page.figuredata import TimelineData
from lstmviz_cli.page.model import Table
from lstmviz_cli.page.timeline import build_timeline_page

SAMPLE = [6, 7, 0, 0, 1, 0, 3, 0, 2, 0]


def test_training_order_reads_the_numbers_in_the_names_not_the_shells_sort() -> None:
    assert training_order(["epoch_1.pt", "epoch_10.pt", "epoch_2.pt"]) == ([0, 2, 1], [1, 2, 10], "epoch")
    # Lightning's names: epoch and step both vary; the epoch is the axis.
    names = ["epoch=2-step=300.ckpt", "epoch=0-step=100.ckpt", "epoch=1-step=200.ckpt"]
    assert training_order(names) == ([1, 2, 0], [0, 1, 2], "epoch")
    assert training_order(["ckpt-step1000.pt", "ckpt-step500.pt"]) == ([1, 0], [500, 1000], "step")
    assert training_order(["model_7.pt", "model_3.pt"]) == ([1, 0], [3, 7], "checkpoint")
    # Names that are not one pattern keep the order given, without numbers.
    assert training_order(["best.pt", "last.pt", "epoch_3.pt"]) == ([0, 1, 2], None, "checkpoint")
    assert training_order(["a/run1/model.pt", "a/run1/model.pt"]) == ([0, 1], None, "checkpoint")
    assert training_order(["only.pt"]) == ([0], None, "checkpoint")


def _layer(prefix: str, f: float, dead: float | None, cell: float | None = None) -> list[Measure]:
    """One LSTM layer's measures as `measure_run` lists them (gate f's mean, three gates' saturation, ...)."""
    found = [Measure("gate_mean", prefix, "f", f), Measure("gate_std", prefix, "f", 0.1)]
    found += [Measure("saturation", prefix, gate, share) for gate, share in (("i", 0.1), ("f", 0.2), ("o", 0.0))]
    found.append(Measure("dead_units", prefix, None, dead))
    if cell is not None:
        found += [Measure("cell_max", prefix, None, cell), Measure("cell_growth", prefix, None, 1.5)]
    return found


def _run(*layers: list[Measure], horizon: float) -> tuple[Measure, ...]:
    return (*(m for layer in layers for m in layer), Measure("memory_horizon", None, None, horizon),
            Measure("verify_error", None, None, 1e-7))


def test_the_timeline_page_holds_a_table_and_a_chart_per_measure_with_the_points_values() -> None:
    points = (
        TimelinePoint("e_1.pt", 1, _run(_layer("lstm/l0/fwd", 0.5, 0, 2.0), _layer("lstm/l1/fwd", 0.4, None),
                                        horizon=5), passed=True),
        TimelinePoint("e_2.pt", 2, None, error="cannot read 'e_2.pt'", passed=False),
        TimelinePoint("e_3.pt", 3, _run(_layer("lstm/l0/fwd", 0.7, 2, 3.0), _layer("lstm/l1/fwd", 0.6, 1),
                                        horizon=4), passed=False),
    )
    timeline = Timeline(points, axis="epoch")
    page = build_timeline_page(timeline, title="t", ordering="Ordered.")
    kinds = [spec.ref.kind for spec in page.figures()]
    assert kinds == ["timeline-memory_gate", "timeline-saturation", "timeline-dead_units", "timeline-memory_horizon",
                     "timeline-cell_max", "timeline-cell_growth"]
    charts = {spec.ref.kind: spec.data for spec in page.figures()}
    memory = charts["timeline-memory_gate"]
    assert isinstance(memory, TimelineData) and memory.x == (1.0, 2.0, 3.0) and memory.ticks is None
    assert [(line.label, line.values) for line in memory.lines] == [
        ("lstm/l0/fwd", (0.5, None, 0.7)), ("lstm/l1/fwd", (0.4, None, 0.6))]
    dead = charts["timeline-dead_units"]
    assert isinstance(dead, TimelineData) and dead.lines[1].values == (None, None, 1.0)  # too short to judge: a gap
    saturation = lines(timeline, "saturation")
    assert [line.label for line in saturation] == [f"lstm/l{k}/fwd {g}" for k in (0, 1) for g in "ifo"]
    assert [line.values for line in lines(timeline, "memory_horizon")] == [(5.0, None, 4.0)]
    cell = charts["timeline-cell_max"]
    assert isinstance(cell, TimelineData) and [line.prefix for line in cell.lines] == ["lstm/l0/fwd"]
    section = next(s for s in page.sections if s.id == "timeline-memory-gate")
    table = next(block for block in section.blocks if isinstance(block, Table))
    assert table.columns == ("epoch", "lstm/l0/fwd", "lstm/l1/fwd")
    assert [[cell.parts[0] for cell in row.cells] for row in table.rows if not row.failed] == [
        ["1", "0.5", "0.4"], ["3", "0.7", "0.6"]]
    assert [row.failed for row in table.rows] == [False, True, False]
    horizon = next(s for s in page.sections if s.id == "timeline-memory-horizon")
    assert "how many steps back hold 90% of the output's gradient saliency" in str(horizon.blocks[0]).lower()
    overview = next(block for block in page.intro if isinstance(block, Table))
    assert overview.columns == ("epoch", "checkpoint", "check")


class DigitNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 19)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out[:, -1])


def _forget_mean(state: dict[str, torch.Tensor]) -> float:
    """The mean forget gate over the sample, from PyTorch's LSTM equations in NumPy (independent of lstmviz)."""
    w = {k: v.double().numpy() for k, v in state.items()}
    x = w["embedding.weight"][SAMPLE]
    h, c, forget = np.zeros(8), np.zeros(8), []
    for x_t in x:
        gates = w["lstm.weight_ih_l0"] @ x_t + w["lstm.bias_ih_l0"] + w["lstm.weight_hh_l0"] @ h + w["lstm.bias_hh_l0"]
        i, f, g, o = np.split(gates, 4)
        i, f, o, g = 1 / (1 + np.exp(-i)), 1 / (1 + np.exp(-f)), 1 / (1 + np.exp(-o)), np.tanh(g)
        c = f * c + i * g
        h = o * np.tanh(c)
        forget.append(f)
    return float(np.mean(forget))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[int, float]]:
    """Three state-dict checkpoints of one model, the forget-gate bias raised epoch by epoch, saved as
    `epoch_N.pt` (the shell sorts epoch_10 first)."""
    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    model = DigitNet()
    expected = {}
    paths = []
    for epoch in (1, 2, 10):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["lstm.bias_hh_l0"][8:16] += 0.3 * epoch  # the forget block of (i, f, g, o)
        torch.save({"model_state_dict": state, "config": {"head_on": "last"}, "sample_input": SAMPLE},
                   root / f"epoch_{epoch}.pt")
        expected[epoch] = _forget_mean(state)
        paths.append(root / f"epoch_{epoch}.pt")
    return sorted(paths), expected  # epoch_1, epoch_10, epoch_2: as a shell glob gives them


def _value(point: dict[str, Any], name: str) -> float:
    return next(m["value"] for m in point["measures"] if m["name"] == name)


def test_check_over_checkpoints_is_each_ones_own_check_in_training_order(
        checkpoints: tuple[list[Path], dict[int, float]], tmp_path: Path) -> None:
    paths, expected = checkpoints
    out, junit, page = tmp_path / "timeline.json", tmp_path / "check.xml", tmp_path / "timeline.html"
    code = main(["check", *map(str, paths), "--json", str(out), "--junit", str(junit), "--report", str(page)])
    assert code == 1  # by epoch 10 the raised bias has pinned the forget gate: saturated past --max-saturated
    result = json.loads(out.read_text())
    timeline = result["timeline"]
    assert timeline["axis"] == "epoch" and [p["step"] for p in timeline["points"]] == [1, 2, 10]
    assert [m["model"] for m in result["models"]] == ["epoch_1.pt", "epoch_2.pt", "epoch_10.pt"]
    for point, path_name in zip(timeline["points"], ["epoch_1.pt", "epoch_2.pt", "epoch_10.pt"], strict=True):
        alone = tmp_path / f"{path_name}.json"
        assert main(["check", str(paths[0].parent / path_name), "--json", str(alone)]) == (path_name == "epoch_10.pt")
        own = json.loads(alone.read_text())
        assert point["measures"] == own["measures"] and point["passed"] is own["passed"]
        # ... and the number is the model's: the mean forget gate from the LSTM equations, independently.
        assert _value(point, "gate mean lstm/l0/fwd f") == pytest.approx(expected[point["step"]], abs=2e-6)
    means = [_value(p, "gate mean lstm/l0/fwd f") for p in timeline["points"]]
    assert means == sorted(means)  # the forget bias was raised epoch by epoch
    assert [p["passed"] for p in timeline["points"]] == [True, True, False]
    assert _value(timeline["points"][2], "saturation lstm/l0/fwd f") > 0.95
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"lstmviz check epoch_{n}.pt" for n in (1, 2, 10)]
    drawn = page.read_text()
    assert drawn.count("<svg") >= 5 and "Ordered by the epoch number in their names (not as given)." in drawn


def test_a_checkpoint_that_cannot_be_read_is_a_failed_point_and_fails_the_check(
        checkpoints: tuple[list[Path], dict[int, float]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths, _ = checkpoints
    broken = tmp_path / "epoch_5.pt"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "t.json"
    assert main(["check", str(paths[0]), str(broken), "--json", str(out)]) == 1
    points = json.loads(out.read_text())["timeline"]["points"]
    assert [p["step"] for p in points] == [1, 5]
    assert points[1]["measures"] is None and points[1]["passed"] is False and "epoch_5.pt" in points[1]["error"]
    printed = capsys.readouterr().out
    assert "1 of 2 checkpoints failed" in printed and "gate statistics by epoch" in printed


def test_checkpoints_of_one_name_in_several_folders_are_named_apart_and_compared_with_their_own_baseline(
        checkpoints: tuple[list[Path], dict[int, float]], tmp_path: Path) -> None:
    # runs/seed_a/model.pt and runs/seed_b/model.pt: the outputs name each by its folder, and a baseline of both
    # compares each with its own entry, never the first one of that file name.
    paths, expected = checkpoints
    copies = []
    for folder, source in (("seed_b", paths[2]), ("seed_a", paths[0])):  # epoch_2 and epoch_1, given b first
        (tmp_path / "runs" / folder).mkdir(parents=True)
        copies.append(tmp_path / "runs" / folder / "model.pt")
        copies[-1].write_bytes(source.read_bytes())
    base = tmp_path / "base.json"
    assert main(["check", *map(str, copies), "--json", str(base), "--max-saturated", "off"]) == 0
    result = json.loads(base.read_text())
    assert [m["model"] for m in result["models"]] == ["seed_b/model.pt", "seed_a/model.pt"]  # the order given
    assert [p["label"] for p in result["timeline"]["points"]] == ["seed_b/model.pt", "seed_a/model.pt"]
    assert _value(result["timeline"]["points"][1], "gate mean lstm/l0/fwd f") == pytest.approx(expected[1], abs=2e-6)
    again = tmp_path / "again.json"
    assert main(["check", *map(str, reversed(copies)), "--baseline", str(base), "--json", str(again),
                 "--max-saturated", "off"]) == 0
    for model in json.loads(again.read_text())["models"]:
        moved = [case for case in model["cases"] if case["check"].startswith("baseline:")]
        assert moved and all(case["delta"] == 0 for case in moved), model["model"]
