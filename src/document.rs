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

/// The most nodes that aliases may add to a YAML document by expanding: far more than any
/// configuration needs, and few enough that expanding them is bounded in time and memory.
pub const MAX_ALIAS_EXPANSION: u64 = 100_000;

/// The JSON document `text`, and nothing after it but white space, as Go's decoder reads
/// it. A leading byte-order mark is skipped.
pub fn json(text: &str) -> Result<Value, String> {
    let invalid = |e: serde_json::Error| format!("invalid JSON: {e}");
    let mut document = serde_json::Deserializer::from_str(without_bom(text));
    let value = Level::<false>(1)
        .deserialize(&mut document)
        .map_err(invalid)?;
    document.end().map_err(invalid)?;
    Ok(value)
}

/// `text` without a leading UTF-8 byte-order mark, which Go's YAML reader skips.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The first YAML document of `text` (`null` when there is none), and whether another
/// document that is not empty follows it.
pub fn yaml(text: &str) -> Result<(Value, bool), String> {
    let invalid = |e: String| format!("invalid YAML: {e}");
    let text = without_bom(text);
    yaml_bounds(text).map_err(invalid)?;
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

/// Every YAML document of the stream `text` that is not empty, in order, each read as
/// [`yaml`] reads one.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    let invalid = |e: String| format!("invalid YAML: {e}");
    let text = without_bom(text);
    yaml_bounds(text).map_err(invalid)?;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| {
            Level::<true>(1)
                .deserialize(document)
                .map_err(|e| invalid(e.to_string()))
        })
        .filter(|document| !matches!(document, Ok(Value::Null)))
        .collect()
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

/// Refuses YAML nested more than [`MAX_DEPTH`] deep, or whose aliases expand too much,
/// before it is parsed whole. The YAML parser's work per token grows with the depth of open
/// flow collections, so a megabyte of `[` takes minutes; and each alias is expanded into a
/// copy of its anchor's node, so a few kilobytes of aliases to a large anchor make
/// gigabytes. This pass runs the same parser event by event, counts the nodes each anchor
/// expands to, and stops at the first level too deep or the first alias that makes the
/// document excessively aliased as Go's YAML reader judges it ([`Aliasing`]). A syntax
/// error is reported here, always with its line and column ([`syntax_error`]).
fn yaml_bounds(text: &str) -> Result<(), String> {
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
    let mut aliasing = Aliasing::default();
    let result = loop {
        let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser is initialised; an event it produced is read, then deleted
        // exactly once.
        let (kind, mark, anchor) = unsafe {
            if unsafe_libyaml::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                break Err(syntax_error(&*parser));
            }
            let event = event.as_mut_ptr();
            let data = &(*event).data;
            let anchor = match (*event).type_ {
                unsafe_libyaml::YAML_ALIAS_EVENT => data.alias.anchor,
                unsafe_libyaml::YAML_SCALAR_EVENT => data.scalar.anchor,
                unsafe_libyaml::YAML_SEQUENCE_START_EVENT => data.sequence_start.anchor,
                unsafe_libyaml::YAML_MAPPING_START_EVENT => data.mapping_start.anchor,
                _ => std::ptr::null_mut(),
            };
            let anchor = (!anchor.is_null())
                .then(|| std::ffi::CStr::from_ptr(anchor.cast()).to_bytes().to_vec());
            let found = ((*event).type_, (*event).start_mark, anchor);
            unsafe_libyaml::yaml_event_delete(event);
            found
        };
        let at = || position(&mark);
        match kind {
            unsafe_libyaml::YAML_SEQUENCE_START_EVENT
            | unsafe_libyaml::YAML_MAPPING_START_EVENT => {
                depth += 1;
                if depth > MAX_DEPTH {
                    break Err(format!("nested more than {MAX_DEPTH} levels deep {}", at()));
                }
                aliasing.open(anchor);
            }
            unsafe_libyaml::YAML_SEQUENCE_END_EVENT | unsafe_libyaml::YAML_MAPPING_END_EVENT => {
                depth = depth.saturating_sub(1);
                aliasing.close();
            }
            unsafe_libyaml::YAML_SCALAR_EVENT => aliasing.scalar(anchor),
            unsafe_libyaml::YAML_ALIAS_EVENT => {
                if let Err(problem) = aliasing.alias(anchor.as_deref().unwrap_or_default()) {
                    break Err(format!("{problem} {}", at()));
                }
            }
            unsafe_libyaml::YAML_DOCUMENT_START_EVENT => aliasing = Aliasing::default(),
            unsafe_libyaml::YAML_STREAM_END_EVENT => break Ok(()),
            _ => {}
        }
    };
    // SAFETY: initialised above and not used after this.
    unsafe { unsafe_libyaml::yaml_parser_delete(parser) };
    result
}

