//! YAML and JSON documents read strictly into a `serde_json::Value`, for every file this
//! binary reads as a configuration (the rules file, the kubelet's configuration).
//!
//! Reading refuses what a parser would otherwise let pass or choke on: a key given twice
//! in one mapping (which would silently win), and nesting deeper than [`MAX_DEPTH`]
//! (which the YAML parser pays for at every token, quadratically in all), checked before
//! the YAML is parsed whole. YAML is read as the kubelet's Go reader reads it: merge keys
//! (`<<: *base`) are applied, explicit keys winning, and keys that are not strings become
//! strings.

use std::fmt;

use icp_core::quote;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The deepest nesting of mappings and lists read (a rules file needs five).
pub const MAX_DEPTH: usize = 32;

/// The JSON document `text`.
pub fn json(text: &str) -> Result<Value, String> {
    Level::<false>(1)
        .deserialize(&mut serde_json::Deserializer::from_str(text))
        .map_err(|e| format!("invalid JSON: {e}"))
}

/// The first YAML document of `text` (`null` when there is none), and whether another
/// document that is not empty follows it.
pub fn yaml(text: &str) -> Result<(Value, bool), String> {
    let invalid = |e: String| format!("invalid YAML: {e}");
    yaml_depth(text).map_err(invalid)?;
    let mut documents = serde_yaml_ng::Deserializer::from_str(text);
    let value = match documents.next() {
        Some(document) => Level::<true>(1)
            .deserialize(document)
            .map_err(|e| invalid(e.to_string()))?,
        None => Value::Null,
    };
    let more = documents
        .next()
        .is_some_and(|document| !matches!(Level::<true>(1).deserialize(document), Ok(Value::Null)));
    Ok((value, more))
}

/// A value at one depth of a document, the top being 1; `YAML` applies YAML's merge keys.
#[derive(Clone, Copy)]
struct Level<const YAML: bool>(usize);

impl<const YAML: bool> Level<YAML> {
    /// The depth of a collection's items; an error when the collection itself is too deep.
    fn items<E: de::Error>(self) -> Result<Level<YAML>, E> {
        if self.0 > MAX_DEPTH {
            Err(E::custom(format!(
                "nested more than {MAX_DEPTH} levels deep"
            )))
        } else {
            Ok(Level(self.0 + 1))
        }
    }
}

impl<'de, const YAML: bool> DeserializeSeed<'de> for Level<YAML> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, const YAML: bool> Visitor<'de> for Level<YAML> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a number JSON has")))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let items = self.items()?;
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(items)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let items = self.items()?;
        let mut fields = Map::new();
        let mut merged = Vec::new();
        while let Some(key) = map.next_key_seed(items)? {
            let value = map.next_value_seed(items)?;
            let key = match key {
                Value::String(key) if YAML && key == "<<" => {
                    match value {
                        Value::Array(sources) => merged.extend(sources),
                        source => merged.push(source),
                    }
                    continue;
                }
                Value::String(key) => key,
                // Go's YAML reader turns other keys into strings.
                other => other.to_string(),
            };
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {}", quote(&key))));
            }
            fields.insert(key, value);
        }
        for source in merged {
            let Value::Object(source) = source else {
                return Err(de::Error::custom("a merge key (<<) takes mappings"));
            };
            for (key, value) in source {
                fields.entry(key).or_insert(value);
            }
        }
        Ok(Value::Object(fields))
    }
}

/// Refuses YAML nested more than [`MAX_DEPTH`] deep before it is parsed whole. The YAML
/// parser's work per token grows with the depth of open flow collections, so a megabyte
/// of `[` takes minutes; this pass runs the same parser event by event and stops at the
/// first level too deep. Syntax errors are left to the parse proper, which reports them
/// with their position.
fn yaml_depth(text: &str) -> Result<(), String> {
    use std::mem::MaybeUninit;

    // The parser holds pointers into itself, so it lives on the heap and never moves.
    let mut storage: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>> = Box::new_uninit();
    let parser = storage.as_mut_ptr();
    // SAFETY: `parser` points to memory that lives until the end of this function, and is
    // initialised here before any other use; `text` outlives the parser.
    unsafe {
        if unsafe_libyaml::yaml_parser_initialize(parser).fail {
            return Err("cannot start the YAML parser".to_owned());
        }
        unsafe_libyaml::yaml_parser_set_encoding(parser, unsafe_libyaml::YAML_UTF8_ENCODING);
        unsafe_libyaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
    }
    let mut depth = 0usize;
    let result = loop {
        let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser is initialised; an event it produced is read, then deleted
        // exactly once.
        let (kind, mark) = unsafe {
            if unsafe_libyaml::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                break Ok(());
            }
            let event = event.as_mut_ptr();
            let found = ((*event).type_, (*event).start_mark);
            unsafe_libyaml::yaml_event_delete(event);
            found
        };
        match kind {
            unsafe_libyaml::YAML_SEQUENCE_START_EVENT
            | unsafe_libyaml::YAML_MAPPING_START_EVENT => {
                depth += 1;
                if depth > MAX_DEPTH {
                    break Err(format!(
                        "nested more than {MAX_DEPTH} levels deep at line {} column {}",
                        mark.line + 1,
                        mark.column + 1
                    ));
                }
            }
            unsafe_libyaml::YAML_SEQUENCE_END_EVENT | unsafe_libyaml::YAML_MAPPING_END_EVENT => {
                depth = depth.saturating_sub(1);
            }
            unsafe_libyaml::YAML_STREAM_END_EVENT => break Ok(()),
            _ => {}
        }
    };
    // SAFETY: initialised above and not used after this.
    unsafe { unsafe_libyaml::yaml_parser_delete(parser) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_the_first_document_merges_and_refuses_duplicate_keys() {
        let (value, more) = yaml("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!((value, more), (serde_json::json!({"a": 1}), true));
        assert!(!yaml("a: 1\n---\n").unwrap().1);
        assert_eq!(yaml("").unwrap().0, Value::Null);
        let (merged, _) = yaml("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(merged["m"], serde_json::json!({"x": 1, "y": 3}));
        assert!(
            yaml("a: 1\na: 2\n")
                .unwrap_err()
                .contains("duplicate key \"a\"")
        );
        assert!(
            yaml("a: {b: 1, b: 2}\n")
                .unwrap_err()
                .contains("duplicate key \"b\"")
        );
    }

    #[test]
    fn json_is_strict_and_has_no_merge_keys() {
        assert!(
            json(r#"{"a": [{"b": 1, "b": 2}]}"#)
                .unwrap_err()
                .contains("duplicate key")
        );
        assert_eq!(
            json(r#"{"<<": {"x": 1}}"#).unwrap(),
            serde_json::json!({"<<": {"x": 1}})
        );
    }

    #[test]
    fn nesting_is_bounded_in_both() {
        let deepest = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(json(&deepest).is_ok());
        assert!(yaml(&deepest).is_ok());
        let deeper = format!("[{deepest}]");
        assert!(json(&deeper).unwrap_err().contains("levels deep"));
        assert!(yaml(&deeper).unwrap_err().contains("levels deep"));
        let huge = "[".repeat(1_048_000);
        assert!(yaml(&huge).unwrap_err().contains("levels deep"));
    }
}
