"""Learning: solvers, learning-rate schedules, metrics, target reports, the learn/test loop.

Modules here import torch; ``n2q.cli`` imports none of them before options are parsed.
"""
