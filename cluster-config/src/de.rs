//! Deserializing one piece of a config tree while reporting *every* unknown key and
//! the key path of a type error, for both YAML (via the `config` crate) and JSON.
//!
//! The schema types deliberately do not use `deny_unknown_fields`: that would stop at
//! the first unknown key. Instead `serde_ignored` collects each ignored key, and
//! `serde_path_to_error` names where a type error happened. Callers split a file into
//! sections and list entries themselves (see [`Tree`]) so one bad route does not hide
//! the errors of the next one.
//!
//! Within one entry, serde stops at the first value of the wrong type (`limit: abc`),
//! which would hide every other problem of that entry (`window: bogus`, `scope:
//! nobody`). So [`typed`] reports that value, replaces it with a *stand-in* (it
//! removes an optional key, or puts in a value of another shape: `""`, `0`, `false`,
//! `[]`, `{}`) and deserializes again, until the entry parses. The entry then goes
//! through validation like any other, and the key paths of its stand-ins are
//! returned so validation reports nothing about them (a stand-in `limit: 0` must not
//! also be "must be > 0"). An entry with a stand-in is never applied: its type error
//! already fails the load.

use crate::error::ConfigError;
use serde::de::{DeserializeOwned, Deserializer};
use std::collections::BTreeSet;

/// A parsed-but-untyped config value that can be split into list items and map
/// entries and deserialized into a schema type.
pub(crate) trait Tree: Sized + Clone {
    type Error: ErrorText;

    /// Map entries, sorted by key so error order never depends on hash order.
    /// `Err(self)` when this is not a map.
    fn into_entries(self) -> Result<Vec<(String, Self)>, Self>;
    /// List items; `Err(self)` when this is not a list.
    fn into_items(self) -> Result<Vec<Self>, Self>;
    /// An empty YAML value (`routes:` with nothing after it) or JSON `null`.
    fn is_null(&self) -> bool;
    /// A map (YAML mapping, JSON object).
    fn is_map(&self) -> bool;
    /// The map entry or list item at `step`, if there is one.
    fn child_mut(&mut self, step: &Step) -> Option<&mut Self>;
    /// Sets map entry `key`, or removes it when `value` is `None`; false when this
    /// is not a map.
    fn set_key(&mut self, key: &str, value: Option<Self>) -> bool;
    /// Replaces list item `index`; false when this is not a list that long.
    fn set_item(&mut self, index: usize, value: Self) -> bool;
    /// One value of each shape, tried in this order as stand-ins (see the module docs).
    fn stand_ins() -> Vec<Self>;
}

