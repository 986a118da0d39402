"""The names a search space uses for the trial spec's fields (no imports: cheap to import anywhere).

They are Tune's config keys, the progress table's columns and MLflow's child-run params;
``trainables.spec.TrialSpec.with_overrides`` maps each to the dotted path of the spec it sets.
"""
from __future__ import annotations

from collections.abc import Mapping

DECODER_KEY = "decoder"  # the decoder's search name: what the decoder bandit's arms are keyed by

#: Short search names -> the dotted path of ``trainables.spec.TrialSpec`` they set.
SEARCH_NAMES: Mapping[str, str] = {
    "latent_dim": "model.latent_dim",
    DECODER_KEY: "model.decoder",
    "encoder": "model.encoder",
    "width": "model.width",
    "prior": "model.prior",
    "beta": "schedule.beta",
    "free_bits": "schedule.free_bits",
}
SCHEDULE_KEY = "schedule"          # the sampled schedule name
SCHEDULE_PARAM_PREFIX = "schedule."  # + "<schedule>.<param>": conditional on that schedule
