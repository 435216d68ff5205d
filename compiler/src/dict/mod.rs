//! The HL7 v2.x dictionary: segments, fields, datatypes, message structures and the
//! message type + trigger event → structure map, per HL7 version, embedded as data.
//!
//! The data is `compiler/data/hl7/<version>.json`, extracted from the hl7apy package (MIT) by
//! `scripts/extract-hl7-dictionary.py`; `compiler/data/README.md` says where it came from, how
//! to regenerate it and what it lacks (no maximum lengths, no segment descriptions). Each
//! version's file is parsed once, on first use; a file that does not parse surfaces as a
//! [`DictError`] from [`load`], never as a panic (a unit test parses every file).
//!
//! Positions count from 1, as in the standard: `PID-3` is field 3, `MSH-1` is the field
//! separator, `PID-3.4` is component 4 of PID-3 and `PID-3.4.1` its subcomponent 1.
//!
//! ```
//! use hl7gw::dict;
//!
//! let v24 = dict::version("2.4").ok_or("no v2.4")?;
//! assert_eq!(v24.component_datatype("PID", 3, None, None)?, "CX");
//! assert_eq!(v24.component_datatype("PID", 3, Some(5), None)?, "ID");
//! assert_eq!(v24.structure_for("ADT", "A28"), Some("ADT_A05"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod conformance;
mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

/// The embedded data files, oldest version first: every version hl7apy 1.3.5 ships.
const EMBEDDED: [(&str, &str); 12] = [
    ("2.1", include_str!("../../data/hl7/2.1.json")),
    ("2.2", include_str!("../../data/hl7/2.2.json")),
    ("2.3", include_str!("../../data/hl7/2.3.json")),
    ("2.3.1", include_str!("../../data/hl7/2.3.1.json")),
    ("2.4", include_str!("../../data/hl7/2.4.json")),
    ("2.5", include_str!("../../data/hl7/2.5.json")),
    ("2.5.1", include_str!("../../data/hl7/2.5.1.json")),
    ("2.6", include_str!("../../data/hl7/2.6.json")),
    ("2.7", include_str!("../../data/hl7/2.7.json")),
    ("2.8", include_str!("../../data/hl7/2.8.json")),
    ("2.8.1", include_str!("../../data/hl7/2.8.1.json")),
    ("2.8.2", include_str!("../../data/hl7/2.8.2.json")),
];

/// The extraction's index (package, version, licence, list of HL7 versions); a test checks it
/// against [`EMBEDDED`].
#[cfg(test)]
const INDEX: &str = include_str!("../../data/hl7/index.json");

static LOADED: [OnceLock<Result<VersionDict, DictError>>; EMBEDDED.len()] =
    [const { OnceLock::new() }; EMBEDDED.len()];

/// The datatype the data gives a field or component that has none: a field withdrawn or
/// reserved in that version (MSA-5 in v2.5.1, PID-28 in v2.8), as HL7's own tables write it.
pub const NO_DATATYPE: &str = "-";

/// The datatype of a field whose type is chosen per message (OBX-5: OBX-2 names it).
pub const VARIES: &str = "varies";

/// The message-code entry that matches any trigger event (the general acknowledgment ACK).
const ANY_TRIGGER: &str = "*";

/// The HL7 versions the dictionary holds, oldest first ("2.1" … "2.8.2").
pub fn versions() -> Vec<&'static str> {
    EMBEDDED.iter().map(|(v, _)| *v).collect()
}

/// The dictionary of one HL7 version (`"2.4"`, `"2.5.1"`), or `None` if the version is not
/// embedded or its data does not parse (see [`load`] for the reason).
pub fn version(v: &str) -> Option<&'static VersionDict> {
    load(v).ok()
}

/// The dictionary of one HL7 version, parsed on first use.
pub fn load(v: &str) -> Result<&'static VersionDict, DictError> {
    let Some(index) = EMBEDDED.iter().position(|(name, _)| *name == v) else {
        return Err(DictError::UnknownVersion {
            version: v.to_string(),
        });
    };
    let (name, text) = EMBEDDED[index];
    LOADED[index]
        .get_or_init(|| raw::parse(name, text))
        .as_ref()
        .map_err(Clone::clone)
}

/// Why a version's dictionary is not available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DictError {
    /// The version is not one of [`versions`].
    UnknownVersion {
        /// The version asked for.
        version: String,
    },
    /// The embedded data for the version does not parse (a build defect).
    Corrupt {
        /// The version whose data is broken.
        version: &'static str,
        /// The JSON parser's error.
        message: String,
    },
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DictError::UnknownVersion { version } => write!(
                f,
                "HL7 version {version:?} is not in the dictionary (known: {})",
                versions().join(", ")
            ),
            DictError::Corrupt { version, message } => write!(
                f,
                "the embedded HL7 v{version} dictionary does not parse: {message}"
            ),
        }
    }
}

