//! Numbers and booleans as the YAML writes them: `maxRetries: '3'` is a string, and is refused
//! rather than read as 3 (the YAML parser alone would convert a quoted scalar to whatever
//! the field's type is). Used through `#[serde(deserialize_with = ...)]`, so the documents
//! keep plain `Spanned<u32>`-style fields.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_saphyr::Spanned;

/// A value type a YAML scalar may be read into without quotes.
pub(super) trait Scalar: Sized {
    /// How the field's type is described in an error ("a whole number").
    const EXPECTED: &'static str;
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

impl Scalar for u32 {
    const EXPECTED: &'static str = "a whole number from 0 to 4294967295";
    fn from_u64(v: u64) -> Option<Self> {
        u32::try_from(v).ok()
    }
    fn from_i64(v: i64) -> Option<Self> {
        u32::try_from(v).ok()
    }
}

impl Scalar for u64 {
    const EXPECTED: &'static str = "a whole number of 0 or more";
    fn from_u64(v: u64) -> Option<Self> {
        Some(v)
    }
    fn from_i64(v: i64) -> Option<Self> {
        u64::try_from(v).ok()
    }
}

impl Scalar for f64 {
    const EXPECTED: &'static str = "a number";
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Scalar for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

/// `T` read from an unquoted scalar only.
struct Unquoted<T>(T);

impl<'de, T: Scalar> Deserialize<'de> for Unquoted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarVisitor(PhantomData))
            .map(Unquoted)
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<T: Scalar> ScalarVisitor<T> {
    fn out_of_range<E: de::Error>(shown: impl fmt::Display) -> E {
        E::custom(format!("`{shown}` is not {}", T::EXPECTED))
    }
}

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_u64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_i64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        T::from_bool(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Err(E::custom(format!(
            "expected {}, got the string `{v}` (write it without quotes)",
            T::EXPECTED
        )))
    }
}

fn unwrap<T>(spanned: Spanned<Unquoted<T>>) -> Spanned<T> {
    Spanned {
        value: spanned.value.0,
        referenced: spanned.referenced,
        defined: spanned.defined,
    }
}

/// For a required field: `#[serde(deserialize_with = "strict::scalar")]`.
pub(super) fn scalar<'de, D: Deserializer<'de>, T: Scalar>(d: D) -> Result<Spanned<T>, D::Error> {
    Spanned::<Unquoted<T>>::deserialize(d).map(unwrap)
}

/// For an optional field: `#[serde(default, deserialize_with = "strict::optional")]`.
pub(super) fn optional<'de, D: Deserializer<'de>, T: Scalar>(
    d: D,
) -> Result<Option<Spanned<T>>, D::Error> {
    Option::<Spanned<Unquoted<T>>>::deserialize(d).map(|o| o.map(unwrap))
}

/// For a plain boolean with a default: `#[serde(default, deserialize_with = "strict::flag")]`.
pub(super) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Unquoted::<bool>::deserialize(d).map(|u| u.0)
}
