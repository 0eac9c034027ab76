#!/usr/bin/python3
"""Draws the benchmark results as PNG files with gnuplot (Debian's
gnuplot-nox), from the tables the bench scripts write:

  bench/results/haproxy-ratios.png  req/s of each HAProxy configuration over
      the plain-HAProxy baseline of the same round: every round's ratio (the
      spread) and the median, with the target lines
  bench/results/latency.png         p50 / p99 / p99.9 decision latency of
      route-agent (agent.md) and of the SPOP runtime (spop.md), log scale

Run by `make bench` after the benchmarks, or alone: `make bench-plot`.
A results file that is missing is skipped with a note; a table that does
not parse is an error (the bench scripts and this file must agree).
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def tables(path):
    """Every markdown table of PATH as a list of dicts (header -> cell)."""
    out, rows, header = [], None, None
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header, rows = cells, []
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(dict(zip(header, cells)))
        elif header is not None:
            out.append(rows)
            header = None
    if header is not None:
        out.append(rows)
    return out


def gnuplot(script):
    r = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"plot.py: gnuplot failed:\n{r.stderr}")


def haproxy_ratios(tmp):
    path = os.path.join(RESULTS, "haproxy.md")
    raw = next((t for t in tables(path) if t and "round" in t[0] and "req/s" in t[0]), None)
    if not raw:
        sys.exit(f"plot.py: {path}: no raw runs table (round, configuration, req/s)")
    by_round = {}
    for r in raw:
        by_round.setdefault(r["round"], {})[r["configuration"]] = float(r["req/s"])
    configs = [("agent-rotate", "plain-rotate", "per request"),
               ("cache-repeat", "plain-repeat", "cache, project repeats"),
               ("cache-rotate", "plain-rotate", "cache, projects rotate"),
               ("lua-rotate", "plain-rotate", "Lua table")]
    data = os.path.join(tmp, "ratios.dat")
    with open(data, "w") as f:
        for i, (cfg, base, _) in enumerate(configs):
            ratios = [runs[cfg] / runs[base] for runs in by_round.values() if cfg in runs and base in runs]
            if not ratios:
                continue
            for x in ratios:
                f.write(f"{i} {x:.4f} {statistics.median(ratios):.4f}\n")
    xtics = ", ".join(f'"{label}" {i}' for i, (_, _, label) in enumerate(configs))
    out = os.path.join(RESULTS, "haproxy-ratios.png")
    gnuplot(f"""set terminal pngcairo size 900,500 font "sans,10"
set output "{out}"
set title "HAProxy + route agent: req/s over plain HAProxy, per round (points) and median (bar)"
set ylabel "ratio to plain HAProxy"
set yrange [0:1.4]
set xrange [-0.6:{len(configs) - 0.4}]
set xtics ({xtics})
set grid ytics
set key top right
set arrow from -0.6,0.70 to {len(configs) - 0.4},0.70 nohead dt 2 lc rgb "red"
set arrow from -0.6,0.90 to {len(configs) - 0.4},0.90 nohead dt 2 lc rgb "orange"
set label "target per request 0.70" at -0.55,0.67 tc rgb "red"
set label "target cache 0.90" at -0.55,0.93 tc rgb "orange"
plot "{data}" using 1:3:(0.3) with boxes fs transparent solid 0.3 lc rgb "steelblue" title "median", \\
     "{data}" using 1:2 with points pt 7 ps 1.2 lc rgb "black" title "one round"
""")
    return out


def latency(tmp):
    rows = []
    for name, key in (("agent.md", "binary/seed/config"), ("spop.md", "agent")):
        path = os.path.join(RESULTS, name)
        if not os.path.exists(path):
            print(f"plot.py: {path} missing: skipped")
            continue
        t = next((t for t in tables(path) if t and key in t[0]), None)
        if not t:
            sys.exit(f"plot.py: {path}: no table with column {key!r}")
        for r in t:
            p50 = r.get("p50 µs") or r.get("p50 us")
            p99 = r.get("p99 µs") or r.get("p99 us")
            p999 = r.get("p99.9 µs") or r.get("p99.9 us")
            if key == "agent":
                label = f"spop {r['agent']} {r['c']}x{r['d']}"
            else:
                label = "agent " + r[key].replace("after/", "")
            rows.append((label, float(p50), float(p99), float(p999)))
    if not rows:
        return None
    data = os.path.join(tmp, "latency.dat")
    with open(data, "w") as f:
        for label, a, b, c in rows:
            f.write(f'"{label}" {a} {b} {c}\n')
    out = os.path.join(RESULTS, "latency.png")
    gnuplot(f"""set terminal pngcairo size 1000,520 font "sans,10"
set output "{out}"
set title "Decision latency under load (spop-load): p50, p99, p99.9"
set ylabel "microseconds (log scale)"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set grid ytics
set key top left
plot "{data}" using 2:xtic(1) title "p50", "" using 3 title "p99", "" using 4 title "p99.9"
""")
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for fn in (haproxy_ratios, latency):
            out = fn(tmp)
            if out:
                print(f"plot.py: wrote {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
