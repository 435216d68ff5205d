//! What a generated record is: a [`Record`] read from a message (and an [`OutboundRecord`]
//! written into one), each field a [`Field`] constant read and written by the runtime, and
//! the generic functions the gateway's message bindings point at ([`map_to_json`],
//! [`build_from_json`]).

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::attachment::{Attachment, MediaTypes};
use super::code_list::CodeList;
use super::json::{OutboundError, read_back, record_from_json, record_to_json};
use super::values::{HlDate, HlDateTime, HlNumber, NhsNumber};
use super::{
    Errors, FieldRule, MappingError, MessageShape, OutboundHeader, Problem, base64, date, datetime,
    finish, new_message, nhs_number, number, repeated, single, text,
};
use crate::hl7::{
    BuildError, Hit, Message, MessageBuilder, Path, RepetitionSelector, SegmentSelector,
};

/// A record of the spec, read from an inbound (or outbound) message.
pub trait Record: Sized + PartialEq + Serialize + DeserializeOwned {
    /// Reads the fields in spec order, recording what fails in `errors`; `None` when a
    /// required value could not be read.
    fn read(message: &Message<'_>, errors: &mut Errors) -> Option<Self>;

    /// Maps a message to this record, or returns every error found (HL7 codes 101, 102,
    /// 103, each with its location).
    fn from_hl7(message: &Message<'_>) -> Result<Self, Vec<MappingError>> {
        let mut errors = Errors::new();
        let record = Self::read(message, &mut errors);
        errors.finish(|| record)
    }
}

/// A record an outbound message is built from (directly or nested).
pub trait OutboundRecord: Record {
    /// Writes the fields into an outbound message, nested records included.
    fn write(&self, message: &mut MessageBuilder) -> Result<(), BuildError>;

    /// Builds a message of `shape` from this record, after the MSH in `header`, completed
    /// as its type needs ([`finish`]: MSA-1, set IDs, MSH-18).
    fn build(
        &self,
        header: &OutboundHeader<'_>,
        shape: &MessageShape,
    ) -> Result<Vec<u8>, BuildError> {
        let mut message = new_message(header, shape)?;
        self.write(&mut message)?;
        finish(&mut message, shape)?;
        Ok(message.to_bytes())
    }
}

/// Reads a nested record: its errors get `name.` in front of their field.
pub fn nested<R: Record>(name: &str, message: &Message<'_>, errors: &mut Errors) -> Option<R> {
    errors.nested(name, |errors| R::read(message, errors))
}

/// Maps an inbound message to record `R`, as the JSON object the spec tests compare; or every
/// mapping error.
pub fn map_to_json<R: Record>(
    message: &Message<'_>,
) -> Result<serde_json::Value, Vec<MappingError>> {
    record_to_json(&R::from_hl7(message)?)
}

/// Builds a message of `shape` from record `R` as JSON, after the MSH in `header`. The
/// record is read strictly (a key not in the record, a value of the wrong type or form, a
/// code not in its list is an error naming the field); the built message must then map back
/// to the same record under the spec's rules (lengths, sizes, required fields).
pub fn build_from_json<R: OutboundRecord>(
    shape: &MessageShape,
    record: &serde_json::Value,
    header: &OutboundHeader<'_>,
) -> Result<Vec<u8>, OutboundError> {
    let record: R = record_from_json(record)?;
    let bytes = record.build(header, shape).map_err(OutboundError::Build)?;
    read_back(&record, bytes, R::from_hl7)
}

/// What the spec says about one field besides its type: the generated crate holds one per
/// field as a `static`, built without allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The record field's name (for errors).
    pub name: &'static str,
    /// Where the value is; written there, and errors name it.
    pub path: Path,
    /// Where else the value may be, read in order when `path` holds none (never written).
    pub fallbacks: &'static [Path],
    /// Absent → error 101.
    pub required: bool,
    /// The longest text accepted, in characters (text fields).
    pub max_chars: Option<usize>,
    /// The data of a base64 field.
    pub data: Option<DataRule>,
}

/// A base64 field's limit and media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRule {
    /// Largest decoded size.
    pub max_bytes: u64,
    /// The media type the spec names for it.
    pub media_type: &'static str,
    /// The path is ED.5 (the data of an ED): ED.2–4 are written from the media type.
    pub ed: bool,
}

impl Field {
    /// A required field (absent → 101).
    pub const fn required(name: &'static str, path: Path) -> Self {
        Self {
            name,
            path,
            fallbacks: &[],
            required: true,
            max_chars: None,
            data: None,
        }
    }

    /// An optional field.
    pub const fn optional(name: &'static str, path: Path) -> Self {
        let mut field = Self::required(name, path);
        field.required = false;
        field
    }

