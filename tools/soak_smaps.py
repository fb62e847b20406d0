#!/usr/bin/env python3
"""Where the soak test's server holds its resident memory, and what grew.

Reads the /proc/PID/smaps snapshots the soak test saves when
OTARO_SOAK_SMAPS_DIR is set (start, after_job, after_cycle_1, end) and prints,
for each pair of consecutive snapshots, the resident size by kind of mapping
and the mappings that grew or shrank by more than 1 MiB. Kinds: the main heap
([heap]), malloc arenas (anonymous 64 MiB-aligned regions of at most 64 MiB),
thread stacks (anonymous regions right after a guard page), other anonymous
mappings (PageBuffers, large malloc chunks, gRPC), and files.

Usage: tools/soak_smaps.py DIR
"""
import os
import sys

ARENA = 64 << 20


def parse(path):
    """[(start, end, name, perms, rss_bytes)] in address order."""
    maps = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                name = fields[5] if len(fields) > 5 else ""
                maps.append([start, end, name, fields[1], 0])
            elif fields[0] == "Rss:":
                maps[-1][4] = int(fields[1]) * 1024
    return maps


def kind(maps, i):
    start, end, name, perms, _ = maps[i]
    if name == "[heap]":
        return "heap"
    if name.startswith("["):
        return name
    if name:
        return "file"
    previous = maps[i - 1] if i > 0 else None
    # An arena's heap is aligned to and at most 64 MiB; its tail is reserved
    # with PROT_NONE (a separate line, size 0 RSS).
    if start % ARENA == 0 and end - start <= ARENA:
        return "arena"
    if previous is not None and previous[1] == start and previous[3].startswith("---") \
            and previous[0] % ARENA == 0 and previous[1] - previous[0] <= ARENA:
        return "arena"
    if previous is not None and previous[1] == start and previous[3].startswith("---") \
            and previous[1] - previous[0] <= 64 << 10:
        return "stack"
    return "anon"


def summarize(maps):
    by_kind = {}
    for i, m in enumerate(maps):
        k = kind(maps, i)
        by_kind[k] = by_kind.get(k, 0) + m[4]
    return by_kind


def main():
    folder = sys.argv[1]
    names = [n for n in ("start", "after_job", "after_cycle_1", "end")
             if os.path.exists(os.path.join(folder, n + ".smaps"))]
    snaps = {n: parse(os.path.join(folder, n + ".smaps")) for n in names}
    mib = 1 << 20
    for n in names:
        s = summarize(snaps[n])
        total = sum(s.values())
        print(f"{n:14s} total {total / mib:8.1f} MiB  " +
              "  ".join(f"{k} {v / mib:.1f}" for k, v in sorted(s.items(), key=lambda kv: -kv[1])))
    for a, b in zip(names, names[1:]):
        before = {m[0]: m for m in snaps[a]}
        print(f"\n{a} -> {b}: mappings that changed by more than 1 MiB")
        after_maps = snaps[b]
        for i, m in enumerate(after_maps):
            old = before.get(m[0])
            delta = m[4] - (old[4] if old else 0)
            if abs(delta) > mib:
                print(f"  {m[0]:x}-{m[1]:x} {kind(after_maps, i):6s} {m[2][-40:]:40s} "
                      f"{(old[4] if old else 0) / mib:7.1f} -> {m[4] / mib:7.1f} MiB")
        after = {m[0] for m in after_maps}
        for start, m in before.items():
            if start not in after and m[4] > mib:
                print(f"  {m[0]:x}-{m[1]:x} gone {m[2][-40:]:40s} {m[4] / mib:7.1f} MiB")


if __name__ == "__main__":
    main()
