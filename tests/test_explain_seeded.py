"""The explanations run the model as the trace did: from the same random state, with one list of recurrent types.

A model that draws random numbers in its forward (`h0 = torch.randn(...)`, as tutorials do) gives the
trace's output only from the trace's random state (`tracing.seeding`). Attribution (CD, LRP), context
ablation and unit ablation run it from there, like gradient saliency; the caller's state is kept.
Independent answer: the model's own output computed under `seeded()`, as `tracing.sample` runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from lstmviz_cli.explain.context import context_ablation  # noqa: E402
from lstmviz_cli.explain.contextual import contextual_decomposition  # noqa: E402
from lstmviz_cli.explain.intervention import ablate_units  # noqa: E402
from lstmviz_cli.explain.lrp import layerwise_relevance  # noqa: E402
from lstmviz_cli.tracing.seeding import seeded  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "lstmviz_cli"
TOKENS = torch.tensor([[1, 4, 2, 5, 0, 3]])


class RandomStart(nn.Module):
    """Embedding -> LSTM from a random (h0, c0) drawn in every forward -> Linear on the last step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(6, 3)
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0, c0 = torch.randn(1, x.shape[0], 4), torch.randn(1, x.shape[0], 4)
        out, _ = self.lstm(self.embedding(x), (h0, c0))
        return self.fc(out[:, -1])


def _traced_output(model: nn.Module) -> torch.Tensor:
    with torch.no_grad(), seeded():
        return model(TOKENS)[0].double()


@pytest.mark.parametrize("method", [contextual_decomposition, layerwise_relevance])
def test_attribution_explains_the_traced_runs_output(method) -> None:  # noqa: ANN001
    model = RandomStart().eval()
    expected = _traced_output(model)
    torch.randn(7)  # the caller's random state has moved on: the explanation must not depend on it
    first = method(model, TOKENS.numpy())
    second = method(model, TOKENS.numpy())
    assert first.target == int(expected.argmax())
    assert first.output == pytest.approx(float(expected[first.target]), abs=1e-6)
    assert first.values.tolist() == second.values.tolist() and first.rest == second.rest


def test_context_ablation_and_unit_ablation_start_from_the_traced_runs_state() -> None:
    model = RandomStart().eval()
    log_p = torch.log_softmax(_traced_output(model), dim=0)
    target = int(log_p.argmax())
    torch.manual_seed(5)
    untouched = torch.rand(3)
    torch.manual_seed(5)
    curve = context_ablation(model, TOKENS.numpy())
    assert torch.equal(torch.rand(3), untouched)  # the caller's random state is given back
    assert curve.target == target and curve.output == pytest.approx(float(log_p[target]), abs=1e-6)
    # Three runs (the model's own, replayed layer by layer, ablated): unseeded they drew three
    # different initial states and the replay check refused.
    ablation = ablate_units(model, TOKENS.numpy(), ["lstm/l0/fwd:1"])
    assert ablation.target == target and ablation.target_before == pytest.approx(float(log_p[target]), abs=1e-6)
    assert ablation.target_after != ablation.target_before


def test_the_recurrent_module_types_are_listed_once() -> None:
    """(nn.LSTM, nn.GRU, nn.RNN) and the cells' tuple live in loading.modules; elsewhere they are imported."""
    stock = {"LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"}
    restated = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Tuple) and sum(
                    isinstance(e, ast.Attribute) and e.attr in stock for e in node.elts) >= 2:
                restated.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
    assert restated == ["loading/modules.py:15 (nn.LSTM, nn.GRU, nn.RNN)",
                        "loading/modules.py:16 (nn.LSTMCell, nn.GRUCell, nn.RNNCell)"]