    /// Also read from `fallbacks`, in order, when the path holds no value.
    #[must_use]
    pub const fn or_from(mut self, fallbacks: &'static [Path]) -> Self {
        self.fallbacks = fallbacks;
        self
    }

    /// Text of at most `max` characters.
    #[must_use]
    pub const fn max_chars(mut self, max: usize) -> Self {
        self.max_chars = Some(max);
        self
    }

    /// Base64 data of `media_type`, at most `max_bytes` decoded; `ed` when the path is ED.5.
    #[must_use]
    pub const fn data(mut self, max_bytes: u64, media_type: &'static str, ed: bool) -> Self {
        self.data = Some(DataRule {
            max_bytes,
            media_type,
            ed,
        });
        self
    }

    /// The rule the mapping primitives take.
    pub fn rule(&self) -> FieldRule<'_> {
        FieldRule {
            name: self.name,
            path: &self.path,
            fallbacks: self.fallbacks,
            required: self.required,
        }
    }

    /// The first present value, converted (see [`single`]).
    pub fn single<T: MappedValue>(&self, message: &Message<'_>, errors: &mut Errors) -> Option<T> {
        single(message, self.rule(), errors, |hit| T::from_hit(hit, self))
    }

    /// Every present value, converted (see [`repeated`]).
    pub fn repeated<T: MappedValue>(&self, message: &Message<'_>, errors: &mut Errors) -> Vec<T> {
        repeated(message, self.rule(), errors, |hit| T::from_hit(hit, self))
    }

    /// Writes a value at the field's path.
    pub fn write<T: MappedValue>(
        &self,
        message: &mut MessageBuilder,
        value: &T,
    ) -> Result<(), BuildError> {
        value.write(message, &self.path, self)
    }

    /// Writes the fixed value the spec declares for the field (`value:`), as HL7 text.
    pub fn write_fixed(&self, message: &mut MessageBuilder, text: &str) -> Result<(), BuildError> {
        message.set(&self.path, text)?;
        Ok(())
    }

    /// Writes an optional value when present.
    pub fn write_optional<T: MappedValue>(
        &self,
        message: &mut MessageBuilder,
        value: Option<&T>,
    ) -> Result<(), BuildError> {
        match value {
            Some(value) => self.write(message, value),
            None => Ok(()),
        }
    }

    /// Writes a repeated field: one repetition each when the path names no repetition, else
    /// one segment occurrence each when it names no segment; a path that fixes both writes
    /// every value at the same place (the last one stays, and reading back says so).
    pub fn write_each<T: MappedValue>(
        &self,
        message: &mut MessageBuilder,
        values: &[T],
    ) -> Result<(), BuildError> {
        for (index, value) in values.iter().enumerate() {
            let path = match (&self.path.repetition, &self.path.segment_selector) {
                (None, _) => Cow::Owned(Path {
                    repetition: Some(RepetitionSelector::Index(index + 1)),
                    ..self.path.clone()
                }),
                (Some(_), None) => Cow::Owned(Path {
                    segment_selector: Some(SegmentSelector::Occurrence(index + 1)),
                    ..self.path.clone()
                }),
                (Some(_), Some(_)) => Cow::Borrowed(&self.path),
            };
            value.write(message, &path, self)?;
        }
        Ok(())
    }
}

/// A typed value a field holds: read from a hit under the field's rules, written back as
/// HL7 text.
pub trait MappedValue: Sized {
    /// Converts a present value.
    fn from_hit(hit: &Hit<'_>, field: &Field) -> Result<Self, Problem>;

    /// The HL7 text written for the value.
    fn hl7_text(&self) -> Cow<'_, str>;

    /// Writes the value at `path` (the field's path, or one repetition of it).
    fn write(
        &self,
        message: &mut MessageBuilder,
        path: &Path,
        field: &Field,
    ) -> Result<(), BuildError> {
        let _ = field;
        message.set(path, &self.hl7_text())?;
        Ok(())
    }
}

impl MappedValue for String {
    fn from_hit(hit: &Hit<'_>, field: &Field) -> Result<Self, Problem> {
        text(hit, field.max_chars)
    }
    fn hl7_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl MappedValue for HlDate {
    fn from_hit(hit: &Hit<'_>, _: &Field) -> Result<Self, Problem> {
        date(hit)
    }
    fn hl7_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_hl7())
    }
}

impl MappedValue for HlDateTime {
    fn from_hit(hit: &Hit<'_>, _: &Field) -> Result<Self, Problem> {
        datetime(hit)
    }
    fn hl7_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_hl7())
    }
}

