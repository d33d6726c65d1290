"""Run configuration: frozen ``attrs`` classes, TOML files and ``--set key=value`` overrides.

A config file is TOML. Top-level keys are :class:`RunConfig` fields; tables are its sections
(``[train]``, ``[ppo]``, ``[llm]``, ...); any other table is the settings of a method named in
``methods`` (``[ultra]`` → ``ultra.variant = "ra"``). The resolved config of every run is saved as
``config.toml`` in its run directory, and ``guidedrl run RUN_DIR/config.toml`` runs it again.

Under the user's settings lies a hyper-parameter preset (:mod:`guidedrl.presets`), chosen by
``preset`` (``auto``: the one for the run's env and algo). Anything the user sets wins over it; the
saved config names the preset and holds every resolved value.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import textwrap
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import tomli_w

from guidedrl.errors import ConfigError, did_you_mean

_pos = attrs.validators.gt(0)
_nonneg = attrs.validators.ge(0)
_prob = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


def _choice(*options: str):  # noqa: ANN202 - attrs validator factory
    return attrs.validators.in_(options)


@attrs.frozen(kw_only=True)
class TrainConfig:
    """How training is run, independent of the algorithm."""

    num_envs: int = attrs.field(default=8, validator=_pos)
    """Parallel training environments."""
    num_test_envs: int = attrs.field(default=4, validator=_pos)
    """Parallel test environments."""
    test_episodes: int = attrs.field(default=10, validator=_pos)
    """Episodes per evaluation (after every epoch)."""
    epoch_steps: int = attrs.field(default=5000, validator=_pos)
    """Env steps between evaluations, checkpoints and metric rows."""
    vector: Literal["dummy", "subproc", "ray"] = attrs.field(default="dummy", validator=_choice("dummy", "subproc", "ray"))
    """Vector env: ``dummy`` (in-process), ``subproc`` (one process per env) or ``ray`` (needs ``guidedrl[ray]``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    stop_return: float | None = None
    """Stop early once the test return reaches this (``None``: train for all ``steps``)."""
    checkpoint: bool = True
    """Save ``checkpoint.pt`` after every epoch (what ``--resume`` continues from)."""
    checkpoint_keep: int = attrs.field(default=2, validator=[attrs.validators.ge(1), attrs.validators.le(2)])
    """Checkpoints kept (each with its replay buffer): 2 keeps the previous one as
    ``checkpoint.prev.pt`` so that a resume falls back to it when the latest is damaged; 1 keeps only
    the latest (half the disk; a damaged latest checkpoint then cannot be resumed)."""
    torch_threads: int = attrs.field(default=1, validator=_pos)
    """Torch CPU threads; small networks are fastest with one."""
    init_from: str | None = None
    """A run directory or ``checkpoint.pt`` whose policy weights start this run (e.g. a sub-optimal
    policy that a method refines). Only the networks are loaded, not the optimiser or counters."""


@attrs.frozen(kw_only=True)
class PPOConfig:
    """PPO (discrete or continuous actions)."""

    lr: float = attrs.field(default=1e-3, validator=_pos)
    """Adam learning rate (the start of the schedule when ``lr_schedule = "linear"``)."""
    lr_schedule: Literal["constant", "linear"] = attrs.field(default="constant", validator=_choice("constant", "linear"))
    """``linear``: the learning rate falls from ``lr`` to 0 over the run's ``steps`` (as SB3's ``lin_``
    schedules: set before each update from the env steps done, so a resumed run continues it)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden-layer sizes of the actor and of the critic (separate networks)."""
    steps_per_collect: int = attrs.field(default=1024, validator=_pos)
    """Env steps gathered before each update."""
    repeat: int = attrs.field(default=10, validator=_pos)
    """Passes over each collected batch."""
    batch_size: int = attrs.field(default=256, validator=_pos)
    """Minibatch size of each gradient step."""
    gamma: float = attrs.field(default=0.99, validator=_prob)
    """Discount factor."""
    gae_lambda: float = attrs.field(default=0.95, validator=_prob)
    """GAE lambda (bias-variance trade-off of the advantage estimate)."""
    eps_clip: float = attrs.field(default=0.2, validator=_pos)
    """Clip range of the probability ratio."""
    clip_schedule: Literal["constant", "linear"] = attrs.field(default="constant", validator=_choice("constant", "linear"))
    """``linear``: the clip range falls from ``eps_clip`` to 0 over the run's ``steps`` (like ``lr_schedule``)."""
    ent_coef: float = attrs.field(default=0.0, validator=_nonneg)
    """Weight of the entropy bonus in the loss."""
    vf_coef: float = attrs.field(default=0.5, validator=_nonneg)
    """Weight of the value loss in the loss."""
    max_grad_norm: float = attrs.field(default=0.5, validator=_pos)
    """Gradients are clipped to this global norm."""
    adam_eps: float = attrs.field(default=1e-8, validator=_pos)
    """Adam's epsilon (PyTorch's and Tianshou's default 1e-8; SB3 and CleanRL use 1e-5 for PPO)."""
    advantage_normalization: bool = False
    """Normalise advantages (per minibatch; per batch over the policy's own steps when actions are advised)."""
    activation: Literal["auto", "tanh", "relu"] = attrs.field(default="auto", validator=_choice("auto", "tanh", "relu"))
    """Hidden-layer activation of actor and critic; ``auto``: ReLU for discrete actions, Tanh for
    continuous ones."""
    init: Literal["orthogonal", "ppo", "default"] = attrs.field(
        default="orthogonal", validator=_choice("orthogonal", "ppo", "default")
    )
    """Weight init: ``orthogonal`` (gain 1 everywhere), ``ppo``, the usual PPO choice (SB3,
    CleanRL): gain sqrt(2) in hidden layers, 0.01 on the policy output (a near-uniform first policy)
    and 1 on the value output, or ``default``: PyTorch's own init (SB3's ``ortho_init=False``)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the action distribution, continuous actions only (0: std 1;
    SB3's ``log_std_init``)."""


@attrs.frozen(kw_only=True)
class DQNConfig:
    """DQN (discrete actions)."""

    lr: float = attrs.field(default=1e-3, validator=_pos)
    """Adam learning rate."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden-layer sizes of the Q-network."""
    gamma: float = attrs.field(default=0.99, validator=_prob)
    """Discount factor."""
    n_step: int = attrs.field(default=3, validator=_pos)
    """Steps of the n-step return in the TD target."""
    target_update_freq: int = attrs.field(default=320, validator=_nonneg)
    """Gradient steps between target-network copies; 0: no target network."""
    buffer_size: int = attrs.field(default=20000, validator=_pos)
    """Replay buffer capacity in transitions (shared over the training envs)."""
    batch_size: int = attrs.field(default=64, validator=_pos)
    """Transitions sampled per gradient step."""
    steps_per_collect: int = attrs.field(default=16, validator=_pos)
    """Env steps gathered between updates (rounded up to a multiple of ``train.num_envs``)."""
    updates_per_step: float = attrs.field(default=0.1, validator=_pos)
    """Gradient steps per collected env step (0.1: one update every 10 steps)."""
    eps_train: float = attrs.field(default=0.1, validator=_prob)
    """Exploration rate while training (the final one when ``eps_decay_steps`` > 0)."""
    eps_train_start: float = attrs.field(default=1.0, validator=_prob)
    """Exploration rate at step 0 when ``eps_decay_steps`` > 0."""
    eps_decay_steps: int = attrs.field(default=0, validator=_nonneg)
    """Env steps over which exploration falls linearly from ``eps_train_start`` to ``eps_train``
    (SB3's ``exploration_fraction`` times its budget); 0 keeps ``eps_train`` throughout."""
    eps_test: float = attrs.field(default=0.0, validator=_prob)
    """Exploration rate in test episodes."""
    start_steps: int = attrs.field(default=1000, validator=_nonneg)
    """Random-policy steps before learning starts."""
    double: bool = True
    """Double-DQN targets (the online net picks the next action, the target net values it); false:
    the plain DQN target, max over the target net (SB3's DQN)."""
    huber_delta: float = attrs.field(default=0.0, validator=_nonneg)
    """Huber (smooth L1) TD loss with this delta (SB3's DQN: 1.0); 0: squared error. Tianshou's Huber
    loss does not weight transitions, so a prioritised buffer's importance weights are not applied."""
    max_grad_norm: float = attrs.field(default=0.0, validator=_nonneg)
    """Gradients are clipped to this global norm (SB3's DQN: 10); 0: no clipping."""


@attrs.frozen(kw_only=True)
class SACConfig:
    """SAC (continuous actions)."""

    actor_lr: float = attrs.field(default=1e-3, validator=_pos)
    """Adam learning rate of the actor."""
    critic_lr: float = attrs.field(default=1e-3, validator=_pos)
    """Adam learning rate of the two critics."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden-layer sizes of the actor and of each critic."""
    gamma: float = attrs.field(default=0.99, validator=_prob)
    """Discount factor."""
    tau: float = attrs.field(default=0.005, validator=_prob)
    """Soft-update rate of the target critics."""
    alpha: float = attrs.field(default=0.2, validator=_nonneg)
    """Entropy temperature (its start value when ``auto_alpha``)."""
    auto_alpha: bool = True
    """Tune the temperature towards a target entropy of ``-action_dim``."""
    n_step: int = attrs.field(default=1, validator=_pos)
    """Steps of the n-step return in the TD target."""
    buffer_size: int = attrs.field(default=200000, validator=_pos)
    """Replay buffer capacity in transitions (shared over the training envs)."""
    batch_size: int = attrs.field(default=256, validator=_pos)
    """Transitions sampled per gradient step."""
    steps_per_collect: int = attrs.field(default=1, validator=_pos)
    """Env steps gathered between updates (rounded up to a multiple of ``train.num_envs``)."""
    updates_per_step: float = attrs.field(default=1.0, validator=_pos)
    """Gradient steps per collected env step."""
    start_steps: int = attrs.field(default=5000, validator=_nonneg)
    """Random-policy steps before learning starts."""
    # discrete actions (algo "sac" on a Discrete space builds Tianshou's DiscreteSAC)
    discrete_target_entropy: float = attrs.field(default=0.5, validator=_prob)
    """Discrete actions with ``auto_alpha``: the target entropy as a fraction of the uniform policy's,
    ``log(n_actions)`` (continuous actions use ``-action_dim``)."""


@attrs.frozen(kw_only=True)
class ReplayConfig:
    """The replay buffer of off-policy algorithms (DQN, SAC)."""

    prioritized: bool = False
    """Prioritized replay (Tianshou's ``PrioritizedVectorReplayBuffer``): transitions are sampled in
    proportion to their last TD error (Tianshou's DQN and SAC update the priorities after each
    update) and the loss is weighted to correct for it."""
    alpha: float = attrs.field(default=0.6, validator=_pos)
    """How strongly priorities shape sampling (0 would be uniform)."""
    beta: float = attrs.field(default=0.4, validator=_prob)
    """Importance-sampling correction at the start (1: full correction)."""
    beta_final: float = attrs.field(default=1.0, validator=_prob)
    """Importance-sampling correction at the end of ``beta_anneal_steps``."""
    beta_anneal_steps: int = attrs.field(default=0, validator=_nonneg)
    """Env steps over which ``beta`` rises linearly to ``beta_final`` (set from the env steps done, so a
    resumed run continues it); 0 keeps ``beta``."""


@attrs.frozen(kw_only=True)
class MARLConfig:
    """Multi-agent PPO on PettingZoo parallel envs (used when the env adapter is multi-agent)."""

    lr: float = attrs.field(default=3e-4, validator=_pos)
    """Adam learning rate of actors and critic."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden-layer sizes of each actor and of the critic."""
    steps_per_collect: int = attrs.field(default=2048, validator=_pos)
    """Joint env steps gathered before each update."""
    repeat: int = attrs.field(default=5, validator=_pos)
    """Passes over each collected batch."""
    batch_size: int = attrs.field(default=256, validator=_pos)
    """Minibatch size of each gradient step."""
    gamma: float = attrs.field(default=0.99, validator=_prob)
    """Discount factor."""
    gae_lambda: float = attrs.field(default=0.95, validator=_prob)
    """GAE lambda."""
    eps_clip: float = attrs.field(default=0.2, validator=_pos)
    """Clip range of the probability ratio."""
    ent_coef: float = attrs.field(default=0.01, validator=_nonneg)
    """Weight of the entropy bonus in the loss."""
    vf_coef: float = attrs.field(default=0.5, validator=_nonneg)
    """Weight of the value loss in the loss."""
    max_grad_norm: float = attrs.field(default=0.5, validator=_pos)
    """Gradients are clipped to this global norm."""
    share_parameters: bool = True
    """One actor for all agents (agent id appended to the observation) instead of one per agent."""
    centralized_critic: bool = True
    """CTDE: the critic sees the joint observation; actors only their own."""
    deterministic_eval: bool = True
    """Test episodes act by arg-max; ``false`` samples from the policy (escapes deterministic loops,
    e.g. an agent re-claiming busy equipment forever)."""
    pretrain_critic: bool = True
    """During offline imitation, also fit the critic to the demonstrations' discounted returns (so
    that RL fine-tuning starts from sensible advantages instead of a random critic)."""


@attrs.frozen(kw_only=True)
class PretrainConfig:
    """Offline imitation of ``ctx.demos`` before RL (Tianshou's imitation algorithm)."""

    steps: int = attrs.field(default=0, validator=_nonneg)
    """Gradient steps of behaviour cloning; 0 skips pre-training."""
    batch_size: int = attrs.field(default=256, validator=_pos)
    """Demonstration transitions per gradient step."""
    lr: float = attrs.field(default=1e-3, validator=_pos)
    """Adam learning rate of behaviour cloning."""
    demos_path: str | None = None
    """An ``.npz`` of demonstrations loaded by the core's default ``generate_demonstrations``."""


@attrs.frozen(kw_only=True)
class LLMConfig:
    """The LLM every method of the run talks to."""

    backend: str = "simulated"
    """A registered backend id (``simulated``, ``openai:MODEL``, ``llamacpp:MODEL``) or LangChain ``provider:model``."""
    options: dict[str, Any] = attrs.field(factory=dict)
    """Backend options (``simulated``: ``error_rate``, ``invalid_rate``, ``latency_ms``; ``openai``: ``base_url``, ...)."""
    cache: Literal["off", "read", "readwrite"] = attrs.field(default="readwrite", validator=_choice("off", "read", "readwrite"))
    """Response cache mode."""
    cache_path: str | None = None
    """SQLite cache file; default ``$GUIDEDRL_CACHE_DIR/llm_cache.sqlite`` (``~/.cache/guidedrl``)."""
    log: Literal["summary", "full"] = attrs.field(default="summary", validator=_choice("summary", "full"))
    """``full`` also writes prompts and answers to ``llm_calls.jsonl``."""
    max_calls: int | None = None
    """Backend calls per run before guidance stops (cache hits are free)."""
    max_tokens: int | None = None
    """Tokens per run before guidance stops (where the backend reports them)."""
    max_wall_s: float | None = None
    """Seconds spent waiting on the LLM per run before guidance stops."""
    timeout_s: float = attrs.field(default=30.0, validator=_pos)
    """Per-call timeout; the request is cancelled when it passes (it also governs the HTTP client)."""
    context_tokens: int | None = attrs.field(default=None, validator=attrs.validators.optional(_pos))
    """The model's context window in tokens: prompts are fitted to it (trajectories chunked, too-long
    prompts reported and not sent). Unset: asked of the backend where it can say (llama.cpp, vLLM)."""
    retries: int = attrs.field(default=2, validator=_nonneg)
    """Re-asks after an invalid answer (the validation error is fed back)."""
    transient_retries: int = attrs.field(default=3, validator=_nonneg)
    """Retries with backoff after transient errors (rate limit, connection reset, 5xx, timeout)."""
    backoff_s: float = attrs.field(default=1.0, validator=_nonneg)
    """First wait before a transient retry; doubles each retry (with jitter), capped at 30 s."""
    max_concurrency: int = attrs.field(default=8, validator=_pos)
    """Concurrent calls for batched questions."""


SECTIONS: dict[str, type] = {
    "train": TrainConfig,
    "ppo": PPOConfig,
    "dqn": DQNConfig,
    "sac": SACConfig,
    "replay": ReplayConfig,
    "marl": MARLConfig,
    "pretrain": PretrainConfig,
    "llm": LLMConfig,
}


@attrs.frozen(kw_only=True)
class RunConfig:
    """One training run."""

    env: str = attrs.field(default="CartPole-v1")
    """Environment id: a registered adapter id or any Gymnasium id."""
    preset: str = "none"
    """Hyper-parameter preset laid under this config (``guidedrl presets`` lists them): ``auto`` picks
    the one for (env, algo), ``none`` keeps the plain defaults, else a preset's name. Config files,
    flags and :func:`from_dict` default to ``auto`` and store the name they chose; a ``RunConfig``
    built directly applies no preset, hence ``none`` here."""
    env_kwargs: dict[str, Any] = attrs.field(factory=dict)
    """Keyword arguments for the adapter (and ``gym.make``)."""
    algo: str = attrs.field(default="ppo", validator=attrs.validators.min_len(1))
    """``ppo`` (discrete or continuous), ``dqn`` (discrete), ``sac`` (continuous or discrete), or an
    algorithm a third party registered (``guidedrl.train.algorithms.ALGORITHMS``)."""
    steps: int = attrs.field(default=50000, validator=_pos)
    """Training env steps."""
    seed: int = attrs.field(default=0, validator=_nonneg)
    """Seeds torch, numpy, the envs and ``ctx.rng``; a run is reproducible from it."""
    methods: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Method plugins, in order of precedence (the first wins ``refine_action``)."""
    method_config: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Settings of each method (TOML: a table named after the method). ``train()`` fills in each
    method's defaults, so the saved ``config.toml`` holds every setting the run used."""
    out: str | None = None
    """Run directory; default ``runs/<env>__<methods>__<seed>__<time>``."""
    train: TrainConfig = attrs.field(factory=TrainConfig)
    """How training is run (``[train]``)."""
    ppo: PPOConfig = attrs.field(factory=PPOConfig)
    """PPO settings (``[ppo]``; used when ``algo = "ppo"``)."""
    dqn: DQNConfig = attrs.field(factory=DQNConfig)
    """DQN settings (``[dqn]``; used when ``algo = "dqn"``)."""
    sac: SACConfig = attrs.field(factory=SACConfig)
    """SAC settings (``[sac]``; used when ``algo = "sac"``)."""
    replay: ReplayConfig = attrs.field(factory=ReplayConfig)
    """Replay buffer of off-policy algorithms (``[replay]``; prioritized or uniform)."""
    marl: MARLConfig = attrs.field(factory=MARLConfig)
    """Multi-agent PPO settings (``[marl]``; used when the env is multi-agent)."""
    pretrain: PretrainConfig = attrs.field(factory=PretrainConfig)
    """Offline imitation before RL (``[pretrain]``)."""
    llm: LLMConfig = attrs.field(factory=LLMConfig)
    """The LLM the run's methods talk to (``[llm]``)."""

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=True)
        method_config = data.pop("method_config")
        data.update(method_config)
        return _drop_none(data)

    def save(self, path: str | Path) -> None:
        """Write the config as TOML (with a header naming its preset); refuses (before writing) a config
        that holds a secret."""
        from guidedrl import presets

        refuse_secrets(self)
        Path(path).write_text(presets.header(self.preset) + tomli_w.dumps(self.to_dict()))


