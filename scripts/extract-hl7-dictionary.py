#!/usr/bin/env python3
"""Extract the HL7 v2.x dictionary that the hl7gw compiler embeds.

Source: the hl7apy package (MIT licence, Copyright (c) 2012-2018, CRS4), pinned:

    pip install hl7apy==1.3.5

This script installs nothing itself. Run it with a Python that has that exact version:

    python3 -m venv /tmp/hl7apy-venv
    /tmp/hl7apy-venv/bin/pip install hl7apy==1.3.5
    /tmp/hl7apy-venv/bin/python scripts/extract-hl7-dictionary.py

It reads hl7apy's per-version data modules (hl7apy.v2_1 ... hl7apy.v2_8_2: SEGMENTS, FIELDS,
DATATYPES_STRUCTS, MESSAGES, TABLES) and writes one JSON file per HL7 version to
compiler/data/hl7/<version>.json (plus compiler/data/hl7/index.json), deterministic:
sorted keys, stable order, no timestamps, compact JSON with one line per segment, datatype,
structure and message code (one file per version: all twelve together pass 3 MB). Run it
twice and the output is byte-identical.

What each version file holds (see compiler/data/README.md for the whole story):

  segments    id -> {"fields": [field, ...]}, field i is position i+1 (MSH-1 is the field
              separator). field = {"name", "datatype", "min", "max", "table"?}; "max" null means
              unbounded repetitions; "min" 1 means required; datatype "-" marks a withdrawn or
              reserved field that hl7apy gives no datatype, or a position it leaves out
              (withdrawn fields of later versions: PID-28 in v2.8); such gap entries have
              an empty name. Withdrawn segments (v2.7 QRD, QRF, URD, URS) have no fields.
              No max lengths: hl7apy 1.3.5 has none (every length in its data is -1).
  datatypes   name -> {"primitive": true} or {"components": [component, ...]},
              component = {"name", "datatype", "min", "table"?}, component i is position i+1.
  structures  message structure id -> {"segments": [sorted unique segment ids],
              "tree": [node, ...], "any_segment"?: true}, node = {"segment": id, "min", "max"}
              (id "*" = any segment, hl7apy's ANYHL7SEGMENT) or
              {"group": name, "min", "max", "children": [node, ...], "choice"?: true}
              (a choice group holds exactly one of its children).
  events      message code -> trigger event -> structure id; the trigger "*" (only used for
              ACK) means any trigger event.
  tables      HL7 tables 0003 (event type), 0076 (message type) and 0354 (message structure)
              where hl7apy ships them (2.3.1 and later): id -> {"description", "values"}.

hl7apy has no event -> structure table (HL7 table 0354 maps structures to events in the
standard's text; hl7apy keeps only the structure codes). The event map is therefore derived:

  1. every structure named CODE_EVENT gives CODE^EVENT -> CODE_EVENT;
  2. the shared-structure rules below (SHARED_STRUCTURES), transcribed from HL7 v2.x table 0354
     and the chapters' trigger-event definitions, give CODE^EVENT -> the first structure of
     the rule's preference list that hl7apy defines in that version; a rule wins over rule 1,
     because hl7apy also ships per-event copies of some shared structures (SIU_S13 ... SIU_S26
     are copies of SIU_S12) and the standard names the shared one in MSH-9.3. A rule is
     applied only when the version's table 0003 lists the event (v2.3, which hl7apy ships
     without tables, borrows v2.3.1's), and not at all in v2.1 and v2.2, whose hl7apy
     structures are one per event;
  3. ACK^* -> ACK (the general acknowledgment carries the trigger event of the message it
     acknowledges).

Events not covered by these rules and without a structure of their own are absent: that is a
known gap, listed in compiler/data/README.md.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

EXPECTED_HL7APY_VERSION = "1.3.5"

# Every version hl7apy 1.3.5 ships, oldest first.
VERSIONS = ["2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1",
            "2.6", "2.7", "2.8", "2.8.1", "2.8.2"]

# HL7 tables copied into the dictionary (needed to validate MSH-9).
TABLES = ["0003", "0076", "0354"]

# hl7apy's pseudo-segment for "any HL7 segment" (a choice of all segments), used by a few
# v2.4 and v2.6 structures. It is not a segment: the tree writes it as "*" and the structure
# is flagged "any_segment".
ANY_SEGMENT = "ANYHL7SEGMENT"

# The datatype written for a field hl7apy gives none (withdrawn or reserved fields, such as
# MSA-5 and OBX-20..22 in v2.5.1); HL7's own tables write "-" there too.
NO_DATATYPE = "-"

# Versions whose hl7apy structures are one per trigger event (ADT_A04, ADT_A28 ...).
PER_EVENT_VERSIONS = ["2.1", "2.2"]

# Shared message structures, from HL7 v2.x table 0354 and the trigger-event definitions.
# (message code, [trigger events], [structures, most specific first]). For each version the
# first structure hl7apy defines wins: A28 is ADT_A05 from v2.4 on, and ADT_A01 in v2.3 and
# v2.3.1, which have no ADT_A05 and give A28 the A01 segment list.
SHARED_STRUCTURES = [
    # Chapter 3, patient administration.
    ("ADT", ["A04", "A08", "A13"], ["ADT_A01"]),
    ("ADT", ["A05", "A14", "A28", "A31"], ["ADT_A05", "ADT_A01"]),
    ("ADT", ["A07"], ["ADT_A06"]),
    ("ADT", ["A10", "A11"], ["ADT_A09"]),
    ("ADT", ["A12"], ["ADT_A12", "ADT_A09"]),
    ("ADT", ["A22", "A23", "A25", "A26", "A27", "A29", "A32", "A33"], ["ADT_A21"]),
    ("ADT", ["A34", "A35", "A36", "A46", "A47", "A48", "A49"], ["ADT_A30"]),
    ("ADT", ["A40", "A41", "A42"], ["ADT_A39"]),
    ("ADT", ["A44"], ["ADT_A44", "ADT_A43"]),
    ("ADT", ["A51"], ["ADT_A50"]),
    ("ADT", ["A53", "A55"], ["ADT_A52"]),
    ("ADT", ["A62"], ["ADT_A61"]),
    # Chapter 7, observation reporting.
    ("ORU", ["R31", "R32"], ["ORU_R30"]),
    # Chapter 4, orders (pharmacy).
    ("RDE", ["O25"], ["RDE_O11"]),
    ("RRE", ["O26"], ["RRE_O12"]),
    # Chapter 9, medical records.
    ("MDM", ["T03", "T05", "T07", "T09", "T11"], ["MDM_T01"]),
    ("MDM", ["T04", "T06", "T08", "T10"], ["MDM_T02"]),
    # Chapter 10, scheduling.
    ("SIU", ["S13", "S14", "S15", "S16", "S17", "S18", "S19", "S20", "S21", "S22", "S23",
             "S24", "S26", "S27"], ["SIU_S12"]),
    ("SRM", ["S02", "S03", "S04", "S05", "S06", "S07", "S08", "S09", "S10", "S11"], ["SRM_S01"]),
    ("SRR", ["S02", "S03", "S04", "S05", "S06", "S07", "S08", "S09", "S10", "S11"], ["SRR_S01"]),
    # Chapter 11, patient referral.
    ("REF", ["I13", "I14", "I15"], ["REF_I12"]),
    ("RRI", ["I13", "I14", "I15"], ["RRI_I12"]),
    ("RQA", ["I09", "I10", "I11"], ["RQA_I08"]),
    ("RPA", ["I09", "I10", "I11"], ["RPA_I08"]),
    ("RQI", ["I02", "I03"], ["RQI_I01"]),
    ("RPI", ["I02", "I03"], ["RPI_I01"]),
    ("RQC", ["I06"], ["RQC_I06", "RQC_I05"]),
    ("PIN", ["I07"], ["PIN_I07", "RQI_I01"]),
    # Chapter 8, master files; chapter 6, financial management.
    ("MFQ", ["M02", "M03", "M04", "M05", "M06"], ["MFQ_M01"]),
    ("PMU", ["B02"], ["PMU_B01"]),
    ("PMU", ["B05", "B06"], ["PMU_B04"]),
    # Chapter 7, clinical trials; chapter 13, laboratory automation.
    ("CRM", ["C02", "C03", "C04", "C05", "C06", "C07", "C08"], ["CRM_C01"]),
    ("CSU", ["C10", "C11", "C12"], ["CSU_C09"]),
    ("TCR", ["U11"], ["TCU_U10"]),
    ("LSR", ["U13"], ["LSU_U12"]),
    # Chapter 7, product experience; chapter 12, patient care.
    ("PEX", ["P08"], ["PEX_P07"]),
    ("PGL", ["PC7", "PC8"], ["PGL_PC6"]),
    ("PPG", ["PCH", "PCJ"], ["PPG_PCG"]),
    ("PPP", ["PCC", "PCD"], ["PPP_PCB"]),
    ("PPR", ["PC2", "PC3"], ["PPR_PC1"]),
]


def module_for(version: str):
    return importlib.import_module("hl7apy.v" + version.replace(".", "_"))


def table_id(raw):
    """hl7apy writes table references as 'HL70203'; keep the four digits."""
    if not raw:
        return None
    if raw.startswith("HL7"):
        return raw[3:]
    return raw


def cardinality(card):
    lo, hi = card
    return lo, (None if hi == -1 else hi)


def field_entry(ref, card):
    # ref = (kind, struct, datatype, long_name, table, max_length)
    lo, hi = cardinality(card)
    datatype = NO_DATATYPE if ref[2] is None else ref[2]
    entry = {"name": ref[3], "datatype": datatype, "min": lo, "max": hi}
    tbl = table_id(ref[4])
    if tbl:
        entry["table"] = tbl
    if len(ref) > 5 and ref[5] not in (None, -1):
        entry["max_length"] = ref[5]
    return entry


def positioned(children, parent, where):
    """Yield (position, child) with position taken from the child's name (PID_3 -> 3).

    hl7apy leaves withdrawn fields and components out of later versions (PID-28 in v2.8,
    XTN.1 in v2.6), so positions can skip; the caller fills the gaps.
    """
    last = 0
    for child in children:
        prefix, _, suffix = child[0].rpartition("_")
        if prefix != parent or not suffix.isdigit() or int(suffix) <= last:
            sys.exit(f"{where}: unexpected child {child[0]} after position {last}")
        last = int(suffix)
        yield last, child


def with_gaps(entries):
    """entries: [(position, entry)] ascending -> list where index i is position i+1."""
    out = []
    for position, entry in entries:
        while len(out) < position - 1:
            out.append({"name": "", "datatype": NO_DATATYPE, "min": 0, "max": 1})
        out.append(entry)
    return out


def extract_segments(mod, version):
    segments = {}
    for seg_id in sorted(mod.SEGMENTS):
        value = mod.SEGMENTS[seg_id]
        if seg_id == ANY_SEGMENT:
            continue
        if not isinstance(value[0], str):
            # hl7apy 1.3.5 v2.1 ORO lacks the 'sequence' tag: the value is the children.
            kind, children = "sequence", value
        elif len(value) == 1:
            # v2.7 QRD, QRF, URD, URS (withdrawn segments) come without fields.
            kind, children = value[0], ()
        else:
            kind, children = value
        if kind != "sequence":
            sys.exit(f"v{version} {seg_id}: unexpected segment kind {kind}")
        fields = []
        for position, child in positioned(children, seg_id, f"v{version} {seg_id}"):
            _name, ref, card, child_kind = child
            if child_kind != "FIE":
                sys.exit(f"v{version} {seg_id}: unexpected child kind {child_kind}")
            fields.append((position, field_entry(ref, card)))
        segments[seg_id] = {"fields": with_gaps(fields)}
    return segments


def extract_datatypes(mod, version, segments):
    datatypes = {}
    referenced = set()
    for seg in segments.values():
        for f in seg["fields"]:
            if f["datatype"] != NO_DATATYPE:
                referenced.add(f["datatype"])
    for dt_name in sorted(mod.DATATYPES_STRUCTS):
        children = mod.DATATYPES_STRUCTS[dt_name]
        components = []
        for position, child in positioned(children, dt_name, f"v{version} {dt_name}"):
            _name, ref, card, child_kind = child
            if child_kind != "CMP":
                sys.exit(f"v{version} {dt_name}: unexpected child kind {child_kind}")
            entry = field_entry(ref, card)
            components.append((position, entry))
            if entry["datatype"] != NO_DATATYPE:
                referenced.add(entry["datatype"])
        components = with_gaps(components)
        for entry in components:
            # Components do not repeat; keep only whether they are required.
            del entry["max"]
        datatypes[dt_name] = {"components": components}
    base = set(getattr(mod, "BASE_DATATYPES", {}).keys())
    for name in sorted(referenced | base):
        if name not in datatypes:
            datatypes[name] = {"primitive": True}
    return datatypes


def tree_of(children, version, where):
    nodes = []
    for child in children:
        name, ref, card, child_kind = child
        lo, hi = cardinality(card)
        if child_kind == "SEG":
            nodes.append({"segment": "*" if name == ANY_SEGMENT else name, "min": lo, "max": hi})
        elif child_kind == "GRP":
            if ref is None:
                sys.exit(f"v{version} {where}: unresolved group {name}")
            grp_kind, grp_children = ref
            if grp_kind not in ("sequence", "choice"):
                sys.exit(f"v{version} {where}: unexpected group kind {grp_kind}")
            node = {"group": name, "min": lo, "max": hi,
                    "children": tree_of(grp_children, version, where + "/" + name)}
            if grp_kind == "choice":
                node["choice"] = True
            nodes.append(node)
        else:
            sys.exit(f"v{version} {where}: unexpected child kind {child_kind}")
    return nodes


def segment_ids(nodes, out):
    for node in nodes:
        if "segment" in node:
            if node["segment"] != "*":
                out.add(node["segment"])
        else:
            segment_ids(node["children"], out)
    return out


def has_any_segment(nodes):
    return any(node.get("segment") == "*" or has_any_segment(node.get("children", []))
               for node in nodes)


def extract_structures(mod, version, segments):
    structures = {}
    for sid in sorted(mod.MESSAGES):
        kind, children = mod.MESSAGES[sid]
        if kind != "sequence":
            sys.exit(f"v{version} {sid}: unexpected message kind {kind}")
        tree = tree_of(children, version, sid)
        segs = sorted(segment_ids(tree, set()))
        missing = [s for s in segs if s not in segments]
        if missing:
            sys.exit(f"v{version} {sid}: segments {missing} are not defined")
        entry = {"segments": segs, "tree": tree}
        if has_any_segment(tree):
            entry["any_segment"] = True
        structures[sid] = entry
    return structures


def extract_tables(mod):
    tables = {}
    source = getattr(mod, "TABLES", {})
    for tid in TABLES:
        raw = source.get("HL7" + tid)
        if raw is None:
            continue
        description, values = raw
        tables[tid] = {"description": description, "values": sorted(set(values))}
    return tables


def derive_events(version, structures, known_events):
    events = {}

    def put(code, trigger, structure):
        events.setdefault(code, {})[trigger] = structure

    # 1. A structure named after its own trigger event.
    for sid in structures:
        parts = sid.split("_")
        if len(parts) != 2:
            continue
        code, trigger = parts
        # 'Qnn', 'Znn', 'Knn' are placeholders for site-defined queries, not events.
        if trigger != trigger.upper():
            continue
        put(code, trigger, sid)
    # 2. Shared structures (override rule 1). v2.1 and v2.2 have one structure per event in
    # hl7apy (ADT_A04, ADT_A28 ...) and no MSH-9.3 to name another: no rules there.
    for code, triggers, preference in ([] if version in PER_EVENT_VERSIONS else SHARED_STRUCTURES):
        target = next((s for s in preference if s in structures), None)
        if target is None:
            continue
        for trigger in triggers:
            if trigger not in known_events:
                continue
            put(code, trigger, target)
    # 3. The general acknowledgment.
    if "ACK" in structures:
        put("ACK", "*", "ACK")
    return events


def trigger_events(version):
    """The trigger events a version knows, for the shared-structure rules: its table 0003, or
    for v2.3 (hl7apy ships no tables before v2.3.1) the nearest later version's."""
    for later in VERSIONS[VERSIONS.index(version):]:
        table = extract_tables(module_for(later)).get("0003")
        if table:
            return set(table["values"])
    sys.exit(f"v{version}: no table 0003 in this or any later version")


