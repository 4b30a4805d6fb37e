"""What the serving benchmark concludes from its figures: the bounds and targets, the recommended
batching defaults, and the tables of docs/BENCHMARKS.md. Pure functions of the measured dicts."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

ROUNDS_CELL = ("cifar-tiny", 1, 64)
"""(model, B, C) of the echo-share target, the cell measured again in interleaved rounds."""


@dataclass
class Cell:
    model: str
    batch: int
    concurrency: int
    compute: dict   # in-process at batch B
    on: dict
    off: dict
    echo: dict
    floor: dict | None = None  # C=1 only: the echo server busy for the in-process latency per call
    compute_floor: dict | None = None  # C=1 only: the echo server with --compute (the real batch queue and session)


def median_ratio(rows: list[dict[str, float]], over: str, under: str) -> float:
    return statistics.median(r[over] / r[under] for r in rows)


def rounds_table(rows: list[dict[str, float]]) -> str:
    lines = ["| round | echo req/s | floor req/s | served req/s | floor / echo | served / echo | served / floor |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['echo']:,.0f} | {r['floor']:,.0f} | {r['on']:,.0f} | {r['floor'] / r['echo']:.2f} "
                     f"| {r['on'] / r['echo']:.2f} | {r['on'] / r['floor']:.2f} |")
    lines.append(f"| median | | | | {median_ratio(rows, 'floor', 'echo'):.2f} | {median_ratio(rows, 'on', 'echo'):.2f} "
                 f"| {median_ratio(rows, 'on', 'floor'):.2f} |")
    return "\n".join(lines)


def merge_rounds(rows: list[dict]) -> list[dict]:
    """One row per (model, max_batch_size, delay, C): the mean of its rounds, each round's images/s kept."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["max_batch_size"], r["delay_ms"], r["concurrency"]), []).append(r)
    merged = []
    for (model, size, delay, c), runs in groups.items():
        mean = lambda key, sub=None: sum(r[key][sub] if sub else r[key] for r in runs) / len(runs)  # noqa: E731
        merged.append({"model": model, "max_batch_size": size, "delay_ms": delay, "concurrency": c,
                       "images_per_s": mean("images_per_s"), "rounds": [r["images_per_s"] for r in runs],
                       "latency_ms": {"p50": mean("latency_ms", "p50"), "p99": mean("latency_ms", "p99")},
                       "mean_batch": mean("mean_batch"), "error_count": sum(r["error_count"] for r in runs)})
    return merged


# -- targets and tables ---------------------------------------------------------------------------

def served_images_bound(c: Cell, server_cores: int = 1) -> float:
    """The most images/s the server can serve. Each request costs one echo request's time (1 / echo
    requests/s) and the compute of its B images at the best in-process images/s of any batch size
    (under load batches grow beyond B). On one core the two add up; on more, the compute thread can
    run beside the event loop, and the slower of the two limits."""
    best = c.compute.get("best_images_per_s", c.compute["images_per_s"])
    transport, compute = 1 / c.echo["requests_per_s"], c.batch / best
    return c.batch / (transport + compute if server_cores == 1 else max(transport, compute))


def transport_bound(c: Cell, server_cores: int = 1) -> float:
    """served_images_bound as a share of in-process images/s at batch B (the vgg target's measure)."""
    return served_images_bound(c, server_cores) / c.compute["images_per_s"]


def echo_share_bound(c: Cell, server_cores: int = 1) -> float:
    """served_images_bound as a share of the echo's requests/s (the tiny target's measure)."""
    return served_images_bound(c, server_cores) / (c.batch * c.echo["requests_per_s"])


def bound_name(server_cores: int) -> str:
    return "transport bound on one core" if server_cores == 1 else \
        f"bound on {server_cores} cores (compute beside the transport)"


def cpu_per_request_ms(run: dict) -> float:
    """Server CPU milliseconds per request in a load run (its CPU share over its request rate)."""
    return 1e3 * run.get("server_cpu", 0.0) / max(run["requests_per_s"], 1e-9)