_SECRET_KEY = re.compile(
    r"^(?:(?:.*[_.-])?(?:api[_-]?key|apikey|secret|password|passwd|access[_-]?token|auth[_-]?token|api[_-]?token|"
    r"bearer[_-]?token|authorization)|token)$",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(\bsk-[A-Za-z0-9_-]{16,}|\bBearer\s+[A-Za-z0-9._~+/=-]{8,}|\bhf_[A-Za-z0-9]{20,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bAKIA[0-9A-Z]{16}\b)"
)


def find_secrets(data: Any, where: str = "") -> list[str]:
    """Dotted names of settings that hold a secret: a string under a key named like one (``api_key``,
    ``password``, ``authorization``, ...) or a string shaped like an API key (``sk-...``, ``Bearer ...``)."""
    found: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{where}{key}"
            if isinstance(value, str) and value.strip() and _SECRET_KEY.match(str(key)):
                found.append(name)
            else:
                found += find_secrets(value, name + ".")
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            found += find_secrets(value, f"{where.rstrip('.')}[{i}].")
    elif isinstance(data, str) and _SECRET_VALUE.search(data):
        found.append(where.rstrip("."))
    return found


def refuse_secrets(config: RunConfig | Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` when the config holds a secret (checked before anything is written,
    so that no key reaches ``config.toml`` or any other file of the run directory)."""
    data = config.to_dict() if isinstance(config, RunConfig) else config
    found = find_secrets(data)
    if found:
        raise ConfigError(
            f"{found[0]} holds a secret (an API key, token or password), and secrets never go into config files "
            "or run directories: put it in an environment variable and name that variable instead "
            "(e.g. llm.options.api_key_env = \"OPENAI_API_KEY\")"
        )


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple):
        return list(value)
    return value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in attrs.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"unknown setting {where}{key}.{did_you_mean(key, fields)} "
                f"Valid settings{(' of [' + where.rstrip('.') + ']') if where else ''}: {', '.join(sorted(fields))}."
            )
        kwargs[key] = _coerce(fields[key], value, f"{where}{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid config{(' in [' + where.rstrip('.') + ']') if where else ''}: {_explain(exc)}") from exc


def _explain(exc: Exception) -> str:
    # attrs validators raise e.g. ("'steps' must be > 0: -1", attribute, bound, value)
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _coerce(field: attrs.Attribute, value: Any, name: str) -> Any:
    """``value`` for ``field`` (named ``name`` in messages), converted where TOML and ``--set`` give
    another spelling of the same thing (an int for a float, a list for a tuple), else a
    :class:`ConfigError` naming the setting, the expected type and the value given."""
    hint = field.type
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and attrs.has(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table of settings, got {value!r}")
        return _build(hint, value, name + ".")
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return tuple(value)
    base, optional = _scalar(hint)
    if base is None or (optional and value is None):
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be {'an integer' if base is int else 'a number'}, got {value!r}")
    if base is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            return int(value)
        return value
    return float(value)


def _scalar(hint: Any) -> tuple[type | None, bool]:
    """``(int | float | bool | str, optional)`` for a field typed ``X`` or ``X | None``, else ``(None, _)``
    (other types, e.g. ``Literal`` or ``dict``, are left to the field's validator)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    if len(rest) == 1 and rest[0] in (bool, int, float, str):
        return rest[0], optional
    return None, optional


for _cls in (*SECTIONS.values(), RunConfig):
    attrs.resolve_types(_cls)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring of each field of an attrs config class (the string literal under the field in
    its source; ``""`` for a field without one), read with :mod:`ast` because attrs keeps none."""
    fields = [f.name for f in attrs.fields(cls)]
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return dict.fromkeys(fields, "")
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:] + [None], strict=True):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return {name: docs.get(name, "") for name in fields}


def steps_notice(config: RunConfig, *, multi_agent: bool = False) -> str | None:
    """A sentence saying where a run will really stop when ``steps`` is not a whole number of
    collections (the loop collects ``steps_per_collect`` env steps at a time, rounded up to a
    multiple of ``train.num_envs``, after off-policy ``start_steps``), or ``None`` when it stops at
    ``steps``. ``guidedrl run`` prints it before training."""
    n_envs = config.train.num_envs
    if multi_agent:
        section, cfg = "marl", config.marl
        per, start = max(1, cfg.steps_per_collect // n_envs) * n_envs, 0
    else:
        section = config.algo
        cfg = getattr(config, section)
        per = math.ceil(cfg.steps_per_collect / n_envs) * n_envs
        start = math.ceil(cfg.start_steps / n_envs) * n_envs if section in ("dqn", "sac") and cfg.start_steps > 0 else 0
    end = start if start >= config.steps else start + math.ceil((config.steps - start) / per) * per
    if end == config.steps:
        return None
    how = f"the {per} env steps collected at a time ({section}.steps_per_collect={cfg.steps_per_collect} over train.num_envs={n_envs})"
    if start:
        how += f" after {start} random ones ({section}.start_steps={cfg.start_steps})"
    return f"steps={config.steps} is not a multiple of {how}: the run will stop at {end} env steps"


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from nested data (as TOML gives it); errors name the field and the fix."""
    data = dict(data)
    methods = data.get("methods", [])
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
        data["methods"] = methods
    if not isinstance(methods, (list, tuple)):
        raise ConfigError(f"methods must be a list of method ids, got {methods!r}")
    run_fields = {f.name for f in attrs.fields(RunConfig)}
    method_config = {k: dict(v) for k, v in dict(data.pop("method_config", {}) or {}).items()}
    for key in list(data):
        if key in run_fields:
            continue
        value = data.pop(key)
        if key in methods:
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{key}] must be a table of settings for method {key!r}, got {value!r}")
            method_config.setdefault(key, {}).update(value)
        else:
            raise ConfigError(
                f"unknown setting {key!r}.{did_you_mean(key, run_fields | set(SECTIONS))} "
                f"If [{key}] holds a method's settings, add {key!r} to `methods`."
            )
    data["method_config"] = method_config
    data = _with_preset(data)
    return _build(RunConfig, data, "")


def _with_preset(data: dict[str, Any]) -> dict[str, Any]:
    from guidedrl import presets

    defaults = {f.name: f.default for f in attrs.fields(RunConfig)}
    return presets.apply(data, default_env=defaults["env"], default_algo=defaults["algo"])


def load(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into nested data."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML ({exc}); restore it or fix the line named") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"ppo.lr=3e-4"`` → ``(["ppo", "lr"], 0.0003)``; values are TOML literals, else strings."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. ppo.lr=3e-4), got {item!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return [part.strip() for part in key.strip().split(".")], value


def apply_overrides(data: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """Apply ``--set`` items to nested config data (before validation)."""
    data = _deep_copy(data)
    for item in items:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a table")
            node = nxt
        node[path[-1]] = value
    return data


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
