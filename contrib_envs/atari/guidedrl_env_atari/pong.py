"""ALE Pong for guided runs: RAM (default) or pixel observations, decoded into ball and paddle positions.

Two observation setups, chosen with ``env_kwargs``:

- ``obs_type="ram"`` (default, fast): the console's 128 RAM bytes, scaled from uint8 to [0, 1] and
  the last ``ram_frames`` (default 2) stacked oldest first, so one observation has the ball's velocity.
- ``obs_type="pixels"``: the standard DQN setup (``AtariPreprocessing``: 84x84 grayscale, frame skip 4
  with max-pooling, up to 30 no-op starts; 4 stacked frames), scaled to [0, 1].

Either way :meth:`PongAdapter.describe` decodes the ball and both paddles into *screen pixels* of the
original 160x210 frame (y grows downwards), so the JSON state, the expert and the matching features
mean the same thing in both setups. The RAM addresses are AtariARI's annotations for Pong; their
offsets to screen pixels were measured against rendered frames (see ``tests/test_atari_pong.py``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from guidedrl.envs import Description, DiscreteActions, EnvAdapter, Expert, InvalidAction

# --- screen geometry (160x210 frame, y grows downwards) -----------------------------------------
SCREEN_W, SCREEN_H = 160, 210
FIELD_TOP, FIELD_BOTTOM = 34, 194
"""Rows between the white walls, where the ball and paddles move."""
PLAYER_X = 141.5
"""Column of the centre of the agent's (right, green) paddle."""
OPPONENT_X = 17.5
"""Column of the centre of the computer's (left, orange) paddle."""
PADDLE_HEIGHT = 16

# --- RAM layout (AtariARI) and offsets to screen-pixel centres, measured on rendered frames ------
RAM_BALL_X, RAM_BALL_Y = 49, 54
RAM_PLAYER_Y, RAM_OPPONENT_Y = 51, 50
RAM_OPPONENT_SCORE, RAM_PLAYER_SCORE = 13, 14
BALL_X_OFFSET, BALL_Y_OFFSET = -48.5, -12.0
PLAYER_Y_OFFSET, OPPONENT_Y_OFFSET = -6.5, -7.5

RAM_SIZE = 128
PIXEL_SIZE = 84

# Action indices of ALE Pong's minimal action set. ALE calls them RIGHT/LEFT; in Pong RIGHT moves the
# paddle up the screen and LEFT down.
NOOP, FIRE, UP, DOWN, UP_FIRE, DOWN_FIRE = range(6)
ACTION_NAMES = ["NOOP", "FIRE", "UP", "DOWN", "UP_FIRE", "DOWN_FIRE"]
ACTION_MEANINGS = [
    "do nothing, the paddle keeps still",
    "serve (the game serves by itself; acts like NOOP)",
    "move your paddle up the screen (ALE's RIGHT)",
    "move your paddle down the screen (ALE's LEFT)",
    "move up (ALE's RIGHTFIRE)",
    "move down (ALE's LEFTFIRE)",
]
_ALIASES = {"RIGHT": UP, "LEFT": DOWN, "RIGHTFIRE": UP_FIRE, "LEFTFIRE": DOWN_FIRE, "UPFIRE": UP_FIRE, "DOWNFIRE": DOWN_FIRE}

#: Order of the numbers :meth:`PongAdapter.match_features` returns (ULTRA matches states on them):
#: where the ball is, where it is relative to the paddle (what decides the action) and where it goes.
FEATURES = ("ball_visible", "ball_x", "ball_y", "ball_below_paddle", "ball_dx", "ball_dy")


class PongActions(DiscreteActions):
    """Pong's six actions with names that say what they do; ALE's own names are accepted too."""

    def __init__(self) -> None:
        super().__init__(ACTION_NAMES, ACTION_MEANINGS)

    def parse(self, value: Any) -> int:
        if isinstance(value, str):
            key = value.strip().upper().replace(" ", "").replace("-", "")
            if key in _ALIASES:
                return _ALIASES[key]
        return super().parse(value)


# --- decoding --------------------------------------------------------------------------------------
def decode_ram(ram: np.ndarray) -> dict[str, Any]:
    """Ball, paddles and score from one frame's 128 RAM bytes, in screen pixels (centres)."""
    ram = np.asarray(ram).astype(np.int64)
    visible = ram[RAM_BALL_Y] != 0  # between points the game parks the ball at y=0
    return {
        "ball_visible": bool(visible),
        "ball_x": float(ram[RAM_BALL_X] + BALL_X_OFFSET) if visible else None,
        "ball_y": float(ram[RAM_BALL_Y] + BALL_Y_OFFSET) if visible else None,
        "player_paddle_y": float(ram[RAM_PLAYER_Y] + PLAYER_Y_OFFSET),
        "opponent_paddle_y": float(ram[RAM_OPPONENT_Y] + OPPONENT_Y_OFFSET),
        "player_score": int(ram[RAM_PLAYER_SCORE]),
        "opponent_score": int(ram[RAM_OPPONENT_SCORE]),
    }


