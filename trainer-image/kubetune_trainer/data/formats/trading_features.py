"""Features and labels for the trading format. Pure functions over one ticker's history.

Every feature for the example at index t reads `closes[: t + 1]` (and volumes likewise)
only: nothing after the example's date can reach its input. Labels read t + horizon.

Indicators (documented so they can be checked by hand):
- returns: daily close-to-close change in percent over the window;
- z-close: (close - mean of window closes) / population std of window closes;
- volatility: std of the window's daily returns, in percent per day;
- RSI14: 100 - 100 / (1 + mean gain / mean loss) over the last 14 returns (simple means,
  Cutler's variant; 100 when there is no loss);
- close/SMA: last close over the mean close of the window;
- volume ratio: last volume over the mean volume of the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Features:
    returns_pct: list[float]  # one per window day
    z_close: list[float]
    volatility_pct: float
    rsi14: float
    sma_ratio: float
    volume_ratio: float
    return_5d_pct: float


def _std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def features(closes: list[float], volumes: list[float], t: int, window: int) -> Features:
    """Features at index t from the `window` days ending at t (needs t >= window)."""
    if t < window:
        raise ValueError(f"index {t} has fewer than {window} days of history")
    c = closes[t - window : t + 1]  # window + 1 closes give `window` returns
    rets = [(c[i] / c[i - 1] - 1) * 100 for i in range(1, len(c))]
    wc = c[1:]
    mean, sd = sum(wc) / len(wc), _std(wc)
    z = [(x - mean) / sd if sd else 0.0 for x in wc]
    last = rets[-14:]
    gain = sum(r for r in last if r > 0) / len(last)
    loss = -sum(r for r in last if r < 0) / len(last)
    rsi = 100.0 if loss == 0 else 100 - 100 / (1 + gain / loss)
    vol = volumes[t - window + 1 : t + 1]
    mean_vol = sum(vol) / len(vol)
    back = min(5, window)
    return Features(
        returns_pct=rets, z_close=z, volatility_pct=_std(rets), rsi14=rsi,
        sma_ratio=closes[t] / mean, volume_ratio=volumes[t] / mean_vol if mean_vol else 1.0,
        return_5d_pct=(closes[t] / closes[t - back] - 1) * 100,
    )  # fmt: skip


def label(
    closes: list[float], t: int, horizon: int, hold_band_pct: float, volatility_pct: float
) -> tuple[str, float, float, float]:
    """(action, target price, confidence, forward return %) from the realized future close.

    buy/sell when |forward return| >= hold band, else hold. Confidence for buy/sell is
    0.5 + 0.45 * tanh(|return| / (volatility * sqrt(horizon))) — how large the move was
    against the noise expected over the horizon; for hold it is 0.5 + 0.45 * (1 - |return| /
    band). Both lie in [0.5, 0.95].
    """
    fwd = (closes[t + horizon] / closes[t] - 1) * 100
    if abs(fwd) >= hold_band_pct and fwd != 0:
        action = "buy" if fwd > 0 else "sell"
        noise = max(volatility_pct * math.sqrt(horizon), 1e-9)
        conf = 0.5 + 0.45 * math.tanh(abs(fwd) / noise)
    else:
        action = "hold"
        conf = 0.5 + 0.45 * (1 - abs(fwd) / hold_band_pct) if hold_band_pct else 0.5
    return action, round(closes[t + horizon], 2), round(conf, 2), round(fwd, 3)