/// The syntax error `parser` stopped at: the problem at its line and column, then what the
/// parser was reading and where that began, as `found character that cannot start any
/// token at line 1 column 1, while scanning for the next token`.
fn syntax_error(parser: &unsafe_libyaml::yaml_parser_t) -> String {
    let text = |c: *const std::ffi::c_char| {
        // SAFETY: libyaml's messages are static NUL-terminated strings, or null.
        (!c.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(c) }.to_string_lossy())
    };
    let problem_at = position(&parser.problem_mark);
    let mut message = format!(
        "{} {problem_at}",
        text(parser.problem).as_deref().unwrap_or("syntax error")
    );
    if let Some(context) = text(parser.context) {
        let context_at = position(&parser.context_mark);
        message.push_str(&format!(", {context}"));
        if context_at != problem_at {
            message.push_str(&format!(" {context_at}"));
        }
    }
    message
}

/// Where `mark` is, as messages say it: `at line 3 column 5`, both from 1.
fn position(mark: &unsafe_libyaml::yaml_mark_t) -> String {
    format!("at line {} column {}", mark.line + 1, mark.column + 1)
}

/// How many nodes a YAML document decodes to once its aliases are expanded, counted as
/// Go's YAML reader (gopkg.in/yaml.v2 and v3, which the kubelet's reader uses) counts them:
/// every node decoded, and every node decoded inside an alias's expansion. Go refuses a
/// document as "excessively aliased" when more than 100 of over 1,000 decoded nodes come
/// from aliases and their share passes a ratio that falls from 0.99 at 400,000 nodes to
/// 0.10 at 4,000,000. On top of that rule, aliases may add at most
/// [`MAX_ALIAS_EXPANSION`] nodes in all.
#[derive(Default)]
struct Aliasing {
    /// The nodes each anchor expands to, aliases inside it expanded.
    anchors: std::collections::HashMap<Vec<u8>, u64>,
    /// The collections still open: their anchor and the nodes they hold so far.
    open: Vec<(Option<Vec<u8>>, u64)>,
    /// Nodes decoded in all.
    decoded: u64,
    /// Nodes decoded inside alias expansions.
    aliased: u64,
}

impl Aliasing {
    fn open(&mut self, anchor: Option<Vec<u8>>) {
        self.decoded = self.decoded.saturating_add(1);
        self.open.push((anchor, 1));
    }

    fn close(&mut self) {
        if let Some((anchor, nodes)) = self.open.pop() {
            self.add(anchor, nodes);
        }
    }

    fn scalar(&mut self, anchor: Option<Vec<u8>>) {
        self.decoded = self.decoded.saturating_add(1);
        self.add(anchor, 1);
    }

    /// A node of `nodes` nodes is complete: count it in its parent and its anchor.
    fn add(&mut self, anchor: Option<Vec<u8>>, nodes: u64) {
        if let Some((_, parent)) = self.open.last_mut() {
            *parent = parent.saturating_add(nodes);
        }
        if let Some(anchor) = anchor {
            self.anchors.insert(anchor, nodes);
        }
    }

    /// An alias of `anchor`: it decodes to itself and a copy of the anchored node. An
    /// unknown anchor is left to the parse proper to report.
    fn alias(&mut self, anchor: &[u8]) -> Result<(), String> {
        let expansion = self.anchors.get(anchor).copied().unwrap_or_default();
        self.decoded = self.decoded.saturating_add(1).saturating_add(expansion);
        self.aliased = self.aliased.saturating_add(expansion);
        if let Some((_, parent)) = self.open.last_mut() {
            *parent = parent.saturating_add(1).saturating_add(expansion);
        }
        if self.aliased > 100
            && self.decoded > 1000
            && self.aliased as f64 / self.decoded as f64 > allowed_alias_ratio(self.decoded)
        {
            return Err("the document contains excessive aliasing".to_owned());
        }
        if self.aliased > MAX_ALIAS_EXPANSION {
            return Err(format!(
                "aliases expand to more than {MAX_ALIAS_EXPANSION} nodes"
            ));
        }
        Ok(())
    }
}

