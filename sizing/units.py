"""Byte and time units. GiB (2^30) is what CUDA and vLLM report; GB (10^9) is what vendors sell."""

GIB = 2**30
GB = 10**9
MIB = 2**20
TB = 10**12


def gib_to_bytes(gib: float) -> float:
    return gib * GIB


def bytes_to_gib(n_bytes: float) -> float:
    return n_bytes / GIB


def bytes_to_gb(n_bytes: float) -> float:
    return n_bytes / GB


def gb_to_gib(gb: float) -> float:
    return gb * GB / GIB
