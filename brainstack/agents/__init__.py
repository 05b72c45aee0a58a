"""Agents: specialists, the AutoGen group chat, and the chat-model providers."""
