"""Pure decisions: no I/O, no clock, time is a parameter."""
