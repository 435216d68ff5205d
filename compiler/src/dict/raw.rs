//! The shape of `compiler/data/hl7/<version>.json` as the extraction script writes it, and
//! its conversion into the dictionary types.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{
    ANY_TRIGGER, ComponentDef, DatatypeDef, DictError, FieldDef, SegmentDef, StructureDef,
    StructureNode, TableDef, VersionDict,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    version: String,
    segments: BTreeMap<String, RawSegment>,
    datatypes: BTreeMap<String, RawDatatype>,
    structures: BTreeMap<String, RawStructure>,
    events: BTreeMap<String, BTreeMap<String, String>>,
    tables: BTreeMap<String, RawTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    datatype: String,
    min: u32,
    max: Option<u32>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    max_length: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatatype {
    #[serde(default)]
    components: Vec<RawComponent>,
    #[serde(default)]
    primitive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: String,
    datatype: String,
    min: u32,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    max_length: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStructure {
    segments: Vec<String>,
    tree: Vec<RawNode>,
    #[serde(default)]
    any_segment: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawNode {
    Segment {
        segment: String,
        min: u32,
        max: Option<u32>,
    },
    Group {
        group: String,
        min: u32,
        max: Option<u32>,
        children: Vec<RawNode>,
        #[serde(default)]
        choice: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    description: String,
    values: Vec<String>,
}

/// Parses one embedded version file and checks that it names the version it is filed under.
pub(super) fn parse(name: &'static str, text: &str) -> Result<VersionDict, DictError> {
    let corrupt = |message: String| DictError::Corrupt {
        version: name,
        message,
    };
    let raw: RawVersion = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    if raw.version != name {
        return Err(corrupt(format!("the file says it is v{}", raw.version)));
    }
    let segments = raw
        .segments
        .into_iter()
        .map(|(id, seg)| {
            let fields = seg.fields.into_iter().enumerate().map(field).collect();
            (id.clone(), SegmentDef { id, fields })
        })
        .collect();
    let mut datatypes = BTreeMap::new();
    for (dt_name, dt) in raw.datatypes {
        if dt.primitive != dt.components.is_empty() {
            return Err(corrupt(format!(
                "datatype {dt_name} is neither primitive nor composite"
            )));
        }
        let components = dt
            .components
            .into_iter()
            .enumerate()
            .map(component)
            .collect();
        let def = DatatypeDef {
            name: dt_name.clone(),
            components,
        };
        datatypes.insert(dt_name, def);
    }
    let structures = raw
        .structures
        .into_iter()
        .map(|(id, st)| {
            let def = StructureDef {
                id: id.clone(),
                segments: st.segments,
                any_segment: st.any_segment,
                tree: st.tree.into_iter().map(node).collect(),
            };
            (id, def)
        })
        .collect();
    let tables: BTreeMap<String, TableDef> = raw
        .tables
        .into_iter()
        .map(|(id, t)| {
            let mut values = t.values;
            values.sort();
            let def = TableDef {
                description: t.description,
                values,
            };
            (id, def)
        })
        .collect();
    let known_triggers: BTreeSet<String> = match tables.get("0003") {
        Some(t) => t.values.iter().cloned().collect(),
        None => raw
            .events
            .values()
            .flat_map(|by_trigger| by_trigger.keys())
            .filter(|t| t.as_str() != ANY_TRIGGER)
            .cloned()
            .collect(),
    };
    Ok(VersionDict {
        version: raw.version,
        segments,
        datatypes,
        structures,
        events: raw.events,
        known_triggers,
        tables,
    })
}

fn field((index, f): (usize, RawField)) -> FieldDef {
    FieldDef {
        position: index + 1,
        name: f.name,
        datatype: f.datatype,
        max_length: f.max_length,
        repeating: f.max.is_none_or(|m| m > 1),
        max_repetitions: f.max,
        required: f.min >= 1,
        table: f.table,
    }
}

fn component((index, c): (usize, RawComponent)) -> ComponentDef {
    ComponentDef {
        position: index + 1,
        name: c.name,
        datatype: c.datatype,
        max_length: c.max_length,
        required: c.min >= 1,
        table: c.table,
    }
}

fn node(raw: RawNode) -> StructureNode {
    match raw {
        RawNode::Segment { segment, min, max } => StructureNode::Segment {
            id: segment,
            min,
            max,
        },
        RawNode::Group {
            group,
            min,
            max,
            children,
            choice,
        } => StructureNode::Group {
            name: group,
            min,
            max,
            choice,
            children: children.into_iter().map(node).collect(),
        },
    }
}
