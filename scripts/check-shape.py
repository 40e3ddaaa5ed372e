#!/usr/bin/env python3
"""Reports what docs/architecture.md's shape rules forbid, under crates/*/src:

- functions longer than 80 lines (from the `fn` line to its closing brace; test modules, i.e.
  everything after a top-level `#[cfg(test)]`, are not counted);
- source files longer than 400 lines before their tests;
- module cycles inside a crate: an arrow from top-level module A to B for every `crate::B`
  path written in A (in `use` lines or inline), then every strongly connected group of more
  than one module is a cycle. The same one level down, inside every folder module F: an arrow
  from F's child A to its child B for every `crate::F::B` written in A, and every `super::B`
  written in A's own file (`F/A.rs` or `F/A/mod.rs`); skipped with `--top-only`.

Usage: scripts/check-shape.py [--strict] [--nested | --top-only]
  --strict: exit 1 when anything is reported; --top-only: look for cycles between a crate's
  top-level modules only. Cycles inside folders are looked for by default (`--nested`, kept
  for scripts that pass it, changes nothing).
A lexical scan, not a parser: string literals holding braces or `crate::` can mislead it;
what it reports is a place to look, counted the same way each time.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
CRATE_PATH = re.compile(r"crate::(\w+)")
USE_GROUP = re.compile(r"use crate::\{([^;]*)\};", re.S)


def production_lines(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines


def strip_strings(line):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', line.split("//")[0])


def long_functions(path, lines, limit):
    out = []
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            text = strip_strings(lines[j])
            if not started and ";" in text and "{" not in text:
                break  # a declaration without a body (trait method)
            depth += text.count("{") - text.count("}")
            started = started or "{" in text
            if started and depth <= 0:
                break
            j += 1
        length = j - i + 1
        if started and length > limit:
            out.append((length, f"{os.path.relpath(path, ROOT)}:{i + 1} {m.group(6)}"))
        i += 1
    return out


def top_module(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def module_arrows(src, files):
    arrows = {}
    for path in files:
        here = top_module(src, path)
        if here in ("lib", "main"):
            continue
        text = "\n".join(strip_strings(l) for l in production_lines(path))
        targets = set(CRATE_PATH.findall(text))
        for group in USE_GROUP.findall(text):
            for item in group.split(","):
                name = item.strip().split("::")[0].strip()
                if re.fullmatch(r"\w+", name):
                    targets.add(name)
        modules = {top_module(src, p) for p in files}
        for t in targets:
            if t != here and t in modules and t not in ("lib", "main"):
                arrows.setdefault(here, set()).add(t)
    return arrows


def child_arrows(src, files, folder):
    """Arrows among the children of folder module `folder` (a directory under src)."""
    base = os.path.join(src, folder)
    inside = [p for p in files if p.startswith(base + os.sep)]
    children = {top_module(base, p) for p in inside} - {"mod"}
    qualified = re.compile(r"crate::" + folder + r"::(\w+)")
    arrows = {}
    for path in inside:
        here = top_module(base, path)
        if here == "mod":
            continue
        text = "\n".join(strip_strings(l) for l in production_lines(path))
        targets = set(qualified.findall(text))
        own_file = os.path.relpath(path, base) in (here + ".rs", os.path.join(here, "mod.rs"))
        if own_file:
            targets |= set(re.findall(r"(?<!::)super::(\w+)", text))
        for t in targets:
            if t != here and t in children:
                arrows.setdefault(here, set()).add(t)
    return arrows


def cycles(arrows):
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in arrows.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(arrows):
        if v not in index:
            visit(v)
    return out


def main(argv):
    strict = "--strict" in argv
    nested = "--top-only" not in argv
    crates_dir = os.path.join(ROOT, "crates")
    found = 0
    fns, big_files = [], []
    for crate in sorted(os.listdir(crates_dir)):
        src = os.path.join(crates_dir, crate, "src")
        if not os.path.isdir(src):
            continue
        files = sorted(
            os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".rs")
        )
        for path in files:
            lines = production_lines(path)
            fns += long_functions(path, lines, 80)
            if len(lines) > 400:
                big_files.append((len(lines), os.path.relpath(path, ROOT)))
        groups = cycles(module_arrows(src, files))
        for g in groups:
            print(f"cycle in {crate}: {' <-> '.join(g)}")
        found += len(groups)
        folders = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
        folders = folders if nested else []
        for folder in folders:
            groups = cycles(child_arrows(src, files, folder))
            for g in groups:
                print(f"cycle in {crate}::{folder}: {' <-> '.join(g)}")
            found += len(groups)
    for length, where in sorted(fns, reverse=True):
        print(f"function of {length} lines: {where}")
    for length, where in sorted(big_files, reverse=True):
        print(f"file of {length} lines before tests: {where}")
    found += len(fns) + len(big_files)
    print(f"check-shape: {found} finding(s)")
    return 1 if strict and found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
