"""The fixed sections of the YAML: data, model, train, search, final_eval, resources, tracking.

The defaults of the sections a trial receives (``data``, ``model``, ``train``) are the typed
trial spec's own (``trainables.spec``): one home for each default. Here they get the bounds and
the choices that make a bad value a clear error before anything starts.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from search.config.components import ComponentConfig, ComponentRef, check_components
from search.config.params import SearchSpace, Strict, check_registered_params, check_schedule_params
from trainables.beta_conditioning import BetaConditioning
from trainables.data import DATASET_NAMES
from trainables.decoders import DECODERS
from trainables.encoders import ENCODERS
from trainables.likelihoods import LIKELIHOODS
from trainables.objectives import OBJECTIVE_PARAMETERS
from trainables.priors import PRIOR_PARAMETERS, PRIORS
from trainables.registry import PLUGIN_PATH
from trainables.spec import DataSpec, LossSchedule, NLLSpec, ObjectiveSpec, TrialSpec
from trainables.vae import ModelSpec

_DATA, _MODEL, _TRIAL, _SCHEDULE, _NLL, _OBJECTIVE, _BETA = (
    DataSpec(), ModelSpec(), TrialSpec(), LossSchedule(), NLLSpec(), ObjectiveSpec(), BetaConditioning())
_COMPONENTS = {"encoder": ENCODERS, "decoder": DECODERS, "likelihood": LIKELIHOODS, "prior": PRIORS}


class DataConfig(Strict):
    name: str = _DATA.name
    root: str | None = _DATA.root
    binarize: Literal["dynamic", "static", "none"] = _DATA.binarize  # type: ignore[assignment]
    resize: int | None = Field(default=_DATA.resize, ge=4)
    val_fraction: float = Field(default=_DATA.val_fraction, gt=0, lt=1)
    test_fraction: float = Field(default=_DATA.test_fraction, gt=0, lt=1)
    download: bool = _DATA.download
    max_train: int | None = Field(default=_DATA.max_train, ge=1)
    # The researcher's own images (name: arrays | image_folder | callable; docs/plugins.md). A relative
    # path is relative to the config file's directory.
    path: str | None = _DATA.path
    kwargs: dict[str, Any] = Field(default_factory=dict)
    color: Literal["grey", "rgb"] = _DATA.color  # type: ignore[assignment]

    @field_validator("name")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return DATASET_NAMES.check(v)

    @model_validator(mode="after")
    def _user_data(self) -> DataConfig:
        if self.name in ("arrays", "image_folder", "callable") and not self.path:
            what = {"arrays": "an .npz or .npy file", "image_folder": "a folder of PNG/JPEG images",
                    "callable": "package.module:function returning the images"}[self.name]
            raise ValueError(f"data.name {self.name!r} needs data.path: {what}")
        if self.name == "image_folder" and self.resize is None:
            raise ValueError("data.name 'image_folder' needs data.resize: the size (pixels) every image is resized to")
        if self.name == "callable" and not PLUGIN_PATH.match(self.path or ""):
            raise ValueError(f"data.path of a callable dataset must look like 'package.module:function', got {self.path!r}")
        if self.kwargs and self.name != "callable":
            raise ValueError(f"data.kwargs are the arguments of a callable dataset; data.name is {self.name!r}")
        return self


class BetaConditionedConfig(Strict):
    """``model.beta_conditioned``: one model for a β range (``trainables.beta_conditioned``). Training
    draws β log-uniformly from [low, high] per example; every epoch evaluates ``grid`` log-spaced β."""

    low: float = Field(default=_BETA.low, gt=0)
    high: float = Field(default=_BETA.high, gt=0)
    grid: int = Field(default=_BETA.grid, ge=2, le=64)

    @model_validator(mode="after")
    def _ordered(self) -> BetaConditionedConfig:
        if not self.low < self.high:
            raise ValueError(f"model.beta_conditioned needs low < high, got low={self.low}, high={self.high}")
        return self


class ModelConfig(Strict):
    # A registered name, or a plug-in {path: 'package.module:ClassName', kwargs: {...}, name: ...}
    encoder: ComponentRef = _MODEL.encoder
    decoder: ComponentRef = _MODEL.decoder
    likelihood: str = _MODEL.likelihood
    sigma: float = Field(default=_MODEL.sigma, gt=0)
    sigma_mode: Literal["fixed", "learned", "optimal"] = _MODEL.sigma_mode  # type: ignore[assignment]
    latent_dim: int = Field(default=_MODEL.latent_dim, ge=1)
    width: float = Field(default=_MODEL.width, gt=0)
    prior: ComponentRef = _MODEL.prior
    prior_params: dict[str, int | float | str] = Field(default_factory=dict)   # e.g. {n_components: 50}
    # true (the default range) or {low, high, grid}: one trial traces a whole rate–distortion curve
    beta_conditioned: BetaConditionedConfig | None = None

    @field_validator("beta_conditioned", mode="before")
    @classmethod
    def _beta_conditioned(cls, v: Any) -> Any:
        return {} if v is True else None if v is False else v

    @field_validator("encoder", "decoder", "likelihood", "prior")
    @classmethod
    def _registered(cls, v: Any, info: ValidationInfo) -> Any:
        check_components(_COMPONENTS[info.field_name], [v])  # type: ignore[index]
        return v

    @model_validator(mode="after")
    def _conditioned_encoder(self) -> ModelConfig:
        if self.beta_conditioned is not None and isinstance(self.encoder, ComponentConfig):
            raise ValueError(f"model.beta_conditioned conditions a built-in encoder's features on log β, and the "
                             f"encoder {self.encoder.label!r} is a plug-in: use model.encoder mlp or conv, or drop "
                             "model.beta_conditioned (plug-in decoders are fine: the decoder is conditioned through "
                             "its input z)")
        return self

    @model_validator(mode="after")
    def _prior_params(self) -> ModelConfig:
        if isinstance(self.prior, ComponentConfig):   # a plug-in prior: its settings are its kwargs
            if self.prior_params:
                raise ValueError(f"a plug-in prior takes its settings as kwargs, not prior_params={self.prior_params}")
            return self
        check_registered_params(PRIOR_PARAMETERS, self.prior, self.prior_params)
        return self


class ScheduleConfig(Strict):
    name: str = _SCHEDULE.name
    params: dict[str, int | float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> ScheduleConfig:
        check_schedule_params(self.name, self.params)
        return self


class ObjectiveConfig(Strict):
    """``elbo`` or ``iwae`` with ``params: {k: ...}``; a bare name is accepted (``objective: iwae``)."""

    name: str = _OBJECTIVE.name
    params: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> ObjectiveConfig:
        check_registered_params(OBJECTIVE_PARAMETERS, self.name, self.params)
        if any(v < 1 for v in self.params.values()):
            raise ValueError(f"the iwae objective needs k >= 1 importance samples, got {self.params}")
        return self


class TrainConfig(Strict):
    epochs: int = Field(default=_TRIAL.epochs, ge=1)
    batch_size: int = Field(default=_TRIAL.batch_size, ge=1)
    lr: float = Field(default=_TRIAL.lr, gt=0)
    beta: float = Field(default=_SCHEDULE.beta, ge=0)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    free_bits: float = Field(default=_SCHEDULE.free_bits, ge=0)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    grad_clip: float | None = Field(default=_TRIAL.grad_clip, gt=0)
    eval_batch_size: int = Field(default=_TRIAL.eval_batch_size, ge=1)
    n_images: int = Field(default=_TRIAL.n_images, ge=1, le=256)

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class FinalEvalConfig(Strict):
    """Importance-sampled test NLL (Burda et al. 2015) at the end of the search."""

    test_nll_k: int = Field(default=_NLL.k, ge=1)
    chunk_size: int = Field(default=_NLL.chunk_size, ge=1)
    max_examples: int | None = Field(default=_NLL.max_examples, ge=1)
    trials: Literal["best", "all", "none"] = "best"


class SchedulerConfig(Strict):
    name: Literal["none", "asha"] = "none"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=2.0, gt=1)


ALGORITHMS = ("optuna", "random", "gp", "nsga2", "bandit_tpe")
RATE_DISTORTION = ("val/rate", "val/distortion")   # the two minimised objectives of objective: rate_distortion


#: bandit_tpe's pooled_trials when unset (objective: metric): Optuna's TPE's own default number of
#: start-up trials, the observations it is designed to start modelling from; fixed before it was measured.
DEFAULT_POOLED_TRIALS = 10


class SearchConfig(Strict):
    # optuna: TPE (multi-objective TPE for rate_distortion); gp: Optuna's GPSampler (Gaussian-process
    # BO); nsga2: Optuna's NSGAIISampler; random; bandit_tpe: UCB over decoders, TPE per decoder (for
    # rate_distortion: multi-objective TPE per decoder, reward = the decoder's share of the front's hypervolume).
    algorithm: Literal["optuna", "random", "gp", "nsga2", "bandit_tpe"] = "optuna"
    metric: Literal["val/nelbo", "val/distortion", "val/rate"] = "val/nelbo"
    # metric: minimise `metric`; rate_distortion: minimise val/rate and val/distortion together
    # (the Pareto front of the family; `metric` is then only what the progress table sorts by).
    objective: Literal["metric", "rate_distortion"] = "metric"
    mode: Literal["min"] = "min"  # every search metric is a loss in nats
    num_samples: int = Field(default=16, ge=1)
    max_concurrent: int = Field(default=2, ge=1)
    n_startup_trials: int = Field(default=5, ge=0)
    space: SearchSpace = Field(default_factory=SearchSpace)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    exploration: float = Field(default=1.0, ge=0)  # bandit_tpe: the UCB exploration constant
    # bandit_tpe: a decoder's trials come from one study pooled over every decoder's trials until
    # it has this many finished trials of its own, then from its own study (0: its own study only).
    # Unset: 10 for objective: metric (measured, benchmarks/README.md), 0 for rate_distortion (not measured there).
    pooled_trials: int | None = Field(default=None, ge=0)
    # bandit_tpe (objective: metric): how decoders are compared at equal training. pairwise: each pair
    # at the deepest epoch both reached (an arm ASHA cut at its first rung no longer holds every
    # comparison there); common_step: all at the deepest epoch every decoder reached (the rule before).
    arm_comparison: Literal["pairwise", "common_step"] = "pairwise"

    def bandit_pooled_trials(self) -> int:
        """``pooled_trials``, or its default for the objective."""
        if self.pooled_trials is not None:
            return self.pooled_trials
        return 0 if self.objective == "rate_distortion" else DEFAULT_POOLED_TRIALS

    @model_validator(mode="after")
    def _bandit_needs_arms(self) -> SearchConfig:
        if self.algorithm == "bandit_tpe" and not (isinstance(self.space.decoder, list) and len(self.space.decoder) >= 2):
            raise ValueError(
                "algorithm 'bandit_tpe' picks a decoder per trial: give search.space.decoder a list of at least "
                f"two decoders, got decoder={self.space.decoder!r}"
            )
        return self

    @model_validator(mode="after")
    def _two_objectives(self) -> SearchConfig:
        if self.objective != "rate_distortion":
            return self
        if self.scheduler.name != "none":
            raise ValueError(
                f"scheduler {self.scheduler.name!r} stops trials by one metric, and a rate_distortion search has "
                "two (a trial worse in one may be on the front by the other): use scheduler: {name: none}"
            )
        # bandit_tpe runs here as the hypervolume bandit (search/bandit/hypervolume.py): UCB over the
        # decoders with each arm's share of the front's hypervolume as its reward.
        return self


class ResourcesConfig(Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    storage_path: str = "./ray_results"
    max_failures: int = Field(default=1, ge=-1)
    address: str | None = None
    # Checkpoints kept per trial while a search runs (the last one is kept at the end). None = all:
    # Tune deletes an old checkpoint before its next experiment snapshot, so with a limit a driver
    # killed in between leaves a snapshot naming a deleted checkpoint, which `vaesearch resume`
    # cannot restore that trial from. A limit saves disk on long GPU searches at that (small) risk.
    checkpoints_to_keep: int | None = Field(default=None, ge=1)

    @field_validator("gpu")
    @classmethod
    def _fractional(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"a trial takes a fraction of one GPU or a whole number of GPUs, got gpu={v}")
        return v


class TrackingConfig(Strict):
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "vaesearch"
    registered_model: str | None = "vaesearch-best"
    log_images: bool = True
    retry_s: float = Field(default=20.0, gt=0)   # while the server is unreachable: retry queued results this often
    # One writer thread applies the MLflow writes in order, so Tune's loop never waits on the server;
    # false: the driver's loop writes each event itself (what it did before; slower over HTTP).
    write_in_background: bool = True
