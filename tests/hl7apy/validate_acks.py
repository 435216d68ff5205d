#!/usr/bin/env python3
"""Validates ACK files with hl7apy at VALIDATION_LEVEL.STRICT, one ACK per file (segments
ended by CR), as a strict Trust-side parser reads them. Prints one line per file, `ok FILE`
or `FAIL FILE: why`, and exits 1 when any failed. Run by tests/tests/hl7apy_acks.rs.

hl7apy finds a message's structure in MSH-9.3 (v2.3.1 and later); before v2.3.1 MSH-9 has
no structure component, so the ACK structure is named here instead."""

import sys

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message, parse_segments

STRICT = VALIDATION_LEVEL.STRICT
NO_STRUCTURE_COMPONENT = {"2.1", "2.2", "2.3"}


def validate(text):
    version = text.split("\r", 1)[0].split("|")[11].split("^")[0]
    if version in NO_STRUCTURE_COMPONENT:
        segments = parse_segments(text, version=version, validation_level=STRICT)
        message = Message("ACK", version=version, validation_level=STRICT)
        message.msh = segments[0]
        for segment in segments[1:]:
            message.add(segment)
    else:
        message = parse_message(text, validation_level=STRICT, find_groups=True)
    message.validate()


def main(paths):
    failed = 0
    for path in paths:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        try:
            validate(text)
            print(f"ok {path}")
        except Exception as e:  # every hl7apy refusal is a failure of this file
            failed += 1
            print(f"FAIL {path}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
