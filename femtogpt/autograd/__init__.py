"""Reverse-mode autograd: Tensor, Function and the Graph (tape) that records and replays them."""
from femtogpt.autograd.graph import Function, Graph, OpProfile, Tensor

__all__ = ["Function", "Graph", "OpProfile", "Tensor"]
