//! `hl7gw inspect`: the structure of HL7 messages, for people (`SEG-f[r].c.s = value` lines)
//! or for programs (`--json`, one object per message in the shape docs/contracts.md gives).

use std::io::Write;

use clap::Args;
use hl7gw_runtime::hl7::{Delimiters, Message, Path, Span};
use serde::Serialize;

use super::Failure;
use super::input::Hl7InputArgs;

/// Arguments of `hl7gw inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    input: Hl7InputArgs,

    /// Print one JSON object per message (one per line).
    #[arg(long)]
    json: bool,

    /// Print only the values at these paths, e.g. `PID-3[CX.5=NH].1` (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
}

/// `{"field":"|",…}` in the order of MSH-1 and MSH-2.
#[derive(Serialize)]
struct JsonDelimiters {
    field: String,
    component: String,
    repetition: String,
    escape: String,
    subcomponent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncation: Option<String>,
}

impl From<Delimiters> for JsonDelimiters {
    fn from(d: Delimiters) -> Self {
        let s = |b: u8| char::from(b).to_string();
        Self {
            field: s(d.field),
            component: s(d.component),
            repetition: s(d.repetition),
            escape: s(d.escape),
            subcomponent: s(d.subcomponent),
            truncation: d.truncation.map(s),
        }
    }
}

#[derive(Serialize)]
struct JsonSegment {
    id: String,
    /// field → repetition → component → subcomponent.
    fields: Vec<Vec<Vec<Vec<String>>>>,
}

#[derive(Serialize)]
struct JsonMessage {
    delimiters: JsonDelimiters,
    segments: Vec<JsonSegment>,
}

#[derive(Serialize)]
struct JsonHit {
    location: String,
    value: String,
}

#[derive(Serialize)]
struct JsonPath {
    path: String,
    hits: Vec<JsonHit>,
}

/// Runs `inspect`.
pub fn run(args: &InspectArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let paths = args
        .paths
        .iter()
        .map(|p| Path::parse(p).map_err(|e| Failure::Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = args.input.read()?;
    let batch = args.input.parse(&bytes)?;
    let name = args.input.display_name();
    for (index, message) in batch.messages.iter().enumerate() {
        let mut warnings = Warnings::default();
        if !paths.is_empty() {
            print_paths(message, &paths, args.json, &mut warnings, name, out)?;
        } else if args.json {
            let json = to_json(message, &mut warnings).map_err(|e| input_error(name, &e))?;
            write_json_line(out, &json)?;
        } else {
            print_human(message, index, &mut warnings, out).map_err(|e| input_error(name, &e))?;
        }
        warnings.report(name);
    }
    Ok(())
}

fn input_error(name: &str, e: &dyn std::fmt::Display) -> Failure {
    Failure::Input(format!("{name}: {e}"))
}

fn write_json_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| Failure::Usage(format!("writing output: {e}")))?;
    writeln!(out).map_err(|e| Failure::Usage(format!("writing output: {e}")))
}

/// Escape sequences kept verbatim, reported on stderr once per message.
#[derive(Default)]
struct Warnings(Vec<String>);

impl Warnings {
    fn decode(&mut self, span: &Span<'_>) -> Result<String, hl7gw_runtime::hl7::DecodeError> {
        let decoded = span.decode()?;
        for kept in &decoded.kept {
            self.0.push(format!(
                "byte {}: escape sequence {} kept as written: {}",
                span.offset() + kept.at,
                kept.sequence,
                kept.reason
            ));
        }
        Ok(decoded.text.into_owned())
    }

    fn report(&self, name: &str) {
        for w in &self.0 {
            eprintln!("warning: {name}: {w}");
        }
    }
}

fn to_json(
    message: &Message<'_>,
    warnings: &mut Warnings,
) -> Result<JsonMessage, hl7gw_runtime::hl7::DecodeError> {
    let mut segments = Vec::with_capacity(message.segment_count());
    for segment in message.segments() {
        let mut fields = Vec::new();
        for field in segment.fields() {
            let mut reps = Vec::new();
            for rep in field.repetitions() {
                let mut comps = Vec::new();
                for comp in rep.components() {
                    let mut subs = Vec::new();
                    for sub in comp.subcomponents() {
                        subs.push(warnings.decode(&sub)?);
                    }
                    comps.push(subs);
                }
                reps.push(comps);
            }
            fields.push(reps);
        }
        segments.push(JsonSegment {
            id: segment.id().to_string(),
            fields,
        });
    }
    Ok(JsonMessage {
        delimiters: message.delimiters().into(),
        segments,
    })
}

/// One `SEG-f[r].c.s = value` line per non-empty leaf, decoded. Indexes equal to 1 below
/// the field are shown only when the level actually repeats or splits.
fn print_human(
    message: &Message<'_>,
    index: usize,
    warnings: &mut Warnings,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    writeln!(
        out,
        "# message {}: {}^{} control {:?} version {} charset {} ({} segments)",
        index + 1,
        message.message_code(),
        message.trigger_event(),
        message.control_id(),
        message.version(),
        message.charset().hl7_name(),
        message.segment_count()
    )?;
    let mut occurrences: std::collections::HashMap<&str, usize> = Default::default();
    for segment in message.segments() {
        let occurrence = occurrences.entry(segment.id()).or_insert(0);
        *occurrence += 1;
        let seg_name = if *occurrence > 1 {
            format!("{}[{}]", segment.id(), occurrence)
        } else {
            segment.id().to_string()
        };
        for (fi, field) in segment.fields().enumerate() {
            let reps: Vec<_> = field.repetitions().collect();
            for (ri, rep) in reps.iter().enumerate() {
                let comps: Vec<_> = rep.components().collect();
                for (ci, comp) in comps.iter().enumerate() {
                    let subs: Vec<_> = comp.subcomponents().collect();
                    for (si, sub) in subs.iter().enumerate() {
                        if sub.is_empty() {
                            continue;
                        }
                        let mut name = format!("{seg_name}-{}", fi + 1);
                        if reps.len() > 1 {
                            name.push_str(&format!("[{}]", ri + 1));
                        }
                        if comps.len() > 1 || subs.len() > 1 {
                            name.push_str(&format!(".{}", ci + 1));
                        }
                        if subs.len() > 1 {
                            name.push_str(&format!(".{}", si + 1));
                        }
                        writeln!(out, "{name} = {}", warnings.decode(sub)?)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_paths(
    message: &Message<'_>,
    paths: &[Path],
    json: bool,
    warnings: &mut Warnings,
    name: &str,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut results = Vec::with_capacity(paths.len());
    for path in paths {
        let mut hits = Vec::new();
        for hit in path.find_all(message) {
            let value = warnings
                .decode(&hit.span)
                .map_err(|e| input_error(name, &e))?;
            hits.push(JsonHit {
                location: hit.location.to_string(),
                value,
            });
        }
        results.push(JsonPath {
            path: path.to_string(),
            hits,
        });
    }
    if json {
        return write_json_line(out, &results);
    }
    let io = |e: std::io::Error| Failure::Usage(format!("writing output: {e}"));
    for result in results {
        if result.hits.is_empty() {
            writeln!(out, "{}: (not present)", result.path).map_err(io)?;
        }
        for hit in result.hits {
            writeln!(out, "{} = {}", hit.location, hit.value).map_err(io)?;
        }
    }
    Ok(())
}
