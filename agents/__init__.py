"""agents: batched policies for the town (random, scripted, NumPy softmax).

Every policy acts on a batch of agents at once: ``act(obs (B, D), mask (B, 4), rng) -> actions (B,)``.
The agent's group is read from the group one-hot inside its observation, so a batch may mix
agents of several groups and several parallel episodes.
"""

from agents.base import Policy, TrainablePolicy, group_index, masked_log_softmax
from agents.random_policy import RandomPolicy
from agents.scripted import ScriptedPolicy
from agents.softmax import SoftmaxPolicy

__all__ = [
    "Policy",
    "RandomPolicy",
    "ScriptedPolicy",
    "SoftmaxPolicy",
    "TrainablePolicy",
    "group_index",
    "masked_log_softmax",
]
