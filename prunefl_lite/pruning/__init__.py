"""Pruning, split by concern; every public name is importable as ``prunefl_lite.pruning.NAME``.

* `masks`: from-scratch NumPy magnitude masks, `apply_masks`, `sparsity`, `kernel_sparsity`;
* `schedules`: the Zhu & Gupta polynomial schedule and tensorflow-model-optimization
  (`prune_with_tfmot`, `tfmot_masks`, `strip`, `pruning_variables`);
* `report`: per-array sparsity tables (`sparsity_report`);
* `structured`: removing whole units and filters (`unit_norms`, `kept_units`, `prune_units`,
  `slice_units`);
* `federated`: pruning strategies for `run_fedavg` (`GlobalPruning`, `ClientPruning`);
* `submodels`: width sub-models for devices that differ (`HeteroFL`, `FjORD`,
  `FederatedDropout`, `width_masks`, `slice_average`, `submodel`);
* `dynamic`: sparse from round 1 with federated prune-and-regrow (`DynamicPruning`) and
  server optimisers (`ServerOptimizer`: FedAvgM, FedAdam);
* `compression`: compressed updates of a dense model (`TopKUpdates`, `RandomKUpdates`, `STC`),
  with or without error feedback;
* `feddst`: FedDST as published (`FedDST`: clients readjust their masks, votes merge them);
* `consensus`: mask agreement of the clients (`mask_consensus`, `RecordConsensus`).

No module here imports the round loop (`prunefl_lite.fedavg`); the strategies build on the
protocol in `prunefl_lite.strategy`.
"""

from prunefl_lite.pruning.compression import STC, RandomKUpdates, TopKUpdates
from prunefl_lite.pruning.consensus import RecordConsensus, jaccard, kept_set, mask_consensus
from prunefl_lite.pruning.dynamic import DynamicPruning, ServerOptimizer, erk_densities
from prunefl_lite.pruning.feddst import FedDST
from prunefl_lite.pruning.federated import ClientPruning, GlobalPruning
from prunefl_lite.pruning.masks import apply_masks, kernel_sparsity, magnitude_masks, sparsity
from prunefl_lite.pruning.report import ReportRow, SparsityReport, format_report, sparsity_report
from prunefl_lite.pruning.schedules import (
    VariableInfo,
    polynomial_sparsity,
    prune_with_tfmot,
    pruning_variables,
    strip,
    tfmot_masks,
)
from prunefl_lite.pruning.structured import kept_units, prune_units, slice_units, unit_norms
from prunefl_lite.pruning.submodels import (
    FederatedDropout,
    FjORD,
    HeteroFL,
    WidthLayout,
    slice_average,
    submodel,
    unit_masks,
    width_layout,
    width_masks,
)
from prunefl_lite.strategy import NoPruning

__all__ = [
    "ClientPruning", "DynamicPruning", "FedDST", "FederatedDropout", "FjORD", "GlobalPruning",
    "HeteroFL", "NoPruning", "RandomKUpdates", "RecordConsensus", "ReportRow", "STC",
    "ServerOptimizer", "SparsityReport", "TopKUpdates", "VariableInfo", "WidthLayout",
    "apply_masks", "erk_densities", "format_report", "jaccard", "kept_set", "kept_units",
    "kernel_sparsity", "magnitude_masks", "mask_consensus", "polynomial_sparsity", "prune_units",
    "prune_with_tfmot", "pruning_variables", "slice_average", "slice_units", "sparsity",
    "sparsity_report", "strip", "submodel", "tfmot_masks", "unit_masks", "unit_norms",
    "width_layout", "width_masks",
]