def targets(cells: list[Cell], rounds: list[dict[str, float]] | None = None,
            server_cores: int = 1) -> list[tuple[str, bool, str]]:
    """Each target of the issue: (statement, met, the figures behind it). With ``rounds``
    (target_rounds()), the echo-share target is judged on their median ratio, else on the sweep's cell."""
    out = []
    top = max(c.concurrency for c in cells)
    for c in (c for c in cells if c.model == "cifar-vgg" and c.concurrency == top):
        r = c.on["images_per_s"] / c.compute["images_per_s"]
        out.append((f"cifar-vgg served images/s >= 0.9 x in-process at the same batch size (B={c.batch}, C={top})",
                    r >= 0.9, f"{c.on['images_per_s']:,.0f} / {c.compute['images_per_s']:,.0f} = {r:.2f}; "
                              f"{bound_name(server_cores)} {transport_bound(c, server_cores):.2f}"))
    for c in (c for c in cells if (c.model, c.batch, c.concurrency) == ROUNDS_CELL):
        r = sweep = c.on["requests_per_s"] / c.echo["requests_per_s"]
        judged = f"{c.on['requests_per_s']:,.0f} / {c.echo['requests_per_s']:,.0f} = {r:.2f}"
        if rounds:
            r = median_ratio(rounds, "on", "echo")
            judged = (f"median over {len(rounds)} interleaved rounds {r:.2f} ("
                      + ", ".join(f"{x['on'] / x['echo']:.2f}" for x in rounds) + f"; the sweep's cell {sweep:.2f}); "
                      f"the floor of this design (echo --compute) reaches {median_ratio(rounds, 'floor', 'echo'):.2f}")
        out.append(("cifar-tiny single-image requests at C=64 >= 0.8 x the echo server's requests/s", r >= 0.8,
                    f"{judged}; {bound_name(server_cores)} {echo_share_bound(c, server_cores):.2f}; "
                    f"server CPU per request: served {cpu_per_request_ms(c.on):.3f} ms, echo "
                    f"{cpu_per_request_ms(c.echo):.3f} ms (echo run: server CPU {c.echo.get('server_cpu', 0):.0%}, "
                    f"client CPU {c.echo['client_cpu']:.0%})"))
    high = [c for c in cells if c.concurrency >= 8]
    if high:
        worst = min(high, key=lambda c: c.on["images_per_s"] / c.off["images_per_s"])
        out.append(("batching on >= batching off (images/s) at every C >= 8",
                    all(c.on["images_per_s"] >= c.off["images_per_s"] for c in high),
                    f"lowest on/off {worst.on['images_per_s'] / worst.off['images_per_s']:.2f} "
                    f"({worst.model}, B={worst.batch}, C={worst.concurrency})"))
    for c in (c for c in cells if c.concurrency == 1):
        bound = c.compute["latency_ms"] + c.echo["latency_ms"]["p50"] + 0.3
        got = c.on["latency_ms"]["p50"]
        detail = (f"{got:.3f} ms <= {c.compute['latency_ms']:.3f} + {c.echo['latency_ms']['p50']:.3f} + 0.3 "
                  f"= {bound:.3f} ms")
        if "batch_compute_ms" in c.on:
            detail += f"; the server's own compute per batch in this run {c.on['batch_compute_ms']:.3f} ms"
        floors = [(f"floor (echo, busy {c.compute['latency_ms']:.3f} ms per call)", c.floor),
                  ("floor with the real compute (echo --compute)", c.compute_floor)]
        for name, floor in ((name, run["latency_ms"]["p50"]) for name, run in floors if run is not None):
            detail += f"; {name} {floor:.3f} ms" + (", above the bound" if floor > bound else "")
        if any(run is not None and run["latency_ms"]["p50"] > bound for _, run in floors):
            detail += ": not reachable by this design on this machine"
        out.append((f"C=1 served p50 <= in-process + echo p50 + 0.3 ms ({c.model}, B={c.batch})", got <= bound,
                    detail))
    return out


