"""agents: batched policies for the town (random, scripted, NumPy softmax, neuro-symbolic) and the
generative personas' minds (``agents.generative``: memory, cognition, the society driver).

Every policy acts on a batch of agents at once: ``act(obs (B, D), mask (B, 4), rng) -> actions (B,)``.
The agent's group is read from the group one-hot inside its observation, so a batch may mix
agents of several groups and several parallel episodes.
"""

from agents.base import Policy, TrainablePolicy, group_index, masked_log_softmax
from agents.generative import GenerativeAgent, GenerativeConfig, GenerativeSociety, make_town
from agents.neurosymbolic import NeuroSymbolicPolicy
from agents.random_policy import RandomPolicy
from agents.scripted import ScriptedPolicy
from agents.softmax import SoftmaxPolicy

__all__ = [
    "GenerativeAgent",
    "GenerativeConfig",
    "GenerativeSociety",
    "NeuroSymbolicPolicy",
    "Policy",
    "RandomPolicy",
    "ScriptedPolicy",
    "SoftmaxPolicy",
    "TrainablePolicy",
    "group_index",
    "make_town",
    "masked_log_softmax",
]
