"""The paper's parameter-efficiency claims (densenet-facts.md, 1-4) and the latency facts it does not
state, each as {"claim", "measured", "verdict", "figures"} computed from measured params/MACs/latency.

Verdicts: "holds", "does not hold", "consistent" (the tables bound the claim but cannot pin it down),
and for latency "follows MACs" / "does not follow MACs", or "inconclusive" when the measurement cannot
decide: fewer than MIN_LATENCY_SAMPLES timed runs per model, overlapping IQR ranges, or a spread wide
enough that the verdict would differ within it.
"""

from __future__ import annotations

# "Comparable error": the paper's Figure 3 treats models within a few tenths of a point as on par.
ERROR_TOLERANCE = 0.3
# A latency verdict needs a spread to judge by: fewer timed runs per model than this give "inconclusive".
MIN_LATENCY_SAMPLES = 5
# "Follows" = latency ratio within 25 % of the MAC ratio (e.g. 0.7x MACs -> 0.53..0.88x latency).
FOLLOWS_TOLERANCE = 0.25


def _m(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _g(n: int) -> str:
    return f"{n / 1e9:.2f} G"


def _claim(claim: str, measured: str, verdict: str, **figures) -> dict:
    return {"claim": claim, "measured": measured, "verdict": verdict, "figures": figures}


def efficiency_claims(rows: dict) -> list[dict]:
    """Claims 1-4; a claim whose models are not in `rows` is left out."""
    out = []
    have = set(rows)
    if {"densenet201", "resnet101"} <= have:
        d, r = rows["densenet201"], rows["resnet101"]
        ratio = d["params"] / r["params"]
        diff = d["top1_error"] - r["top1_error"]
        holds = ratio <= 0.5 and diff <= ERROR_TOLERANCE
        out.append(
            _claim(
                "DenseNet-201 (~20M params) reaches the validation error of ResNet-101 (>40M params) (Figure 3)",
                f"DenseNet-201 has {ratio:.2f}x the params of ResNet-101 ({_m(d['params'])} vs {_m(r['params'])}) with "
                f"top-1 error {d['top1_error']:.2f} vs {r['top1_error']:.2f} % (fb.resnet.torch; torchvision V1: "
                f"{r.get('top1_error_torchvision', float('nan')):.2f} %): {diff:+.2f} points",
                "holds" if holds else "does not hold",
                params_ratio=ratio,
                error_diff=diff,
                tolerance=ERROR_TOLERANCE,
            )
        )
    dense = [rows[n] for n in ("densenet121", "densenet169", "densenet201", "densenet264") if n in rows]
    if dense and {"resnet50", "resnet101"} <= have:
        r50, r101 = rows["resnet50"], rows["resnet101"]
        d = min(dense, key=lambda x: abs(x["macs"] / r50["macs"] - 1))
        mac_ratio, double = d["macs"] / r50["macs"], r101["macs"] / r50["macs"]
        diff = d["top1_error"] - r101["top1_error"]
        holds = abs(mac_ratio - 1) <= 0.1 and double >= 1.8 and diff <= ERROR_TOLERANCE
        out.append(
            _claim(
                "A DenseNet with the FLOPs of ResNet-50 performs on par with ResNet-101, which has twice the FLOPs",
                f"{d['paper_label']} (closest in MACs to ResNet-50) has {mac_ratio:.2f}x ResNet-50's MACs "
                f"({_g(d['macs'])} vs {_g(r50['macs'])}); ResNet-101 has {double:.2f}x; top-1 error "
                f"{d['top1_error']:.2f} vs ResNet-101's {r101['top1_error']:.2f} % ({diff:+.2f} points)",
                "holds" if holds else "does not hold",
                model=d["name"],
                macs_ratio_vs_resnet50=mac_ratio,
                resnet101_macs_ratio=double,
                error_diff=diff,
            )
        )
    if {"densenet_bc100_k12", "preact_resnet1001"} <= have:
        d, r = rows["densenet_bc100_k12"], rows["preact_resnet1001"]
        ratio = d["params"] / r["params"]
        errs = {k: (d["cifar_error"][k], r["cifar_error"][k]) for k in ("C10+", "C100+")}
        holds = all(a <= b for a, b in errs.values())
        out.append(
            _claim(
                "DenseNet-BC (L=100, k=12, 0.8M params) matches the pre-activation ResNet-1001 (10.2M) on C10+ "
                "and C100+",
                f"{ratio:.3f}x the params ({_m(d['params'])} vs {_m(r['params'])}); error "
                + ", ".join(f"{k} {a:.2f} vs {b:.2f} %" for k, (a, b) in errs.items()),
                "holds" if holds else "does not hold",
                params_ratio=ratio,
            )
        )
    bc = [rows[n] for n in ("densenet_bc100_k12", "densenet_bc250_k24", "densenet_bc190_k40") if n in rows]
    pre = [rows[n] for n in ("preact_resnet164", "preact_resnet1001") if n in rows]
    if bc and pre:
        ratios, parts = [], []
        for r in pre:
            target = r["cifar_error"]["C10+"]
            better = [d for d in bc if d["cifar_error"].get("C10+", 99) <= target]
            if better:
                d = min(better, key=lambda x: x["params"])
                ratios.append(d["params"] / r["params"])
                parts.append(
                    f"{r['paper_label']} ({_m(r['params'])}, {target:.2f} %) is matched by {d['paper_label']} "
                    f"({_m(d['params'])}, {d['cifar_error']['C10+']:.2f} %): {ratios[-1]:.2f}x the params"
                )
        verdict = "consistent" if ratios and max(ratios) <= 0.5 else "does not hold"
        out.append(
            _claim(
                "DenseNet-BC needs about 1/3 of the parameters of a pre-activation ResNet for the same C10+ accuracy "
                "(Figure 4)",
                "; ".join(parts) + ". Each ratio is an upper bound (the DenseNet-BC is more accurate); the '~1/3' "
                "itself is read off Figure 4's curves, which Table 2 only samples",
                verdict,
                ratios=ratios,
            )
        )
    out.extend(_steady_improvement(rows))
    return out


def _steady_improvement(rows: dict) -> list[dict]:
    families = {}
    for r in rows.values():
        if r["dataset"] == "cifar" and r["family_label"].startswith("DenseNet"):
            families.setdefault(r["family_label"], []).append(r)
    if not families:
        return []
    exceptions, checked = [], 0
    for label, items in families.items():
        items.sort(key=lambda r: r["params"])
        for ds in ("C10", "C10+", "C100", "C100+", "SVHN"):
            seq = [(r, r["cifar_error"][ds]) for r in items if ds in r["cifar_error"]]
            for (a, ea), (b, eb) in zip(seq, seq[1:]):
                checked += 1
                if eb > ea:
                    exceptions.append(
                        f"{label} {ds}: {b['paper_label']} ({_m(b['params'])}) {eb:.2f} % > "
                        f"{a['paper_label']} ({_m(a['params'])}) {ea:.2f} %"
                    )
    if not checked:  # one model per family: nothing to compare
        return []
    augmented_ok = not any(" C10+:" in e or " C100+:" in e for e in exceptions)
    measured = (
        f"{checked} consecutive pairs by measured params; with augmentation (C10+, C100+) the error "
        f"{'always falls' if augmented_ok else 'does not always fall'} as params grow"
        + (
            f"; exceptions: {'; '.join(exceptions)} (without data augmentation, where overfitting is expected)"
            if exceptions
            else ""
        )
    )
    verdict = "holds" if augmented_ok else "does not hold"
    return [
        _claim(
            "Accuracy improves steadily with more parameters, without signs of overfitting (Table 2, Figure 4)",
            measured,
            verdict,
            exceptions=exceptions,
            pairs_checked=checked,
        )
    ]


def latency_claims(rows: dict, backend: str, batch: int) -> list[dict]:
    """What the paper does not claim: does measured latency follow the MACs?"""
    where = f"batch {batch} on {backend}-cpu"
    out = []
    for a, b in (
        ("densenet121", "resnet50"),
        ("densenet201", "resnet101"),
        ("densenet201", "resnet50"),
        ("densenet_bc100_k12", "preact_resnet1001"),
    ):
        if a not in rows or b not in rows or rows[a].get("latency_ms") is None or rows[b].get("latency_ms") is None:
            continue
        x, y = rows[a], rows[b]
        mac_ratio, lat_ratio = x["macs"] / y["macs"], x["latency_ms"] / y["latency_ms"]
        speed = f"{1 / lat_ratio:.2f}x faster" if lat_ratio < 1 else f"{lat_ratio:.2f}x slower"
        fewer = "fewer" if mac_ratio < 1 else "more"
        band = ((1 - FOLLOWS_TOLERANCE) * mac_ratio, (1 + FOLLOWS_TOLERANCE) * mac_ratio)
        follows = band[0] <= lat_ratio <= band[1]
        (x25, x75), (y25, y75) = _iqr_range(x), _iqr_range(y)
        low, high = x25 / y75, x75 / y25  # the latency ratio anywhere within both IQRs
        samples = [x.get("latency_samples") or 0, y.get("latency_samples") or 0]
        why = []
        if min(samples) < MIN_LATENCY_SAMPLES:
            n = min(samples)
            why.append(
                f"only {n} timed run{'' if n == 1 else 's'} per model (fewer than {MIN_LATENCY_SAMPLES}), "
                "too few to judge the spread"
            )
        if x25 <= y75 and y25 <= x75:
            why.append(f"their IQR ranges overlap ({x25:.2f}-{x75:.2f} vs {y25:.2f}-{y75:.2f} ms)")
        elif not (band[0] <= low and high <= band[1]) and not (high < band[0] or low > band[1]):
            why.append(
                f"within the IQRs the latency ratio ranges over {low:.2f}-{high:.2f}x, across the "
                f"'follows' band {band[0]:.2f}-{band[1]:.2f}x (MAC ratio +-{FOLLOWS_TOLERANCE:.0%})"
            )
        verdict = "inconclusive" if why else "follows MACs" if follows else "does not follow MACs"
        out.append(
            _claim(
                f"{x['paper_label']} vs {y['paper_label']}: does latency follow MACs ({where})?",
                f"{x['paper_label']} has {fewer} MACs than {y['paper_label']} ({mac_ratio:.2f}x: {_g(x['macs'])} vs "
                f"{_g(y['macs'])}), {x['params'] / y['params']:.2f}x the params, and is {speed} at {where} "
                f"({x['latency_ms']:.2f} vs {y['latency_ms']:.2f} ms median, IQR {x25:.2f}-{x75:.2f} vs "
                f"{y25:.2f}-{y75:.2f} ms, {samples[0]} and {samples[1]} timed runs)"
                + (f"; inconclusive: {'; '.join(why)}" if why else ""),
                verdict,
                macs_ratio=mac_ratio,
                latency_ratio=lat_ratio,
                latency_ratio_iqr_range=[low, high],
                follows_band=list(band),
                latency_ms=[x["latency_ms"], y["latency_ms"]],
                latency_iqr_range_ms=[[x25, x75], [y25, y75]],
                samples=samples,
                inconclusive=bool(why),
                reasons=why,
            )
        )
    return out


def _iqr_range(row: dict) -> tuple[float, float]:
    """(p25, p75) of a row's latency; the median twice when the row has no spread recorded."""
    p50 = row["latency_ms"]
    return (row.get("latency_p25_ms", p50), row.get("latency_p75_ms", p50))
