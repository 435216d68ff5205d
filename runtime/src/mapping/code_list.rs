//! Code maps and tables as enums: the generated crate lists each variant with its HL7 code
//! and meaning; reading, lookup and the JSON form are here, once.

use std::fmt;

use super::{Problem, value_text};
use crate::hl7::Hit;

/// A code list of the spec: a table (JSON carries the code) or a field's code map (JSON
/// carries the EMS value the code maps to). Generated enums implement it with constants only.
pub trait CodeList: Copy + PartialEq + 'static {
    /// The list as errors name it: `table procedure` or `the sex map`.
    const LIST: &'static str;
    /// True for a code map (JSON carries the EMS value), false for a table (the code).
    const MAPPED: bool;
    /// Every value in spec order with its HL7 code and its meaning (a table) or EMS value
    /// (a map).
    const ENTRIES: &'static [(Self, &'static str, &'static str)];

    /// The HL7 code.
    fn code(self) -> &'static str {
        entry(self).map_or("", |(_, code, _)| code)
    }

    /// The code's meaning in the customer's table, or the EMS value a map gives it.
    fn meaning(self) -> &'static str {
        entry(self).map_or("", |(_, _, meaning)| meaning)
    }

    /// The value of an HL7 code, if the list has it.
    fn from_code(code: &str) -> Option<Self> {
        Self::ENTRIES
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(value, _, _)| *value)
    }

    /// Reads a code from a message value (compared exactly); a code not listed is error 103
    /// naming the code (codes are not patient data).
    fn read(hit: &Hit<'_>) -> Result<Self, Problem> {
        let value = value_text(hit)?;
        Self::from_code(&value).ok_or_else(|| {
            Problem::not_in_table(format!("code {value:?} is not in {}", Self::LIST))
        })
    }

    /// The JSON text: the EMS value of a map, the code of a table.
    fn json(self) -> &'static str {
        if Self::MAPPED {
            self.meaning()
        } else {
            self.code()
        }
    }

    /// The value of a JSON text; when a map gives several codes one EMS value, the first code
    /// in spec order.
    fn from_json(text: &str) -> Result<Self, CodeError> {
        Self::ENTRIES
            .iter()
            .find(|(value, _, _)| value.json() == text)
            .map(|(value, _, _)| *value)
            .ok_or_else(|| CodeError {
                text: text.to_string(),
                list: Self::LIST,
                mapped: Self::MAPPED,
                expected: Self::ENTRIES
                    .iter()
                    .map(|(value, _, _)| value.json())
                    .collect(),
            })
    }
}

fn entry<T: CodeList>(value: T) -> Option<&'static (T, &'static str, &'static str)> {
    T::ENTRIES.iter().find(|(v, _, _)| *v == value)
}

/// A JSON text that is not a code (or EMS value) of its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeError {
    /// The text read.
    pub text: String,
    /// The list, as errors name it.
    pub list: &'static str,
    /// Whether the list is a map (EMS values) or a table (codes).
    pub mapped: bool,
    /// What the list accepts, in spec order.
    pub expected: Vec<&'static str>,
}

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.mapped {
            "a value of"
        } else {
            "a code of"
        };
        write!(
            f,
            "{:?} is not {what} {}; expected one of: {}",
            self.text,
            self.list,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for CodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Sex {
        M,
        F,
        Male,
    }

    impl CodeList for Sex {
        const LIST: &'static str = "the sex map";
        const MAPPED: bool = true;
        const ENTRIES: &'static [(Self, &'static str, &'static str)] = &[
            (Self::M, "M", "male"),
            (Self::F, "F", "female"),
            (Self::Male, "1", "male"),
        ];
    }

    #[test]
    fn codes_meanings_and_json() {
        assert_eq!(Sex::F.code(), "F");
        assert_eq!(Sex::F.meaning(), "female");
        assert_eq!(Sex::from_code("1"), Some(Sex::Male));
        assert_eq!(Sex::from_code("X"), None);
        assert_eq!(Sex::Male.json(), "male");
        // Two codes with one EMS value: JSON reads back as the first.
        assert_eq!(Sex::from_json("male"), Ok(Sex::M));
        assert_eq!(
            Sex::from_json("X").unwrap_err().to_string(),
            "\"X\" is not a value of the sex map; expected one of: male, female, male"
        );
    }
}
