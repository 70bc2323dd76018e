//! A response's headers as a record keeps them: each name once, a repeated header's values
//! joined with `", "`, sorted by name, all the text in one buffer.
//!
//! Every step's response stays in its execution's record until the execution ends, and most
//! are never looked at. A map of owned strings cost two allocations per header to build, as
//! many to free, and a node per few entries, on every call; this costs two per response.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializes as a JSON object from name to value, like the map it replaces.
#[derive(Clone, Default)]
pub struct Headers {
    text: String,
    /// Sorted by name, no name twice.
    entries: Vec<Entry>,
}

/// Where one header is in `text`: its name is `name..value`, its value `value..end`.
#[derive(Clone, Copy)]
struct Entry {
    name: usize,
    value: usize,
    end: usize,
}

impl Headers {
    /// The value of `name`, compared as given: the HTTP invoker gives names in lower case.
    pub fn get(&self, name: &str) -> Option<&str> {
        let found = self
            .entries
            .binary_search_by(|entry| self.name(entry).cmp(name))
            .ok()?;
        Some(self.value(&self.entries[found]))
    }

    /// Name and value pairs, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (self.name(entry), self.value(entry)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name(&self, entry: &Entry) -> &str {
        &self.text[entry.name..entry.value]
    }

    fn value(&self, entry: &Entry) -> &str {
        &self.text[entry.value..entry.end]
    }
}

/// Builds [`Headers`] from pairs in any order. Pairs with the same name are joined in the
/// order given; joining a name onto the pair just before it, as a `HeaderMap` yields them,
/// costs no lookup.
pub struct HeadersBuilder {
    headers: Headers,
    /// Whether the names arrived in order so far, so that sorting can be skipped.
    sorted: bool,
}

impl HeadersBuilder {
    /// Room for `names` distinct names and `bytes` of names and values.
    pub fn with_capacity(names: usize, bytes: usize) -> Self {
        HeadersBuilder {
            headers: Headers {
                text: String::with_capacity(bytes),
                entries: Vec::with_capacity(names),
            },
            sorted: true,
        }
    }

    pub fn append(&mut self, name: &str, value: &str) {
        let headers = &mut self.headers;
        if let Some(last) = headers.entries.last_mut() {
            let last_name = &headers.text[last.name..last.value];
            if last_name == name {
                headers.text.push_str(", ");
                headers.text.push_str(value);
                last.end = headers.text.len();
                return;
            }
            self.sorted &= last_name < name;
        }
        let start = headers.text.len();
        headers.text.push_str(name);
        let value_start = headers.text.len();
        headers.text.push_str(value);
        headers.entries.push(Entry {
            name: start,
            value: value_start,
            end: headers.text.len(),
        });
    }

    pub fn build(self) -> Headers {
        let mut headers = self.headers;
        if self.sorted {
            return headers;
        }
        let text = &headers.text;
        // Stable: a name's values stay in the order they were given.
        headers
            .entries
            .sort_by(|a, b| text[a.name..a.value].cmp(&text[b.name..b.value]));
        let repeated = headers
            .entries
            .windows(2)
            .any(|pair| headers.name(&pair[0]) == headers.name(&pair[1]));
        if !repeated {
            return headers;
        }
        // A name given apart from its first pair: lay the text out again in order.
        let mut joined = HeadersBuilder::with_capacity(headers.entries.len(), headers.text.len());
        for (name, value) in headers.iter() {
            joined.append(name, value);
        }
        joined.headers
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let mut builder = HeadersBuilder::with_capacity(0, 0);
        for (name, value) in pairs {
            builder.append(name.as_ref(), value.as_ref());
        }
        builder.build()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;

        impl<'de> Visitor<'de> for Pairs {
            type Value = Headers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of header names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut builder = HeadersBuilder::with_capacity(map.size_hint().unwrap_or(0), 0);
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    builder.append(&name, &value);
                }
                Ok(builder.build())
            }
        }

        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn pairs_in_any_order_are_sorted_and_repeated_names_joined_in_order() {
        let headers: Headers = [
            ("x-b", "1"),
            ("content-type", "application/json"),
            ("x-b", "2"),
            ("x-a", "first"),
            ("x-a", "second"),
        ]
        .into_iter()
        .collect();
        let pairs: Vec<_> = headers.iter().collect();
        assert_eq!(
            pairs,
            [
                ("content-type", "application/json"),
                ("x-a", "first, second"),
                ("x-b", "1, 2"),
            ]
        );
        assert_eq!(headers.get("x-b"), Some("1, 2"));
        assert_eq!(headers.get("x-c"), None);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn json_is_that_of_the_map_it_replaces_both_ways() {
        let map = BTreeMap::from([
            ("retry-after".to_string(), "2".to_string()),
            (
                "content-type".to_string(),
                "text/plain; charset=utf-8".to_string(),
            ),
            ("x-quote".to_string(), "say \"hi\"".to_string()),
        ]);
        let headers: Headers = map.iter().collect();
        let json = serde_json::to_string(&headers).unwrap();
        assert_eq!(json, serde_json::to_string(&map).unwrap());
        let back: Headers = serde_json::from_str(&json).unwrap();
        assert_eq!(back, headers);
        assert_eq!(
            serde_json::from_str::<Headers>("{}").unwrap(),
            Headers::default()
        );
        assert!(serde_json::from_str::<Headers>("[1]").is_err());
    }

    #[test]
    fn equal_whatever_order_they_were_built_in() {
        let one: Headers = [("a", "1"), ("b", "2")].into_iter().collect();
        let other: Headers = [("b", "2"), ("a", "1")].into_iter().collect();
        assert_eq!(one, other);
        let third: Headers = [("a", "1"), ("b", "3")].into_iter().collect();
        assert_ne!(one, third);
    }

    #[test]
    fn names_already_in_order_keep_one_buffer_as_given() {
        let mut builder = HeadersBuilder::with_capacity(2, 16);
        builder.append("a", "1");
        builder.append("a", "2");
        builder.append("b", "3");
        let headers = builder.build();
        assert_eq!(headers.text, "a1, 2b3");
        let entry = headers.entries[0];
        assert_eq!(&headers.text[entry.value..entry.end], "1, 2");
    }
}
