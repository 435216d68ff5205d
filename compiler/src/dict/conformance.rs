//! A message against its version's dictionary: the fields the standard makes required that
//! a message leaves empty, and the required segments of its structure it lacks. Used on the
//! messages a gateway builds from records, so a Trust's engine that validates strictly gets
//! what its version requires.

use hl7gw_runtime::hl7::Message;

use super::{StructureNode, VersionDict};

impl VersionDict {
    /// What `message` lacks that this version requires, one line each (`OBX-11: required
    /// field empty`, `ORU_R01: required segment OBR missing`). Segments the dictionary does
    /// not know (Z segments) are not judged; nor are conditional requirements, which the
    /// dictionary does not carry.
    pub fn missing_required(&self, message: &Message<'_>) -> Vec<String> {
        let mut missing = Vec::new();
        let structure = self
            .structure_for(&message.message_code(), &message.trigger_event())
            .and_then(|id| self.structure(id));
        if let Some(structure) = structure {
            for id in required_segments(&structure.tree) {
                if message.segments_named(id).next().is_none() {
                    missing.push(format!("{}: required segment {id} missing", structure.id));
                }
            }
        }
        for segment in message.segments() {
            let Some(def) = self.segment(segment.id()) else {
                continue;
            };
            for field in def.fields.iter().filter(|f| f.required && f.has_datatype()) {
                let empty = segment
                    .field(field.position)
                    .is_none_or(|f| f.is_empty() || f.is_null());
                if empty {
                    missing.push(format!(
                        "{}-{}: required field empty",
                        segment.id(),
                        field.position
                    ));
                }
            }
        }
        missing.sort();
        missing.dedup();
        missing
    }
}

/// The segments a message of the structure must hold: required segments at the top level
/// and, inside each required group, its required segments (recursively). A choice group
/// requires none of its members in particular.
fn required_segments(tree: &[StructureNode]) -> Vec<&str> {
    let mut out = Vec::new();
    for node in tree {
        match node {
            StructureNode::Segment { id, min, .. } if *min > 0 && id != "*" => {
                out.push(id.as_str())
            }
            StructureNode::Group {
                min,
                choice: false,
                children,
                ..
            } if *min > 0 => out.extend(required_segments(children)),
            _ => {}
        }
    }
    out
}
