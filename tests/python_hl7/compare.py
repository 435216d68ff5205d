#!/usr/bin/env python3
"""Compare `hl7gw inspect --json` with python-hl7 (extract.py) on every valid corpus file.

Usage:
  compare.py [CORPUS_DIR] [--hl7gw PATH] [--recorded] [--list-valid]

  CORPUS_DIR   default ../shared/corpus/hl7 relative to the repository root. The files
               compared are those whose kind in CORPUS_DIR/SOURCES.md is valid, valid-ish or
               edge (every kind that does not start with "malformed").
  --hl7gw      the binary; default $HL7GW, else target/debug/hl7gw under the repository root.
  --recorded   take python-hl7's values from tests/python_hl7/expected/FILE.jsonl instead of
               running extract.py (no python-hl7 needed). Without it, extract.py runs and its
               output must also equal the recorded file, so a stale recording fails.
  --list-valid print the valid file names, one per line, and exit (used by record.sh).

Addresses in the report: `m1/PID#2/3.1.4.1` = message 1, second PID of that message, field 3,
repetition 1, component 4, subcomponent 1 (all 1-based; MSH-1 is the field separator).
Also `m1/seg5/id`, `m1/PID#1/fields` (field count), `m1/delimiters.escape`, `m1/segments`,
`messages`, `recording`.

Prints `ok FILE` or `FAIL FILE` plus one line per difference, then `N passed, N failed`.
A difference listed in KNOWN_DIFFERENCES (with its reason) is shown as `known:` and does not
fail the file. Exit 0 if every file passed, 1 if any failed, 2 on a usage or setup error.
"""

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXPECTED = HERE / "expected"
EXTRACT = HERE / "extract.py"
DEFAULT_CORPUS = ROOT / ".." / "shared" / "corpus" / "hl7"

# Known, documented differences: a difference matching `file` and `address` (fnmatch
# patterns) and, when given, the exact `python` / `hl7gw` values, is reported but does not
# fail. Every entry needs its reason; see docs/python-hl7-differences.md.
KNOWN_DIFFERENCES = [
    # None so far: on every valid corpus file the two agree address by address once the
    # input normalisation of extract.py (BOM, LF/CRLF -> CR) is applied. The behaviours in
    # which they do differ (\H\ \N\, unknown escapes, \X..\ bytes, BOM, LF, trailing
    # whitespace) do not occur in the corpus; docs/python-hl7-differences.md lists them.
]

DELIMITER_KEYS = ("field", "component", "repetition", "escape", "subcomponent")


def valid_files(corpus):
    """Corpus file names whose kind in SOURCES.md is not malformed."""
    sources = corpus / "SOURCES.md"
    names = []
    for line in sources.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.split("|")]
        name, kind = cells[1].strip("`"), cells[2]
        first_word = kind.split()[0] if kind.split() else ""
        if first_word in ("valid", "valid-ish", "edge"):
            names.append(name)
        elif not kind.startswith("malformed"):
            raise SystemExit("compare.py: %s: unknown kind %r for %s" % (sources, kind, name))
    return names


