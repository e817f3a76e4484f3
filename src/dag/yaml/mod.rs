//! A YAML reader that keeps positions. Airflow reads DAG files with PyYAML (YAML 1.1), so
//! plain scalars resolve the way PyYAML resolves them (`yes` is a bool, `2024-01-01` a date,
//! `017` octal), not the YAML 1.2 way most Rust crates use; a file must mean the same thing on
//! both sides. We build on `yaml-rust2`'s event parser because serde-based readers lose line
//! and column, and every error we report has to point somewhere.
//!
//! What this adds on top of the events: anchors and aliases are expanded (within a budget of
//! values *and* of bytes, so neither an alias bomb of small values nor a few aliases of one
//! long string can eat the scheduler's memory), `<<` merge keys work as in PyYAML,
//! and duplicate mapping keys anywhere are errors (PyYAML silently keeps the last one, Airflow's
//! loader rejects them).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

mod resolve;
pub use resolve::resolve_plain;

/// A YAML value with the position (1-based line and column) where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub line: u32,
    pub column: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// An unquoted `YYYY-MM-DD`, kept as written.
    Date(String),
    /// An unquoted timestamp (`2024-01-01T10:00:00Z`, `2024-01-01 10:00:00`), kept as written.
    DateTime(String),
    Seq(Vec<Node>),
    /// Entries in file order (merge keys expanded first).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Null)
    }

    /// What the value is, for messages: "a string", "a mapping", ...
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Date(_) => "a date",
            NodeKind::DateTime(_) => "a timestamp",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The scalar as text (for keys and messages); `None` for lists and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        Some(match &self.kind {
            NodeKind::Null => "null".into(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Float(f) => f.to_string(),
            NodeKind::Str(s) | NodeKind::Date(s) | NodeKind::DateTime(s) => s.clone(),
            NodeKind::Seq(_) | NodeKind::Map(_) => return None,
        })
    }

    /// The value as JSON, positions dropped; dates and timestamps become strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeKind::Str(s) | NodeKind::Date(s) | NodeKind::DateTime(s) => {
                Value::String(s.clone())
            }
            NodeKind::Seq(items) => items.iter().map(Node::to_json).collect(),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A problem in the YAML itself, in document `doc` (0-based).