def extract_version(version):
    mod = module_for(version)
    segments = extract_segments(mod, version)
    datatypes = extract_datatypes(mod, version, segments)
    structures = extract_structures(mod, version, segments)
    tables = extract_tables(mod)
    events = derive_events(version, structures, trigger_events(version))
    return {
        "version": version,
        "segments": segments,
        "datatypes": datatypes,
        "structures": structures,
        "events": events,
        "tables": tables,
    }


def compact(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def layout(value):
    """Compact JSON with one line per top-level key and per entry of a top-level object,
    so that a regenerated file diffs segment by segment, structure by structure."""
    lines = ["{"]
    keys = sorted(value)
    for i, key in enumerate(keys):
        tail = "," if i + 1 < len(keys) else ""
        inner = value[key]
        if isinstance(inner, dict) and inner:
            lines.append(compact(key) + ":{")
            inner_keys = sorted(inner)
            for j, inner_key in enumerate(inner_keys):
                inner_tail = "," if j + 1 < len(inner_keys) else ""
                lines.append(compact(inner_key) + ":" + compact(inner[inner_key]) + inner_tail)
            lines.append("}" + tail)
        else:
            lines.append(compact(key) + ":" + compact(inner) + tail)
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_json(path, value):
    text = layout(value)
    if json.loads(text) != value:
        sys.exit(f"{path}: layout does not round-trip")
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(text)
    return len(text)


def main():
    import hl7apy

    found = getattr(hl7apy, "__version__", None)
    if found is None:
        from importlib.metadata import version as dist_version
        found = dist_version("hl7apy")
    if found != EXPECTED_HL7APY_VERSION:
        sys.exit(f"hl7apy {found} is installed; "
                 f"this script reads hl7apy=={EXPECTED_HL7APY_VERSION}")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = os.path.join(root, "compiler", "data", "hl7")
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for version in VERSIONS:
        data = extract_version(version)
        size = write_json(os.path.join(out_dir, version + ".json"), data)
        total += size
        print(f"v{version}: {len(data['segments'])} segments, {len(data['datatypes'])} datatypes, "
              f"{len(data['structures'])} structures, "
              f"{sum(len(v) for v in data['events'].values())} event mappings, {size} bytes")
    index = {
        "source": {"package": "hl7apy", "version": EXPECTED_HL7APY_VERSION, "licence": "MIT",
                   "copyright": "Copyright (c) 2012-2018, CRS4"},
        "versions": VERSIONS,
    }
    total += write_json(os.path.join(out_dir, "index.json"), index)
    print(f"total {total} bytes in {out_dir}")


if __name__ == "__main__":
    main()