/// One step of a key path inside a [`Tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
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

    fn is_map(&self) -> bool {
        matches!(self.kind, config::ValueKind::Table(_))
    }

    fn child_mut(&mut self, step: &Step) -> Option<&mut Self> {
        match (&mut self.kind, step) {
            (config::ValueKind::Table(map), Step::Key(key)) => map.get_mut(key),
            (config::ValueKind::Array(items), Step::Index(i)) => items.get_mut(*i),
            _ => None,
        }
    }

    fn set_key(&mut self, key: &str, value: Option<Self>) -> bool {
        let config::ValueKind::Table(map) = &mut self.kind else {
            return false;
        };
        match value {
            Some(value) => {
                map.insert(key.to_owned(), value);
            }
            None => {
                map.remove(key);
            }
        }
        true
    }

    fn set_item(&mut self, index: usize, value: Self) -> bool {
        match &mut self.kind {
            config::ValueKind::Array(items) if index < items.len() => {
                items[index] = value;
                true
            }
            _ => false,
        }
    }

    fn stand_ins() -> Vec<Self> {
        use config::ValueKind as K;
        [
            K::String(String::new()),
            K::I64(0),
            K::Boolean(false),
            K::Array(Vec::new()),
            K::Table(config::Map::new()),
        ]
        .into_iter()
        .map(|kind| config::Value::new(None, kind))
        .collect()
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
            // The key has the path of the struct prepended (`jwt.keys[1]kid`: no dot
            // after an index); only its last part is the field name (our own path
            // already names the struct).
            config::ConfigError::NotFound(key) => {
                let field = key.rsplit(['.', ']']).next().unwrap_or(key);
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

    fn is_map(&self) -> bool {
        self.is_object()
    }

    fn child_mut(&mut self, step: &Step) -> Option<&mut Self> {
        match step {
            Step::Key(key) => self.as_object_mut()?.get_mut(key),
            Step::Index(i) => self.as_array_mut()?.get_mut(*i),
        }
    }

    fn set_key(&mut self, key: &str, value: Option<Self>) -> bool {
        let Some(map) = self.as_object_mut() else {
            return false;
        };
        match value {
            Some(value) => {
                map.insert(key.to_owned(), value);
            }
            None => {
                map.remove(key);
            }
        }
        true
    }

    fn set_item(&mut self, index: usize, value: Self) -> bool {
        match self.as_array_mut().and_then(|items| items.get_mut(index)) {
            Some(item) => {
                *item = value;
                true
            }
            None => false,
        }
    }

    fn stand_ins() -> Vec<Self> {
        use serde_json::Value as J;
        vec![
            J::String(String::new()),
            J::from(0),
            J::Bool(false),
            J::Array(Vec::new()),
            J::Object(serde_json::Map::new()),
        ]
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

/// The steps of `path`; `None` when a step cannot be followed in a tree (an enum
/// variant or an unknown segment).
fn error_steps(path: &serde_path_to_error::Path) -> Option<Vec<Step>> {
    path.iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            _ => None,
        })
        .collect()
}

fn steps_text(steps: &[Step]) -> String {
    steps.iter().fold(String::new(), |out, step| match step {
        Step::Key(key) => join(&out, key),
        Step::Index(i) => format!("{out}[{i}]"),
    })
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
/// key is pushed to `errors` as `unknown key`, and every value of the wrong type
/// (or missing required field) with its key path. Each such value is replaced by a
/// stand-in whose full key path is pushed to `stand_ins` (see the module docs), so
/// the result is `Some` unless the entry as a whole has the wrong shape.
pub(crate) fn typed<T, V>(
    value: V,
    base: &str,
    file: Option<&str>,
    errors: &mut Vec<ConfigError>,
    stand_ins: &mut Vec<String>,
) -> Option<T>
where
    T: DeserializeOwned,
    V: Tree + for<'de> Deserializer<'de, Error = <V as Tree>::Error>,
{
    let mut tree = value;
    let mut unknown = BTreeSet::new();
    let mut type_errors = Vec::new();
    // Every value stood in for so far: serde may complain about a stand-in only
    // after other fields (a removed required key is missing only at the end of its
    // map), so not just the last one.
    let mut stood: Vec<StandIn> = Vec::new();
    let mut result = None;
    for _ in 0..MAX_ATTEMPTS {
        let err = match attempt::<T, V>(tree.clone(), base, &mut unknown) {
            Ok(value) => {
                result = Some(value);
                break;
            }
            Err(err) => err,
        };
        let text = err.inner().text();
        let missing = missing_field(&text).map(str::to_owned);
        let target = error_steps(err.path()).map(|mut steps| {
            steps.extend(missing.clone().map(Step::Key));
            steps
        });
        // A complaint about a stand-in (or inside it) means it did not fit.
        let known = target
            .as_ref()
            .and_then(|t| stood.iter().position(|s| t.starts_with(&s.path)));
        let k = match (known, target) {
            (Some(k), _) => k,
            (None, target) => {
                // A new problem: report it where serde found it.
                let path = join(base, &error_path(err.path()));
                type_errors.push(ConfigError::new(file, path, text));
                match target {
                    Some(path) if !path.is_empty() => {
                        stand_ins.push(join(base, &steps_text(&path)));
                        stood.push(StandIn {
                            path,
                            removable: missing.is_none(),
                            tried: 0,
                        });
                        stood.len() - 1
                    }
                    // The entry itself has the wrong shape, or the path leads
                    // through an enum variant: nothing to stand in for.
                    _ => break,
                }
            }
        };
        if !stood[k].place_next(&mut tree) {
            break;
        }
    }
    errors.extend(
        unknown
            .into_iter()
            .map(|path| ConfigError::new(file, path, "unknown key")),
    );
    // Found in the order serde met them, which for YAML is hash order.
    type_errors.sort_by(|a, b| a.path.cmp(&b.path));
    errors.extend(type_errors);
    result
}

/// Bounds the work on a pathological entry: each attempt fixes one value or tries
/// one stand-in, so real entries need a handful.
const MAX_ATTEMPTS: usize = 64;

/// One deserialization of `value`, adding every ignored key to `unknown`.
fn attempt<T, V>(
    value: V,
    base: &str,
    unknown: &mut BTreeSet<String>,
) -> Result<T, serde_path_to_error::Error<<V as Tree>::Error>>
where
    T: DeserializeOwned,
    V: Tree + for<'de> Deserializer<'de, Error = <V as Tree>::Error>,
{
    let mut record = |path: serde_ignored::Path<'_>| {
        let mut rel = String::new();
        ignored_path(&path, &mut rel);
        unknown.insert(join(base, &rel));
    };
    let tracked = serde_ignored::Deserializer::new(value, &mut record);
    serde_path_to_error::deserialize::<_, T>(tracked)
}

/// A value of the wrong type (or a missing required one) being replaced.
struct StandIn {
    path: Vec<Step>,
    /// The key was written (with the wrong type), so leaving it out is an option.
    removable: bool,
    /// How many of the options have been tried.
    tried: usize,
}

impl StandIn {
    /// Puts the next untried option at `path`: first removal (as if the key had not
    /// been written), then each of [`Tree::stand_ins`]. False when none is left.
    fn place_next<V: Tree>(&mut self, tree: &mut V) -> bool {
        let Some((last, parents)) = self.path.split_last() else {
            return false;
        };
        let mut node = tree;
        for step in parents {
            match node.child_mut(step) {
                Some(child) => node = child,
                None => return false,
            }
        }
        let options: Vec<Option<V>> = self
            .removable
            .then_some(None)
            .into_iter()
            .chain(V::stand_ins().into_iter().map(Some))
            .collect();
        while let Some(option) = options.get(self.tried).cloned() {
            self.tried += 1;
            let placed = match (last, option) {
                (Step::Key(key), value) => node.set_key(key, value),
                (Step::Index(i), Some(value)) => node.set_item(*i, value),
                // A list item is never removed: the items after it would change index.
                (Step::Index(_), None) => false,
            };
            if placed {
                return true;
            }
        }
        false
    }
}

/// The field named by a "missing field" message (ours for `config`, serde's for JSON).
fn missing_field(text: &str) -> Option<&str> {
    text.strip_prefix("missing field `")?.strip_suffix('`')
}

/// A `services`-style section: a map whose entries are deserialized one by one, so
/// each bad entry is reported and the good ones kept.
pub(crate) fn typed_entries<T, V>(
    value: V,
    base: &str,
    file: Option<&str>,
    errors: &mut Vec<ConfigError>,
    stand_ins: &mut Vec<String>,
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
                let typed = typed(v, &path, file, errors, stand_ins);
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
/// that cannot be read at all (not a map) are `None` so indices stay those of the
/// file.
pub(crate) fn typed_items<T, V>(
    value: V,
    base: &str,
    file: Option<&str>,
    errors: &mut Vec<ConfigError>,
    stand_ins: &mut Vec<String>,
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
            .map(|(i, v)| typed(v, &format!("{base}[{i}]"), file, errors, stand_ins))
            .collect(),
        Err(_) => {
            errors.push(ConfigError::new(file, base, "expected a list"));
            Vec::new()
        }
    }
}
