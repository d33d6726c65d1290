"""Pong adapter: RAM decoding against rendered frames, pixel decoding, vocabulary, expert, registry."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from guidedrl.envs import InvalidAction
from guidedrl_env_atari import PongAdapter, decode_pixels, decode_ram
from guidedrl_env_atari.pong import DOWN, FEATURES, NOOP, UP

GREEN_PADDLE = (92, 186, 92)
WHITE = (236, 236, 236)


def frame_positions(rgb: np.ndarray) -> tuple[float | None, float | None, float]:
    """Ball centre and the green paddle's top row, found by colour in a rendered 160x210 frame."""
    field = rgb[34:194]
    ball = np.argwhere(np.all(field == WHITE, axis=-1))
    paddle = np.argwhere(np.all(rgb[34:194, 140:144] == GREEN_PADDLE, axis=-1))
    bx, by = (ball[:, 1].mean(), ball[:, 0].mean() + 34) if len(ball) else (None, None)
    return bx, by, (paddle[:, 0].min() + 34) if len(paddle) else np.nan


def test_ram_decoding_matches_the_rendered_frame():
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", obs_type="rgb", repeat_action_probability=0.0)
    env.reset(seed=3)
    ale = env.unwrapped.ale
    errors, paddle_errors = [], []
    for t in range(300):
        rgb, *_ = env.step([UP, DOWN, NOOP][(t // 20) % 3])
        d = decode_ram(ale.getRAM())
        bx, by, top = frame_positions(rgb)
        if bx is not None and d["ball_visible"] and 40 < by < 188:
            errors.append((d["ball_x"] - bx, d["ball_y"] - by))
        if 50 < d["player_paddle_y"] < 180 and np.isfinite(top):  # paddle fully on screen
            paddle_errors.append(d["player_paddle_y"] - (top + 7.5))
    env.close()
    errors = np.abs(np.asarray(errors))
    assert len(errors) > 100
    assert np.median(errors, axis=0).max() <= 1.0
    assert np.percentile(errors, 95, axis=0).max() <= 3.0
    assert len(paddle_errors) > 50 and np.median(np.abs(paddle_errors)) <= 2.0


def test_ram_observations_are_scaled_and_stacked():
    adapter = PongAdapter()
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (256,) and obs.dtype == np.float32
    assert env.observation_space.shape == (256,)
    for _ in range(60):
        obs, *_ = env.step(NOOP)
    assert 0.0 <= obs.min() and obs.max() <= 1.0
    ram = env.unwrapped.ale.getRAM()
    np.testing.assert_array_equal(np.rint(obs[128:] * 255).astype(np.uint8), ram)  # newest frame last
    env.close()


def test_describe_gives_text_and_exact_state():
    adapter = PongAdapter()
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    for _ in range(300):  # until the ball is served and moving
        obs, *_ = env.step(NOOP)
        if adapter.state(obs)["ball_visible"] and adapter.state(obs)["ball_dx"] != 0:
            break
    desc = adapter.describe(obs)
    s = desc.state
    assert s["ball_visible"] and s["ball_dx"] != 0
    assert {"ball_x", "ball_y", "ball_dx", "ball_dy", "player_paddle_y", "opponent_paddle_y", "player_score", "opponent_score"} <= set(s)
    assert f"x={s['ball_x']:g}" in desc.text and "paddle" in desc.text
    assert json.loads(desc.json()) == s
    feats = adapter.match_features(obs[None])
    assert feats.shape == (1, len(FEATURES))
    np.testing.assert_allclose(feats[0], [1.0, s["ball_x"], s["ball_y"], s["ball_y"] - s["player_paddle_y"], s["ball_dx"], s["ball_dy"]])
    env.close()


def test_pixel_setup_decodes_close_to_ram():
    adapter = PongAdapter(obs_type="pixels", repeat_action_probability=0.0)
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.float32
    ale = env.unwrapped.ale
    ball, paddle = [], []
    for t in range(400):
        obs, *_ = env.step([UP, DOWN, NOOP, DOWN][(t // 15) % 4])
        p, q = decode_pixels(obs[-1]), decode_ram(ale.getRAM())
        if p["ball_visible"] and q["ball_visible"]:
            ball.append((p["ball_x"] - q["ball_x"], p["ball_y"] - q["ball_y"]))
        if 50 < q["player_paddle_y"] < 180:
            paddle.append(p["player_paddle_y"] - q["player_paddle_y"])
    env.close()
    ball = np.abs(np.asarray(ball))
    assert len(ball) > 100 and np.median(ball, axis=0).max() <= 2.0
    assert np.median(np.abs(paddle)) <= 8.0  # max-pooling over two frames smears a moving paddle
    state = adapter.describe(obs).state
    assert state["player_score"] is None  # not decoded from pixels


def test_vocabulary_names_parse_and_reject():
    vocab = PongAdapter().vocabulary
    assert vocab.names[UP] == "UP" and vocab.names[DOWN] == "DOWN"
    assert vocab.parse("up") == UP and vocab.parse("RIGHT") == UP and vocab.parse("left") == DOWN and vocab.parse(3) == DOWN
    for bad in (6, -1, "jump", 2.5, True, [2]):
        with pytest.raises(InvalidAction):
            vocab.parse(bad)


def play(adapter, env, policy, steps, seed):
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += reward
        if terminated or truncated:
            break
    return total


def test_expert_tracking_the_ball_beats_random():
    adapter = PongAdapter()
    env = adapter.make()
    expert = adapter.expert
    rng = np.random.default_rng(0)
    expert_return = play(adapter, env, lambda o: expert.act(adapter.state(o)), 1500, seed=1)
    random_return = play(adapter, env, lambda o: int(rng.integers(6)), 1500, seed=1)
    env.close()
    assert random_return <= -10
    assert expert_return >= random_return + 8


def test_expert_judgements():
    expert = PongAdapter().expert
    coming = {"ball_visible": True, "ball_x": 130.0, "ball_y": 150.0, "ball_dx": 4.0, "ball_dy": 1.0, "player_paddle_y": 100.0}
    assert expert.act(coming) == DOWN
    assert expert.act({**coming, "ball_y": 60.0}) == UP
    assert expert.act({**coming, "ball_y": 101.0}) == NOOP
    assert expert.importance(coming) > expert.importance({**coming, "ball_x": 40.0}) > expert.importance({**coming, "ball_dx": -4.0})
    assert expert.importance({"ball_visible": False}) == 0.0
    assert expert.implicit_reward(coming, DOWN) > 0 > expert.implicit_reward(coming, UP)
    crit = expert.critical_states([coming, {**coming, "ball_dx": -4.0}, coming], [UP, UP, DOWN], [0.0] * 3)
    assert [c["t"] for c in crit] == [0, 1] and crit[0]["score"] > crit[1]["score"]


def test_registered_ids():
    from guidedrl.registry import make_adapter

    assert make_adapter("ALE/Pong-v5").obs_type == "ram"
    assert make_adapter("ALE/Pong-v5", obs_type="pixels").obs_type == "pixels"
    assert make_adapter("ALE/Pong-ram-v5").obs_type == "ram"
    with pytest.raises(ValueError, match="obs_type"):
        PongAdapter(obs_type="rgb")
