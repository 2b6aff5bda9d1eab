"""Local tools: never part of the deployed function app (see .funcignore)."""
