//! A positioned YAML tree for the compose converter, built from `saphyr-parser`'s events.
//!
//! Every node keeps the line and column where it starts and every scalar its text exactly as
//! written (after YAML unquoting), so `FOO: 1.10` stays `"1.10"` and every later message can
//! point at the key or value it is about. Aliases are expanded (within a node budget, so a
//! "billion laughs" file is refused), merge keys (`<<: *defaults`, or a list of them) are
//! applied with explicit keys winning, duplicate keys are refused, and tags other than the
//! core schema's are refused. Only the first document of a stream is read.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::BTreeMap;

/// Where a node starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub at: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A scalar's text; `plain` for unquoted scalars (the only ones that can be null).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order; keys are scalars.
    Map(Vec<(Key, Node)>),
}

/// A mapping key: its text and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub text: String,
    pub at: Pos,
}

impl Node {
    /// A plain `~`, `null` (any case the core schema allows) or an empty value.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v)
    }

    /// The name of the node's shape in messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Why the text is not YAML the converter accepts, and where.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct YamlError {
    pub at: Pos,
    pub message: String,
}

/// Most nodes alias expansion may produce in one file.
const ALIAS_BUDGET: usize = 100_000;

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Key, Node)>, Option<Key>),
}

/// Parses the first document of `text` (an empty file is an empty mapping).
pub(crate) fn parse(text: &str) -> Result<Node, YamlError> {
    let mut anchors: BTreeMap<usize, Node> = BTreeMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut budget = ALIAS_BUDGET;
    let mut root: Option<Node> = None;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError {
            at: Pos {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: format!("invalid YAML: {}", e.info()),
        })?;
        let at = pos(&span);
        let done: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => None,
            Event::DocumentEnd | Event::StreamEnd => {
                if root.is_some() || matches!(event, Event::StreamEnd) {
                    break;
                }
                None
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    at,
                    message: "alias to an unknown anchor".into(),
                })?;
                let size = count(&node);
                if size > budget {
                    return Err(YamlError {
                        at,
                        message: "aliases expand to too many nodes".into(),
                    });
                }
                budget -= size;
                Some((node, 0))
            }
            Event::Scalar(text, style, anchor, tag) => {
                check_tag(tag.as_deref(), at)?;
                let plain = style == ScalarStyle::Plain && tag.is_none();
                Some((
                    Node {
                        at,
                        value: Value::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), at)?;
                stack.push(Frame::Seq(at, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), at)?;
                stack.push(Frame::Map(at, anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(at, anchor, items)) => Some((
                    Node {
                        at,
                        value: Value::Seq(items),
                    },
                    anchor,
                )),
                _ => unreachable!("the parser balances sequences"),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(at, anchor, entries, _)) => Some((
                    Node {
                        at,
                        value: Value::Map(merge(entries)?),
                    },
                    anchor,
                )),
                _ => unreachable!("the parser balances mappings"),
            },
        };
        let Some((node, anchor)) = done else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    let Value::Scalar { text, .. } = node.value else {
                        return Err(YamlError {
                            at: node.at,
                            message: "a mapping key must be a scalar".into(),
                        });
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == text) {
                        if text != "<<" {
                            return Err(YamlError {
                                at: node.at,
                                message: format!(
                                    "duplicate key `{text}` (first at line {})",
                                    first.at.line
                                ),
                            });
                        }
                    }
                    *pending = Some(Key { text, at: node.at });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(root.unwrap_or(Node {
        at: Pos { line: 1, column: 1 },
        value: Value::Map(Vec::new()),
    }))
}

fn count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => items.iter().map(count).sum(),
        Value::Map(entries) => entries.iter().map(|(_, v)| count(v)).sum(),
    }
}

fn check_tag(tag: Option<&saphyr_parser::Tag>, at: Pos) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(t) if t.is_yaml_core_schema() => Ok(()),
        Some(t) => Err(YamlError {
            at,
            message: format!(
                "the tag `{}{}` is not supported (merge override files into one first)",
                t.handle, t.suffix
            ),
        }),
    }
}

/// Applies merge keys: the entries of `<<` mappings are added unless the mapping has them
/// already; with a list of mappings, earlier ones win.
fn merge(entries: Vec<(Key, Node)>) -> Result<Vec<(Key, Node)>, YamlError> {
    if !entries.iter().any(|(k, _)| k.text == "<<") {
        return Ok(entries);
    }
    let mut own: Vec<(Key, Node)> = Vec::new();
    let mut sources: Vec<Node> = Vec::new();
    for (key, value) in entries {
        if key.text != "<<" {
            own.push((key, value));
            continue;
        }
        match value.value {
            Value::Map(_) => sources.push(value),
            Value::Seq(items) => {
                for item in items {
                    if item.as_map().is_none() {
                        return Err(YamlError {
                            at: item.at,
                            message: "a merge key (`<<`) takes mappings only".into(),
                        });
                    }
                    sources.push(item);
                }
            }
            _ => {
                return Err(YamlError {
                    at: value.at,
                    message: "a merge key (`<<`) takes a mapping or a list of mappings".into(),
                })
            }
        }
    }
    for source in sources {
        let Value::Map(more) = source.value else {
            continue;
        };
        for (key, value) in more {
            if !own.iter().any(|(k, _)| k.text == key.text) {
                own.push((key, value));
            }
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: &Node) -> &str {
        match &n.value {
            Value::Scalar { text, .. } => text,
            _ => panic!("not a scalar: {n:?}"),
        }
    }

    #[test]
    fn keeps_positions_and_raw_scalars() {
        let root = parse("services:\n  web:\n    image: 'a:1'\n    x: 1.10\n").unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        let image = web.get("image").unwrap();
        assert_eq!(
            image.at,
            Pos {
                line: 3,
                column: 12
            }
        );
        assert_eq!(text(image), "a:1");
        assert_eq!(text(web.get("x").unwrap()), "1.10");
        let keys = web.as_map().unwrap();
        assert_eq!(keys[1].0.at, Pos { line: 4, column: 5 });
    }

    #[test]
    fn merges_anchors_with_explicit_keys_winning() {
        let root = parse(
            "x-base: &base\n  image: a\n  restart: always\nservices:\n  s:\n    <<: *base\n    restart: \"no\"\n",
        )
        .unwrap();
        let s = root.get("services").unwrap().get("s").unwrap();
        assert_eq!(text(s.get("image").unwrap()), "a");
        assert_eq!(text(s.get("restart").unwrap()), "no");
        assert!(s.get("<<").is_none());
    }

    #[test]
    fn refuses_duplicates_bombs_tags_and_bad_syntax() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.at, Pos { line: 3, column: 1 });
        assert!(e.message.contains("duplicate key `a`"), "{}", e.message);

        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (name, prev) in ["b", "c", "d", "e", "f", "g"]
            .into_iter()
            .zip(["a", "b", "c", "d", "e", "f"])
        {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        assert!(parse(&bomb).unwrap_err().message.contains("too many nodes"));

        let e = parse("services: !reset {}\n").unwrap_err();
        assert!(e.message.contains("`!reset`"), "{}", e.message);
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
    }

    #[test]
    fn nulls_and_empty_files() {
        let root = parse("a:\nb: ~\nc: 'null'\n").unwrap();
        assert!(root.get("a").unwrap().is_null());
        assert!(root.get("b").unwrap().is_null());
        assert!(!root.get("c").unwrap().is_null());
        assert_eq!(parse("").unwrap().as_map().unwrap().len(), 0);
    }
}
