//! Decoded base64 data with one of the media types a spec names. The generated crate names
//! its media types once (a [`MediaTypes`] type); the type, its JSON form and its checks are
//! here.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeStruct, Serializer};

/// The media types of a spec's base64 fields.
pub trait MediaTypes: 'static {
    /// Each media type once, in spec order.
    const MEDIA_TYPES: &'static [&'static str];
}

/// Decoded base64 data with the media type the spec names. As JSON:
/// `{"media_type": …, "data": <standard base64 with padding>}`; read from JSON, the media
/// type must be one of `M`'s and the data standard base64.
pub struct Attachment<M> {
    /// The media type, e.g. `application/pdf`.
    pub media_type: &'static str,
    /// The decoded bytes.
    pub data: Vec<u8>,
    media: PhantomData<fn() -> M>,
}

impl<M: MediaTypes> Attachment<M> {
    /// Data with its media type.
    pub fn new(media_type: &'static str, data: Vec<u8>) -> Self {
        Self {
            media_type,
            data,
            media: PhantomData,
        }
    }

    /// The data as standard base64 with padding.
    pub fn base64(&self) -> String {
        STANDARD.encode(&self.data)
    }
}

// By hand, so the marker type needs none of these traits.
impl<M> fmt::Debug for Attachment<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("media_type", &self.media_type)
            .field("data", &self.data)
            .finish()
    }
}

impl<M> Clone for Attachment<M> {
    fn clone(&self) -> Self {
        Self {
            media_type: self.media_type,
            data: self.data.clone(),
            media: PhantomData,
        }
    }
}

impl<M> PartialEq for Attachment<M> {
    fn eq(&self, other: &Self) -> bool {
        self.media_type == other.media_type && self.data == other.data
    }
}

impl<M> Eq for Attachment<M> {}

impl<M> std::hash::Hash for Attachment<M> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.media_type.hash(state);
        self.data.hash(state);
    }
}

impl<M> Serialize for Attachment<M> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("Attachment", 2)?;
        state.serialize_field("media_type", self.media_type)?;
        state.serialize_field("data", &STANDARD.encode(&self.data))?;
        state.end()
    }
}

impl<'de, M: MediaTypes> Deserialize<'de> for Attachment<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The JSON form.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields, rename = "Attachment")]
        struct Json<'a> {
            #[serde(borrow)]
            media_type: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            data: std::borrow::Cow<'a, str>,
        }
        let json = Json::deserialize(deserializer)?;
        let media_type = M::MEDIA_TYPES
            .iter()
            .find(|media| **media == json.media_type)
            .ok_or_else(|| {
                de::Error::custom(match M::MEDIA_TYPES {
                    [one] => format!("the media type is not {one}"),
                    all => format!("the media type is not one of {}", all.join(", ")),
                })
            })?;
        let data = STANDARD
            .decode(json.data.as_bytes())
            .map_err(|e| de::Error::custom(format!("the data is not standard base64: {e}")))?;
        Ok(Self::new(media_type, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pdf;
    impl MediaTypes for Pdf {
        const MEDIA_TYPES: &'static [&'static str] = &["application/pdf"];
    }

    #[test]
    fn json_shape_and_checks() {
        let pdf = Attachment::<Pdf>::new("application/pdf", b"%PDF".to_vec());
        let json = serde_json::to_value(&pdf).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"media_type": "application/pdf", "data": "JVBERg=="})
        );
        assert_eq!(
            serde_json::from_value::<Attachment<Pdf>>(json).unwrap(),
            pdf
        );
        let wrong = serde_json::json!({"media_type": "image/png", "data": "JVBERg=="});
        let e = serde_json::from_value::<Attachment<Pdf>>(wrong).unwrap_err();
        assert!(
            e.to_string()
                .contains("the media type is not application/pdf"),
            "{e}"
        );
        let bad = serde_json::json!({"media_type": "application/pdf", "data": "%%"});
        let e = serde_json::from_value::<Attachment<Pdf>>(bad).unwrap_err();
        assert!(
            e.to_string().contains("the data is not standard base64"),
            "{e}"
        );
    }
}
