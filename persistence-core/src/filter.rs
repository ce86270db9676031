//! JSON filters for [`Store::search`](crate::Store::search).
//!
//! A filter is a JSON object of top-level field names to conditions:
//! `{"kind": "note", "score": {"$gte": 3, "$lt": 10}}`. A plain value means `$eq`.
//! Operators: `$eq $ne $gt $gte $lt $lte`. All conditions must hold.
//!
//! Semantics every backend reproduces:
//! - `$eq`: the field exists and equals the value (numbers compare by value).
//! - `$ne`: the field is missing or not equal.
//! - `$gt $gte $lt $lte`: the field and the operand are both numbers, or both strings
//!   (compared by bytes); any other pairing does not match.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// Equal.
    Eq,
    /// Missing or not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
}

impl FilterOp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "$eq" => FilterOp::Eq,
            "$ne" => FilterOp::Ne,
            "$gt" => FilterOp::Gt,
            "$gte" => FilterOp::Gte,
            "$lt" => FilterOp::Lt,
            "$lte" => FilterOp::Lte,
            _ => return None,
        })
    }
    /// The operator as written in JSON, e.g. `"$gte"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "$eq",
            FilterOp::Ne => "$ne",
            FilterOp::Gt => "$gt",
            FilterOp::Gte => "$gte",
            FilterOp::Lt => "$lt",
            FilterOp::Lte => "$lte",
        }
    }
}

/// One condition on one top-level field (conditions come from [`Filter::from_json`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Condition {
    /// Field name.
    pub field: String,
    /// Operator.
    pub op: FilterOp,
    /// Operand.
    pub value: Value,
}

/// A conjunction of conditions. The empty filter matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    conditions: Vec<Condition>,
}

impl Filter {
    /// Matches everything.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Parses a filter object.
    ///
    /// # Errors
    /// `InvalidInput` if `json` is not an object, an operator is unknown, or an operand of
    /// `$gt`..`$lte` is neither a number nor a string.
    pub fn from_json(json: &Value) -> Result<Self> {
        let obj = json
            .as_object()
            .ok_or_else(|| Error::invalid_input("a search filter must be a JSON object"))?;
        let mut conditions = Vec::new();
        for (field, cond) in obj {
            match cond {
                Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                    for (op, value) in ops {
                        let op = FilterOp::parse(op).ok_or_else(|| {
                            Error::invalid_input(format!(
                                "unknown filter operator {op:?} on field {field:?}; \
                                 supported: $eq $ne $gt $gte $lt $lte"
                            ))
                        })?;
                        conditions.push(Condition::new(field, op, value.clone())?);
                    }
                }
                other => conditions.push(Condition::new(field, FilterOp::Eq, other.clone())?),
            }
        }
        Ok(Filter { conditions })
    }

    /// Adds a condition.
    ///
    /// # Errors
    /// As [`Filter::from_json`].
    pub fn and(mut self, field: &str, op: FilterOp, value: Value) -> Result<Self> {
        self.conditions.push(Condition::new(field, op, value)?);
        Ok(self)
    }

    /// The conditions, all of which must hold.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether `doc` (a stored value's data) matches.
    pub fn matches(&self, doc: &Value) -> bool {
        let fields = doc.as_object();
        self.conditions
            .iter()
            .all(|c| c.matches(fields.and_then(|f: &Map<String, Value>| f.get(&c.field))))
    }
}

impl Condition {
    fn new(field: &str, op: FilterOp, value: Value) -> Result<Self> {
        if field.is_empty() {
            return Err(Error::invalid_input("filter field name must not be empty"));
        }
        let ordered = matches!(
            op,
            FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte
        );
        if ordered && !(value.is_number() || value.is_string()) {
            return Err(Error::invalid_input(format!(
                "{} on field {field:?} needs a number or a string, got {value}",
                op.as_str()
            )));
        }
        Ok(Condition {
            field: field.to_string(),
            op,
            value,
        })
    }

    fn matches(&self, field: Option<&Value>) -> bool {
        match (self.op, field) {
            (FilterOp::Ne, None) => true,
            (_, None) => false,
            (FilterOp::Eq, Some(v)) => json_values_equal(v, &self.value),
            (FilterOp::Ne, Some(v)) => !json_values_equal(v, &self.value),
            (op, Some(v)) => match compare(v, &self.value) {
                None => false,
                Some(ord) => match op {
                    FilterOp::Gt => ord == Ordering::Greater,
                    FilterOp::Gte => ord != Ordering::Less,
                    FilterOp::Lt => ord == Ordering::Less,
                    FilterOp::Lte => ord != Ordering::Greater,
                    FilterOp::Eq | FilterOp::Ne => unreachable!("handled above"),
                },
            },
        }
    }
}

/// JSON equality where numbers compare by value (`1 == 1.0`), as in filters and
/// checkpoint metadata queries.
pub fn json_values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_values_equal(a, b)))
        }
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators() {
        let doc = json!({"kind": "note", "score": 5, "name": "b"});
        let m = |f: Value| Filter::from_json(&f).unwrap().matches(&doc);
        assert!(m(json!({"kind": "note"})));
        assert!(m(json!({"score": {"$eq": 5.0}})));
        assert!(!m(json!({"kind": {"$ne": "note"}})));
        assert!(m(json!({"missing": {"$ne": 1}})));
        assert!(m(json!({"score": {"$gt": 4, "$lte": 5}})));
        assert!(!m(json!({"score": {"$lt": 5}})));
        assert!(m(json!({"name": {"$gte": "a"}})));
        assert!(!m(json!({"name": {"$gt": 1}})));
        assert!(!m(json!({"missing": 1})));
        assert!(Filter::from_json(&json!({"a": {"$regex": "x"}})).is_err());
        assert!(Filter::from_json(&json!({"a": {"$gt": [1]}})).is_err());
        assert!(Filter::from_json(&json!([1])).is_err());
        // A nested object without operators is a plain equality.
        assert!(
            Filter::from_json(&json!({"o": {"x": 1}}))
                .unwrap()
                .matches(&json!({"o": {"x": 1}}))
        );
    }
}