/// Go's YAML reader's `allowedAliasRatio`.
fn allowed_alias_ratio(decoded: u64) -> f64 {
    const LOW: u64 = 400_000;
    const HIGH: u64 = 4_000_000;
    match decoded {
        ..=LOW => 0.99,
        HIGH.. => 0.10,
        _ => 0.99 - 0.89 * ((decoded - LOW) as f64 / (HIGH - LOW) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_yaml_stream_is_split_at_its_markers_only() {
        let values = |text: &str| yaml_documents(text).unwrap();
        assert_eq!(
            values("a: 1\n---\nb: 2\n"),
            [json!({"a": 1}), json!({"b": 2})]
        );
        assert_eq!(values("---\na: 1\n...\n---\n---\n"), [json!({"a": 1})]);
        assert_eq!(values("a: |\n  ---\n  x\n"), [json!({"a": "---\nx\n"})]);
        assert_eq!(values("a: ---x\n"), [json!({"a": "---x"})]);
        assert!(values("").is_empty());
        let error = yaml_documents("a: 1\n---\nb: 2\nb: 3\n").unwrap_err();
        assert!(
            error.starts_with("invalid YAML:") && error.contains("line 3"),
            "{error}"
        );
    }

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

    #[test]
    fn json_refuses_content_after_the_document() {
        for text in [r#"{"a": 1} x"#, r#"{"a": 1}{"b": 2}"#, "{}\n]", "[1] 2"] {
            let error = json(text).unwrap_err();
            assert!(error.contains("trailing characters"), "{text}: {error}");
        }
        assert_eq!(
            json("{\"a\": 1} \n\t").unwrap(),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_as_go_skips_it() {
        let (value, _) = yaml("\u{feff}kind: K\nname: n\n").unwrap();
        assert_eq!(value, serde_json::json!({"kind": "K", "name": "n"}));
        assert_eq!(
            json("\u{feff}{\"kind\": \"K\"}").unwrap(),
            serde_json::json!({"kind": "K"})
        );
    }

    /// `levels` levels of nine aliases each to the level below, the first of nine scalars.
    fn laughs(levels: usize) -> String {
        let mut text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_owned();
        for level in 1..=levels {
            let previous = format!("*l{}", level - 1);
            text += &format!(
                "l{level}: &l{level} [{}]\n",
                [previous.as_str(); 9].join(", ")
            );
        }
        text
    }

    /// Every syntax error says where, a tab at the very start too (where the YAML
    /// library's own message has no position).
    #[test]
    fn syntax_errors_have_a_line_and_a_column() {
        for (text, expected) in [
            (
                "\trules: []\n",
                "invalid YAML: found character that cannot start any token at line 1 column 1, while scanning for the next token",
            ),
            (
                "rules:\n  - provider: ecr\n    matchImages:\n\t- a\n",
                "invalid YAML: found character that cannot start any token at line 4 column 1, while scanning for the next token",
            ),
            (
                "rules:\n  - provider: [ecr\n",
                "invalid YAML: did not find expected ',' or ']' at line 3 column 1, while parsing a flow sequence at line 2 column 15",
            ),
            (
                "rules:\n  - provider: \"ecr\n",
                "invalid YAML: found unexpected end of stream at line 3 column 1, while scanning a quoted scalar at line 2 column 15",
            ),
        ] {
            assert_eq!(yaml(text).unwrap_err(), expected, "{text:?}");
        }
    }

    #[test]
    fn excessive_aliasing_is_refused_at_once() {
        // Go's rule: 99.5% of the 9,225 nodes decoded come from aliases.
        let error = yaml(&laughs(3)).unwrap_err();
        assert!(error.contains("excessive aliasing at line 4"), "{error}");
        // One large anchor and thousands of aliases: a 30 KB document that would expand
        // to five million nodes; and nested aliases that would expand to billions.
        let anchor = format!("a: &a [{}]\n", vec!["x"; 1000].join(", "));
        let aliases = format!("b: [{}]\n", vec!["*a"; 5000].join(", "));
        for text in [anchor.clone() + &aliases, laughs(11)] {
            let started = std::time::Instant::now();
            let error = yaml(&text).unwrap_err();
            assert!(
                error.contains("aliasing")
                    || error.contains("aliases expand to more than 100000 nodes"),
                "{error}"
            );
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
        // A little aliasing, as configurations use it, is fine.
        let (value, _) = yaml(&(anchor + "b: [*a, *a]\nc: *a\n")).unwrap();
        assert_eq!(value["c"].as_array().unwrap().len(), 1000);
        assert!(yaml(&laughs(2)).is_ok());
    }

    #[test]
    fn the_alias_ratio_follows_go() {
        assert_eq!(allowed_alias_ratio(1000), 0.99);
        assert_eq!(allowed_alias_ratio(400_000), 0.99);
        assert!((allowed_alias_ratio(2_200_000) - 0.545).abs() < 1e-9);
        assert_eq!(allowed_alias_ratio(4_000_000), 0.10);
        assert_eq!(allowed_alias_ratio(u64::MAX), 0.10);
    }
}
