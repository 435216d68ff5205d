#!/usr/bin/env python3
"""Decoded values of an HL7 v2 file according to python-hl7, as JSON lines.

Reference implementation: python-hl7 **0.4.5** exactly (`pip install hl7==0.4.5`, BSD
licence, https://github.com/johnpaulett/python-hl7). The script refuses any other version
(exit 2), because tests/python_hl7/expected/*.jsonl were recorded with it.

Usage:  extract.py FILE [--raw]

What it does, in order:

1. Reads FILE as bytes and decodes it as UTF-8 (python-hl7's own default, `encoding="utf-8"`
   in `hl7.parse_hl7`).
2. Unless --raw: removes one leading U+FEFF (UTF-8 BOM), turns CRLF and LF into CR and drops
   empty lines. This is the input handling of `hl7gw inspect` in its default lenient mode
   (CR, LF and CRLF each end a segment; empty segments are skipped), done here because
   python-hl7 does none of it: `hl7.parse_hl7` rejects a BOM ("line is not HL7"; `hl7.parse`
   raises ParseException "First segment is \\ufeffMS"), splits segments on CR only
   (`hl7.parser.create_parse_plan`), so an LF file is one huge segment, and an empty segment
   makes every `Message.segments()` lookup raise IndexError. See
   docs/python-hl7-differences.md.
3. Parses with `hl7.parse_hl7`, which dispatches the way python-hl7 itself does
   (`hl7.util.ishl7` / `isbatch` / `isfile`): one MSH and no batch header -> `hl7.parse`
   (a Message); starts with BHS, or several MSH -> `hl7.parse_batch` (a Batch of Messages);
   starts with FHS -> `hl7.parse_file` (a File of Batches of Messages). The FHS/BHS/BTS/FTS
   envelope segments live in `.header`/`.trailer` of the File/Batch and are not part of any
   Message, so they are not emitted (hl7gw prints messages only, too).
4. For every message, in file order, walks python-hl7's own parse tree to enumerate every
   address that exists (segment, field, repetition, component, subcomponent) and asks
   `Message.extract_field(segment_id, occurrence, field, rep, comp, sub)` for its value. The
   walk only decides *which* addresses exist; every value comes from `extract_field`, which
   unescapes (`hl7.util.unescape`) everything except MSH-1 and MSH-2.

Output, one JSON object per line (UTF-8, all numbers 1-based):

  {"kind":"message","msg":1,"via":"parse","delimiters":{"field":"|","component":"^",
   "repetition":"~","escape":"\\\\","subcomponent":"&"},"segments":6}
  {"kind":"segment","msg":1,"seg":2,"id":"PID","occ":1,"fields":30}
  {"kind":"value","msg":1,"seg":2,"id":"PID","occ":1,"field":3,"rep":1,"comp":4,"sub":1,
   "value":"100"}

`seg` is the segment's position in its message (MSH = 1); `occ` is the occurrence of that
segment id in the message (the `segment_num` argument of extract_field); `fields` counts the
fields after the segment id (for MSH, MSH-1 is the field separator and MSH-2 the encoding
characters, as in python-hl7's tree). A value record may carry "log": [...] with what
python-hl7 logged while decoding it (e.g. an escape sequence it dropped), or "error" instead
of "value" if extract_field raised.
"""

import json
import logging
import re
import sys

PINNED_VERSION = "0.4.5"

try:
    import hl7
    from hl7.containers import Batch, Component, File, Repetition
except ImportError:  # pragma: no cover - environment problem
    sys.stderr.write("extract.py: python-hl7 is not installed: pip install hl7==%s\n" % PINNED_VERSION)
    sys.exit(2)


class _Capture(logging.Handler):
    """Collects what python-hl7's unescape() logs (it logs, then drops, what it cannot decode)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def _install_capture():
    capture = _Capture()
    # hl7.util / hl7.containers log via logging.getLogger(__file__): catch them all at the root.
    root = logging.getLogger()
    root.handlers[:] = [capture]
    root.setLevel(logging.DEBUG)
    return capture


def normalise(text):
    """hl7gw's lenient input handling: drop one BOM, every line ending one CR, no empty lines."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return re.sub("\r+", "\r", text.replace("\r\n", "\r").replace("\n", "\r"))


