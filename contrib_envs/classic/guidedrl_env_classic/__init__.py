"""Classic-control adapters: ``CartPole-v1`` with a description, named actions and an expert."""

from __future__ import annotations

from typing import Any

import numpy as np

from guidedrl import hookimpl
from guidedrl.envs import Description, DiscreteActions, EnvAdapter, Expert
from guidedrl.envs.base import round_floats

# Termination limits of CartPole-v1 (gymnasium.envs.classic_control.cartpole).
X_LIMIT = 2.4
THETA_LIMIT = 12 * 2 * np.pi / 360


class CartPoleExpert(Expert):
    """A linear controller on angle and angular velocity (plus a little position feedback).

    It balances CartPole-v1 for the full 500 steps from every start state we tried; it reads only
    the JSON state, exactly as an LLM would.
    """

    def act(self, state: dict[str, Any]) -> int:
        u = (
            state["pole_angle_rad"]
            + 0.5 * state["pole_angular_velocity"]
            + 0.05 * state["cart_position"]
            + 0.1 * state["cart_velocity"]
        )
        return 1 if u > 0 else 0

    def importance(self, state: dict[str, Any]) -> float:
        """Critical when the pole or cart approaches its limit (scaled to [0, 1])."""
        angle = abs(state["pole_angle_rad"]) / THETA_LIMIT
        angle_rate = abs(state["pole_angular_velocity"]) / 2.0
        position = abs(state["cart_position"]) / X_LIMIT
        return float(min(1.0, max(angle, angle_rate, position)))


class CartPoleAdapter(EnvAdapter):
    env_id = "CartPole-v1"
    task = (
        "Balance a pole hinged on a cart by pushing the cart left or right. The episode ends when "
        f"the pole tilts more than 12 degrees ({THETA_LIMIT:.4f} rad) or the cart leaves |x| <= {X_LIMIT}; "
        "+1 reward per step survived, at most 500 steps."
    )

    def action_vocabulary(self, space: Any) -> DiscreteActions:
        return DiscreteActions(["push_left", "push_right"], ["accelerate the cart to the left", "accelerate the cart to the right"])

    def describe(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> Description:
        x, x_dot, theta, theta_dot = round_floats(obs)
        lean = "right" if theta > 0 else "left"
        falling = "further " + ("right" if theta_dot > 0 else "left")
        text = (
            f"The cart is at x={x:+.3f} (limit +/-{X_LIMIT}) moving {x_dot:+.3f}/step. "
            f"The pole leans {lean} by {abs(theta):.4f} rad (limit {THETA_LIMIT:.4f}) and is rotating {falling} "
            f"at {abs(theta_dot):.3f} rad/step."
        )
        state = {
            "cart_position": x,
            "cart_velocity": x_dot,
            "pole_angle_rad": theta,
            "pole_angular_velocity": theta_dot,
        }
        return Description(text=text, state=state)

    @property
    def expert(self) -> CartPoleExpert:
        return CartPoleExpert()


@hookimpl
def register_envs(register: Any) -> None:
    register("CartPole-v1", CartPoleAdapter, summary="CartPole-v1 with named actions and a balancing expert")
