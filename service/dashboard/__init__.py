"""The dashboard: server-rendered pages at /, signed in with an API key."""