def messages_of(parsed):
    """(via, message) pairs in file order, for whatever hl7.parse_hl7 returned."""
    if isinstance(parsed, File):
        return [("parse_file", m) for batch in parsed for m in batch]
    if isinstance(parsed, Batch):
        return [("parse_batch", m) for m in parsed]
    return [("parse", parsed)]


def shape(field):
    """The repetitions/components/subcomponents that exist in a python-hl7 Field.

    python-hl7 only builds a deeper container when a deeper separator occurs
    (`hl7.parser._split` / `_ParsePlan.applies`): a Field holds str or Repetition items, a
    Repetition holds str or Component items, a Component holds str items. A str at any level
    is a single leaf. Returns a list (repetitions) of lists (components) of subcomponent counts.
    """
    reps = []
    for rep in field:
        if not isinstance(rep, Repetition):
            reps.append([1])
            continue
        comps = []
        for comp in rep:
            comps.append(len(comp) if isinstance(comp, Component) else 1)
        reps.append(comps)
    return reps


def extract(text, out):
    capture = _install_capture()
    parsed = hl7.parse_hl7(text)
    for msg_no, (via, message) in enumerate(messages_of(parsed), start=1):
        seps = message.separators  # "\r" + field, repetition, component, subcomponent
        out({
            "kind": "message",
            "msg": msg_no,
            "via": via,
            "delimiters": {
                "field": seps[1],
                "component": seps[3],
                "repetition": seps[2],
                "escape": message.esc,
                "subcomponent": seps[4],
            },
            "segments": len(message),
        })
        occurrences = {}
        for seg_no, segment in enumerate(message, start=1):
            # The id exactly as Message.segments() compares it.
            seg_id = segment[0][0]
            occ = occurrences[seg_id] = occurrences.get(seg_id, 0) + 1
            out({"kind": "segment", "msg": msg_no, "seg": seg_no, "id": seg_id,
                 "occ": occ, "fields": len(segment) - 1})
            for field_no in range(1, len(segment)):
                for rep_no, comps in enumerate(shape(segment[field_no]), start=1):
                    for comp_no, subs in enumerate(comps, start=1):
                        for sub_no in range(1, subs + 1):
                            record = {"kind": "value", "msg": msg_no, "seg": seg_no,
                                      "id": seg_id, "occ": occ, "field": field_no,
                                      "rep": rep_no, "comp": comp_no, "sub": sub_no}
                            del capture.records[:]
                            try:
                                record["value"] = message.extract_field(
                                    seg_id, occ, field_no, rep_no, comp_no, sub_no)
                            except Exception as e:  # report, keep going
                                record["error"] = "%s: %s" % (type(e).__name__, e)
                            if capture.records:
                                record["log"] = list(capture.records)
                            out(record)


def main(argv):
    args = [a for a in argv[1:] if a != "--raw"]
    raw = "--raw" in argv[1:]
    if len(args) != 1:
        sys.stderr.write("usage: extract.py FILE [--raw]\n")
        return 2
    installed = getattr(hl7, "__version__", "?")
    if installed != PINNED_VERSION:
        sys.stderr.write("extract.py: needs python-hl7 %s, found %s: pip install hl7==%s\n"
                         % (PINNED_VERSION, installed, PINNED_VERSION))
        return 2
    try:
        with open(args[0], "rb") as f:
            data = f.read()
    except OSError as e:
        sys.stderr.write("extract.py: %s\n" % e)
        return 2
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.stderr.write("extract.py: %s: not UTF-8: %s\n" % (args[0], e))
        return 1
    if not raw:
        text = normalise(text)
    stdout = sys.stdout.buffer

    def out(obj):
        stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        stdout.write(b"\n")

    try:
        extract(text, out)
    except Exception as e:  # python-hl7 refused the input
        stdout.flush()
        sys.stderr.write("extract.py: %s: python-hl7 cannot parse it: %s: %s\n"
                         % (args[0], type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
