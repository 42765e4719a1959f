//! Repair of sloppy tool arguments, as the seed's `SimpleAgent` does it.
//!
//! [`parse_args`]: arguments that are not a JSON object (bad JSON, an array, a number) become
//! `{}`, so the tool reports its missing fields instead of the loop failing.
//! [`coerce_args`] (`_coerce_args`), per argument by the type its JSON schema declares:
//! - array + string: `""` -> `[]`; a JSON array in the string -> that array; else `[value]`;
//! - boolean + string: `true` when the lower-cased string is `true`, `1` or `yes`, else `false`;
//! - integer / number + string: parsed (`"3"` -> 3, `"0.5"` -> 0.5), left as it is when it does
//!   not parse;
//! - string + array/object: JSON-encoded;
//! - any other declared type (object, or none) + a string starting with `{` or `[`: parsed as
//!   JSON when it parses.

use serde_json::{Map, Value};

/// The arguments string of a tool call as an object; anything else is `{}`.
pub fn parse_args(raw: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(raw.trim()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The declared JSON type of a property schema: `"type": "integer"` or the first non-null of
/// `"type": ["integer", "null"]`, or of the branches of `anyOf` / `oneOf`.
pub fn declared_type(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => return Some(t.as_str()),
        Some(Value::Array(ts)) => {
            return ts.iter().filter_map(|t| t.as_str()).find(|t| *t != "null");
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = schema.get(key) {
            if let Some(t) = branches
                .iter()
                .filter_map(declared_type)
                .find(|t| *t != "null")
            {
                return Some(t);
            }
        }
    }
    None
}

/// Coerce each argument to the type its property in `schema` (an object schema) declares.
pub fn coerce_args(args: Map<String, Value>, schema: &Value) -> Map<String, Value> {
    let props = schema.get("properties").and_then(|p| p.as_object());
    args.into_iter()
        .map(|(k, v)| {
            let ty = props.and_then(|p| p.get(&k)).and_then(declared_type);
            let v = coerce_value(v, ty);
            (k, v)
        })
        .collect()
}

fn coerce_value(v: Value, ty: Option<&str>) -> Value {
    match (ty, v) {
        (Some("array"), Value::String(s)) => {
            if s.trim().is_empty() {
                Value::Array(Vec::new())
            } else {
                match serde_json::from_str::<Value>(&s) {
                    Ok(Value::Array(a)) => Value::Array(a),
                    _ => Value::Array(vec![Value::String(s)]),
                }
            }
        }
        (Some("boolean"), Value::String(s)) => Value::Bool(matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes"
        )),
        (Some("integer"), Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => Value::String(s),
        },
        (Some("number"), Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Value::from(x),
            _ => Value::String(s),
        },
        (Some("string"), v @ (Value::Array(_) | Value::Object(_))) => Value::String(v.to_string()),
        (Some("string"), v) => v,
        (_, Value::String(s)) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str::<Value>(&s).unwrap_or(Value::String(s))
        }
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "blocks": {"type": "array", "items": {"type": "string"}},
            "flag": {"type": "boolean"},
            "n": {"type": ["integer", "null"]},
            "lr": {"type": "number"},
            "name": {"type": "string"},
            "experiment": {"type": "object"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]}
        }})
    }

    fn co(v: Value) -> Value {
        Value::Object(coerce_args(v.as_object().unwrap().clone(), &schema()))
    }

    #[test]
    fn arrays_from_strings() {
        assert_eq!(co(json!({"blocks": ""})), json!({"blocks": []}));
        assert_eq!(
            co(json!({"blocks": "[\"LSTMBlock\", \"TCNBlock\"]"})),
            json!({"blocks": ["LSTMBlock", "TCNBlock"]})
        );
        assert_eq!(
            co(json!({"blocks": "LSTMBlock"})),
            json!({"blocks": ["LSTMBlock"]})
        );
        assert_eq!(co(json!({"blocks": ["x"]})), json!({"blocks": ["x"]}));
    }

    #[test]
    fn booleans_and_numbers_from_strings() {
        for (s, b) in [
            ("true", true),
            ("True", true),
            ("1", true),
            ("yes", true),
            ("no", false),
            ("false", false),
        ] {
            assert_eq!(co(json!({"flag": s})), json!({"flag": b}), "{s}");
        }
        assert_eq!(co(json!({"n": "3"})), json!({"n": 3}));
        assert_eq!(
            co(json!({"n": "3.5"})),
            json!({"n": "3.5"}),
            "left as-is when int() fails"
        );
        assert_eq!(co(json!({"lr": "0.001"})), json!({"lr": 0.001}));
        assert_eq!(co(json!({"lr": "fast"})), json!({"lr": "fast"}));
        assert_eq!(co(json!({"maybe": "7"})), json!({"maybe": 7}));
    }

    #[test]
    fn strings_from_structures_and_structures_from_strings() {
        assert_eq!(co(json!({"name": ["a", 1]})), json!({"name": "[\"a\",1]"}));
        assert_eq!(co(json!({"name": {"k": 1}})), json!({"name": "{\"k\":1}"}));
        assert_eq!(
            co(json!({"name": "{not json"})),
            json!({"name": "{not json"})
        );
        assert_eq!(
            co(json!({"experiment": "{\"version\": 1}"})),
            json!({"experiment": {"version": 1}})
        );
        assert_eq!(
            co(json!({"experiment": "{broken"})),
            json!({"experiment": "{broken"})
        );
        assert_eq!(
            co(json!({"undeclared": "[1,2]"})),
            json!({"undeclared": [1, 2]})
        );
        assert_eq!(
            co(json!({"undeclared": "plain"})),
            json!({"undeclared": "plain"})
        );
    }

    #[test]
    fn bad_json_arguments_are_an_empty_object() {
        assert!(parse_args("{\"a\": ").is_empty());
        assert!(parse_args("[1, 2]").is_empty());
        assert!(parse_args("").is_empty());
        assert_eq!(parse_args(" {\"a\": 1} ").get("a"), Some(&json!(1)));
    }
}
