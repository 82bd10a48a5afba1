"""Market data: exact money, SMA, candles, per-symbol state, simulated and replayed prices.

Pure, but for ``store`` (async reads of the processor's Redis keys).
"""