impl MappedValue for NhsNumber {
    fn from_hit(hit: &Hit<'_>, _: &Field) -> Result<Self, Problem> {
        nhs_number(hit)
    }
    fn hl7_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
}

impl MappedValue for HlNumber {
    fn from_hit(hit: &Hit<'_>, _: &Field) -> Result<Self, Problem> {
        number(hit)
    }
    fn hl7_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
}

impl<T: CodeList> MappedValue for T {
    fn from_hit(hit: &Hit<'_>, _: &Field) -> Result<Self, Problem> {
        T::read(hit)
    }
    fn hl7_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.code())
    }
}

impl<M: MediaTypes> MappedValue for Attachment<M> {
    fn from_hit(hit: &Hit<'_>, field: &Field) -> Result<Self, Problem> {
        let Some(rule) = field.data else {
            return Err(Problem::data_type("the field names no media type"));
        };
        base64(hit, rule.max_bytes).map(|data| Self::new(rule.media_type, data))
    }
    fn hl7_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.base64())
    }
    /// The data, and for ED.5 the media type in ED.2 and ED.3 and `Base64` in ED.4.
    fn write(
        &self,
        message: &mut MessageBuilder,
        path: &Path,
        field: &Field,
    ) -> Result<(), BuildError> {
        message.set(path, &self.base64())?;
        if let Some(rule) = field.data.filter(|rule| rule.ed) {
            write_ed_media(message, path, rule.media_type)?;
        }
        Ok(())
    }
}

