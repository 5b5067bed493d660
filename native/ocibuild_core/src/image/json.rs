//! Canonical JSON: the bytes we hash. serde_json's `Value` keeps object keys in a `BTreeMap`
//! (the `preserve_order` feature is off), so serialising through it sorts keys and the same
//! content always gives the same digest, whatever order it was built in.

use serde_json::Value;

use crate::{Error, Result};

/// Compact JSON with object keys sorted bytewise.
pub fn canonical(value: &Value) -> Vec<u8> {
    // Serialising a `Value` into a Vec cannot fail: no I/O, and every key is a string.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Parse JSON from a manifest, config, index or layout file; `what` names it in the error.
pub fn parse(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidJson {
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// Parse JSON that must be an object.
pub fn parse_object(bytes: &[u8], what: &str) -> Result<Value> {
    let v = parse(bytes, what)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(Error::InvalidJson {
            what: what.to_string(),
            why: "expected a JSON object".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_output_is_compact() {
        let mut v = json!({});
        v["zeta"] = json!(1);
        v["alpha"] = json!({"b": 2, "a": [3, {"y": 1, "x": 0}]});
        assert_eq!(
            canonical(&v),
            br#"{"alpha":{"a":[3,{"x":0,"y":1}],"b":2},"zeta":1}"#
        );
    }

    #[test]
    fn parse_errors_name_the_document() {
        match parse(b"{", "index.json") {
            Err(Error::InvalidJson { what, .. }) => assert_eq!(what, "index.json"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse_object(b"[1]", "config").is_err());
    }
}
