//! A JSON value as it travels between services, steps and components: the text it arrived
//! as, parsed only when something reads it.
//!
//! Most results are never read by an expression. A response is written into checkpoints,
//! kept for the API, handed to components as text; parsing every one into a tree only to
//! serialize the tree again for each of those cost a parse, a serialization and an
//! allocation per node for nothing (Temporal keeps its payloads as bytes for the same
//! reason). A payload keeps the text, validated, and builds the tree the first time an
//! expression reads it. A value made in the process (a pass state's, a parallel state's
//! branch results) goes the other way: it is serialized the first time it is written.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;
use serde_json::value::RawValue;

/// A JSON value kept as text, as a tree, or both; see the module docs.
///
/// Serializes to its JSON text as it is (through `serde_json`, which writes a `RawValue`
/// verbatim). Deserializes into a tree, which works from any input; a field read straight
/// from a record's JSON can keep the text instead with [`optional_text`].
#[derive(Clone)]
pub struct Payload {
    // At least one of the two is set at any time.
    json: OnceLock<Box<RawValue>>,
    value: OnceLock<Json>,
}

impl Payload {
    /// A payload of JSON text that has been validated already.
    pub fn from_json(json: Box<RawValue>) -> Self {
        Payload {
            json: OnceLock::from(json),
            value: OnceLock::new(),
        }
    }

    /// JSON text, validated but not parsed into a tree.
    pub fn parse(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Payload::from_json)
    }

    /// An HTTP response body: its JSON, or the text itself (as a JSON string) when it is not
    /// JSON, or `null` when it is empty. The bytes become the payload's text without a copy
    /// unless they carry whitespace around the JSON.
    pub fn from_body(bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            return Payload::from(Json::Null);
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
                return Payload::from(Json::String(text));
            }
        };
        // Checked first because `RawValue::from_string` consumes the text even when it
        // fails; checking skips the text without allocating.
        if serde_json::from_str::<IgnoredAny>(&text).is_err() {
            return Payload::from(Json::String(text));
        }
        Payload::parse(text).unwrap_or_else(|_| Payload::from(Json::Null))
    }

    /// The value as a tree, built now if it has not been yet.
    pub fn value(&self) -> &Json {
        self.value.get_or_init(|| {
            let json = self.json.get().map_or("null", |json| json.get());
            // The text was validated when the payload was made.
            serde_json::from_str(json).unwrap_or(Json::Null)
        })
    }

    /// The tree, if something has read it already (or the payload was made from one).
    pub fn parsed(&self) -> Option<&Json> {
        self.value.get()
    }

    /// The value as JSON text, serialized now if it has not been yet.
    pub fn json(&self) -> &RawValue {
        self.json.get_or_init(|| {
            let value = self.value.get().unwrap_or(&Json::Null);
            // A `Value`'s map keys are strings, so serializing it cannot fail.
            serde_json::value::to_raw_value(value)
                .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("valid JSON"))
        })
    }

    /// The tree, taken out of the payload (built if need be).
    pub fn into_value(self) -> Json {
        self.value();
        self.value.into_inner().unwrap_or(Json::Null)
    }
}

/// A payload reads as the value it holds (parsed on first use), like the tree it stands for.
impl Deref for Payload {
    type Target = Json;

    fn deref(&self) -> &Json {
        self.value()
    }
}

impl PartialEq<Json> for Payload {
    fn eq(&self, other: &Json) -> bool {
        self.value() == other
    }
}

impl From<Json> for Payload {
    fn from(value: Json) -> Self {
        Payload {
            json: OnceLock::new(),
            value: OnceLock::from(value),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        if let (Some(a), Some(b)) = (self.json.get(), other.json.get())
            && a.get() == b.get()
        {
            return true;
        }
        self.value() == other.value()
    }
}

/// The tree if it has been built, else the text: printing does not parse.
impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.value.get(), self.json.get()) {
            (Some(value), _) => value.fmt(f),
            (None, Some(json)) => f.write_str(json.get()),
            (None, None) => f.write_str("null"),
        }
    }
}

/// The JSON text.
impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json().get())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json().serialize(serializer)
    }
}

