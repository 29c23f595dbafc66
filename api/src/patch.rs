//! [`Patch`]: one field of a partial update (`PUT`). Absent leaves the
//! field as it is, `null` clears it, a value sets it — the three states a
//! plain `Option` cannot tell apart (svix's `UnrequiredNullableField`).
//!
//! Every update body declares its fields as `Patch<T>` under
//! `#[serde(default)]`, and applies them with one of three methods that
//! say what `null` means for that field.

use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    /// Called only for a field that is present (absent is `Default`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Patch::Null,
            Some(v) => Patch::Value(v),
        })
    }
}

impl<T> Patch<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }

    /// The value of a field that cannot be cleared, if present (for
    /// checks that do not fit the `apply_` methods, such as async ones).
    pub fn required(&self, name: &str) -> Result<Option<&T>, ApiError> {
        match self {
            Patch::Absent => Ok(None),
            Patch::Null => Err(ApiError::validation(format!("{name} cannot be null"))),
            Patch::Value(v) => Ok(Some(v)),
        }
    }

    /// An optional field's new value, if present: `Some(None)` for `null`.
    pub fn presence(&self) -> Option<Option<&T>> {
        match self {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Value(v) => Some(Some(v)),
        }
    }

    /// An optional field: `null` clears it, a value goes through `parse`.
    pub fn apply_optional<U>(
        &self,
        field: &mut Option<U>,
        parse: impl FnOnce(&T) -> Result<U, ApiError>,
    ) -> Result<(), ApiError> {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = None,
            Patch::Value(v) => *field = Some(parse(v)?),
        }
        Ok(())
    }

    /// A field that always has a value: `null` is 422 naming `name`.
    pub fn apply_required<U>(
        &self,
        name: &str,
        field: &mut U,
        parse: impl FnOnce(&T) -> Result<U, ApiError>,
    ) -> Result<(), ApiError> {
        match self {
            Patch::Absent => {}
            Patch::Null => return Err(ApiError::validation(format!("{name} cannot be null"))),
            Patch::Value(v) => *field = parse(v)?,
        }
        Ok(())
    }

    /// A list: `null` empties it.
    pub fn apply_list<U: Default>(
        &self,
        field: &mut U,
        parse: impl FnOnce(&T) -> Result<U, ApiError>,
    ) -> Result<(), ApiError> {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = U::default(),
            Patch::Value(v) => *field = parse(v)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Body {
        limit: Patch<u64>,
    }

    fn apply(json: &str) -> Result<Option<u64>, ApiError> {
        let body: Body = serde_json::from_str(json).unwrap();
        let mut limit = Some(5);
        body.limit.apply_optional(&mut limit, |v| Ok(*v))?;
        Ok(limit)
    }

    #[test]
    fn absent_null_and_a_value_are_three_things() {
        assert_eq!(apply("{}").unwrap(), Some(5));
        assert_eq!(apply(r#"{"limit":null}"#).unwrap(), None);
        assert_eq!(apply(r#"{"limit":7}"#).unwrap(), Some(7));
        let body: Body = serde_json::from_str(r#"{"limit":null}"#).unwrap();
        let mut required = 5;
        assert!(body.limit.apply_required("limit", &mut required, |v| Ok(*v)).is_err());
        assert_eq!(required, 5);
    }
}