impl std::error::Error for DictError {}

/// One HL7 version's segments, datatypes, message structures, event map and tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDict {
    version: String,
    segments: BTreeMap<String, SegmentDef>,
    datatypes: BTreeMap<String, DatatypeDef>,
    structures: BTreeMap<String, StructureDef>,
    /// message code → trigger event → structure id; trigger `*` matches any known event.
    events: BTreeMap<String, BTreeMap<String, String>>,
    /// Trigger events this version knows: table 0003 where present, else every trigger the
    /// event map names.
    known_triggers: BTreeSet<String>,
    tables: BTreeMap<String, TableDef>,
}

/// A segment definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDef {
    /// The segment id, e.g. `PID`.
    pub id: String,
    /// Fields in order: `fields[i]` is field `i + 1`. A position the version withdrew has a
    /// field whose datatype is [`NO_DATATYPE`].
    pub fields: Vec<FieldDef>,
}

impl SegmentDef {
    /// Field `position` (1-based), if the segment has it.
    pub fn field(&self, position: usize) -> Option<&FieldDef> {
        position.checked_sub(1).and_then(|i| self.fields.get(i))
    }
}

/// A field of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    /// 1-based position in the segment (MSH-1 is the field separator).
    pub position: usize,
    /// hl7apy's name for the field, e.g. `PATIENT_IDENTIFIER_LIST`; empty for a position
    /// hl7apy leaves out.
    pub name: String,
    /// The datatype, e.g. `CX`; [`VARIES`] for OBX-5; [`NO_DATATYPE`] if withdrawn.
    pub datatype: String,
    /// Maximum length: `None` throughout, hl7apy carries no lengths.
    pub max_length: Option<u32>,
    /// Whether the field may repeat.
    pub repeating: bool,
    /// Maximum number of repetitions; `None` for unbounded.
    pub max_repetitions: Option<u32>,
    /// Whether the standard makes the field required.
    pub required: bool,
    /// The HL7 table its values come from, e.g. `0203`.
    pub table: Option<String>,
}

impl FieldDef {
    /// Whether the field has a datatype in this version (not withdrawn or reserved).
    pub fn has_datatype(&self) -> bool {
        self.datatype != NO_DATATYPE
    }
}

/// A datatype: composite (with components) or primitive (without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatatypeDef {
    /// The datatype's name, e.g. `CX`.
    pub name: String,
    /// Components in order, `components[i]` is component `i + 1`; empty for a primitive.
    pub components: Vec<ComponentDef>,
}

impl DatatypeDef {
    /// Whether the datatype is primitive (has no components).
    pub fn is_primitive(&self) -> bool {
        self.components.is_empty()
    }

    /// Component `position` (1-based), if the datatype has it.
    pub fn component(&self, position: usize) -> Option<&ComponentDef> {
        position.checked_sub(1).and_then(|i| self.components.get(i))
    }
}

/// A component of a composite datatype (or a subcomponent, when it sits in a component).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDef {
    /// 1-based position in the datatype.
    pub position: usize,
    /// hl7apy's name for the component, e.g. `IDENTIFIER_TYPE_CODE`.
    pub name: String,
    /// The component's datatype (composite components hold subcomponents).
    pub datatype: String,
    /// Maximum length: `None` throughout, hl7apy carries no lengths.
    pub max_length: Option<u32>,
    /// Whether the standard makes the component required.
    pub required: bool,
    /// The HL7 table its values come from.
    pub table: Option<String>,
}

/// A message structure, e.g. `ADT_A05`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureDef {
    /// The structure id (MSH-9.3), e.g. `ADT_A05`.
    pub id: String,
    /// Every segment id the structure may contain, sorted, without duplicates.
    pub segments: Vec<String>,
    /// Whether the structure also admits any segment at some place (hl7apy's
    /// `ANYHL7SEGMENT`, in a few v2.4 and v2.6 structures).
    pub any_segment: bool,
    /// The structure in order, with groups and cardinalities.
    pub tree: Vec<StructureNode>,
}

impl StructureDef {
    /// Whether a segment may occur somewhere in a message of this structure.
    pub fn may_contain(&self, segment: &str) -> bool {
        self.any_segment || self.segments.iter().any(|s| s == segment)
    }
}

