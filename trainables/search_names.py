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
    "beta": "schedule.beta",
    "free_bits": "schedule.free_bits",
}
SCHEDULE_KEY = "schedule"          # the sampled schedule name
SCHEDULE_PARAM_PREFIX = "schedule."  # + "<schedule>.<param>": conditional on that schedule
#: The other components chosen with conditional parameters, like the schedule: the sampled name
#: under the key, its parameters under "<key>.<name>.<param>" (only the chosen one's apply).
PRIOR_KEY = "prior"                # -> model.prior and model.prior_params
OBJECTIVE_KEY = "objective"        # -> objective.name and objective.params
CONDITIONAL_KEYS = (SCHEDULE_KEY, PRIOR_KEY, OBJECTIVE_KEY)
