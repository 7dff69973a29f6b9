#!/usr/bin/env python3
"""Draws docs/bench/performance.png from the JSON that `hermet bench … --json` wrote.

Usage: scripts/bench-chart.py [DIR]   (DIR defaults to docs/bench/performance)
Needs matplotlib (`pip install matplotlib`). Panels whose JSON is missing are left out.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEED_CREATE_MS = {10: 15, 100: 80, 500: 300, 1000: 550, 5000: 2500}


def load(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "docs/bench/performance"
    panels = []
    create_pg, create_sqlite = load(d, "create-pg.json"), load(d, "create-sqlite.json")
    send_pg, send_sqlite = load(d, "send-pg.json"), load(d, "send-sqlite.json")
    profile = load(d, "profile-pg.json")
    list_variants = [
        (load(d, name), label, style)
        for name, label, style in (
            ("list-pg-cache-local.json", "cache", "o-"),
            ("list-pg-nocache.json", "no cache", "x:"),
        )
    ]
    list_variants = [v for v in list_variants if v[0]]
    lists = bool(list_variants)
    if create_pg or create_sqlite:
        panels.append("create")
    if send_pg or send_sqlite:
        panels.append("send")
    if lists:
        panels.append("list")
    if profile:
        panels.append("profile")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
    if len(panels) == 1:
        axes = [axes]
    for ax, p in zip(axes, panels):
        if p == "create":
            for rows, label in ((create_pg, "hermet, PostgreSQL"), (create_sqlite, "hermet, SQLite")):
                if rows:
                    ax.plot([r["members"] for r in rows], [r["api"]["p50_ms"] for r in rows], "o-", label=label)
            if create_pg and create_pg[0].get("baseline_copy"):
                ax.plot(
                    [r["members"] for r in create_pg],
                    [r["baseline_copy"]["p50_ms"] for r in create_pg],
                    "s--",
                    label="binary COPY of the same rows",
                )
            ax.plot(list(SEED_CREATE_MS), list(SEED_CREATE_MS.values()), "x:", label="seed 000 §6")
            ax.set(xscale="log", yscale="log", xlabel="members", ylabel="ms (p50)", title="Group creation")
        elif p == "send":
            for rows, label in ((send_pg, "PostgreSQL"), (send_sqlite, "SQLite")):
                if rows:
                    ax.plot([r["members"] for r in rows], [r["api"]["p50_ms"] for r in rows], "o-", label=f"{label} p50")
                    ax.plot([r["members"] for r in rows], [r["api"]["p99_ms"] for r in rows], ".:", label=f"{label} p99")
            ax.set(xscale="log", xlabel="members (2 = one-to-one)", ylabel="ms", title="Send (one sender)")
        elif p == "list":
            for data, label, style in list_variants:
                for size in sorted({r["conversations"] for r in data["rows"]}):
                    rows = [r for r in data["rows"] if r["conversations"] == size]
                    ax.plot(
                        [r["api"]["concurrency"] for r in rows],
                        [r["api"]["latency"]["p99_ms"] for r in rows],
                        style,
                        label=f"{size} conversations, {label}",
                    )
            ax.axhline(5, color="grey", linewidth=0.8, linestyle="--", label="target p99 (16 clients)")
            ax.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="p99 ms",
                   title="Conversation list (first page)")
        elif p == "profile":
            ax.plot([r["peers"] for r in profile], [r["visible"]["p50_ms"] for r in profile], "o-", label="hermet")
            if profile[0].get("baseline_update"):
                ax.plot(
                    [r["peers"] for r in profile],
                    [r["baseline_update"]["p50_ms"] for r in profile],
                    "s--",
                    label="UPDATE by hand",
                )
            ax.set(xscale="log", yscale="log", xlabel="conversations showing the user", ylabel="ms (p50)",
                   title="Profile fan-out")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = os.path.join(d, "..", "performance.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
