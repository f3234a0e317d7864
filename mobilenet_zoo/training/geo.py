"""Geolocation as classification (PlaNet, Weyand et al. 2016; paper s.4.5).

The globe is cut into S2 cells adaptively by photo density (PlaNet s.3): start
from coarse cells, split every cell holding more than ``max_photos`` into its
four children, drop cells with fewer than ``min_photos``. Cell ids come from
``s2cell`` (a maintained pure-Python S2 library). A prediction is the centre of
the predicted cell; errors are great-circle distances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
# Table 11 of the paper: street, city, region, country, continent.
THRESHOLDS_KM = (1, 25, 200, 750, 2500)


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Haversine distance in km between points given in degrees (broadcasts)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def fraction_within(distances_km, thresholds=THRESHOLDS_KM) -> dict[str, float]:
    """Share of predictions within each threshold (Table 11's columns)."""
    d = np.asarray(distances_km)
    return {f"{t}km": float((d <= t).mean()) if d.size else 0.0 for t in thresholds}


@dataclass
class CellPartition:
    """S2 cells (tokens), their centres, and the photo count of each."""

    tokens: list[str]
    centers: np.ndarray  # (n, 2) lat, lon
    counts: list[int] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def assign(self, lats, lons) -> np.ndarray:
        """Class index of each point; -1 where the point's cell was dropped."""
        import s2cell

        index = {tok: i for i, tok in enumerate(self.tokens)}
        out = np.full(len(lats), -1, np.int64)
        for lvl in sorted(set(self.levels)):
            for j, (la, lo) in enumerate(zip(lats, lons)):
                if out[j] < 0:
                    tok = s2cell.lat_lon_to_token(float(la), float(lo), lvl)
                    out[j] = index.get(tok, -1)
        return out


def adaptive_cells(
    lats, lons, min_photos: int = 1, max_photos: int = 100, min_level: int = 2, max_level: int = 13
) -> CellPartition:
    """Adaptive S2 partition (PlaNet s.3; PlaNet used t_max 10k, t_min 50 on 126M photos).

    Every kept cell holds between ``min_photos`` and ``max_photos`` photos,
    except cells at ``max_level``, which are not split further.
    """
    import s2cell

    if min_photos < 1 or max_photos < min_photos:
        raise ValueError(f"Need 1 <= min_photos <= max_photos, got {min_photos}, {max_photos}.")
    if not 0 <= min_level <= max_level <= 30:
        raise ValueError(f"Need 0 <= min_level <= max_level <= 30, got {min_level}, {max_level}.")
    lats, lons = np.asarray(lats, float), np.asarray(lons, float)
    if lats.shape != lons.shape or lats.ndim != 1:
        raise ValueError("`lats` and `lons` must be 1-D arrays of the same length.")
    if (np.abs(lats) > 90).any() or (np.abs(lons) > 180).any():
        raise ValueError("latitudes must be in [-90, 90] and longitudes in [-180, 180].")
    pending = [(min_level, np.arange(len(lats)))]
    tokens, counts, levels = [], [], []
    while pending:
        level, idx = pending.pop()
        groups: dict[str, list[int]] = {}
        for i in idx:
            groups.setdefault(s2cell.lat_lon_to_token(lats[i], lons[i], level), []).append(i)
        for tok, members in sorted(groups.items()):
            if len(members) > max_photos and level < max_level:
                pending.append((level + 1, np.array(members)))
            elif len(members) >= min_photos:
                tokens.append(tok)
                counts.append(len(members))
                levels.append(level)
    centers = np.array([s2cell.token_to_lat_lon(t) for t in tokens], float).reshape(-1, 2)
    return CellPartition(tokens, centers, counts, levels)