def results_table(cells: list[Cell]) -> str:
    lines = ["| model | B | C | in-process img/s | on img/s | on p50 / p99 ms | on mean batch | off img/s "
             "| off p50 / p99 ms | echo req/s | echo p50 / p99 ms | on / in-process | on / off | on / echo req/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in cells:
        on, off, echo = c.on, c.off, c.echo
        lines.append(
            f"| {c.model} | {c.batch} | {c.concurrency} | {c.compute['images_per_s']:,.0f} | {on['images_per_s']:,.0f} "
            f"| {on['latency_ms']['p50']:.2f} / {on['latency_ms']['p99']:.2f} | {on['mean_batch']:.1f} "
            f"| {off['images_per_s']:,.0f} | {off['latency_ms']['p50']:.2f} / {off['latency_ms']['p99']:.2f} "
            f"| {echo['requests_per_s']:,.0f} | {echo['latency_ms']['p50']:.2f} / {echo['latency_ms']['p99']:.2f} "
            f"| {on['images_per_s'] / c.compute['images_per_s']:.2f} | {on['images_per_s'] / off['images_per_s']:.2f} "
            f"| {on['requests_per_s'] / echo['requests_per_s']:.2f} |")
    return "\n".join(lines)


def compute_table(compute: dict) -> str:
    lines = ["| model | batch | latency ms | images/s |", "| --- | ---: | ---: | ---: |"]
    for model, rows in compute.items():
        for batch, r in sorted(rows.items()):
            lines.append(f"| {model} | {batch} | {r['latency_ms']:.3f} | {r['images_per_s']:,.0f} |")
    return "\n".join(lines)


def tune_table(rows: list[dict]) -> str:
    lines = ["| model | C | max_batch_size | max_queue_delay_ms | images/s | images/s per round | p50 ms | p99 ms "
             "| mean batch | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: (r["model"], r["concurrency"], r["max_batch_size"], r["delay_ms"])):
        rounds = " / ".join(f"{x:,.0f}" for x in r.get("rounds", [r["images_per_s"]]))
        lines.append(f"| {r['model']} | {r['concurrency']} | {r['max_batch_size']} | {r['delay_ms']:g} "
                     f"| {r['images_per_s']:,.0f} | {rounds} | {r['latency_ms']['p50']:.2f} "
                     f"| {r['latency_ms']['p99']:.2f} | {r['mean_batch']:.1f} | {r['error_count']} |")
    return "\n".join(lines)


def recommend(rows: list[dict]) -> tuple[int, float, list[str]]:
    """The defaults the tuning rows support, and the sentences that say why.

    max_batch_size: the smallest tried (no delay) within 5 % of the best images/s at the highest
    concurrency, for every model (a smaller batch computes sooner, so tail latency is lower). Sizes at
    or above the images in flight there (C x 1) cannot differ, so they count as one, with their mean.
    max_queue_delay_ms: the smallest tried unless a delay gains more than 5 % images/s there for every
    model: it is one server-wide default, and a lone request pays it in full.
    """
    top = max(r["concurrency"] for r in rows)
    low = min(r["concurrency"] for r in rows)
    find = {(r["model"], r["max_batch_size"], r["delay_ms"], r["concurrency"]): r for r in rows}
    models = sorted({r["model"] for r in rows})
    sizes = sorted({r["max_batch_size"] for r in rows if r["delay_ms"] == 0})
    delays = sorted({r["delay_ms"] for r in rows})
    why, chosen_size = [], []
    for m in models:
        throughput: dict[int, list[float]] = {}  # the smallest size of each group that behaves alike -> images/s
        for b in sizes:
            alike = min(x for x in sizes if x >= top) if b >= top else b
            throughput.setdefault(alike, []).append(find[m, b, 0.0, top]["images_per_s"])
        mean = {b: sum(v) / len(v) for b, v in throughput.items()}
        best = max(mean.values())
        size = next(b for b in sorted(mean) if mean[b] >= 0.95 * best)
        chosen_size.append(size)
        why.append(f"{m} at C={top}: " + ", ".join(
            f"max_batch_size {b}: {find[m, b, 0.0, top]['images_per_s']:,.0f} images/s (p99 "
            f"{find[m, b, 0.0, top]['latency_ms']['p99']:.1f} ms)" for b in sizes) + ".")
    size = max(chosen_size)
    delay = delays[0]
    for d in delays[1:]:
        gains = []
        for m in models:
            base, r, slow = find.get((m, size, delays[0], top)), find.get((m, size, d, top)), find.get((m, size, d, low))
            if not (base and r and slow):
                gains.append(0.0)
                continue
            gains.append(r["images_per_s"] / base["images_per_s"] - 1)
            cost = slow["latency_ms"]["p50"] - find[m, size, delays[0], low]["latency_ms"]["p50"]
            why.append(f"{m}, max_queue_delay_ms {d:g}: {gains[-1]:+.0%} images/s at C={top}, "
                       f"{cost:+.2f} ms p50 at C={low}.")
        if min(gains) > 0.05:
            delay = max(delay, d)
    return size, delay, why


def shipped_defaults(size: int, delay: float) -> str:
    """How the recommendation compares with the defaults the server ships (service.batching.BatchSettings)."""
    from service.settings import BatchSettings

    shipped = BatchSettings()
    if (shipped.max_batch_size, shipped.max_queue_delay_ms) == (size, delay):
        return " (the shipped defaults)"
    return (f", not the shipped defaults (max_batch_size {shipped.max_batch_size}, max_queue_delay_ms "
            f"{shipped.max_queue_delay_ms:g})")
