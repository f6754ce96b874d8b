"""Pure sizing numerics: the field guide's 13-step algorithm with a reason for every step.

No I/O, no clock, no environment: every input is a parameter, so the CLI, the operator and the
replay simulator all call the very same functions.
"""