/// Through a tree: serde buffers what it reads for an internally tagged enum or a `flatten`
/// field, and only `serde_json`'s own deserializers can hand out text.
impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Json::deserialize(deserializer).map(Payload::from)
    }
}

/// For `#[serde(deserialize_with)]` on an optional payload read straight from `serde_json`
/// (not inside an internally tagged enum or a `flatten` field, where it fails): keeps the
/// text, so loading a record does not build a tree of every result in it.
pub fn optional_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Arc<Payload>>, D::Error> {
    let json = Option::<Box<RawValue>>::deserialize(deserializer)?;
    Ok(json.map(|json| Arc::new(Payload::from_json(json))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_json_body_is_kept_as_text_until_read() {
        let body = Payload::from_body(br#"{"amount": 1200, "tags": ["a"]}"#.to_vec());
        assert!(body.parsed().is_none(), "not parsed on arrival");
        assert_eq!(body.json().get(), r#"{"amount": 1200, "tags": ["a"]}"#);
        assert_eq!(body.value()["amount"], json!(1200));
        assert!(body.parsed().is_some(), "parsed once read");
        assert_eq!(
            body.clone().into_value(),
            json!({"amount": 1200, "tags": ["a"]})
        );
    }

    #[test]
    fn other_bodies_become_strings_or_null() {
        assert_eq!(
            *Payload::from_body(b"plain text".to_vec()).value(),
            json!("plain text")
        );
        assert_eq!(
            *Payload::from_body(b"{\"cut\": ".to_vec()).value(),
            json!("{\"cut\": ")
        );
        assert_eq!(*Payload::from_body(Vec::new()).value(), Json::Null);
        assert_eq!(
            *Payload::from_body(vec![b'o', b'k', 0xff]).value(),
            json!("ok\u{fffd}")
        );
        // Whitespace around JSON is JSON.
        assert_eq!(
            *Payload::from_body(b" [1, 2]\n".to_vec()).value(),
            json!([1, 2])
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Step {
        #[serde(default, deserialize_with = "optional_text")]
        result: Option<Arc<Payload>>,
    }

    #[test]
    fn written_as_the_text_it_came_as_and_read_back_without_a_tree() {
        let step = Step {
            result: Some(Arc::new(Payload::from_body(
                br#"{"b":1,  "a":[true]}"#.to_vec(),
            ))),
        };
        let written = serde_json::to_string(&step).unwrap();
        assert_eq!(written, r#"{"result":{"b":1,  "a":[true]}}"#);
        let read: Step = serde_json::from_str(&written).unwrap();
        assert!(read.result.as_ref().unwrap().parsed().is_none());
        assert_eq!(read, step);
        assert_eq!(serde_json::from_str::<Step>("{}").unwrap().result, None);
        // Through a tree, as the API's views are made.
        assert_eq!(
            serde_json::to_value(&step).unwrap(),
            json!({"result": {"a": [true], "b": 1}})
        );
        let from_tree: Step = serde_json::from_value(json!({"result": [1, "x"]})).unwrap();
        assert_eq!(*from_tree.result.unwrap().value(), json!([1, "x"]));
    }

    #[test]
    fn read_through_an_enum_tag_or_a_flattened_field_as_a_tree() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        enum Tagged {
            Call { body: Payload },
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Outer {
            #[serde(flatten)]
            tagged: Tagged,
        }
        let outer = Outer {
            tagged: Tagged::Call {
                body: Payload::from_body(br#"{"k": [1]}"#.to_vec()),
            },
        };
        let written = serde_json::to_string(&outer).unwrap();
        assert_eq!(written, r#"{"type":"Call","body":{"k": [1]}}"#);
        let read: Outer = serde_json::from_str(&written).unwrap();
        assert_eq!(read, outer);
    }

    #[test]
    fn a_value_made_here_is_serialized_when_first_written() {
        let made = Payload::from(json!({"k": [1, 2]}));
        assert_eq!(made.json().get(), r#"{"k":[1,2]}"#);
        assert_eq!(made, Payload::parse(r#"{ "k": [1, 2] }"#.into()).unwrap());
        assert_ne!(made, Payload::from(json!({"k": [2, 1]})));
        assert!(Payload::parse("{".into()).is_err());
    }
}
