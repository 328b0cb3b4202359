"""``render_mode="rgb_array"``: every metarl env accepts it; the analytic envs draw what their docstrings say."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import env_ids_under_test

import metarl  # noqa: F401  (registers the ids)
from metarl.envs.bandit import BAR_HEIGHT, BAR_WIDTH, BanditTask
from metarl.envs.navigation import GoalTask
from metarl.envs.registration import ENV_SPECS
from metarl.envs.rendering import BLACK, BLUE, GREEN, ORANGE, PlaneView
from metarl.envs.tabular_mdp import CELL
from metarl.errors import UserError

ANALYTIC = [
    env_id
    for env_id in env_ids_under_test()
    if ENV_SPECS[env_id][0].split(".")[2] not in ("mujoco", "metaworld")
]


def _is(pixel: np.ndarray, color: tuple[int, int, int]) -> bool:
    return tuple(int(c) for c in pixel) == color


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_every_env_accepts_rgb_array(env_id):
    if env_id not in ANALYTIC:
        pytest.importorskip("mujoco")
    env = gym.make(env_id, render_mode="rgb_array")
    assert env.unwrapped.render_mode == "rgb_array" and "rgb_array" in env.metadata["render_modes"]
    env.close()


@pytest.mark.parametrize("env_id", ANALYTIC)
def test_analytic_envs_render_an_image_and_have_no_window_of_their_own(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    env.step(env.action_space.sample())
    second = env.render()
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert first.shape == second.shape and not np.array_equal(first, second)  # the image follows the episode
    unrendered = gym.make(env_id)
    unrendered.reset(seed=0)
    assert unrendered.render() is None
    # no window of their own: the constructor refuses "human", and gymnasium.make wraps the
    # rgb_array images in its HumanRendering window instead
    with pytest.raises(UserError, match=r"supports render_mode in \['rgb_array'\]"):
        type(env.unwrapped)(**gym.spec(env_id).kwargs, render_mode="human")


def test_navigation_draws_the_goal_the_path_and_the_position():
    env = gym.make("MetaRL/Navigation2D-v0", render_mode="rgb_array").unwrapped
    env.set_task(GoalTask(goal_x=0.4, goal_y=-0.3))
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([0.1, 0.1], dtype=np.float32))
    image = env.render()
    view = PlaneView(image.shape[0], extent=0.6)  # the view keeps goal and path: here they fit in 0.6
    row, column = np.round(view.pixels(np.array([0.4, -0.3]))).astype(int)
    assert _is(image[row, column], GREEN)
    row, column = np.round(view.pixels(np.array([0.15, 0.15]))).astype(int)  # half-way along the path
    assert _is(image[row, column], BLUE)
    row, column = np.round(view.pixels(np.array([0.3, 0.3]))).astype(int)
    assert _is(image[row, column], ORANGE)


def test_bandit_draws_pulls_and_hidden_probabilities():
    env = gym.make("MetaRL/Bandit-K5-v0", render_mode="rgb_array").unwrapped
    env.set_task(BanditTask(probabilities=(0.5, 0.25, 0.5, 0.75, 0.5)))
    env.reset(seed=0)
    env.step(1)
    env.step(3)
    image = env.render()
    assert image.shape == (BAR_HEIGHT, 5 * BAR_WIDTH, 3)
    bottom = image[BAR_HEIGHT - 2, [arm * BAR_WIDTH + BAR_WIDTH // 2 for arm in range(5)]]
    white = (255, 255, 255)
    assert [tuple(int(c) for c in p) for p in bottom] == [white, BLUE, white, ORANGE, white]
    level = round((BAR_HEIGHT - 1) * (1 - 0.25))
    assert _is(image[level, BAR_WIDTH + BAR_WIDTH // 2], BLACK)


def test_tabular_mdp_highlights_the_current_state():
    env = gym.make("MetaRL/TabularMDP-v0", render_mode="rgb_array").unwrapped
    obs, _ = env.reset(seed=0)
    for _ in range(4):
        obs, *_ = env.step(0)
    image = env.render()
    state = int(np.argmax(obs))
    centers = image[CELL // 2, [s * CELL + CELL // 2 for s in range(env.num_states)]]
    assert [s for s, pixel in enumerate(centers) if _is(pixel, ORANGE)] == [state]
