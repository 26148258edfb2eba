"""Explanations with evidence (issue 18): decompositions that add up, memory by ablation, units with p-values.

Independent answers: hand computations on 1-unit models, the model's own output on zero input,
an nn.LSTMCell loop clamped by hand, and the shipped sample models' known behaviour.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from conftest import numpy_trace  # noqa: E402
from torch import nn  # noqa: E402

from lstmviz_cli.errors import ConservationError, ExplainError  # noqa: E402
from lstmviz_cli.explain import _run, intervention  # noqa: E402
from lstmviz_cli.explain.attribution import CONSERVATION_TOLERANCE, conservation_error  # noqa: E402
from lstmviz_cli.explain.context import ablation_horizon, context_ablation, context_grid  # noqa: E402
from lstmviz_cli.explain.contextual import contextual_decomposition  # noqa: E402
from lstmviz_cli.explain.control import control_correlations, untrained_copy  # noqa: E402
from lstmviz_cli.explain.intervention import (  # noqa: E402
    UnitSpec,
    ablate_units,
    ablate_variants,
    feature_clamp,
    parse_unit_spec,
    units_for_feature,
)
from lstmviz_cli.explain.lrp import LRP_EPSILON, layerwise_relevance  # noqa: E402
from lstmviz_cli.explain.significance import (  # noqa: E402
    block_length,
    block_permutations,
    unit_significance,
)
from lstmviz_cli.explain.timescales import forget_timescales, timescale  # noqa: E402
from lstmviz_cli.loading.records import RecurrentConfig  # noqa: E402
from lstmviz_cli.tracing.records import LayerTrace, Trace  # noqa: E402

METHODS = [contextual_decomposition, layerwise_relevance]


class Net(nn.Module):
    """Embedding? -> recurrent stack -> Linear on the last step or on every step (like RebuiltModel)."""

    def __init__(self, rnn: nn.Module, *, vocab: int | None = None, outputs: int = 3, head_on: str = "last",
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embedding = nn.Embedding(vocab, rnn.input_size) if vocab else None
        self.rnn = rnn
        width = (getattr(rnn, "proj_size", 0) or rnn.hidden_size) * (2 if rnn.bidirectional else 1)
        self.fc = nn.Linear(width, outputs)
        self.head_on = head_on
        for p in self.parameters():  # moderate weights: gates neither saturated nor flat
            nn.init.uniform_(p, -0.8, 0.8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)
        out, _ = self.rnn(x)
        if self.head_on == "all":
            return self.fc(out)
        return self.fc(out[:, -1] if self.rnn.batch_first else out[-1])


def tokens(steps: int, vocab: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=(1, steps))


def features(steps: int, width: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(1, steps, width)).astype(np.float32)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# -- exact decompositions ------------------------------------------------------------------------


def test_cd_of_a_one_unit_lstm_over_two_steps_matches_a_hand_computation() -> None:
    model = Net(nn.LSTM(1, 1, batch_first=True), outputs=1, seed=3).eval()
    xs = [0.7, -1.3]
    w_ih = model.rnn.weight_ih_l0.detach().double().numpy()[:, 0]
    w_hh = model.rnn.weight_hh_l0.detach().double().numpy()[:, 0]
    b = (model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0).detach().double().numpy()
    w_out, b_out = model.fc.weight[0, 0].item(), model.fc.bias[0].item()

    # Components [baseline, step 0, step 1]; the rules of contextual.py written out on scalars.
    def lin(p: list[float], fn) -> list[float]:
        z, base = sum(p), p[0]
        return [fn(base)] + [pk * (fn(z) - fn(base)) / (z - base) for pk in p[1:]]

    def prod(a: list[float], c: list[float]) -> list[float]:
        sa, sc = sum(a[1:]), sum(c[1:])
        return [a[0] * c[0]] + [a[k] * c[0] + a[0] * c[k] + 0.5 * (a[k] * sc + sa * c[k]) for k in (1, 2)]

    h, c = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    for t, x in enumerate(xs):
        pre = []
        for k in range(4):  # gates i f g o
            p = [w_hh[k] * hj for hj in h]
            p[0] += b[k]
            p[t + 1] += w_ih[k] * x
            pre.append(p)
        i, f, g, o = lin(pre[0], _sig), lin(pre[1], _sig), lin(pre[2], math.tanh), lin(pre[3], _sig)
        c = [u + v for u, v in zip(prod(f, c), prod(i, g), strict=True)]
        h = prod(o, lin(c, math.tanh))
    result = contextual_decomposition(model, np.array([[[xs[0]], [xs[1]]]], dtype=np.float32))
    np.testing.assert_allclose(result.values, [w_out * h[1], w_out * h[2]], rtol=1e-5, atol=1e-6)
    assert result.rest == pytest.approx(w_out * h[0] + b_out, rel=1e-5, abs=1e-6)
    assert result.target == 0 and result.step == 1


def test_lrp_of_a_one_unit_lstm_over_one_step_matches_a_hand_computation() -> None:
    model = Net(nn.LSTM(1, 1, batch_first=True), outputs=1, seed=5).eval()
    x = 0.9
    w = {n: p.detach().double().numpy() for n, p in model.rnn.named_parameters()}
    pre = w["weight_ih_l0"][:, 0] * x + w["bias_ih_l0"] + w["bias_hh_l0"]
    i, g = _sig(pre[0]), math.tanh(pre[2])
    c = i * g
    h = _sig(pre[3]) * math.tanh(c)
    w_out = model.fc.weight[0, 0].item()
    y = w_out * h + model.fc.bias[0].item()
    eps = LRP_EPSILON
    sgn = lambda v: eps if v >= 0 else -eps  # noqa: E731
    r_h = w_out * h / (y + sgn(y)) * y  # epsilon rule at the head
    r_g = i * g / (c + sgn(c)) * r_h  # c = i g (c0 = 0): signal takes it all; tanh passes
    r_x = w["weight_ih_l0"][2, 0] * x / (pre[2] + sgn(pre[2])) * r_g  # epsilon rule at g's pre-activation
    result = layerwise_relevance(model, np.array([[[x]]], dtype=np.float32))
    assert result.values[0] == pytest.approx(r_x, rel=1e-5)
    assert result.output == pytest.approx(y, rel=1e-5)
    assert result.values[0] + result.rest == pytest.approx(y, rel=1e-6)


def test_lrp_of_a_one_unit_gru_over_one_step_matches_a_hand_computation() -> None:
    model = Net(nn.GRU(1, 1, batch_first=True), outputs=1, seed=6).eval()
    x = -0.6
    w = {n: p.detach().double().numpy() for n, p in model.rnn.named_parameters()}
    gi = w["weight_ih_l0"][:, 0] * x + w["bias_ih_l0"]
    r, z = _sig(gi[0] + w["bias_hh_l0"][0]), _sig(gi[1] + w["bias_hh_l0"][1])
    a_n = gi[2] + r * w["bias_hh_l0"][2]  # h0 = 0: W_hn h0 = 0
    h = (1 - z) * math.tanh(a_n)
    w_out = model.fc.weight[0, 0].item()
    y = w_out * h + model.fc.bias[0].item()
    sgn = lambda v: LRP_EPSILON if v >= 0 else -LRP_EPSILON  # noqa: E731
    r_h = w_out * h / (y + sgn(y)) * y
    r_n = h / (h + sgn(h)) * r_h  # h = (1 - z) n + z h0 with h0 = 0: all of it is the new content
    r_x = w["weight_ih_l0"][2, 0] * x / (a_n + sgn(a_n)) * r_n
    result = layerwise_relevance(model, np.array([[[x]]], dtype=np.float32))
    assert result.values[0] == pytest.approx(r_x, rel=1e-5)
    assert result.values[0] + result.rest == pytest.approx(y, rel=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rnn, head_on", [
    (lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3, batch_first=True), "last"),
    (lambda: nn.LSTM(4, 5, num_layers=2, batch_first=True), "all"),
    (lambda: nn.GRU(4, 5, num_layers=2, bidirectional=True, batch_first=True), "last"),
    (lambda: nn.GRU(4, 5, batch_first=True), "all"),
], ids=["bi-proj-lstm-last", "lstm-all", "bi-gru-last", "gru-all"])
def test_decompositions_add_up_to_the_real_output_on_stacked_bidirectional_projected_models(method, rnn, head_on) -> None:
    model = Net(rnn(), vocab=7, outputs=4, head_on=head_on).eval()
    x = tokens(9)
    result = method(model, x, step=None if head_on == "last" else 5, target=2)
    with torch.no_grad():
        out = model(torch.as_tensor(x))
    real = float(out[0, 5, 2] if head_on == "all" else out[0, 2])
    assert result.output == pytest.approx(real, rel=1e-6)
    assert result.values.shape == (9,)
    assert result.values.sum() + result.rest == pytest.approx(real, rel=1e-6, abs=1e-7)
    assert result.conservation_error < 1e-6 and result.state_error < 1e-5  # float32 output
    if head_on == "all" and not model.rnn.bidirectional:  # a causal stack: later steps get nothing
        np.testing.assert_array_equal(result.values[6:], np.zeros(3))
    assert result.to_json()["values"] == [float(v) for v in result.values]


@pytest.mark.parametrize("rnn", [
    lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, batch_first=True),
    lambda: nn.GRU(3, 4, num_layers=2, batch_first=True),
])
def test_cd_rest_is_the_models_output_when_the_stack_reads_zero_vectors(rnn) -> None:
    model = Net(rnn(), vocab=6, outputs=3).eval()
    x = tokens(8, vocab=6, seed=2)
    result = contextual_decomposition(model, x)
    handle = model.rnn.register_forward_pre_hook(lambda _m, args: (torch.zeros_like(args[0]),))
    try:
        with torch.no_grad():
            zero_input = float(model(torch.as_tensor(x))[0, result.target])
    finally:
        handle.remove()
    assert result.rest == pytest.approx(zero_input, rel=1e-5, abs=1e-6)


def test_decompositions_of_a_time_major_model_read_the_same_steps() -> None:
    torch.manual_seed(0)
    major = Net(nn.LSTM(3, 4, batch_first=False), vocab=5).eval()
    x = tokens(6, vocab=5)
    for method in METHODS:
        result = method(major, x, batch_first=False)
        assert result.conservation_error < 1e-6
        with torch.no_grad():
            assert result.output == pytest.approx(float(major(torch.as_tensor(x).t())[0].max()), rel=1e-6)


def test_the_conservation_check_compares_with_the_real_output_and_refuses(monkeypatch) -> None:
    model = Net(nn.LSTM(2, 3, batch_first=True)).eval()
    real = _run.traced_run

    def off_by_one(*args, **kwargs):  # as if the model's output were not what the states say
        run = real(*args, **kwargs)
        return dataclasses.replace(run, output=run.output + 1.0)

    monkeypatch.setattr(_run, "traced_run", off_by_one)
    for method in METHODS:
        with pytest.raises(ConservationError, match="add up to the output"):
            method(model, features(5))
    assert conservation_error(np.array([1.0, 2.0]), 0.5, 3.5) == 0.0


def test_decompositions_refuse_models_they_cannot_split_exactly() -> None:
    class Softmaxed(Net):
        def forward(self, x):  # the output is not the Linear head's
            return torch.softmax(super().forward(x), dim=-1)

    class Mixed(Net):
        def forward(self, x):  # the stack reads a mix of steps, not step t alone
            return super().forward(x.cumsum(dim=1))

    cases = [
        (Net(nn.RNN(2, 3, batch_first=True)), "not nn.RNN"),
        (Softmaxed(nn.LSTM(2, 3, batch_first=True)), "not an nn.Linear applied"),
        (Mixed(nn.LSTM(2, 3, batch_first=True)), "not the model's input features"),
    ]
    for model, message in cases:
        for method in METHODS:
            with pytest.raises(ExplainError, match=message):
                method(model.eval(), features(4))
    with pytest.raises(ExplainError, match="reads only the last step"):
        contextual_decomposition(Net(nn.LSTM(2, 3, batch_first=True)).eval(), features(4), step=1)


@pytest.fixture(scope="module")
def digitsum():
    from lstmviz_cli.loading.checkpoint import load_checkpoint
    from lstmviz_cli.loading.inputs import load_sample

    loaded = load_checkpoint("sample_models/digitsum.pt")
    return loaded, load_sample(loaded)


@pytest.mark.parametrize("method", METHODS)
def test_digitsum_decompositions_put_the_two_summed_digits_on_top(method, digitsum) -> None:
    loaded, sample = digitsum
    np.testing.assert_array_equal(sample.values, [[6, 7, 0, 0, 1, 0, 0, 0, 0, 0]])
    result = method(loaded.model, sample.values, output_labels=loaded.meta["output_labels"])
    assert result.target_label == "'13'"
    assert sorted(result.top_steps(2)) == [0, 1]
    assert result.conservation_error < CONSERVATION_TOLERANCE


@pytest.mark.parametrize("method", METHODS)
def test_gru_digitsum_decompositions_put_the_two_summed_digits_on_top(method) -> None:
    from lstmviz_cli.loading.checkpoint import load_checkpoint
    from lstmviz_cli.loading.inputs import load_sample

    loaded = load_checkpoint("sample_models/gru_digitsum.safetensors")
    result = method(loaded.model, load_sample(loaded).values)
    assert result.target == 13 and sorted(result.top_steps(2)) == [0, 1]
    assert result.conservation_error < CONSERVATION_TOLERANCE


# -- memory three ways -----------------------------------------------------------------------------


def _layer(family: str, gate: np.ndarray) -> LayerTrace:
    kind = "LSTM" if family == "lstm" else "GRU"
    cfg = RecurrentConfig(kind=kind, input_size=1, hidden_size=gate.shape[2])
    name = "f" if family == "lstm" else "z"
    return LayerTrace(module=family, layer=0, direction="fwd", config=cfg, series={name: gate, "h": gate})


def test_forget_timescales_are_minus_one_over_log_of_the_mean_gate() -> None:
    f = np.empty((2, 4, 3), dtype=np.float32)
    f[..., 0], f[..., 1], f[..., 2] = 0.5, 1.0, np.array([0.8, 1.0, 0.9, 0.9])[None, :]
    f[1, 3, :] = np.nan  # a padded step is not counted
    z = np.full((1, 5, 2), np.exp(-1 / 10), dtype=np.float32)
    trace = Trace(layers=[_layer("lstm", f), _layer("gru", z)], modules={})
    lstm, gru = forget_timescales(trace)
    assert lstm.gate == "f" and gru.gate == "z"
    mean2 = (0.8 + 1.0 + 0.9 + 0.9 + 0.8 + 1.0 + 0.9) / 7
    np.testing.assert_allclose(lstm.tau, [1 / math.log(2), np.inf, -1 / math.log(mean2)], rtol=1e-6)
    np.testing.assert_allclose(gru.tau, [10.0, 10.0], rtol=1e-5)
    assert lstm.counts.tolist()[:4] == [0, 1, 0, 0] and lstm.counts[-1] == 1 and lstm.counts.sum() == 3
    assert gru.counts[4] == 2  # [8, 16)
    assert lstm.to_json()["tau"][1] is None and timescale(np.array([0.0]))[0] == 0.0


def test_ablation_horizon_is_where_the_change_stays_small() -> None:
    kept = np.arange(6)
    assert ablation_horizon(kept, np.array([5.0, 0.0, 0.0, 0.0, 0.0, 0.0])) == 1
    assert ablation_horizon(kept, np.array([5.0, 4.0, 4.5, 0.2, 0.6, 0.0])) == 5  # 0.6 > 10% of 5
    assert ablation_horizon(kept, np.array([5.0, 4.0, 4.5, 0.2, 0.4, 0.0])) == 3
    assert ablation_horizon(kept, np.zeros(6)) == 0
    grid = context_grid(10_000, max_points=100)
    assert grid[0] == 0 and grid[1] == 1 and grid[-1] == 10_001 and len(grid) <= 100


def test_context_ablation_of_a_model_that_forgets_everything_gives_horizon_1() -> None:
    model = Net(nn.LSTM(2, 3, batch_first=True)).eval()
    with torch.no_grad():  # no recurrence, forget gate shut: h_t depends on x_t alone
        model.rnn.weight_hh_l0.zero_()
        model.rnn.bias_ih_l0[3:6] = -60.0
    result = context_ablation(model, features(12))
    assert result.horizon == 1 and result.kept.tolist() == list(range(13))
    assert result.change[0] > 1e-3 and result.change[1:].max() < 1e-9 and result.change[-1] == 0.0
    assert result.to_json()["horizon"] == 1


def test_context_ablation_of_digitsum_reads_back_to_the_first_digit(digitsum) -> None:
    loaded, sample = digitsum
    result = context_ablation(loaded.model, sample.values, output_labels=loaded.meta["output_labels"])
    assert result.target_label == "'13'" and result.quantity == "log-probability"
    assert result.horizon == 10  # the sum needs step 0: nothing short of the whole input will do
    assert result.change[9] > 1.0  # without the first digit the answer is lost


# -- units with evidence ---------------------------------------------------------------------------


def test_block_permutations_reorder_contiguous_blocks_of_the_feature() -> None:
    rng = np.random.default_rng(0)
    index = block_permutations(23, 5, 50, rng)
    assert index.shape == (50, 23)
    assert all(sorted(row) == list(range(23)) for row in index)
    steps = np.diff(index, axis=1) % 23
    assert ((steps == 1).sum(axis=1) >= 23 - 1 - 5).all()  # at most 5 jumps: block boundaries
    square = np.tile(np.repeat([0.0, 1.0], 20), 10)  # period 40: autocorrelation reaches 0 at lag 10
    assert block_length(square) in (10, 11)  # 10 for the infinite wave; the sample's edges add one
    assert block_length(np.random.default_rng(1).normal(size=400)) <= 2
    assert block_length(np.ones(50)) == 1


def test_a_feature_equal_to_a_unit_is_significant_and_noise_is_not() -> None:
    trace = numpy_trace(steps=300, hidden_size=6, seed=4)
    unit = trace["lstm/l0/fwd/h"][0, :, 3].astype(np.float64)
    exact = unit_significance(trace, {"copy": unit}, permutations=400)
    top = exact.ranked[0]
    assert (top.key, top.unit, top.r) == ("lstm/l0/fwd/h", 3, pytest.approx(1.0))
    assert top.p == pytest.approx(1 / 401) and top.significant
    rng = np.random.default_rng(7)
    ps = [unit_significance(trace, {"noise": rng.normal(size=300)}, permutations=200, seed=s).not_significant
          for s in range(40)]
    pvals = np.array([row[0].p if row else 0.0 for row in ps])
    assert 0.3 < pvals.mean() < 0.7  # uniform under the null
    assert (pvals <= 0.05).mean() <= 0.15


def test_too_few_permutations_to_reach_the_level_are_said_not_called_no_finding() -> None:
    """With 10 permutations over 2 features the smallest p is 2/11 > 0.05: the note says nothing *could* be
    significant and how many permutations would do, not that no unit tracks a feature."""
    trace = numpy_trace(steps=300, hidden_size=6, seed=4)
    unit = trace["lstm/l0/fwd/h"][0, :, 3].astype(np.float64)
    features = {"copy": unit, "noise": np.random.default_rng(7).normal(size=300)}
    few = unit_significance(trace, features, permutations=10)
    assert not few.ranked and few.not_significant[0].p == pytest.approx(2 / 11)
    assert few.note.startswith("no unit can be significant with 10 permutations: over 2 features the smallest "
                               "p-value they can give is 0.18, above alpha 0.05 (--permutations 39 or more")
    enough = unit_significance(trace, features, permutations=39)
    assert enough.ranked[0].p == pytest.approx(2 / 40) and enough.note == ""


@pytest.fixture(scope="module")
def charlm():
    from lstmviz_cli.analysis.textfeatures import text_features
    from lstmviz_cli.loading.checkpoint import load_checkpoint
    from lstmviz_cli.loading.inputs import load_sample
    from lstmviz_cli.tracing.sample import trace_sample

    loaded = load_checkpoint("sample_models/charlm.pt")
    sample = load_sample(loaded)
    feats = text_features(list(sample.text))
    feats["label:random"] = np.random.default_rng(0).integers(0, 2, sample.steps).astype(np.float64)
    return loaded, sample, trace_sample(loaded, sample), feats


def test_charlm_quote_unit_is_significant_and_above_its_control_while_a_random_label_is_not(charlm) -> None:
    loaded, sample, trace, feats = charlm
    control = control_correlations(loaded.model, sample.values, feats)
    tests = unit_significance(trace, feats, control=control)
    quote = next(u for u in tests.ranked if u.feature == "inside_quotes")
    assert (quote.key, quote.unit) == ("lstm/l0/fwd/h", 49) and quote.r == pytest.approx(-0.75, abs=0.01)
    assert quote.p < 0.01 and quote.control_r is not None and abs(quote.r) - quote.control_r > 0.3
    assert not any(u.feature == "label:random" for u in tests.ranked)
    random = next(u for u in tests.not_significant if u.feature == "label:random")
    assert random.p > 0.05 and not random.significant
    assert units_for_feature(tests, "inside_quotes", 1) == [UnitSpec("lstm/l0/fwd", 49)]
    assert tests.to_json()["ranked"][0]["p"] == tests.ranked[0].p
    assert control == control_correlations(loaded.model, sample.values, feats)  # deterministic


def test_untrained_copy_is_fresh_deterministic_and_leaves_the_callers_random_state() -> None:
    model = Net(nn.LSTM(2, 3, batch_first=True), vocab=4)
    state = torch.random.get_rng_state()
    a, b = untrained_copy(model), untrained_copy(model)
    assert torch.equal(state, torch.random.get_rng_state())
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q) and not torch.equal(p, r), name

    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

    with pytest.raises(ExplainError, match="'scale' belongs to a module without reset_parameters"):
        untrained_copy(Custom())


# -- causal check of a unit ------------------------------------------------------------------------


def test_parse_unit_spec() -> None:
    assert parse_unit_spec("lstm/l0/fwd:49") == UnitSpec("lstm/l0/fwd", 49)
    assert parse_unit_spec("enc.rnn/l1/bwd:3=-0.5") == UnitSpec("enc.rnn/l1/bwd", 3, -0.5)
    assert str(UnitSpec("lstm/l0/fwd", 4, 0.25)) == "lstm/l0/fwd:4=0.25"
    for bad in ("lstm:49", "lstm/l0/fwd:x", "lstm/l0/up:1", "lstm/l0/fwd:1=nan", "lstm/l0/fwd:1=abc"):
        with pytest.raises(ExplainError):
            parse_unit_spec(bad)


def test_ablating_a_unit_matches_an_lstm_cell_loop_clamped_by_hand() -> None:
    model = Net(nn.LSTM(2, 4, batch_first=True), head_on="all", outputs=3).eval()
    x = features(7)
    result = ablate_units(model, x, ["rnn/l0/fwd:2"], step=4)
    cell = nn.LSTMCell(2, 4)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in model.rnn.state_dict().items()})
    h, c = torch.zeros(1, 4), torch.zeros(1, 4)
    with torch.no_grad():
        for t in range(5):
            h, c = cell(torch.as_tensor(x[:, t]), (h, c))
            h[0, 2] = 0.0
        expected = torch.log_softmax(model.fc(h)[0].double(), 0)[result.target]
    assert result.target_after == pytest.approx(float(expected), abs=1e-6)
    assert result.loss_kind == "predicted-class" and result.loss_after == pytest.approx(-result.target_after)


@pytest.mark.parametrize("rnn, spec", [
    (lambda: nn.LSTM(2, 4, num_layers=2, batch_first=True), "rnn/l0/fwd:1"),
    (lambda: nn.GRU(2, 4, num_layers=2, bidirectional=True, batch_first=True), "rnn/l0/bwd:1"),
])
def test_a_unit_whose_outgoing_weights_are_zero_changes_nothing(rnn, spec) -> None:
    model = Net(rnn()).eval()
    unit = parse_unit_spec(spec)
    with torch.no_grad():  # nothing reads unit 1 of layer 0 (that direction): not W_hh, not layer 1
        suffix = "_reverse" if unit.direction else ""
        getattr(model.rnn, f"weight_hh_l0{suffix}")[:, 1] = 0.0
        offset = model.rnn.hidden_size if unit.direction else 0
        model.rnn.weight_ih_l1[:, offset + 1] = 0.0
        if model.rnn.bidirectional:
            model.rnn.weight_ih_l1_reverse[:, offset + 1] = 0.0
    result = ablate_units(model, features(6), [spec])
    assert result.target_change == 0.0 and result.loss_change == 0.0 and not result.changed
    used = ablate_units(model, features(6), ["rnn/l1/fwd:1"])
    assert used.changed


def test_ablation_refuses_units_it_cannot_reach() -> None:
    model = Net(nn.LSTM(2, 4, proj_size=2, batch_first=True)).eval()
    for spec, message in [("rnn/l0/fwd:1", "projected"), ("lstm/l0/fwd:1", "stack is 'rnn'"),
                          ("rnn/l1/fwd:1", "1 layer"), ("rnn/l0/bwd:1", "forward only")]:
        with pytest.raises(ExplainError, match=message):
            ablate_units(model, features(3), [spec])


def _assert_same_ablation(got, want, tol: float) -> None:
    assert (got.units, got.step, got.target, got.loss_kind) == (want.units, want.step, want.target, want.loss_kind)
    for field in ("target_before", "target_after", "loss_before", "loss_after"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None) and (a is None or a == pytest.approx(b, abs=tol)), field
    for field in ("step_loss_before", "step_loss_after"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None), field
        if a is not None:
            np.testing.assert_allclose(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("rnn, vocab, head_on, task, dtype, variants", [
    (lambda: nn.LSTM(3, 5, batch_first=True), 6, "all", "char-lm", torch.float32,
     [["rnn/l0/fwd:1"], ["rnn/l0/fwd:1=0.6"], ["rnn/l0/fwd:0=-0.4", "rnn/l0/fwd:3", "rnn/l0/fwd:4=0.9"]]),
    (lambda: nn.LSTM(2, 4, num_layers=2, bidirectional=True, batch_first=True), None, "last", None, torch.float32,
     [["rnn/l1/bwd:2"], ["rnn/l0/bwd:1=0.5", "rnn/l1/fwd:3"], ["rnn/l0/fwd:0=-0.7", "rnn/l0/bwd:1", "rnn/l1/bwd:0=0.3"],
      ["rnn/l0/fwd:0"]]),
    (lambda: nn.GRU(2, 4, num_layers=2, bidirectional=True), None, "last", None, torch.float64,
     [["rnn/l0/bwd:3=0.3"], ["rnn/l1/fwd:1", "rnn/l0/fwd:2=-0.7"], ["rnn/l0/bwd:3"]]),
])
def test_batched_variants_equal_one_ablation_per_variant(rnn, vocab, head_on, task, dtype, variants,
                                                         monkeypatch) -> None:
    model = Net(rnn(), vocab=vocab, outputs=vocab or 3, head_on=head_on).to(dtype).eval()
    batch_first = model.rnn.batch_first
    x = tokens(9, vocab=vocab) if vocab else features(9)
    want = [ablate_units(model, x, v, task=task, batch_first=batch_first) for v in variants]
    monkeypatch.setattr(intervention, "ablate_units", None)  # one batched run, not the per-variant fallback
    got = ablate_variants(model, x, variants, task=task, batch_first=batch_first)
    # float64 to 1e-10: a clamp value rounded through float32 on its way (1e-8) would show
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for g, w in zip(got, want, strict=True):
        _assert_same_ablation(g, w, tol)
        assert g.changed
    # the variants differ from each other: each row held its own units, no more
    afters = [g.target_after for g in got]
    assert min(abs(a - b) for i, a in enumerate(afters) for b in afters[i + 1:]) > 1e-4


def test_batched_variants_of_a_model_that_takes_only_a_batch_of_one(monkeypatch) -> None:
    class StoredState(Net):  # a tutorial-style model: its initial state is a buffer of batch 1
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x, (torch.zeros(1, 1, 4), torch.full((1, 1, 4), 0.1)))
            return self.fc(out[:, -1])

    model = StoredState(nn.LSTM(2, 4, batch_first=True)).eval()
    variants = [["rnn/l0/fwd:1"], ["rnn/l0/fwd:2=0.5"]]
    want = [ablate_units(model, features(6), v) for v in variants]
    calls = []
    monkeypatch.setattr(intervention, "ablate_units", lambda *a, **k: calls.append(a) or ablate_units(*a, **k))
    got = ablate_variants(model, features(6), variants)
    assert len(calls) == 2  # run once per variant
    for g, w in zip(got, want, strict=True):
        _assert_same_ablation(g, w, 0.0)
        assert g.changed


def test_batched_variants_refuse_bad_units_before_running() -> None:
    model = Net(nn.LSTM(2, 4, num_layers=2, batch_first=True)).eval()
    for bad, message in [(["rnn/l0/fwd:7"], "units 0..3"), (["lstm/l0/fwd:1"], "stack is 'rnn'"),
                         (["rnn/l2/fwd:0"], "2 layer"), (["rnn/l0/bwd:0"], "forward only"), ([], "no unit"),
                         ([UnitSpec("rnn/l0/fwd", 1, float("nan"))], "finite")]:
        with pytest.raises(ExplainError, match=message):
            ablate_variants(model, features(3), [["rnn/l0/fwd:1"], bad])
    assert ablate_variants(model, features(3), []) == []


def test_charlm_pinning_the_quote_unit_outside_quotes_raises_the_loss_inside_quotes_more(charlm) -> None:
    loaded, sample, trace, feats = charlm
    quotes = feats["inside_quotes"]
    pinned = feature_clamp(trace, "lstm/l0/fwd:49", quotes, present=False)
    assert pinned.value == pytest.approx(0.32, abs=0.01)  # the unit's level outside quotes
    result = ablate_units(loaded.model, sample.values, [pinned], task="char-lm")
    change = result.step_loss_after - result.step_loss_before  # step t predicts character t + 1
    inside = quotes[:-1] > 0
    assert result.loss_kind == "next-token" and result.changed
    assert change[inside].mean() > 2 * max(change[~inside].mean(), 0.0)
    assert result.loss_after > result.loss_before
    assert len(result.to_json()["step_loss_change"]) == sample.steps - 1


@pytest.mark.gpu
def test_explanations_on_cuda_match_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = Net(nn.LSTM(3, 5, num_layers=2, batch_first=True), vocab=6, head_on="all").eval()
    x = tokens(9, vocab=6)
    variants = [["rnn/l0/fwd:2"], ["rnn/l1/fwd:1=0.4", "rnn/l0/fwd:0"]]
    on_cpu = [contextual_decomposition(model, x), layerwise_relevance(model, x),
              context_ablation(model, x), ablate_units(model, x, ["rnn/l0/fwd:2"]), ablate_variants(model, x, variants)]
    model.cuda()
    on_gpu = [contextual_decomposition(model, x), layerwise_relevance(model, x),
              context_ablation(model, x), ablate_units(model, x, ["rnn/l0/fwd:2"]), ablate_variants(model, x, variants)]
    for a, b in zip(on_cpu[:2], on_gpu[:2], strict=True):
        np.testing.assert_allclose(b.values, a.values, atol=1e-4)
        assert b.conservation_error < CONSERVATION_TOLERANCE
    np.testing.assert_allclose(on_gpu[2].change, on_cpu[2].change, atol=1e-4)
    assert on_gpu[3].target_after == pytest.approx(on_cpu[3].target_after, abs=1e-4)
    for a, b in zip(on_cpu[4], on_gpu[4], strict=True):  # one batched run, per-row clamps on the device
        _assert_same_ablation(b, a, 1e-4)
