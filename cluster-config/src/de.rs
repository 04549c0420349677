//! Deserializing one piece of a config tree while reporting *every* unknown key and
//! the key path of a type error, for both YAML (via the `config` crate) and JSON.
//!
//! The schema types deliberately do not use `deny_unknown_fields`: that would stop at
//! the first unknown key. Instead `serde_ignored` collects each ignored key, and
//! `serde_path_to_error` names where a type error happened. Callers split a file into
//! sections and list entries themselves (see [`Tree`]) so one bad route does not hide
//! the errors of the next one.

use crate::error::ConfigError;
use serde::de::{DeserializeOwned, Deserializer};

/// A parsed-but-untyped config value that can be split into list items and map
/// entries and deserialized into a schema type.
pub(crate) trait Tree: Sized {
    type Error: ErrorText;

    /// Map entries, sorted by key so error order never depends on hash order.
    /// `Err(self)` when this is not a map.
    fn into_entries(self) -> Result<Vec<(String, Self)>, Self>;
    /// List items; `Err(self)` when this is not a list.
    fn into_items(self) -> Result<Vec<Self>, Self>;
    /// An empty YAML value (`routes:` with nothing after it) or JSON `null`.
    fn is_null(&self) -> bool;
}

/// The message of a deserializer error without the key path or position the
/// deserializer may have appended: we print our own path in front of it.
pub(crate) trait ErrorText {
    fn text(&self) -> String;
}

impl Tree for config::Value {
    type Error = config::ConfigError;

    fn into_entries(self) -> Result<Vec<(String, Self)>, Self> {
        match self.kind {
            config::ValueKind::Table(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(entries)
            }
            _ => Err(self),
        }
    }

    fn into_items(self) -> Result<Vec<Self>, Self> {
        match self.kind {
            config::ValueKind::Array(items) => Ok(items),
            _ => Err(self),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.kind, config::ValueKind::Nil)
    }
}

impl ErrorText for config::ConfigError {
    fn text(&self) -> String {
        match self {
            config::ConfigError::Type {
                unexpected,
                expected,
                ..
            } => format!("invalid type: {unexpected}, expected {expected}"),
            config::ConfigError::At { error, .. } => error.text(),
            // The key has the path of the struct prepended; only its last part is the
            // field name (our own path already names the struct).
            config::ConfigError::NotFound(key) => {
                let field = key.rsplit('.').next().unwrap_or(key);
                format!("missing field `{field}`")
            }
            // `config` rejects an unknown enum variant itself, in its own words;
            // say it the way serde (and the JSON path) does.
            config::ConfigError::Message(msg) => match msg
                .strip_prefix("enum ")
                .and_then(|m| m.split_once(" does not have variant constructor "))
            {
                Some((name, variant)) => {
                    let expected = ENUM_VARIANTS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| format!(", expected {v}"))
                        .unwrap_or_default();
                    format!("unknown variant `{variant}`{expected}")
                }
                None => msg.clone(),
            },
            other => other.to_string(),
        }
    }
}

/// The schema's enums and their variants, for the message above.
const ENUM_VARIANTS: &[(&str, &str)] = &[("LoadBalancing", "`round_robin` or `least_requests`")];

impl Tree for serde_json::Value {
    type Error = serde_json::Error;

    fn into_entries(self) -> Result<Vec<(String, Self)>, Self> {
        match self {
            // serde_json's map is a BTreeMap here: already sorted.
            serde_json::Value::Object(map) => Ok(map.into_iter().collect()),
            other => Err(other),
        }
    }

    fn into_items(self) -> Result<Vec<Self>, Self> {
        match self {
            serde_json::Value::Array(items) => Ok(items),
            other => Err(other),
        }
    }

    fn is_null(&self) -> bool {
        self.is_null()
    }
}

impl ErrorText for serde_json::Error {
    fn text(&self) -> String {
        // Errors from a `Value` carry no position; from text they end in one, which
        // is useful only for syntax errors (reported elsewhere with the full text).
        let full = self.to_string();
        let suffix = format!(" at line {} column {}", self.line(), self.column());
        match full.strip_suffix(&suffix) {
            Some(msg) if self.line() > 0 => msg.to_owned(),
            _ => full,
        }
    }
}

/// `base` + `rel`, where `rel` is `""`, `[3]...` or `key...`.
pub(crate) fn join(base: &str, rel: &str) -> String {
    if base.is_empty() {
        rel.to_owned()
    } else if rel.is_empty() {
        base.to_owned()
    } else if rel.starts_with('[') {
        format!("{base}{rel}")
    } else {
        format!("{base}.{rel}")
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>, out: &mut String) {
    match path {
        serde_ignored::Path::Root => {}
        serde_ignored::Path::Seq { parent, index } => {
            ignored_path(parent, out);
            out.push_str(&format!("[{index}]"));
        }
        serde_ignored::Path::Map { parent, key } => {
            ignored_path(parent, out);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_path(parent, out),
    }
}

fn error_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Deserializes `value` (found at key path `base` of `file`) into `T`. Every unknown
/// key is pushed to `errors` as `unknown key`; a type error is pushed with its path
/// and yields `None`.
pub(crate) fn typed<T, V>(
    value: V,
    base: &str,
    file: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> Option<T>
where
    T: DeserializeOwned,
    V: Tree + for<'de> Deserializer<'de, Error = <V as Tree>::Error>,
{
    let mut unknown = Vec::new();
    let result = {
        let mut record = |path: serde_ignored::Path<'_>| {
            let mut rel = String::new();
            ignored_path(&path, &mut rel);
            unknown.push(join(base, &rel));
        };
        let tracked = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize::<_, T>(tracked)
    };
    unknown.sort();
    unknown.dedup();
    errors.extend(
        unknown
            .into_iter()
            .map(|path| ConfigError::new(file, path, "unknown key")),
    );
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            let path = join(base, &error_path(e.path()));
            errors.push(ConfigError::new(file, path, e.inner().text()));
            None
        }
    }
}

/// A `services`-style section: a map whose entries are deserialized one by one, so
/// each bad entry is reported and the good ones kept.
pub(crate) fn typed_entries<T, V>(
    value: V,
    base: &str,
    file: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, Option<T>)>
where
    T: DeserializeOwned,
    V: Tree + for<'de> Deserializer<'de, Error = <V as Tree>::Error>,
{
    if value.is_null() {
        return Vec::new();
    }
    match value.into_entries() {
        Ok(entries) => entries
            .into_iter()
            .map(|(key, v)| {
                let path = format!("{base}.{key}");
                let typed = typed(v, &path, file, errors);
                (key, typed)
            })
            .collect(),
        Err(_) => {
            errors.push(ConfigError::new(file, base, "expected a map"));
            Vec::new()
        }
    }
}

/// A `routes`-style section: a list whose items are deserialized one by one. Items
/// that fail are `None` so indices stay those of the file.
pub(crate) fn typed_items<T, V>(
    value: V,
    base: &str,
    file: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Option<T>>
where
    T: DeserializeOwned,
    V: Tree + for<'de> Deserializer<'de, Error = <V as Tree>::Error>,
{
    if value.is_null() {
        return Vec::new();
    }
    match value.into_items() {
        Ok(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| typed(v, &format!("{base}[{i}]"), file, errors))
            .collect(),
        Err(_) => {
            errors.push(ConfigError::new(file, base, "expected a list"));
            Vec::new()
        }
    }
}
