"""`lstmviz_cli.Monitor` in a training loop: reports every N epochs, an index of gate statistics over time whose
numbers are the reports' own, training that goes on exactly as without it, and nothing spent between reports.
"""

from __future__ import annotations

import json
import re
import timeit
from pathlib import Path

import pytest
import torch
from torch import nn

import lstmviz_cli
from lstmviz_cli.errors import InputError, OutputError
from lstmviz_cli.page.model import Page
from lstmviz_cli.page.timeline import build_timeline_page

VOCAB = list("abcdefgh")
SAMPLE = "abchgfebadcafedhgabe"


class CharModel(nn.Module):
    """Embedding -> LSTM -> dropout -> Linear on every step (dropout draws random numbers while training)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(len(VOCAB), 6)
        self.lstm = nn.LSTM(6, 12, batch_first=True)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(12, len(VOCAB))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        return self.fc(self.drop(out))


def _train(epochs: int, monitor_dir: Path | None, **options: object) -> tuple[CharModel, lstmviz_cli.Monitor | None]:
    """A plain training loop (next-token prediction on random sequences), with or without a Monitor."""
    torch.manual_seed(0)
    model = CharModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    monitor = None if monitor_dir is None else lstmviz_cli.Monitor(model, SAMPLE, VOCAB, out_dir=monitor_dir,
                                                                   **options)
    for epoch in range(1, epochs + 1):
        model.train()
        for _ in range(4):
            x = torch.randint(0, len(VOCAB), (16, 12))
            logits = model(x[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(VOCAB)), x[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if monitor is not None:
            monitor.step(epoch)
    return model, monitor


def _values(measures: list[dict[str, object]]) -> dict[object, object]:
    """A JSON `measures` list by measure name."""
    return {m["name"]: m["value"] for m in measures}


def _table(page: str, section: str) -> list[list[str]]:
    """The rows of the table in one section of a drawn page, as cell texts."""
    start = page.index(f'<section id="{section}"')
    body = page[start:page.index("</section>", start)]
    table = body[body.index("<table"):body.index("</table>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in rows if "<td" in row]


def test_three_epochs_give_three_summaries_and_an_index_whose_charts_are_their_numbers(tmp_path: Path) -> None:
    model, monitor = _train(3, tmp_path / "lstmviz", html=False)
    assert monitor is not None
    summaries = [json.loads((tmp_path / "lstmviz" / f"epoch_{n:04d}.json").read_text()) for n in (1, 2, 3)]
    assert [p.name for p in (tmp_path / "lstmviz").glob("*.html")] == ["index.html"]  # html=False: no report pages
    timeline = json.loads((tmp_path / "lstmviz" / "timeline.json").read_text())
    assert [p["step"] for p in timeline["points"]] == [1, 2, 3] and timeline["axis"] == "epoch"
    for point, summary in zip(timeline["points"], summaries, strict=True):
        assert point["measures"] == summary["measures"] and point["link"] == f"epoch_{point['step']:04d}.json"
        stats = {(s["prefix"], s["series"]): s for s in summary["gate_stats"]}
        values = _values(point["measures"])
        # Each number is the report's own, read from its other fields.
        assert values["gate mean lstm/l0/fwd f"] == stats[("lstm/l0/fwd", "f")]["mean"]
        shares = {m["series"]: m["value"] for m in point["measures"] if m["measure"] == "saturation"}
        assert sorted(shares) == ["f", "i", "o"]  # the sigmoid gates
        for gate, share in shares.items():
            stat = stats[("lstm/l0/fwd", gate)]
            assert share == pytest.approx(stat["frac_low"] + stat["frac_high"], abs=2e-6)
        assert values["cell max lstm/l0/fwd"] == stats[("lstm/l0/fwd", "c")]["abs_max"]
        assert values["cell growth lstm/l0/fwd"] == stats[("lstm/l0/fwd", "c")]["growth"]
        dead = [f for f in summary["findings"] if f["code"] == "dead_units"]
        assert values["dead units lstm/l0/fwd"] == sum(len(f["units"]) for f in dead)
        assert values["memory horizon"] == summary["saliency"]["horizon"]
    # The index charts exactly these points: its figure data are the timeline's, its tables show them.
    index = (tmp_path / "lstmviz" / "index.html").read_text()
    rows = _table(index, "timeline-memory-gate")
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert [float(row[1]) for row in rows] == pytest.approx(
        [_values(p["measures"])["gate mean lstm/l0/fwd f"] for p in timeline["points"]], rel=1e-3)
    page = monitor.index.read_text()
    assert page.count("<svg") >= 5  # a chart per measure
    data = next(spec.data for spec in _timeline_page(monitor).figures() if spec.ref.kind == "timeline-memory_gate")
    assert data.x == (1.0, 2.0, 3.0)
    assert data.lines[0].values == tuple(_values(s["measures"])["gate mean lstm/l0/fwd f"] for s in summaries)
    # The training itself went on exactly as without the monitor: same random draws, same weights.
    plain, _ = _train(3, None)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values(), strict=True))
    assert model.training


def _timeline_page(monitor: lstmviz_cli.Monitor) -> Page:
    return build_timeline_page(monitor.timeline, title="t")


def test_a_call_that_does_not_fire_costs_nothing_and_runs_nothing(tmp_path: Path) -> None:
    model = CharModel()
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    monitor = lstmviz_cli.Monitor(model, SAMPLE, VOCAB, every=10**9, out_dir=tmp_path / "m")
    per_call = min(timeit.repeat(monitor.step, number=20_000, repeat=3)) / 20_000
    assert per_call < 5e-6, f"{per_call * 1e9:.0f} ns per call"
    assert not calls and not (tmp_path / "m").exists()


def test_every_n_calls_writes_the_report_page_and_links_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CharModel()
    monitor = lstmviz_cli.Monitor(model, SAMPLE, VOCAB, every=2, out_dir=tmp_path, axis="step", units=4)
    assert monitor.step() is None
    made = monitor.step()
    assert made is not None and made is monitor.last
    assert (tmp_path / "step_0002.html").read_text(encoding="utf-8") == made.html
    assert 'href="step_0002.html"' in monitor.index.read_text()
    assert "CharModel · step 2" in made.html


def test_a_failing_report_is_a_failed_point_and_a_warning_not_a_stopped_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=tmp_path, html=False)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise InputError("the sample holds NaN")

    monkeypatch.setattr("lstmviz_cli.api.monitor.report", refuse)
    with pytest.warns(RuntimeWarning, match="epoch 7: the sample holds NaN"):
        assert monitor.step(7) is None
    point = json.loads((tmp_path / "timeline.json").read_text())["points"][0]
    assert point["measures"] is None and point["error"] == "the sample holds NaN" and point["step"] == 7
    assert "the sample holds NaN" in monitor.index.read_text()


def test_a_bad_sample_fails_when_the_monitor_is_made() -> None:
    with pytest.raises(InputError, match="outside the model's vocabulary: 'z'"):
        lstmviz_cli.Monitor(CharModel(), "abz", VOCAB)
    with pytest.raises(InputError, match="every=0"):
        lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, every=0)


def test_where_and_how_it_reports_is_checked_when_the_monitor_is_made(tmp_path: Path) -> None:
    # A misspelt option, a folder that cannot be made or one holding the user's index.html fail before the
    # first epoch, as lstmviz's one-line errors, never a TypeError/OSError after an epoch of training.
    with pytest.raises(InputError, match=r"Monitor: unknown option 'unit'; it takes report\(\)'s options: .*units"):
        lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=tmp_path / "a", unit=3)
    with pytest.raises(InputError, match="unknown option 'trust_pickle'"):  # a checkpoint's, not a model object's
        lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=tmp_path / "a", trust_pickle=True)
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create out_dir .*file/sub.*file. is a file"):
        lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=tmp_path / "file" / "sub")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("my own page")
    with pytest.raises(OutputError, match="holds a index.html lstmviz did not write; give the Monitor its own folder"):
        lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=mine)
    assert (mine / "index.html").read_text() == "my own page"
    made = lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=tmp_path / "new" / "run", html=False, units=4)
    assert not (tmp_path / "new").exists() and made.options == {"units": 4}  # made by the first report


def test_an_index_that_cannot_be_written_is_a_warning_not_a_stopped_training(tmp_path: Path) -> None:
    monitor = lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=tmp_path, html=False)
    (tmp_path / "timeline.json").write_text("the user's file, made after the monitor")
    with pytest.warns(RuntimeWarning, match="epoch 1: the index was not updated: .*timeline.json"):
        assert monitor.step(1) is not None
    assert (tmp_path / "epoch_0001.json").is_file()
    assert (tmp_path / "timeline.json").read_text() == "the user's file, made after the monitor"
    strict = lstmviz_cli.Monitor(CharModel(), SAMPLE, VOCAB, out_dir=tmp_path / "s", html=False, strict=True)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "index.html").write_text("mine")
    with pytest.raises(OutputError, match="index.html"):
        strict.step(1)