#[derive(Clone, Debug, PartialEq)]
pub struct YamlError {
    pub doc: usize,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// The documents of a file, as `(index, root)`; empty documents are left out but still
/// counted, so indexes match what `yaml.safe_load_all` would enumerate.
#[derive(Debug, Default)]
pub struct Documents {
    pub docs: Vec<(usize, Node)>,
    pub errors: Vec<YamlError>,
}

/// Expanding aliases can multiply a small file into a huge tree; beyond this many nodes we stop.
/// A DAG file with a thousand tasks of twenty values each is 20,000.
pub const NODE_BUDGET: usize = 250_000;
/// ...and beyond this many bytes of expanded tree: each node's own size plus its text. The node
/// count alone is not enough: one 100 KB string aliased 10,000 times is only 10,000 nodes, but
/// a gigabyte of text.
pub const BYTE_BUDGET: usize = 32 << 20;
/// What one node costs in the byte budget besides its text.
const NODE_BYTES: usize = std::mem::size_of::<Node>();
/// Deeper than this is not a DAG file, and recursion must stay well within the stack.
const MAX_DEPTH: usize = 200;

struct Collector(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

/// Reads every document of `source`. A syntax error stops reading (the parser cannot
/// recover); duplicate keys and other problems are collected.
pub fn parse(source: &str) -> Documents {
    let mut collector = Collector(Vec::new());
    // A byte-order mark is not content (PyYAML drops it too); left in, it would glue onto
    // the first key.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut parser = Parser::new_from_str(source);
    let result = parser.load(&mut collector, true);
    let mut builder = Builder {
        events: collector.0.into_iter(),
        anchors: HashMap::new(),
        out: Documents::default(),
        doc: 0,
        budget: Weight {
            nodes: NODE_BUDGET,
            bytes: BYTE_BUDGET,
        },
    };
    let ended = builder.documents();
    let mut out = builder.out;
    if let Err(e) = result {
        let m = e.marker();
        out.errors.push(YamlError {
            doc: builder.doc,
            line: m.line() as u32,
            column: m.col() as u32 + 1,
            message: format!("YAML syntax error: {}", e.info()),
        });
    } else if let Err(e) = ended {
        out.errors.push(e);
    }
    out
}

/// How much of the expansion budget a tree uses (or how much is left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

struct Builder {
    events: std::vec::IntoIter<(Event, Marker)>,
    /// Anchored trees with their weight, so each alias costs a lookup, not a walk.
    anchors: HashMap<usize, (Node, Weight)>,
    out: Documents,
    doc: usize,
    /// What the document may still expand to.
    budget: Weight,
}

impl Builder {
    fn documents(&mut self) -> Result<(), YamlError> {
        let mut seen_first = false;
        while let Some((ev, mark)) = self.events.next() {
            match ev {
                Event::DocumentStart => {
                    if seen_first {
                        self.doc += 1;
                    }
                    seen_first = true;
                    self.anchors.clear();
                    let Some((ev, mark)) = self.events.next() else {
                        return Ok(());
                    };
                    if matches!(ev, Event::DocumentEnd) {
                        continue;
                    }
                    let root = self.node(ev, mark, 0)?;
                    if !root.is_null() {
                        self.out.docs.push((self.doc, root));
                    }
                }
                Event::StreamStart | Event::DocumentEnd | Event::StreamEnd | Event::Nothing => {}
                other => return Err(self.err(mark, format!("unexpected YAML event {other:?}"))),
            }
        }
        Ok(())
    }

    fn err(&self, mark: Marker, message: String) -> YamlError {
        YamlError {
            doc: self.doc,
            line: mark.line() as u32,
            column: mark.col() as u32 + 1,
            message,
        }
    }

    fn next(&mut self, mark: Marker) -> Result<(Event, Marker), YamlError> {
        self.events
            .next()
            .ok_or_else(|| self.err(mark, "unexpected end of the file".into()))
    }

    fn spend(&mut self, w: Weight, mark: Marker) -> Result<(), YamlError> {
        let Some(nodes) = self.budget.nodes.checked_sub(w.nodes) else {
            return Err(self.err(
                mark,
                format!("the document expands to too many values (more than {NODE_BUDGET}; aliases repeated too often?)"),
            ));
        };
        let Some(bytes) = self.budget.bytes.checked_sub(w.bytes) else {
            return Err(self.err(
                mark,
                format!(
                    "the document expands to more than {} MiB (aliases of long values repeated too often?)",
                    BYTE_BUDGET >> 20
                ),
            ));
        };
        self.budget = Weight { nodes, bytes };
        Ok(())
    }

    fn node(&mut self, ev: Event, mark: Marker, depth: usize) -> Result<Node, YamlError> {
        if depth > MAX_DEPTH {
            return Err(self.err(
                mark,
                format!("values are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        // Everything this node spends, its aliases' expansions included, is its weight.
        let before = self.budget;
        self.spend(
            Weight {
                nodes: 1,
                bytes: NODE_BYTES,
            },
            mark,
        )?;
        let at = |kind| Node {
            kind,
            line: mark.line() as u32,
            column: mark.col() as u32 + 1,
        };
        let (node, anchor) = match ev {
            Event::Scalar(value, style, anchor, tag) => {
                self.spend(
                    Weight {
                        nodes: 0,
                        bytes: value.len(),
                    },
                    mark,
                )?;
                (at(self.scalar(value, style, tag, mark)?), anchor)
            }
            Event::Alias(id) => {
                let Some(weight) = self.anchors.get(&id).map(|(_, w)| *w) else {
                    return Err(self.err(mark, "alias to an unknown anchor".into()));
                };
                // Spent before cloning: a refused alias allocates nothing.
                self.spend(weight, mark)?;
                let node = self.anchors.get(&id).map(|(n, _)| n.clone());
                return node.ok_or_else(|| self.err(mark, "alias to an unknown anchor".into()));
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag, "seq", mark)?;
                let mut items = Vec::new();
                loop {
                    let (ev, m) = self.next(mark)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, m, depth + 1)?);
                }
                (at(NodeKind::Seq(items)), anchor)
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag, "map", mark)?;
                let (entries, first_key) = self.mapping(mark, depth)?;
                // A block mapping's start event sits after its first key; the key is where
                // readers look.
                let mut node = at(NodeKind::Map(entries));
                if let Some((line, column)) = first_key {
                    (node.line, node.column) = (line, column);
                }
                (node, anchor)
            }
            other => return Err(self.err(mark, format!("unexpected YAML event {other:?}"))),
        };
        if anchor > 0 {
            let weight = Weight {
                nodes: before.nodes - self.budget.nodes,
                bytes: before.bytes - self.budget.bytes,
            };
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        Ok(node)
    }

    /// The entries, and where the first key was written.
    #[allow(clippy::type_complexity)]
    fn mapping(
        &mut self,
        mark: Marker,
        depth: usize,
    ) -> Result<(Vec<(Node, Node)>, Option<(u32, u32)>), YamlError> {
        let mut first_key = None;
        let mut explicit: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        loop {
            let (ev, km) = self.next(mark)?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&ev, Event::Scalar(v, TScalarStyle::Plain, _, None) if v == "<<");
            let key = self.node(ev, km, depth + 1)?;
            first_key.get_or_insert((km.line() as u32, km.col() as u32 + 1));
            let (ev, vm) = self.next(mark)?;
            let value = self.node(ev, vm, depth + 1)?;
            if is_merge {
                // PyYAML: with a list, earlier mappings win over later ones; explicit keys win
                // over all merged ones.
                let sources = match value.kind {
                    NodeKind::Map(entries) => vec![entries],
                    NodeKind::Seq(items) => {
                        let mut maps = Vec::new();
                        for item in items {
                            match item.kind {
                                NodeKind::Map(entries) => maps.push(entries),
                                _ => {
                                    return Err(self.err(
                                        vm,
                                        "a `<<` merge list may hold only mappings".into(),
                                    ))
                                }
                            }
                        }
                        maps
                    }
                    _ => {
                        return Err(self.err(
                            vm,
                            "a `<<` merge key needs a mapping or a list of mappings".into(),
                        ))
                    }
                };
                for entries in sources {
                    for (k, v) in entries {
                        if !merged.iter().any(|(m, _)| same_key(m, &k)) {
                            merged.push((k, v));
                        }
                    }
                }
                continue;
            }
            if matches!(key.kind, NodeKind::Seq(_) | NodeKind::Map(_)) {
                self.out.errors.push(YamlError {
                    doc: self.doc,
                    line: key.line,
                    column: key.column,
                    message: "a mapping key must be a plain value, not a list or mapping".into(),
                });
            } else if let Some((first, _)) = explicit.iter().find(|(k, _)| same_key(k, &key)) {
                self.out.errors.push(YamlError {
                    doc: self.doc,
                    line: key.line,
                    column: key.column,
                    message: format!(
                        "duplicate key `{}` (first defined on line {}); remove one of them",
                        key.scalar_text().unwrap_or_default(),
                        first.line
                    ),
                });
                continue;
            }
            explicit.push((key, value));
        }
        merged.retain(|(m, _)| !explicit.iter().any(|(k, _)| same_key(k, m)));
        merged.extend(explicit);
        Ok((merged, first_key))
    }

    fn check_collection_tag(
        &self,
        tag: Option<Tag>,
        expected: &str,
        mark: Marker,
    ) -> Result<(), YamlError> {
        match tag {
            None => Ok(()),
            Some(t) if core_tag(&t) == Some(expected) => Ok(()),
            Some(t) => Err(self.err(
                mark,
                format!("unsupported YAML tag `{}{}`", t.handle, t.suffix),
            )),
        }
    }

    fn scalar(
        &self,
        value: String,
        style: TScalarStyle,
        tag: Option<Tag>,
        mark: Marker,
    ) -> Result<NodeKind, YamlError> {
        let Some(tag) = tag else {
            return Ok(if matches!(style, TScalarStyle::Plain) {
                resolve_plain(value)
            } else {
                NodeKind::Str(value)
            });
        };
        let wrong = |what: &str| self.err(mark, format!("`{value}` is not {what}"));
        let kind = match core_tag(&tag) {
            Some("str") => NodeKind::Str(value),
            Some(name @ ("int" | "float" | "bool" | "null" | "timestamp")) => {
                let resolved = resolve_plain(value.clone());
                match (name, resolved) {
                    ("int", k @ NodeKind::Int(_))
                    | ("bool", k @ NodeKind::Bool(_))
                    | ("null", k @ NodeKind::Null) => k,
                    ("float", NodeKind::Int(i)) => NodeKind::Float(i as f64),
                    ("float", k @ NodeKind::Float(_)) => k,
                    ("timestamp", k @ (NodeKind::Date(_) | NodeKind::DateTime(_))) => k,
                    _ => return Err(wrong(&format!("a valid !!{name}"))),
                }
            }
            _ => {
                return Err(self.err(
                    mark,
                    format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
                ))
            }
        };
        Ok(kind)
    }
}

/// `!!str` and friends, however the parser spelled the handle.
fn core_tag(tag: &Tag) -> Option<&str> {
    match tag.handle.as_str() {
        "!!" | "tag:yaml.org,2002:" => Some(tag.suffix.as_str()),
        _ => tag.suffix.strip_prefix("tag:yaml.org,2002:"),
    }
}

/// Keys are equal when their resolved values are (`yes` and `true` are the same key).
fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::Int(x), NodeKind::Float(y)) | (NodeKind::Float(y), NodeKind::Int(x)) => {
            (*x as f64) == *y
        }
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests;
