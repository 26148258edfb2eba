"""The sample models, written the way users write them (plain attribute names, no lstmviz imports).

Every stock model is `embedding`/input -> `lstm` or `gru` -> `fc`, so lstmviz can rebuild it from a
state dict and its `config`: the head reads every step (`head_on="all"`, the char LM) or only the
last step's output (`head_on="last"`, the classifiers and the regressor). The two custom-cell models
at the end are the hand-written styles that issue 9 opens up.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CharLM(nn.Module):
    """Character-level language model: Embedding -> 2-layer LSTM -> Linear on every step."""

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden_size: int = 128, num_layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out)


class DigitSum(nn.Module):
    """Sum of the first two digits of a sequence: Embedding -> LSTM -> Linear on the last step."""

    def __init__(self, vocab_size: int = 10, embed_dim: int = 16, hidden_size: int = 64, num_classes: int = 19):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out[:, -1])


class GruDigitSum(nn.Module):
    """The digit-sum task with a GRU: Embedding -> GRU -> Linear on the last step."""

    def __init__(self, vocab_size: int = 10, embed_dim: int = 16, hidden_size: int = 64, num_classes: int = 19):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embedding(x))
        return self.fc(out[:, -1])


class Sine(nn.Module):
    """Next value of a noisy sum of sines: 2-layer bidirectional projected LSTM -> Linear (last step)."""

    def __init__(self, input_size: int = 1, hidden_size: int = 32, proj_size: int = 16, num_layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(
            input_size, hidden_size, num_layers=num_layers, batch_first=True,
            bidirectional=True, proj_size=proj_size,
        )
        self.fc = nn.Linear(2 * proj_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


# -- hand-written cells (issue 9): the styles found in tutorials and course notebooks ------------


class ManualLSTMCell(nn.Module):
    """An LSTM cell with fused weights, split with chunk(4); the caller loops over time."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.x2h = nn.Linear(input_size, 4 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 4 * hidden_size)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        gates = self.x2h(x) + self.h2h(h)
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
        in_gate = torch.sigmoid(in_gate)
        forget_gate = torch.sigmoid(forget_gate)
        cell_gate = torch.tanh(cell_gate)
        out_gate = torch.sigmoid(out_gate)
        c_next = forget_gate * c + in_gate * cell_gate
        h_next = out_gate * torch.tanh(c_next)
        return h_next, c_next


class FusedCellDigitSum(nn.Module):
    """Digit sum with a hand-written fused cell called once per step."""

    def __init__(self, vocab_size: int = 10, embed_dim: int = 16, hidden_size: int = 64, num_classes: int = 19):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.cell = ManualLSTMCell(embed_dim, hidden_size)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(x)
        h = emb.new_zeros(x.shape[0], self.hidden_size)
        c = emb.new_zeros(x.shape[0], self.hidden_size)
        for t in range(x.shape[1]):
            h, c = self.cell(emb[:, t], (h, c))
        return self.fc(h)


class NaiveLSTM(nn.Module):
    """An LSTM layer with separate W_*, U_*, b_* per gate that loops over time itself."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape))

        self.W_i, self.U_i, self.b_i = param(input_size, hidden_size), param(hidden_size, hidden_size), param(hidden_size)
        self.W_f, self.U_f, self.b_f = param(input_size, hidden_size), param(hidden_size, hidden_size), param(hidden_size)
        self.W_c, self.U_c, self.b_c = param(input_size, hidden_size), param(hidden_size, hidden_size), param(hidden_size)
        self.W_o, self.U_o, self.b_o = param(input_size, hidden_size), param(hidden_size, hidden_size), param(hidden_size)
        bound = hidden_size ** -0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch, steps, _ = x.shape
        h_t = x.new_zeros(batch, self.hidden_size)
        c_t = x.new_zeros(batch, self.hidden_size)
        hidden_seq = []
        for t in range(steps):
            x_t = x[:, t, :]
            I_gate = torch.sigmoid(x_t @ self.W_i + h_t @ self.U_i + self.b_i)
            F_gate = torch.sigmoid(x_t @ self.W_f + h_t @ self.U_f + self.b_f)
            C_tilde = torch.tanh(x_t @ self.W_c + h_t @ self.U_c + self.b_c)
            O_gate = torch.sigmoid(x_t @ self.W_o + h_t @ self.U_o + self.b_o)
            c_t = F_gate * c_t + I_gate * C_tilde
            h_t = O_gate * torch.tanh(c_t)
            hidden_seq.append(h_t.unsqueeze(1))
        return torch.cat(hidden_seq, dim=1), (h_t, c_t)


class LoopLSTMDigitSum(nn.Module):
    """Digit sum with the separate-parameter LSTM layer that loops internally."""

    def __init__(self, vocab_size: int = 10, embed_dim: int = 16, hidden_size: int = 64, num_classes: int = 19):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = NaiveLSTM(embed_dim, hidden_size)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embedding(x))
        return self.fc(out[:, -1])


MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "CharLM": CharLM,
    "DigitSum": DigitSum,
    "GruDigitSum": GruDigitSum,
    "Sine": Sine,
    "FusedCellDigitSum": FusedCellDigitSum,
    "LoopLSTMDigitSum": LoopLSTMDigitSum,
}


def build(class_name: str, kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate a sample model from its class name and constructor arguments."""
    return MODEL_CLASSES[class_name](**kwargs)