/// ED.2 to ED.4 beside the data at `path` (ED.5): the media type's two halves and
/// `Base64`.
pub fn write_ed_media(
    message: &mut MessageBuilder,
    path: &Path,
    media_type: &str,
) -> Result<(), BuildError> {
    let (main, sub) = media_type.split_once('/').unwrap_or((media_type, ""));
    for (component, text) in [(2, main), (3, sub), (4, "Base64")] {
        let at = Path {
            component: Some(component),
            ..path.clone()
        };
        message.set(&at, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Text, TextList};
    use crate::hl7::RepetitionFilter;

    const HEADER: OutboundHeader<'static> = OutboundHeader {
        sending_application: "EMS",
        sending_facility: "EMS",
        receiving_application: "TIE",
        receiving_facility: "TRUST",
        timestamp: "20260101120000",
        control_id: "1",
        processing_id: "T",
        version: "2.5",
    };

    static BY_REPETITION: Field = Field::optional("born", Path::new("PID", 11).component(1));
    static BY_OCCURRENCE: Field = Field::optional(
        "kind",
        Path::selected(
            "PID",
            None,
            3,
            Some(RepetitionSelector::Where(RepetitionFilter::new(
                "CX", 5, None, "NH",
            ))),
        )
        .component(1),
    )
    .max_chars(3);

    #[test]
    fn repeated_values_go_to_repetitions_or_occurrences() {
        let mut message = new_message(&HEADER, &MessageShape::bare("ADT^A28")).unwrap();
        let born = [String::from("a"), String::from("b")];
        let kind = [String::from("x"), String::from("y")];
        BY_REPETITION.write_each(&mut message, &born).unwrap();
        BY_OCCURRENCE.write_each(&mut message, &kind).unwrap();
        let bytes = message.to_bytes();
        let message = Message::parse(&bytes).unwrap();
        let mut errors = Errors::new();
        let read: Vec<String> = BY_REPETITION.repeated(&message, &mut errors);
        assert_eq!(read, born);
        let hits = BY_OCCURRENCE.path.find_all(&message);
        let occurrences: Vec<usize> = hits.iter().map(|h| h.location.occurrence).collect();
        assert_eq!(occurrences, [1, 2], "one PID each");
        let read: Vec<String> = BY_OCCURRENCE.repeated(&message, &mut errors);
        assert_eq!(read, kind);
        assert!(errors.is_empty());
    }

    #[test]
    fn a_field_reads_with_its_limits() {
        let mut message = new_message(&HEADER, &MessageShape::bare("ADT^A28")).unwrap();
        BY_OCCURRENCE
            .write(&mut message, &String::from("toolong"))
            .unwrap();
        let bytes = message.to_bytes();
        let message = Message::parse(&bytes).unwrap();
        let mut errors = Errors::new();
        assert_eq!(BY_OCCURRENCE.single::<String>(&message, &mut errors), None);
        let errors = errors.into_vec();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "kind");
        assert_eq!(errors[0].code, 102);
    }

    static PRIORITY_ELSE: [Path; 1] = [Path::new("ORC", 7).component(6)];
    static PRIORITY: Field =
        Field::required("priority", Path::new("TQ1", 9).component(1)).or_from(&PRIORITY_ELSE);

    fn priority(segments: &str) -> Result<Option<String>, Vec<MappingError>> {
        let bytes = format!("MSH|^~\\&|TIE|TRUST|EMS|EMS|20260101||OMG^O19|1|T|2.5.1\r{segments}");
        let message = Message::parse(bytes.as_bytes()).map_err(|_| Vec::new())?;
        let mut errors = Errors::new();
        let value = PRIORITY.single::<String>(&message, &mut errors);
        errors.finish(|| Some(value))
    }

    #[test]
    fn a_field_is_read_from_the_first_place_that_holds_it() {
        let both = priority("ORC|NW||||||^^^^^R\rTQ1|1||||||||U\r");
        assert_eq!(both, Ok(Some("U".into())), "the first place wins");
        let fallback = priority("ORC|NW||||||^^^^^R\rTQ1|1\r");
        assert_eq!(
            fallback,
            Ok(Some("R".into())),
            "an empty TQ1-9 falls back to ORC-7.6"
        );
        let errors = priority("ORC|NW\r").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, 101);
        assert_eq!(
            errors[0].location.to_string(),
            "TQ1-9.1",
            "the first place is named"
        );
        assert_eq!(
            errors[0].message,
            "required value missing at TQ1-9.1 or ORC-7.6"
        );
    }

    /// A record as a generated crate writes it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(try_from = "String", into = "&'static str")]
    enum Sex {
        M,
        F,
    }

    impl CodeList for Sex {
        const LIST: &'static str = "the sex map";
        const MAPPED: bool = true;
        const ENTRIES: &'static [(Self, &'static str, &'static str)] =
            &[(Self::M, "M", "male"), (Self::F, "F", "female")];
    }

    impl TryFrom<String> for Sex {
        type Error = super::super::CodeError;
        fn try_from(text: String) -> Result<Self, Self::Error> {
            CodeList::from_json(&text)
        }
    }

    impl From<Sex> for &'static str {
        fn from(value: Sex) -> Self {
            CodeList::json(value)
        }
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Person {
        family: String,
        sex: Sex,
    }

    static FAMILY: Field = Field::required("family", Path::new("PID", 5).component(1)).max_chars(5);
    static SEX: Field = Field::required("sex", Path::new("PID", 8));

    impl Record for Person {
        fn read(message: &Message<'_>, errors: &mut Errors) -> Option<Self> {
            let family = FAMILY.single(message, errors);
            let sex = SEX.single(message, errors);
            Some(Self {
                family: family?,
                sex: sex?,
            })
        }
    }

    impl OutboundRecord for Person {
        fn write(&self, message: &mut MessageBuilder) -> Result<(), BuildError> {
            FAMILY.write(message, &self.family)?;
            SEX.write(message, &self.sex)?;
            Ok(())
        }
    }

    fn build(json: serde_json::Value) -> Result<Vec<u8>, OutboundError> {
        const SHAPE: MessageShape = MessageShape {
            message_type: Text::Borrowed("ADT^A28"),
            structure: Some(Text::Borrowed("ADT_A05")),
            set_id_segments: TextList::Borrowed(&[Text::Borrowed("PID")]),
            acknowledgement: false,
        };
        build_from_json::<Person>(&SHAPE, &json, &HEADER)
    }

    #[test]
    fn json_builds_a_message_that_maps_back() {
        let json = serde_json::json!({"family": "SMITH", "sex": "female"});
        let bytes = build(json.clone()).unwrap();
        let message = Message::parse(&bytes).unwrap();
        let msh9: Vec<_> = (1..=3).map(|c| message.header_text(9, c)).collect();
        assert_eq!(msh9, ["ADT", "A28", "ADT_A05"]);
        assert_eq!(map_to_json::<Person>(&message).unwrap(), json);
        assert_eq!(
            Person::from_hl7(&message).unwrap(),
            Person {
                family: "SMITH".into(),
                sex: Sex::F
            }
        );
    }

    #[test]
    fn json_is_read_strictly_and_checked_by_reading_back() {
        let e = build(serde_json::json!({"family": "SMITH", "sex": "x"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sex: \"x\" is not a value of the sex map; expected one of: male, female"
        );
        let e = build(serde_json::json!({"family": "SMITH", "sex": "male", "age": 1})).unwrap_err();
        assert!(e.to_string().contains("unknown field `age`"), "{e}");
        let e = build(serde_json::json!({"family": "SMITHSON", "sex": "male"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "family: the value has 8 characters; at most 5 are accepted"
        );
        let e = build(serde_json::json!({"family": "", "sex": "male"})).unwrap_err();
        assert_eq!(e.to_string(), "family: required value missing at PID-5.1");
        assert_eq!(e.to_string(), "family: required value missing at PID-5.1");
    }
}
