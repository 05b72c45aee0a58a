"""Configuration: typed settings and the agents file."""

from brainstack.config.agents import AgentsConfig, AgentSpec, GroupChatSpec, load_agents
from brainstack.config.settings import Settings

__all__ = ["AgentSpec", "AgentsConfig", "GroupChatSpec", "Settings", "load_agents"]
