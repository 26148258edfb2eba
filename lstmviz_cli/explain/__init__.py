"""Explain: the analyses that must run the model, and the evidence that they are right.

One idea per module; the issue-18 methods return a frozen dataclass of NumPy arrays with a `to_json()`:

=====================  =====  ===============================================================
module                 torch  what it computes
=====================  =====  ===============================================================
``orchestrate``        yes    `analyze_run`: the trace's analysis plus saliency (and the probe)
``saliency``           yes    gradient saliency over input steps, gradient norms per gate
``probe``              yes    the key-at-start memory-length probe
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
`Trace` records and NumPy arrays, and stay beside the methods whose results they check. explain/
reads the loading, tracing and analysis stages; analysis/ never imports it. Importing this package
imports nothing heavy.
"""

from __future__ import annotations
