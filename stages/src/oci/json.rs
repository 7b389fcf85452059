//! Canonical JSON: object keys sorted, no insignificant whitespace.
//!
//! `oci-spec` keeps labels and annotations in `HashMap`s, whose iteration
//! order differs from one run to the next, so serialising its types directly
//! would give a different manifest digest each time. Everything the stage
//! writes goes through [`to_vec`], which sorts every object's keys itself
//! rather than relying on `serde_json`'s map type (another crate of the
//! workspace could switch on its `preserve_order` feature).

use serde_json::Value;

/// Serialises `value` with every object's keys sorted.
#[allow(
    clippy::expect_used,
    reason = "OCI types are structs and string-keyed maps, which serialise"
)]
pub(crate) fn to_vec(value: &impl serde::Serialize) -> Vec<u8> {
    let v = serde_json::to_value(value).expect("OCI types serialise to JSON");
    let mut out = Vec::new();
    write(&v, &mut out);
    out
}

#[allow(
    clippy::expect_used,
    reason = "a JSON string or scalar always serialises"
)]
fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&serde_json::to_vec(k).expect("a string serialises"));
                out.push(b':');
                write(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(&serde_json::to_vec(other).expect("a scalar serialises")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let mut inner = HashMap::new();
        for k in ["z", "a", "m", "b", "y"] {
            inner.insert(k.to_string(), k.to_string());
        }
        let v = serde_json::json!({"b": [inner.clone()], "a": 1});
        assert_eq!(
            String::from_utf8(super::to_vec(&v)).unwrap(),
            r#"{"a":1,"b":[{"a":"a","b":"b","m":"m","y":"y","z":"z"}]}"#
        );
    }
}
