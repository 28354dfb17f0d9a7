"""Sizes as people read them."""


def human_bytes(n: float) -> str:
    """1536 -> "1.5 KiB": bytes in binary units, three significant digits."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"
