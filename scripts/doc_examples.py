#!/usr/bin/env python3
"""Runs the shell examples of README.md and docs/api.md as written, in order, and checks what
they print against the `# -> ...` lines under them.

Every ```sh / ```bash block runs unless the line before its fence is
`<!-- doc-runner: skip (reason) -->`. Blocks run in one bash session (variables such as
BACKUP_ID and TOKEN carry over, as for a reader pasting them one after the other) in a fresh
directory holding links to the clone's scripts/ and config/, with `kvault` on PATH. A block is cut
into steps at its `# -> EXPECTED` lines: the commands before such a line are one step, and its
output must match: for `# -> {"key":value,...}` every key shown with a literal value (not
`...`-elided, not a <placeholder>) must appear with that value in some JSON object the step
printed; for any other text, the text up to its first comma must appear in the output. A step
that exits non-zero fails the run.

Ports: the examples say 127.0.0.1:9092 (broker), 127.0.0.1:8080 (kvault serve) and 9000 (local
S3); the runner gives each a free port and rewrites those addresses, so it runs beside anything
already listening there. Everything the examples start is stopped at the end.

Usage: doc_examples.py [--list] FILE...
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap

SKIP = re.compile(r"<!--\s*doc-runner:\s*skip\s*\((.+)\)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
PAIR = re.compile(
    r'"([A-Za-z_][A-Za-z0-9_]*)"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)'
)


def blocks(path):
    """(line, language, code, skip reason or None) for every fenced shell block of `path`."""
    lines = open(path, encoding="utf-8").read().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if lang in ("sh", "bash"):
            before = next((l for l in reversed(lines[:start]) if l.strip()), "")
            skip = SKIP.search(before)
            out.append((start + 1, lang, lines[start + 1 : j], skip.group(1) if skip else None))
        i = j + 1
    return out


def steps(code):
    """The block cut at its expectation lines: (commands, [expectations])."""
    out, current, expects = [], [], []
    for line in code:
        stripped = line.strip()
        if stripped.startswith("# ->"):
            expects.append(stripped[4:].strip())
            continue
        if expects:
            out.append((current, expects))
            current, expects = [], []
        current.append(line)
    if current or expects:
        out.append((current, expects))
    return [(c, e) for c, e in out if any(l.strip() and not l.strip().startswith("#") for l in c)]


def json_values(text):
    """Every JSON object or array that starts a line or follows a header block in `text`."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
                found.append(value)
                i = end
                continue
            except ValueError:
                pass
        i += 1
    return found


def contains(value, key, expected):
    if isinstance(value, dict):
        if key in value and value[key] == expected:
            return True
        return any(contains(v, key, expected) for v in value.values())
    if isinstance(value, list):
        return any(contains(v, key, expected) for v in value)
    return False


def check(output, expectation):
    """None when `output` shows what `expectation` says, else why not."""
    if expectation.startswith("{"):
        values = json_values(output)
        for key, raw in PAIR.findall(expectation):
            if "..." in raw or raw.startswith('"<'):
                continue
            expected = json.loads(raw)
            if not any(contains(v, key, expected) for v in values):
                return f'no "{key}": {raw} in the output'
        return None
    wanted = expectation.split(",")[0].strip()
    return None if wanted in output else f"'{wanted}' not in the output"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rewrite(line, ports):
    for host in ("127.0.0.1", "localhost"):
        line = line.replace(f"{host}:8080", f"{host}:{ports['server']}")
        line = line.replace(f"{host}:9092", f"{host}:{ports['broker']}")
    return line


def script(plan, work, ports):
    """The bash program that runs every step and checks it."""
    me = os.path.abspath(__file__)
    parts = [
        "set -eo pipefail",
        f"cd {work}",
        # A failing command inside a step's redirected group runs the trap with the step's
        # redirections still in place: the report goes to the runner's own stderr (fd 9).
        "exec 9>&2",
        'trap \'st=$?; if [ $st -ne 0 ]; then echo "doc-runner: FAILED at $STEP (exit $st)" >&9; '
        'echo "--- stdout:" >&9; tail -n 40 "$OUT" >&9; echo "--- stderr:" >&9; '
        'tail -n 40 "$ERR" >&9; for log in serve.log data/broker/nisshi.log; do '
        '[ -f "$log" ] && { echo "--- $log:" >&9; tail -n 20 "$log" >&9; }; done; fi; '
        'kill $(jobs -p) 2>/dev/null || true; exit $st\' EXIT',
    ]
    for n, (where, commands, expects) in enumerate(plan):
        body = "\n".join(rewrite(c, ports) for c in commands)
        parts.append(f"STEP={json.dumps(where)}; OUT={work}/.doc/{n}.out; ERR={work}/.doc/{n}.err")
        parts.append('echo "doc-runner: $STEP" >&2')
        parts.append(f"{{\n{body}\n}} >\"$OUT\" 2>\"$ERR\" </dev/null")
        for e in expects:
            parts.append(f"python3 {me} --check \"$OUT\" {shquote(e)}")
    parts.append('echo "doc-runner: all steps passed" >&2')
    return "\n".join(parts) + "\n"


def shquote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def cleanup(work):
    for name in ("local-s3.sh", "local-broker.sh"):
        subprocess.run(["bash", f"scripts/{name}", "stop"], cwd=work, capture_output=True)


def main(argv):
    if argv[:1] == ["--check"]:
        output = open(argv[1], encoding="utf-8", errors="replace").read()
        why = check(output, argv[2])
        if why:
            print(f"doc-runner: expected {argv[2]}\n  {why}", file=sys.stderr)
            return 1
        return 0
    listing = argv[:1] == ["--list"]
    files = argv[1:] if listing else argv
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    plan, report = [], []
    for f in files:
        for line, lang, code, skip in blocks(os.path.join(repo, f)):
            first = next((l.strip() for l in code if l.strip() and not l.startswith("#")), "")
            report.append(f"{'skip' if skip else 'run '} {f}:{line} {first[:60]}"
                          + (f"  ({skip})" if skip else ""))
            if skip:
                continue
            for commands, expects in steps(code):
                plan.append((f"{f}:{line}", commands, expects))
    print("\n".join(report))
    if listing:
        return 0
    work = tempfile.mkdtemp(prefix="kvault-docs.")
    os.makedirs(os.path.join(work, ".doc"))
    for d in ("scripts", "config"):
        os.symlink(os.path.join(repo, d), os.path.join(work, d))
    ports = {"server": free_port(), "broker": free_port(), "s3": free_port()}
    env = dict(os.environ)
    env.update({
        "KVAULT_LOCAL_BROKER_PORT": str(ports["broker"]),
        "KVAULT__CLUSTERS__LOCAL__BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['broker']}",
        "KVAULT__SERVER__PORT": str(ports["server"]),
        "KVAULT_SERVER": f"http://127.0.0.1:{ports['server']}",
        "KVAULT_LOCAL_S3_PORT": str(ports["s3"]),
    })
    for var in ("KVAULT_CONFIG", "KVAULT_TOKEN", "RUST_LOG"):
        env.pop(var, None)
    program = os.path.join(work, ".doc", "run.sh")
    with open(program, "w") as f:
        f.write(script(plan, work, ports))
    print(f"doc-runner: {len(plan)} steps in {work}", file=sys.stderr)
    try:
        result = subprocess.run(["bash", program], env=env, cwd=work,
                                timeout=int(os.environ.get("KVAULT_DOC_TIMEOUT", "1200")))
        return result.returncode
    except subprocess.TimeoutExpired:
        print("doc-runner: timed out", file=sys.stderr)
        return 1
    finally:
        cleanup(work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
