"""Model kinds: one module per kind (linear.py, mlp.py) and the registry that maps names to them.

Import the registry (``from service.training.kinds import registry``) to reach a kind; see
base.py for what a kind provides and the README's "Model kinds" for how to add one.
"""