/// One place in a message structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructureNode {
    /// A segment; id `*` stands for any segment.
    Segment {
        /// The segment id, `PID`.
        id: String,
        /// Fewest occurrences (0 for optional).
        min: u32,
        /// `None` for unbounded.
        max: Option<u32>,
    },
    /// A group of segments and groups, e.g. `ORU_R01_PATIENT_RESULT`.
    Group {
        /// The group's name.
        name: String,
        /// Fewest occurrences (0 for optional).
        min: u32,
        /// `None` for unbounded.
        max: Option<u32>,
        /// A choice group holds exactly one of its children.
        choice: bool,
        /// Its segments and groups, in order.
        children: Vec<StructureNode>,
    },
}

/// An HL7 table copied into the dictionary (0003, 0076, 0354 from v2.3.1 on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// The table's title, e.g. `Message type`.
    pub description: String,
    /// The table's codes, sorted.
    pub values: Vec<String>,
}

impl TableDef {
    /// Whether the table holds a code.
    pub fn contains(&self, code: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(code))
            .is_ok()
    }
}

impl VersionDict {
    /// The HL7 version, e.g. `2.5.1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A segment definition by id (`PID`).
    pub fn segment(&self, id: &str) -> Option<&SegmentDef> {
        self.segments.get(id)
    }

    /// Every segment id of the version, sorted.
    pub fn segment_ids(&self) -> impl Iterator<Item = &str> {
        self.segments.keys().map(String::as_str)
    }

    /// A datatype by name (`CX`); primitives have no components.
    pub fn datatype(&self, name: &str) -> Option<&DatatypeDef> {
        self.datatypes.get(name)
    }

    /// A message structure by id (`ADT_A05`).
    pub fn structure(&self, id: &str) -> Option<&StructureDef> {
        self.structures.get(id)
    }

    /// The message structure of a message type and trigger event (`ADT`, `A28` → `ADT_A05`
    /// in v2.4 and later, `ADT_A01` in v2.3), or `None` if this version does not define
    /// that pair. `ACK` takes any trigger event the version knows, or none (`""`).
    pub fn structure_for(&self, message_code: &str, trigger: &str) -> Option<&str> {
        let by_trigger = self.events.get(message_code)?;
        if let Some(id) = by_trigger.get(trigger) {
            return Some(id);
        }
        let id = by_trigger.get(ANY_TRIGGER)?;
        (trigger.is_empty() || self.known_triggers.contains(trigger)).then_some(id.as_str())
    }

    /// Whether this version defines the message type with that trigger event.
    pub fn message_type_exists(&self, message_code: &str, trigger: &str) -> bool {
        self.structure_for(message_code, trigger).is_some()
    }

    /// An HL7 table by its four digits (`0076`), where the data has it.
    pub fn table(&self, id: &str) -> Option<&TableDef> {
        self.tables.get(id)
    }

    /// The datatype at a path position: the field's datatype, or its component's, or that
    /// component's subcomponent's. Positions are 1-based. A primitive has one component,
    /// itself, so `PID-8.1` on an `IS` field is `IS`. Under [`VARIES`] (OBX-5) every
    /// component is [`VARIES`]: OBX-2 names the type at run time.
    pub fn component_datatype(
        &self,
        segment: &str,
        field: usize,
        component: Option<usize>,
        sub: Option<usize>,
    ) -> Result<&str, LookupError> {
        let seg = self
            .segment(segment)
            .ok_or_else(|| LookupError::UnknownSegment {
                version: self.version.clone(),
                segment: segment.to_string(),
            })?;
        let mut path = format!("{segment}-{field}");
        if field == 0 {
            return Err(LookupError::ZeroPosition {
                path,
                level: Level::Field,
            });
        }
        let field_def = seg.field(field).ok_or_else(|| LookupError::UnknownField {
            version: self.version.clone(),
            segment: segment.to_string(),
            field,
            count: seg.fields.len(),
        })?;
        let mut datatype = self.checked_datatype(&path, &field_def.datatype)?;
        for (level, position) in [(Level::Component, component), (Level::Subcomponent, sub)] {
            let Some(position) = position else {
                if level == Level::Component && sub.is_some() {
                    return Err(LookupError::SubcomponentWithoutComponent { path });
                }
                break;
            };
            let parent = path.clone();
            path = format!("{path}.{position}");
            if position == 0 {
                return Err(LookupError::ZeroPosition { path, level });
            }
            if datatype.name == VARIES {
                return Ok(VARIES);
            }
            if datatype.is_primitive() {
                if position == 1 {
                    continue;
                }
                return Err(self.unknown_position(parent, datatype, level, position));
            }
            let Some(component_def) = datatype.component(position) else {
                return Err(self.unknown_position(parent, datatype, level, position));
            };
            datatype = self.checked_datatype(&path, &component_def.datatype)?;
        }
        Ok(&datatype.name)
    }

