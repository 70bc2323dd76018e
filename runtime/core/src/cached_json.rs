//! A value that keeps its JSON until it changes, shared between copies until one of them does.
//!
//! Every checkpoint serializes the whole execution record, yet most of the record is the same
//! as at the previous checkpoint: the runs of the steps that already finished, the workflow's
//! sources. Serializing those again made the checkpoints of a workflow quadratic in its
//! number of steps and was most of the engine's own CPU. Wrapped in [`CachedJson`], such a
//! part is serialized once and copied as bytes afterwards. Any mutable access drops the
//! copy, so the bytes written are always those of the current value.
//!
//! A clone shares the value and its JSON (copy on write): a snapshot of a record, as the
//! memory store keeps one per checkpoint, costs a reference count per part instead of a copy
//! of every part, and the part that changes next is the only one copied.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// `T` and, once it has been serialized, its JSON; see the module docs.
///
/// Serializes to exactly what `T` serializes to. Meant for `serde_json`, whose serializers
/// write the cached bytes as they are; other formats see a `RawValue`.
pub struct CachedJson<T> {
    shared: Arc<Cached<T>>,
}

struct Cached<T> {
    value: T,
    json: OnceLock<Box<RawValue>>,
}

/// A copy of the value made to be changed: it starts without the JSON.
impl<T: Clone> Clone for Cached<T> {
    fn clone(&self) -> Self {
        Cached {
            value: self.value.clone(),
            json: OnceLock::new(),
        }
    }
}

impl<T> CachedJson<T> {
    pub fn new(value: T) -> Self {
        CachedJson {
            shared: Arc::new(Cached {
                value,
                json: OnceLock::new(),
            }),
        }
    }

    /// Whether both are the same value (and JSON), not just equal ones.
    pub fn shares(&self, other: &CachedJson<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T: Default> Default for CachedJson<T> {
    fn default() -> Self {
        CachedJson::new(T::default())
    }
}

impl<T> From<T> for CachedJson<T> {
    fn from(value: T) -> Self {
        CachedJson::new(value)
    }
}

impl<T> Deref for CachedJson<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.shared.value
    }
}

impl<T: Clone> DerefMut for CachedJson<T> {
    /// Copies the value first if a clone shares it, and drops the cached JSON: the caller may
    /// change the value through the reference.
    fn deref_mut(&mut self) -> &mut T {
        let cached = Arc::make_mut(&mut self.shared);
        cached.json.take();
        &mut cached.value
    }
}

impl<T: Serialize> CachedJson<T> {
    /// The value's JSON, made now unless it is kept from before.
    pub fn json(&self) -> Result<&RawValue, serde_json::Error> {
        let json = &self.shared.json;
        match json.get() {
            Some(json) => Ok(json),
            None => {
                let made = serde_json::value::to_raw_value(&self.shared.value)?;
                Ok(json.get_or_init(|| made))
            }
        }
    }
}

impl<T: Serialize> Serialize for CachedJson<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for CachedJson<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(CachedJson::new)
    }
}

impl<T> Clone for CachedJson<T> {
    fn clone(&self) -> Self {
        CachedJson {
            shared: self.shared.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for CachedJson<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.value.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for CachedJson<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shares(other) || self.shared.value == other.shared.value
    }
}

impl<T: Eq> Eq for CachedJson<T> {}

impl<T: Hash> Hash for CachedJson<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shared.value.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn serializes_like_the_value_and_follows_every_change() {
        let mut cached = CachedJson::new(json!({"a": [1, 2], "b": "x\"y"}));
        let first = serde_json::to_string(&cached).unwrap();
        assert_eq!(first, serde_json::to_string(&*cached).unwrap());
        assert!(
            cached.shared.json.get().is_some(),
            "the JSON is kept after a save"
        );

        cached["a"][0] = json!(5);
        let second = serde_json::to_string(&cached).unwrap();
        assert_eq!(second, r#"{"a":[5,2],"b":"x\"y"}"#);

        let read: CachedJson<Value> = serde_json::from_str(&second).unwrap();
        assert_eq!(read, cached);
        assert_eq!(serde_json::to_value(&read).unwrap(), *cached);
    }

    #[test]
    fn nested_in_a_record_the_cached_bytes_are_written_as_they_are() {
        #[derive(Serialize)]
        struct Record {
            parts: Vec<CachedJson<Value>>,
        }
        let mut record = Record {
            parts: vec![json!({"n": 1}).into(), json!("two").into()],
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"parts":[{"n":1},"two"]}"#
        );
        *record.parts[1] = json!(3);
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"parts":[{"n":1},3]}"#
        );
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            json!({"parts": [{"n": 1}, 3]})
        );
    }

    #[test]
    fn a_clone_shares_the_value_until_one_side_changes() {
        let mut live = CachedJson::new(json!({"status": "running"}));
        live.json().unwrap();
        let snapshot = live.clone();
        assert!(Arc::ptr_eq(&live.shared, &snapshot.shared));
        assert!(
            snapshot.shared.json.get().is_some(),
            "the clone has the JSON too"
        );

        live["status"] = json!("completed");
        assert_eq!(
            *snapshot,
            json!({"status": "running"}),
            "the snapshot did not move"
        );
        assert_eq!(
            serde_json::to_string(&snapshot).unwrap(),
            r#"{"status":"running"}"#
        );
        assert_eq!(
            serde_json::to_string(&live).unwrap(),
            r#"{"status":"completed"}"#
        );
        assert!(!Arc::ptr_eq(&live.shared, &snapshot.shared));
    }
}