# Columns (in the 84x84 frame) of the two paddles.
_PLAYER_COLS = slice(int(140 * PIXEL_SIZE / SCREEN_W), int(np.ceil(144 * PIXEL_SIZE / SCREEN_W)))
_OPPONENT_COLS = slice(int(16 * PIXEL_SIZE / SCREEN_W), int(np.ceil(20 * PIXEL_SIZE / SCREEN_W)))
_BACKGROUND = 87  # grayscale value of Pong's brown background
_BALL_MIN = 165  # the white ball, blended with the background by the resize, is brighter than this
_PADDLE_RANGE = (115, 190)  # both paddles (~147, brighter where blended with a wall) fall in here


def decode_pixels(frame: np.ndarray) -> dict[str, Any]:
    """Ball and paddles from one preprocessed 84x84 grayscale frame (values in [0, 1] or 0..255).

    The ball is accurate to 1-2 screen pixels, a moving paddle to about half its height (the frames
    are max-pooled over two steps); a ball touching a wall is
    not seen; the score is not decoded (``None``).
    """
    img = np.asarray(frame, dtype=np.float64)
    if img.max() <= 1.0:
        img = img * 255.0
    # The walls (and the score above them) span whole rows; the playfield is what lies between.
    wall = (np.abs(img - _BACKGROUND) > 2).mean(axis=1) > 0.5
    rows_all = np.arange(PIXEL_SIZE)
    top = int(rows_all[: PIXEL_SIZE // 2][wall[: PIXEL_SIZE // 2]].max(initial=-1)) + 1
    bottom = int(rows_all[PIXEL_SIZE // 2 :][wall[PIXEL_SIZE // 2 :]].min(initial=PIXEL_SIZE))
    field = img[top:bottom]
    sx, sy = SCREEN_W / PIXEL_SIZE, SCREEN_H / PIXEL_SIZE

    def paddle(cols: slice) -> float | None:
        strip = field[:, cols]
        rows = np.nonzero(((strip >= _PADDLE_RANGE[0]) & (strip < _PADDLE_RANGE[1])).any(axis=1))[0]
        return None if rows.size == 0 else float((rows.mean() + top + 0.5) * sy)

    bright = field >= _BALL_MIN
    ball_x = ball_y = None
    if bright.any():
        weights = (field - _BACKGROUND) * bright
        ys, xs = np.nonzero(bright)
        w = weights[ys, xs]
        ball_x = float((np.average(xs, weights=w) + 0.5) * sx)
        ball_y = float((np.average(ys, weights=w) + top + 0.5) * sy)
    player = paddle(_PLAYER_COLS)
    opponent = paddle(_OPPONENT_COLS)
    return {
        "ball_visible": ball_x is not None,
        "ball_x": ball_x,
        "ball_y": ball_y,
        "player_paddle_y": player if player is not None else float(FIELD_TOP),
        "opponent_paddle_y": opponent if opponent is not None else float(FIELD_TOP),
        "player_score": None,
        "opponent_score": None,
    }


def state_from_frames(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON state of a step: the current frame plus the ball's velocity since the previous one."""
    state = dict(current)
    moving = previous is not None and current["ball_visible"] and previous["ball_visible"]
    state["ball_dx"] = float(current["ball_x"] - previous["ball_x"]) if moving else 0.0
    state["ball_dy"] = float(current["ball_y"] - previous["ball_y"]) if moving else 0.0
    for key in ("ball_x", "ball_y", "player_paddle_y", "opponent_paddle_y", "ball_dx", "ball_dy"):
        if state[key] is not None:
            state[key] = round(float(state[key]), 1)
    return state


# --- expert ------------------------------------------------------------------------------------------
class PongExpert(Expert):
    """Track the ball: move the paddle's centre towards the ball's height, with a small dead zone.

    Reads only the JSON state. It roughly holds its own against the built-in opponent (a random policy
    loses 0:21); ``bias`` and ``dead_zone`` were tuned on a few seeds.
    """

    def __init__(self, *, dead_zone: float = 8.0, bias: float = 2.5) -> None:
        self.dead_zone = dead_zone
        self.bias = bias

    def act(self, state: dict[str, Any]) -> int:
        if not state.get("ball_visible"):
            return NOOP
        gap = state["ball_y"] - state["player_paddle_y"] - self.bias
        if gap > self.dead_zone:
            return DOWN
        if gap < -self.dead_zone:
            return UP
        return NOOP

    def importance(self, state: dict[str, Any]) -> float:
        """High while the ball comes at the agent's paddle, the more so the nearer it is; low while it
        travels away; zero with no ball in play (nothing the paddle does matters then)."""
        if not state.get("ball_visible"):
            return 0.0
        if state.get("ball_dx", 0.0) > 0:
            closeness = (state["ball_x"] - OPPONENT_X) / (PLAYER_X - OPPONENT_X)
            return float(np.clip(0.4 + 0.6 * closeness, 0.0, 1.0))
        return 0.2

    def _same(self, a: Any, b: Any) -> bool:
        # FIRE variants move like their plain counterparts; NOOP and FIRE both keep still.
        canon = {NOOP: NOOP, FIRE: NOOP, UP: UP, UP_FIRE: UP, DOWN: DOWN, DOWN_FIRE: DOWN}
        return canon.get(int(np.asarray(a).item()), -1) == canon.get(int(np.asarray(b).item()), -2)

    def critical_states(self, states, actions, rewards):  # noqa: ANN001, ANN201 - base signature
        out = []
        for t, (state, action) in enumerate(zip(states, actions, strict=True)):
            best = self.act(state)
            score = self.importance(state)
            if score > 0 and not self._same(best, action):
                out.append({
                    "t": t,
                    "score": float(score),
                    "reason": f"took {ACTION_NAMES[int(action)]} with the ball at y={state['ball_y']} and "
                    f"the paddle at y={state['player_paddle_y']}; {ACTION_NAMES[best]} keeps the paddle on the ball",
                })
        out.sort(key=lambda d: -d["score"])
        return out

    def implicit_reward(self, state: dict[str, Any], action: Any) -> float:
        sign = 1.0 if self._same(self.act(state), action) else -1.0
        return sign * float(self.importance(state))


# --- adapter -----------------------------------------------------------------------------------------
class PongAdapter(EnvAdapter):
    """``ALE/Pong-v5`` with decoded positions, named actions and a ball-tracking expert.

    :param obs_type: ``"ram"`` (default) or ``"pixels"`` (see the module docstring).
    :param ram_frames: RAM frames stacked into one observation (RAM setup).
    :param frame_stack: Frames stacked into one observation (pixel setup).
    :param make_kwargs: Passed on to ``gym.make`` (e.g. ``repeat_action_probability``).
    """

    env_id = "ALE/Pong-v5"
    task = (
        "You play Pong as the RIGHT (green) paddle against the computer's left (orange) paddle. Move "
        "your paddle up and down to meet the ball and send it back. A point is scored when the ball "
        "passes a paddle: +1 reward when the opponent misses, -1 when you miss. The game ends when "
        "one side reaches 21 points. Positions are screen pixels of a 160x210 frame, y grows "
        f"DOWNWARDS (the playfield spans y={FIELD_TOP}..{FIELD_BOTTOM}); your paddle is at x={PLAYER_X:g}, "
        f"the opponent's at x={OPPONENT_X:g}. Paddle and ball y values are centres."
    )

    def __init__(self, *, obs_type: str = "ram", ram_frames: int = 2, frame_stack: int = 4, **make_kwargs: Any) -> None:
        if obs_type not in ("ram", "pixels"):
            raise ValueError(f"obs_type must be 'ram' or 'pixels', got {obs_type!r}")
        if ram_frames < 1 or frame_stack < 1:
            raise ValueError("ram_frames and frame_stack must be at least 1")
        super().__init__(**make_kwargs)
        self.obs_type = obs_type
        self.ram_frames = ram_frames
        self.frame_stack = frame_stack

    def make(self, **kwargs: Any) -> gym.Env:
        import ale_py

        gym.register_envs(ale_py)
        kwargs = {**self.make_kwargs, **kwargs}
        if self.obs_type == "ram":
            env = gym.make("ALE/Pong-v5", obs_type="ram", **kwargs)
            space = gym.spaces.Box(0.0, 1.0, (RAM_SIZE,), np.float32)
            env = gym.wrappers.TransformObservation(env, lambda o: np.asarray(o, np.float32) / 255.0, space)
            if self.ram_frames > 1:
                env = gym.wrappers.FrameStackObservation(env, self.ram_frames)
                env = gym.wrappers.FlattenObservation(env)
            return env
        env = gym.make("ALE/Pong-v5", obs_type="rgb", frameskip=1, **kwargs)
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=30, frame_skip=4, screen_size=PIXEL_SIZE, terminal_on_life_loss=False,
            grayscale_obs=True, scale_obs=True,
        )
        return gym.wrappers.FrameStackObservation(env, self.frame_stack)

    def action_vocabulary(self, space: gym.Space) -> PongActions:
        if not isinstance(space, gym.spaces.Discrete) or int(space.n) != len(ACTION_NAMES):
            raise InvalidAction(f"expected Pong's minimal action set of 6 actions, got {space}")
        return PongActions()

    # decoding ---------------------------------------------------------------------------------------
    def frames(self, obs: np.ndarray) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The decoded current and previous frames of one observation."""
        obs = np.asarray(obs)
        if self.obs_type == "ram":
            ram = np.rint(obs.reshape(-1, RAM_SIZE) * 255.0).astype(np.uint8)
            prev = decode_ram(ram[-2]) if len(ram) > 1 else None
            return decode_ram(ram[-1]), prev
        stack = obs.reshape(-1, PIXEL_SIZE, PIXEL_SIZE)
        prev = decode_pixels(stack[-2]) if len(stack) > 1 else None
        return decode_pixels(stack[-1]), prev

    def state(self, obs: np.ndarray) -> dict[str, Any]:
        """The exact JSON state of an observation (what the LLM and the expert read)."""
        return state_from_frames(*self.frames(obs))

    def describe(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> Description:
        s = self.state(obs)
        score = (
            f" Score: you {s['player_score']}, opponent {s['opponent_score']}."
            if s["player_score"] is not None
            else ""
        )
        paddle = f"Your paddle's centre is at y={s['player_paddle_y']:g}; the opponent's at y={s['opponent_paddle_y']:g}."
        if not s["ball_visible"]:
            text = f"No ball in play (between points). {paddle}{score}"
        else:
            horizontal = "towards you (right)" if s["ball_dx"] > 0 else ("away from you (left)" if s["ball_dx"] < 0 else "not sideways")
            vertical = "down" if s["ball_dy"] > 0 else ("up" if s["ball_dy"] < 0 else "level")
            gap = s["ball_y"] - s["player_paddle_y"]
            where = f"{abs(gap):g} px {'below' if gap > 0 else 'above'} your paddle's centre" if gap else "level with your paddle's centre"
            text = (
                f"Ball at x={s['ball_x']:g}, y={s['ball_y']:g}, moving {horizontal} and {vertical} "
                f"(dx={s['ball_dx']:+g}, dy={s['ball_dy']:+g} px per step); it is {PLAYER_X - s['ball_x']:g} px "
                f"left of your paddle and {where}. {paddle}{score}"
            )
        return Description(text=text, state=s)

    def match_features(self, obs: np.ndarray) -> np.ndarray:
        """Numbers that identify a situation, for state matching (ULTRA): a batch of observations
        ``(n, *obs_shape)`` → ``(n, 6)`` in the order of :data:`FEATURES` (screen pixels; the ball's
        numbers are 0 while none is in play)."""
        obs = np.asarray(obs)
        n = obs.shape[0]
        if self.obs_type == "ram":  # vectorised: this runs on every training batch
            ram = np.rint(obs.reshape(n, -1, RAM_SIZE) * 255.0).astype(np.int64)
            cur, prev = ram[:, -1], ram[:, -2] if ram.shape[1] > 1 else ram[:, -1]
            vis = cur[:, RAM_BALL_Y] != 0
            prev_vis = prev[:, RAM_BALL_Y] != 0
            moving = vis & prev_vis
            ball_y = cur[:, RAM_BALL_Y] + BALL_Y_OFFSET
            return np.stack([
                vis.astype(np.float64),
                np.where(vis, cur[:, RAM_BALL_X] + BALL_X_OFFSET, 0.0),
                np.where(vis, ball_y, 0.0),
                np.where(vis, ball_y - (cur[:, RAM_PLAYER_Y] + PLAYER_Y_OFFSET), 0.0),
                np.where(moving, cur[:, RAM_BALL_X] - prev[:, RAM_BALL_X], 0.0),
                np.where(moving, cur[:, RAM_BALL_Y] - prev[:, RAM_BALL_Y], 0.0),
            ], axis=1).astype(np.float64)
        rows = []
        for o in obs:
            s = self.state(o)
            vis = bool(s["ball_visible"])
            rows.append([float(vis), s["ball_x"] if vis else 0.0, s["ball_y"] if vis else 0.0,
                         s["ball_y"] - s["player_paddle_y"] if vis else 0.0, s["ball_dx"], s["ball_dy"]])
        return np.asarray(rows, dtype=np.float64).reshape(n, len(FEATURES))

    @property
    def expert(self) -> PongExpert:
        return PongExpert()