    fn checked_datatype(&self, path: &str, name: &str) -> Result<&DatatypeDef, LookupError> {
        if name == NO_DATATYPE {
            return Err(LookupError::Withdrawn {
                version: self.version.clone(),
                path: path.to_string(),
            });
        }
        self.datatype(name)
            .ok_or_else(|| LookupError::UndefinedDatatype {
                version: self.version.clone(),
                path: path.to_string(),
                datatype: name.to_string(),
            })
    }

    fn unknown_position(
        &self,
        path: String,
        datatype: &DatatypeDef,
        level: Level,
        position: usize,
    ) -> LookupError {
        LookupError::UnknownPosition {
            version: self.version.clone(),
            path,
            datatype: datatype.name.clone(),
            count: datatype.components.len(),
            level,
            position,
        }
    }
}

/// A level of an HL7 path below the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `PID-3`.
    Field,
    /// `PID-3.1`.
    Component,
    /// `PID-3.4.1`.
    Subcomponent,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Field => "field",
            Level::Component => "component",
            Level::Subcomponent => "subcomponent",
        })
    }
}

/// Why [`VersionDict::component_datatype`] found no datatype: each says which level of the
/// path does not exist, in which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// `ZZZ-1`: the version defines no such segment.
    UnknownSegment {
        /// The HL7 version.
        version: String,
        /// The segment id asked for.
        segment: String,
    },
    /// `PID-45`: the segment has fewer fields.
    UnknownField {
        /// The HL7 version.
        version: String,
        /// The segment id.
        segment: String,
        /// The field asked for.
        field: usize,
        /// How many fields the segment has.
        count: usize,
    },
    /// `PID-3.12` or `PID-3.4.5`: the datatype at `path` has fewer components (`count`, 0 for
    /// a primitive, whose only component is itself).
    UnknownPosition {
        /// The HL7 version.
        version: String,
        /// The path down to the datatype.
        path: String,
        /// The datatype there.
        datatype: String,
        /// How many components it has.
        count: usize,
        /// Component or subcomponent.
        level: Level,
        /// The position asked for.
        position: usize,
    },
    /// `PID-0`, `PID-3.0`: positions count from 1.
    ZeroPosition {
        /// The path as written.
        path: String,
        /// Where the 0 stands.
        level: Level,
    },
    /// A subcomponent was asked for without a component.
    SubcomponentWithoutComponent {
        /// The path as written.
        path: String,
    },
    /// The field or component is withdrawn or reserved in this version: it has no datatype.
    Withdrawn {
        /// The HL7 version.
        version: String,
        /// The withdrawn position.
        path: String,
    },
    /// The data names a datatype it does not define (a defect in the embedded data).
    UndefinedDatatype {
        /// The HL7 version.
        version: String,
        /// Where the datatype is named.
        path: String,
        /// The datatype the data names.
        datatype: String,
    },
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::UnknownSegment { version, segment } => {
                write!(f, "segment {segment} is not defined in HL7 v{version}")
            }
            LookupError::UnknownField {
                version,
                segment,
                field,
                count,
            } => write!(
                f,
                "{segment} has {count} fields in v{version}; field {field} does not exist"
            ),
            LookupError::UnknownPosition {
                version,
                path,
                datatype,
                count,
                level,
                position,
            } => {
                if *count == 0 {
                    write!(
                        f,
                        "{path} ({datatype}) is a primitive in v{version}: it has no {level}s; \
                         {level} {position} does not exist"
                    )
                } else {
                    write!(
                        f,
                        "{path} ({datatype}) has {count} {level}s in v{version}; \
                         {level} {position} does not exist"
                    )
                }
            }
            LookupError::ZeroPosition { path, level } => {
                write!(f, "{path}: {level} positions count from 1")
            }
            LookupError::SubcomponentWithoutComponent { path } => write!(
                f,
                "{path}: a subcomponent needs a component (write {path}.COMPONENT.SUBCOMPONENT)"
            ),
            LookupError::Withdrawn { version, path } => write!(
                f,
                "{path} has no datatype in v{version}: it is withdrawn or reserved"
            ),
            LookupError::UndefinedDatatype {
                version,
                path,
                datatype,
            } => write!(
                f,
                "{path} has datatype {datatype}, which the v{version} dictionary does not define"
            ),
        }
    }
}

impl std::error::Error for LookupError {}

#[cfg(test)]
mod tests;
