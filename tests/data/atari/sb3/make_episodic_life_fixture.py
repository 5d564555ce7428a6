"""Writes breakout_episodic_life.json: SB3's AtariWrapper life handling on Breakout, for
envs/tests/atari_episodic_life.rs (see tests/data/atari/README.md, "SB3 episodic-life fixture").

Stack (as make_atari_env: Monitor inside AtariWrapper): gym.make("ALE/Breakout-v5", frameskip=1,
repeat_action_probability=0) -> Monitor -> AtariWrapper(noop_max=0, frame_skip=4, screen_size=84,
terminal_on_life_loss=True [= EpisodicLifeEnv], clip_reward=True), so the order is MaxAndSkip -> EpisodicLife ->
FireReset -> WarpFrame -> ClipReward. Actions: np.random.default_rng(777).integers(0, 4, 5000), played from
reset(seed=0) until the second game over, with env.reset() after every terminated/truncated step.
"""
import hashlib
import json
import sys

import ale_py
import gymnasium as gym
import numpy as np
import stable_baselines3
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.monitor import Monitor

gym.register_envs(ale_py)


def make():
    env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0)
    env = Monitor(env)
    return AtariWrapper(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=True, clip_reward=True)


def ale_state(env):
    ale = env.unwrapped.ale
    return {
        "lives": int(ale.lives()),
        "episode_frame_number": int(ale.getEpisodeFrameNumber()),
        "screen_gray_sha256": hashlib.sha256(np.ascontiguousarray(ale.getScreenGrayscale()).tobytes()).hexdigest(),
    }


def record():
    env = make()
    actions = np.random.default_rng(777).integers(0, 4, 5000)
    env.reset(seed=0)
    events = [{"kind": "reset", **ale_state(env)}]
    games, t, game_steps = 0, 0, 0
    while games < 2:
        a = int(actions[t])
        t += 1
        _, r, term, trunc, info = env.step(a)
        game_steps += 1
        rec = {"kind": "step", "action": a, "reward": float(r), "terminated": bool(term), "truncated": bool(trunc)}
        rec.update(ale_state(env))
        if "episode" in info:
            # Monitor's r is the raw score of the whole game, l its emulator frames; agent_steps: env.step calls.
            rec["monitor_episode"] = {
                "r": float(info["episode"]["r"]),
                "l": int(info["episode"]["l"]),
                "agent_steps": game_steps,
            }
            games += 1
            game_steps = 0
        events.append(rec)
        if (term or trunc) and games < 2:
            env.reset()
            events.append({"kind": "reset", **ale_state(env)})
    env.close()
    return events


def main(out):
    events = record()
    data = {
        "meta": {
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gym.__version__,
            "ale_py": ale_py.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "actions": "np.random.default_rng(777).integers(0, 4, 5000), consumed in order by the steps",
        },
        "env_id": "ALE/Breakout-v5",
        "make_kwargs": {"frameskip": 1, "repeat_action_probability": 0.0},
        "wrapper": "Monitor inside AtariWrapper(noop_max=0, frame_skip=4, screen_size=84, "
        "terminal_on_life_loss=True, clip_reward=True)",
        "seed": 0,
        "deterministic_rerun": events == record(),
        "events": events,
    }
    with open(out, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    steps = [e for e in events if e["kind"] == "step"]
    print(f"{out}: {len(steps)} steps, {len(events) - len(steps)} resets, "
          f"{sum(e['terminated'] for e in steps)} terminated, rerun identical: {data['deterministic_rerun']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "breakout_episodic_life.json")