def run_extract(path):
    """python-hl7's records for one file, and the raw JSON-lines text."""
    proc = subprocess.run([sys.executable, str(EXTRACT), str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode == 2:
        raise SystemExit(proc.stderr.decode("utf-8", "replace").strip())
    text = proc.stdout.decode("utf-8")
    err = proc.stderr.decode("utf-8", "replace").strip() if proc.returncode else None
    return text, err


def load_records(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def python_view(records):
    """{msg: {"delimiters", "segments": {seg: (id, occ, fields)}, "values": {addr: record}}}"""
    msgs = {}
    for r in records:
        if r["kind"] == "message":
            msgs[r["msg"]] = {"delimiters": r["delimiters"], "count": r["segments"],
                              "segments": {}, "values": {}}
        elif r["kind"] == "segment":
            msgs[r["msg"]]["segments"][r["seg"]] = (r["id"], r["occ"], r["fields"])
        else:
            key = (r["seg"], r["field"], r["rep"], r["comp"], r["sub"])
            msgs[r["msg"]]["values"][key] = r
    return msgs


def hl7gw_view(objects):
    """The same shape as python_view, from hl7gw's one-object-per-message JSON."""
    msgs = {}
    for msg_no, obj in enumerate(objects, start=1):
        m = {"delimiters": obj.get("delimiters", {}), "count": len(obj["segments"]),
             "segments": {}, "values": {}}
        occurrences = {}
        for seg_no, seg in enumerate(obj["segments"], start=1):
            occ = occurrences[seg["id"]] = occurrences.get(seg["id"], 0) + 1
            m["segments"][seg_no] = (seg["id"], occ, len(seg["fields"]))
            for f, field in enumerate(seg["fields"], start=1):
                for r, rep in enumerate(field, start=1):
                    for c, comp in enumerate(rep, start=1):
                        for s, sub in enumerate(comp, start=1):
                            m["values"][(seg_no, f, r, c, s)] = {"value": sub}
        msgs[msg_no] = m
    return msgs


def run_hl7gw(binary, path):
    proc = subprocess.run([binary, "inspect", "--json", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        return None, "hl7gw exit %d: %s" % (proc.returncode, stderr)
    objects = []
    for line in proc.stdout.decode("utf-8").splitlines():
        if line.strip():
            objects.append(json.loads(line))
    return objects, stderr


def compare(py, gw):
    """Yields (address, python_value, hl7gw_value) for every difference."""
    if len(py) != len(gw):
        yield "messages", len(py), len(gw)
    for m in sorted(set(py) & set(gw)):
        p, g = py[m], gw[m]
        for k in DELIMITER_KEYS:
            if p["delimiters"].get(k) != g["delimiters"].get(k):
                yield "m%d/delimiters.%s" % (m, k), p["delimiters"].get(k), g["delimiters"].get(k)
        if p["count"] != g["count"]:
            yield "m%d/segments" % m, p["count"], g["count"]
        for s in sorted(set(p["segments"]) | set(g["segments"])):
            ps, gs = p["segments"].get(s), g["segments"].get(s)
            if ps is None or gs is None:
                yield "m%d/seg%d" % (m, s), ps and ps[0], gs and gs[0]
                continue
            if ps[0] != gs[0]:
                yield "m%d/seg%d/id" % (m, s), ps[0], gs[0]
            if ps[2] != gs[2]:
                yield "m%d/%s#%d/fields" % (m, ps[0], ps[1]), ps[2], gs[2]
        for key in sorted(set(p["values"]) | set(g["values"])):
            seg = p["segments"].get(key[0]) or g["segments"].get(key[0])
            addr = "m%d/%s#%d/%d.%d.%d.%d" % ((m, seg[0], seg[1]) + key[1:])
            pr, gr = p["values"].get(key), g["values"].get(key)
            pv = None if pr is None else pr.get("value", "<%s>" % pr.get("error"))
            gv = None if gr is None else gr["value"]
            if pv != gv:
                note = ""
                if pr is not None and pr.get("log"):
                    note = "  [python-hl7 logged: %s]" % "; ".join(pr["log"])
                yield addr + note, pv, gv


def show(value):
    """A value for the report: JSON string/number, or (absent)."""
    return "(absent)" if value is None else json.dumps(value, ensure_ascii=False)


def known(name, address, pv, gv):
    for entry in KNOWN_DIFFERENCES:
        if not fnmatch.fnmatchcase(name, entry["file"]):
            continue
        if not fnmatch.fnmatchcase(address, entry["address"]):
            continue
        if "python" in entry and entry["python"] != pv:
            continue
        if "hl7gw" in entry and entry["hl7gw"] != gv:
            continue
        return entry
    return None


def main(argv):
    args = argv[1:]
    binary = os.environ.get("HL7GW") or str(ROOT / "target" / "debug" / "hl7gw")
    recorded = list_valid = False
    positional = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--hl7gw" and i + 1 < len(args):
            binary = args[i + 1]
            i += 1
        elif a.startswith("--hl7gw="):
            binary = a.split("=", 1)[1]
        elif a == "--recorded":
            recorded = True
        elif a == "--list-valid":
            list_valid = True
        elif a.startswith("-"):
            sys.stderr.write(__doc__)
            return 2
        else:
            positional.append(a)
        i += 1
    if len(positional) > 1:
        sys.stderr.write(__doc__)
        return 2
    corpus = Path(positional[0]) if positional else DEFAULT_CORPUS
    if not (corpus / "SOURCES.md").is_file():
        sys.stderr.write("compare.py: no SOURCES.md in %s\n" % corpus)
        return 2
    names = valid_files(corpus)
    if list_valid:
        print("\n".join(names))
        return 0
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        sys.stderr.write("compare.py: hl7gw binary not found at %s "
                         "(cargo build -p hl7gw, or set HL7GW / --hl7gw)\n" % binary)
        return 2

    passed = failed = 0
    used = set()
    for name in names:
        path = corpus / name
        problems = []  # undocumented
        notes = []     # documented
        expected_file = EXPECTED / (name + ".jsonl")
        py_text, py_err = None, None
        if recorded:
            if expected_file.is_file():
                py_text = expected_file.read_text(encoding="utf-8")
            else:
                py_err = "no recording %s (run record.sh)" % expected_file.name
        else:
            py_text, py_err = run_extract(path)
            if py_err is None:
                if not expected_file.is_file():
                    problems.append("recording: expected/%s missing (run record.sh)"
                                    % expected_file.name)
                elif expected_file.read_text(encoding="utf-8") != py_text:
                    problems.append("recording: expected/%s differs from extract.py output "
                                    "(run record.sh)" % expected_file.name)
        gw_objects, gw_err = run_hl7gw(binary, path)
        if py_err:
            problems.append("python-hl7: %s" % py_err)
        if gw_objects is None:
            problems.append(gw_err)
        if not py_err and gw_objects is not None:
            py = python_view(load_records(py_text))
            gw = hl7gw_view(gw_objects)
            for address, pv, gv in compare(py, gw):
                entry = known(name, address, pv, gv)
                line = "%s: python-hl7=%s hl7gw=%s" % (address, show(pv), show(gv))
                if entry is None:
                    problems.append(line)
                else:
                    used.add(id(entry))
                    notes.append("known: %s (%s)" % (line, entry["why"]))
        if problems:
            failed += 1
            print("FAIL %s" % name)
        else:
            passed += 1
            print("ok %s%s" % (name, " (%d documented differences)" % len(notes) if notes else ""))
        for line in problems + notes:
            print("    " + line)
    for entry in KNOWN_DIFFERENCES:
        if id(entry) not in used:
            print("note: documented difference no longer seen: %s %s" % (entry["file"], entry["address"]))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
