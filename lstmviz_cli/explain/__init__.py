"""Explanations with evidence (issue 18): analyses that must run the model, and their statistics.

One idea per module; every result is a frozen dataclass of NumPy arrays with a `to_json()`:

=====================  =====  ===============================================================
module                 torch  what it computes
=====================  =====  ===============================================================
``attribution``        no     the `Attribution` record and its conservation check
``contextual``         yes    contextual decomposition of one output over the input steps
``lrp``                yes    layer-wise relevance propagation (epsilon, signal-takes-all)
``context``            yes    context-ablation curve and the ablation memory horizon
``timescales``         no     per-unit forget timescales tau = -1 / ln(mean forget gate)
``significance``       no     block-permutation p-values of unit x feature correlations
``control``            yes    the same feature's best |r| in an untrained model
``intervention``       yes    zero or clamp units during the forward pass (causal check)
=====================  =====  ===============================================================

The torch-free modules (`attribution`, `timescales`, `significance`, `_components`) read only
`Trace` records and NumPy arrays; they belong to the analysis stage once the package is split
into stage folders. Importing this package imports nothing heavy.
"""

from __future__ import annotations
