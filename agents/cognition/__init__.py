"""The persona's cognition (Park et al. 2023): perceive, retrieve, plan, converse, reflect, execute.

Each step is a prompt template (``agents/prompts/<lang>/*.txt``) and an
:class:`agents.llm.base.LLMRequest` whose ``fallback`` computes the rule-based answer from the
persona's own fields (the ``scripted`` backend's answer, and the replacement after failures).
:mod:`agents.generative` drives them for every persona of the town, one concurrent batch of
requests per cognition step.
"""
