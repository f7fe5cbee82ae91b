//! `--filter EXPR`: the expression language (lexer, parser, evaluator) and what it shares with
//! `--where` and `stats --by`: field paths, the one-pass extraction of a line's fields as raw
//! JSON text, and exact comparison of numbers of any size. It owns no I/O and knows nothing of
//! files or subcommands.
//!
//! ```text
//! expr       := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" expr ")" | comparison
//! comparison := FIELD OP VALUE
//! OP         := = | == | != | < | <= | > | >= | ~ | !~
//! VALUE      := "text" | 'text' | NUMBER | true | false | null
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The keys a line has at its root; any other first part of a field names a context field.
pub(crate) const TOP_LEVEL: [&str; 6] = ["timestamp", "level", "module", "event", "context", "exception"];

/// Parentheses and `not`s nested deeper than this are refused: evaluation recurses, and a
/// hostile expression must get an error, not a stack overflow.
const MAX_DEPTH: usize = 100;

/// The path of a field from the line's root, as `--where`, `--filter` and `--by` write it:
/// `protocol` is `context.protocol`, a top-level key stays one, `span.0.block` goes through
/// arrays by index. `None` when a part is empty.
pub(crate) fn field_path(key: &str) -> Option<Vec<String>> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return None;
    }
    let mut path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if !TOP_LEVEL.contains(&path[0].as_str()) {
        path.insert(0, "context".to_owned());
    }
    Some(path)
}

// ---------------------------------------------------------------------------------------------
// Extraction: the raw JSON text of every wanted field, in one pass over the line.

/// A set of field paths, each given a slot; [`extract`](Self::extract) fills the slots from a
/// line in one pass, borrowing the line's own text (numbers keep every digit), and checks on the
/// way that the whole line is JSON.
#[derive(Debug, Default, Clone)]
pub(crate) struct FieldSet {
    root: Vec<PathNode>,
    slots: usize,
}

#[derive(Debug, Clone)]
struct PathNode {
    key: String,
    /// The array index `key` names, when it is one (`0`, `12`).
    index: Option<usize>,
    slot: Option<usize>,
    children: Vec<PathNode>,
}

impl FieldSet {
    /// The slot of `path` (the same for the same path); `path` is not empty.
    pub(crate) fn slot(&mut self, path: &[String]) -> usize {
        let mut nodes = &mut self.root;
        let mut slot = None;
        for (depth, part) in path.iter().enumerate() {
            let at = match nodes.iter().position(|node| node.key == *part) {
                Some(at) => at,
                None => {
                    let index = part.parse::<usize>().ok().filter(|_| part.bytes().all(|b| b.is_ascii_digit()));
                    nodes.push(PathNode { key: part.clone(), index, slot: None, children: Vec::new() });
                    nodes.len() - 1
                }
            };
            if depth + 1 == path.len() {
                let node = &mut nodes[at];
                slot = Some(*node.slot.get_or_insert_with(|| {
                    self.slots += 1;
                    self.slots - 1
                }));
                break;
            }
            nodes = &mut nodes[at].children;
        }
        slot.expect("a field path has at least one part (field_path refuses an empty key)")
    }

    /// Fills `out` (one entry per slot) with the raw JSON text of each field `line` has; an
    /// error when `line` is not JSON.
    pub(crate) fn extract<'a>(&self, line: &'a str, out: &mut Vec<Option<&'a str>>) -> Result<(), serde_json::Error> {
        out.clear();
        out.resize(self.slots, None);
        let mut deserializer = serde_json::Deserializer::from_str(line);
        Walk { nodes: &self.root, out }.deserialize(&mut deserializer)?;
        deserializer.end()
    }
}

/// Walks one JSON value, keeping the raw text of the wanted members and skipping the rest.
struct Walk<'n, 'o, 'a> {
    nodes: &'n [PathNode],
    out: &'o mut [Option<&'a str>],
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// What a wanted member gives: its raw text when it has a slot, and its own wanted members.
fn take_member<'de, E: serde::de::Error>(
    node: &PathNode,
    raw: Option<&'de RawValue>,
    out: &mut [Option<&'de str>],
) -> Result<(), E> {
    if let Some(raw) = raw {
        if let Some(slot) = node.slot {
            out[slot] = Some(raw.get());
        }
        if !node.children.is_empty() {
            // Both the member and members of it are wanted (`context` and `context.protocol`):
            // its text, already checked, is walked again.
            let mut deserializer = serde_json::Deserializer::from_str(raw.get());
            Walk { nodes: &node.children, out }.deserialize(&mut deserializer).map_err(E::custom)?;
        }
    }
    Ok(())
}

impl<'de> Visitor<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk { nodes, out } = self;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match nodes.iter().find(|node| node.key == *key.0) {
                Some(node) if node.slot.is_some() => take_member(node, Some(map.next_value::<&RawValue>()?), out)?,
                Some(node) => map.next_value_seed(Walk { nodes: &node.children, out: &mut *out })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Walk { nodes, out } = self;
        let mut index = 0;
        loop {
            let more = match nodes.iter().find(|node| node.index == Some(index)) {
                Some(node) if node.slot.is_some() => match seq.next_element::<&RawValue>()? {
                    Some(raw) => take_member(node, Some(raw), out).map(|()| true)?,
                    None => false,
                },
                Some(node) => seq.next_element_seed(Walk { nodes: &node.children, out: &mut *out })?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object's key, borrowed from the line unless it holds an escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Values: a field's raw text, classified, and exact comparison of numbers.

/// A field as its raw JSON text says it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// A number, as written (every digit).
    Number(&'a str),
    /// A string's text, unescaped.
    String(Cow<'a, str>),
    /// An object or array, as written.
    Composite(&'a str),
}

impl<'a> Json<'a> {
    /// `raw`, valid JSON text (as [`FieldSet::extract`] gives it).
    pub(crate) fn of(raw: &'a str) -> Json<'a> {
        match raw.as_bytes().first() {
            Some(b'"') if !raw.contains('\\') => Json::String(Cow::Borrowed(&raw[1..raw.len() - 1])),
            Some(b'"') => Json::String(Cow::Owned(serde_json::from_str(raw).unwrap_or_default())),
            Some(b't') => Json::Bool(true),
            Some(b'f') => Json::Bool(false),
            Some(b'n') => Json::Null,
            Some(b'{' | b'[') => Json::Composite(raw),
            _ => Json::Number(raw),
        }
    }

    /// The number this is or that a string of it spells (`"115792…"`, a U256 written as text).
    fn as_number(&self) -> Option<Decimal<'_>> {
        match self {
            Json::Number(text) => Decimal::parse(text),
            Json::String(text) => Decimal::parse(text),
            _ => None,
        }
    }
}

/// A decimal number read from its text, never rounded: `-?D+(.D+)?([eE][+-]?D+)?`, leading
/// zeros allowed (a string such as `"007"` spells 7).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decimal<'a> {
    negative: bool,
    integer: &'a [u8],
    fraction: &'a [u8],
    exponent: i64,
}

impl<'a> Decimal<'a> {
    pub(crate) fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let bytes = text.as_bytes();
        let (negative, rest) = match bytes.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, bytes),
        };
        let digits = |s: &'a [u8]| s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
        let n = digits(rest);
        let (integer, mut rest) = rest.split_at(n);
        if integer.is_empty() {
            return None;
        }
        let mut fraction: &[u8] = &[];
        if let Some((b'.', after)) = rest.split_first() {
            let n = digits(after);
            if n == 0 {
                return None;
            }
            (fraction, rest) = after.split_at(n);
        }
        let mut exponent = 0i64;
        if let Some((b'e' | b'E', after)) = rest.split_first() {
            let (negative, after) = match after.split_first() {
                Some((b'-', after)) => (true, after),
                Some((b'+', after)) => (false, after),
                _ => (false, after),
            };
            if after.is_empty() || digits(after) != after.len() {
                return None;
            }
            // Saturates far beyond any digit count a line can hold, so the order stays exact.
            for &b in after {
                exponent = exponent.saturating_mul(10).saturating_add(i64::from(b - b'0')).min(1 << 60);
            }
            if negative {
                exponent = -exponent;
            }
            rest = &[];
        }
        rest.is_empty().then_some(Decimal { negative, integer, fraction, exponent })
    }

    /// The significant digits (no leading or trailing zeros) and the power of ten of the first
    /// one plus one (`123.4` → `1234`, 3; `0.05` → `5`, -1); `None` for zero.
    fn significant(&self) -> Option<(impl Iterator<Item = u8> + Clone + 'a, i64)> {
        let all = self.integer.iter().chain(self.fraction.iter()).copied();
        let leading = all.clone().take_while(|&b| b == b'0').count();
        let total = self.integer.len() + self.fraction.len();
        if leading == total {
            return None;
        }
        let trailing = all.clone().rev().take_while(|&b| b == b'0').count();
        let magnitude = (self.integer.len() as i64 - leading as i64).saturating_add(self.exponent);
        Some((all.skip(leading).take(total - leading - trailing), magnitude))
    }

    /// The order of two numbers, exact whatever their size.
    pub(crate) fn cmp(&self, other: &Decimal<'_>) -> Ordering {
        let sign = |d: &Decimal<'_>, nonzero: bool| match (nonzero, d.negative) {
            (false, _) => 0i8,
            (true, true) => -1,
            (true, false) => 1,
        };
        let (a, b) = (self.significant(), other.significant());
        let (sa, sb) = (sign(self, a.is_some()), sign(other, b.is_some()));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let ((da, ma), (db, mb)) = (a.expect("non-zero"), b.expect("non-zero"));
        let magnitude = ma.cmp(&mb).then_with(|| da.cmp(db));
        if sa < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// `a` against `b` when both are numbers (`Decimal`), exactly.
pub(crate) fn compare_numbers(a: &str, b: &str) -> Option<Ordering> {
    Some(Decimal::parse(a)?.cmp(&Decimal::parse(b)?))
}

// ---------------------------------------------------------------------------------------------
// The expression.

/// A comparison operator, as `--where` and `--filter` write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Matches,
    NotMatches,
}

impl Op {
    /// The operator `symbol` writes (`==` is `=`).
    pub(crate) fn of(symbol: &str) -> Option<Op> {
        Some(match symbol {
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "~" => Op::Matches,
            "!~" => Op::NotMatches,
            _ => return None,
        })
    }

    fn holds(self, ordering: Option<Ordering>) -> bool {
        match self {
            Op::Eq => ordering == Some(Ordering::Equal),
            Op::Ne => ordering != Some(Ordering::Equal),
            Op::Lt => ordering == Some(Ordering::Less),
            Op::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
            Op::Gt => ordering == Some(Ordering::Greater),
            Op::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
            Op::Matches | Op::NotMatches => unreachable!("a pattern is matched, not ordered (Comparison::holds)"),
        }
    }
}

/// A literal of the expression.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    String(String),
    /// As written, every digit.
    Number(String),
    Bool(bool),
    Null,
}

/// `FIELD OP VALUE`.
#[derive(Debug, Clone)]
struct Comparison {
    path: Vec<String>,
    op: Op,
    value: Literal,
    /// The compiled pattern of `~` and `!~`.
    pattern: Option<regex_lite::Regex>,
}

impl Comparison {
    /// Whether it holds for the field's raw text (`None`: the line has no such field, which
    /// compares as `null`, and which no pattern matches).
    fn holds(&self, field: Option<&str>) -> bool {
        let field = field.map(Json::of);
        if let Some(pattern) = &self.pattern {
            let matched = match &field {
                None => false,
                Some(Json::String(text)) => pattern.is_match(text),
                Some(Json::Number(raw) | Json::Composite(raw)) => pattern.is_match(raw),
                Some(Json::Bool(b)) => pattern.is_match(if *b { "true" } else { "false" }),
                Some(Json::Null) => pattern.is_match("null"),
            };
            return matched == (self.op == Op::Matches);
        }
        let field = field.unwrap_or(Json::Null);
        let ordering = match (&self.value, &field) {
            (Literal::String(wanted), Json::String(text)) => Some(text.as_ref().cmp(wanted.as_str())),
            // A number against a number, or against a string that spells one, either way round.
            (Literal::Number(wanted), _) => field.as_number().and_then(|n| Some(n.cmp(&Decimal::parse(wanted)?))),
            (Literal::String(wanted), Json::Number(_)) => {
                field.as_number().and_then(|n| Some(n.cmp(&Decimal::parse(wanted)?)))
            }
            (Literal::Bool(wanted), Json::Bool(b)) => (wanted == b).then_some(Ordering::Equal),
            (Literal::Null, Json::Null) => Some(Ordering::Equal),
            _ => None,
        };
        self.op.holds(ordering)
    }
}

#[derive(Debug, Clone)]
enum Tree {
    /// The comparison of this index.
    Compare(usize),
    And(Vec<Tree>),
    Or(Vec<Tree>),
    Not(Box<Tree>),
}

/// A parsed `--filter` expression.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    tree: Tree,
    comparisons: Vec<Comparison>,
}

/// An [`Expr`] whose fields have their slots in a [`FieldSet`].
#[derive(Debug, Clone)]
pub(crate) struct Bound<'e> {
    expr: &'e Expr,
    slots: Vec<usize>,
}

impl Expr {
    /// Gives every field of the expression a slot in `fields`.
    pub(crate) fn bind(&self, fields: &mut FieldSet) -> Bound<'_> {
        Bound { expr: self, slots: self.comparisons.iter().map(|c| fields.slot(&c.path)).collect() }
    }

    /// Texts every matching line holds as they are written when it holds no backslash: the
    /// strings an `and` of `=` compares with (those no number and no escape can spell).
    pub(crate) fn required_texts(&self) -> Vec<&str> {
        let mut texts = Vec::new();
        self.gather_required(&self.tree, &mut texts);
        texts
    }

    fn gather_required<'e>(&'e self, tree: &Tree, texts: &mut Vec<&'e str>) {
        match tree {
            Tree::Compare(i) => {
                let comparison = &self.comparisons[*i];
                if let (Op::Eq, Literal::String(text)) = (comparison.op, &comparison.value) {
                    if needle_is_literal(text) {
                        texts.push(text);
                    }
                }
            }
            Tree::And(all) => all.iter().for_each(|tree| self.gather_required(tree, texts)),
            Tree::Or(_) | Tree::Not(_) => {}
        }
    }
}

/// Whether `text`, when a string equal to it is in a line without backslashes, appears there as
/// is: not empty, nothing JSON must escape, and not a number (which a number field equals).
pub(crate) fn needle_is_literal(text: &str) -> bool {
    !text.is_empty()
        && !text.contains(|c: char| c == '"' || c == '\\' || c.is_control())
        && Decimal::parse(text).is_none()
}

impl Bound<'_> {
    /// Whether the line whose fields `values` holds (by slot) matches.
    pub(crate) fn matches(&self, values: &[Option<&str>]) -> bool {
        self.eval(&self.expr.tree, values)
    }

    fn eval(&self, tree: &Tree, values: &[Option<&str>]) -> bool {
        match tree {
            Tree::Compare(i) => self.expr.comparisons[*i].holds(values[self.slots[*i]]),
            Tree::And(all) => all.iter().all(|tree| self.eval(tree, values)),
            Tree::Or(any) => any.iter().any(|tree| self.eval(tree, values)),
            Tree::Not(tree) => !self.eval(tree, values),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser.

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Field(String),
    Op(Op),
    Literal(Literal),
}

/// A token and the column (1-based, in characters) it begins at.
type Spanned = (Token, usize);

/// A parse error: what was expected, at which column of `text`.
fn error_at(text: &str, column: usize, message: impl fmt::Display) -> String {
    let caret = " ".repeat(column.saturating_sub(1));
    format!("--filter: {message} at column {column}\n  {text}\n  {caret}^")
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$' | '@')
}

fn lex(text: &str) -> Result<Vec<Spanned>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => {
                i += 1;
                Token::Open
            }
            ')' => {
                i += 1;
                Token::Close
            }
            '=' | '!' | '<' | '>' | '~' => {
                let start = i;
                while i < chars.len() && matches!(chars[i], '=' | '!' | '<' | '>' | '~') {
                    i += 1;
                }
                let symbol: String = chars[start..i].iter().collect();
                let op = Op::of(&symbol).ok_or_else(|| {
                    error_at(text, column, format_args!("unknown operator `{symbol}` (use =, !=, <, <=, >, >=, ~, !~)"))
                })?;
                Token::Op(op)
            }
            '"' | '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(error_at(text, column, "unterminated string")),
                        Some(&q) if q == c => break,
                        // `\` escapes the quote and itself; any other stays, for patterns (`\d`).
                        Some('\\') if chars.get(i + 1).is_some_and(|&n| n == c || n == '\\') => {
                            value.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&other) => {
                            value.push(other);
                            i += 1;
                        }
                    }
                }
                i += 1;
                Token::Literal(Literal::String(value))
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < chars.len() && (is_field_char(chars[i]) || chars[i] == '+') {
                    i += 1;
                }
                let number: String = chars[start..i].iter().collect();
                if Decimal::parse(&number).is_none() {
                    return Err(error_at(text, column, format_args!("`{number}` is not a number")));
                }
                Token::Literal(Literal::Number(number))
            }
            c if is_field_char(c) => {
                let start = i;
                while i < chars.len() && is_field_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    "true" => Token::Literal(Literal::Bool(true)),
                    "false" => Token::Literal(Literal::Bool(false)),
                    "null" => Token::Literal(Literal::Null),
                    _ => Token::Field(word),
                }
            }
            other => return Err(error_at(text, column, format_args!("unexpected `{other}`"))),
        };
        tokens.push((token, column));
    }
    Ok(tokens)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Spanned>,
    at: usize,
    comparisons: Vec<Comparison>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(token, _)| token)
    }

    /// The column of the next token, or just past the end.
    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.text.chars().count() + 1, |(_, column)| *column)
    }

    fn error(&self, message: impl fmt::Display) -> String {
        error_at(self.text, self.column(), message)
    }

    fn or(&mut self, depth: usize) -> Result<Tree, String> {
        let mut any = vec![self.and(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            any.push(self.and(depth)?);
        }
        Ok(if any.len() == 1 { any.pop().expect("one") } else { Tree::Or(any) })
    }

    fn and(&mut self, depth: usize) -> Result<Tree, String> {
        let mut all = vec![self.unary(depth)?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            all.push(self.unary(depth)?);
        }
        Ok(if all.len() == 1 { all.pop().expect("one") } else { Tree::And(all) })
    }

    fn unary(&mut self, depth: usize) -> Result<Tree, String> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format_args!("nested deeper than {MAX_DEPTH} levels")));
        }
        match self.peek() {
            Some(Token::Not) => {
                self.at += 1;
                Ok(Tree::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Token::Open) => {
                let open = self.column();
                self.at += 1;
                let tree = self.or(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.error(format_args!("expected `)` to close the `(` of column {open}")));
                }
                self.at += 1;
                Ok(tree)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Tree, String> {
        let Some(Token::Field(key)) = self.peek().cloned() else {
            return Err(self.error("expected a field (a context key such as `protocol`, or `event`, `level`, ...)"));
        };
        let path = field_path(&key).ok_or_else(|| self.error(format_args!("`{key}` has an empty part")))?;
        self.at += 1;
        let Some(Token::Op(op)) = self.peek().cloned() else {
            return Err(self.error(format_args!("expected an operator (=, !=, <, <=, >, >=, ~, !~) after `{key}`")));
        };
        self.at += 1;
        let Some(Token::Literal(value)) = self.peek().cloned() else {
            let hint = match self.peek() {
                Some(Token::Field(word)) => format!(" (quote text: \"{word}\")"),
                _ => String::new(),
            };
            return Err(
                self.error(format_args!("expected a value (a quoted string, a number, true, false or null){hint}"))
            );
        };
        let pattern = match (op, &value) {
            (Op::Matches | Op::NotMatches, Literal::String(pattern)) => Some(
                regex_lite::Regex::new(pattern)
                    .map_err(|error| self.error(format_args!("not a regular expression ({error})")))?,
            ),
            (Op::Matches | Op::NotMatches, _) => return Err(self.error("`~` and `!~` take a quoted pattern")),
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Literal::Bool(_) | Literal::Null) => {
                return Err(self.error("`<`, `<=`, `>` and `>=` compare numbers or strings"))
            }
            _ => None,
        };
        self.at += 1;
        self.comparisons.push(Comparison { path, op, value, pattern });
        Ok(Tree::Compare(self.comparisons.len() - 1))
    }
}

/// Parses a `--filter` expression; an error says what was expected and points at its column.
pub(crate) fn parse(text: &str) -> Result<Expr, String> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(error_at(text, 1, "the expression is empty"));
    }
    let mut parser = Parser { text, tokens, at: 0, comparisons: Vec::new() };
    let tree = parser.or(0)?;
    match parser.peek() {
        None => Ok(Expr { tree, comparisons: parser.comparisons }),
        Some(Token::Close) => Err(parser.error("`)` without its `(`")),
        Some(_) => Err(parser.error("expected `and`, `or`, `)` or the end")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `expr` matches `line`.
    fn matches(expr: &str, line: &str) -> bool {
        let expr = parse(expr).unwrap();
        let mut fields = FieldSet::default();
        let bound = expr.bind(&mut fields);
        let mut values = Vec::new();
        fields.extract(line, &mut values).unwrap();
        bound.matches(&values)
    }

    const LINE: &str = r#"{"timestamp":"2024-01-15T10:30:45Z","level":"INFO","module":"hyper::client","event":"sent","context":{"protocol":"aave","block_number":18000000,"amount":"115792089237316195423570985008687907853269984665640564039457584007913129639935","big":340282366920938463463374607431768211455,"ok":true,"none":null,"span":[{"block":7},{"block":8}],"tags":["a","b"],"esc\"aped":"x\ny","price":"1.50"}}"#;

    #[test]
    fn comparisons_combine_with_and_or_not_and_parentheses() {
        assert!(matches(r#"protocol = "aave" and block_number > 17000000"#, LINE));
        assert!(!matches(r#"protocol = "aave" and block_number > 19000000"#, LINE));
        assert!(matches(r#"protocol = "moonwell" or block_number >= 18000000"#, LINE));
        assert!(matches(r#"not protocol = "moonwell""#, LINE));
        assert!(!matches(r#"not (protocol = "aave" or ok = false)"#, LINE));
        // `and` binds tighter than `or`.
        assert!(matches(r#"event = "x" and ok = false or level = "INFO""#, LINE));
        assert!(!matches(r#"event = "x" and (ok = false or level = "INFO")"#, LINE));
        assert!(matches(r#"module ~ "^hyper(::|$)" and event != 'dropped'"#, LINE));
    }

    #[test]
    fn array_elements_are_reached_by_index() {
        assert!(matches("span.0.block = 7", LINE));
        assert!(matches("context.span.1.block = 8", LINE));
        assert!(!matches("span.0.block = 8", LINE));
        assert!(matches(r#"tags.1 = "b""#, LINE));
        assert!(matches("span.2.block = null", LINE), "past the end is missing, which is null");
    }

    #[test]
    fn a_string_of_digits_compares_as_a_number_against_a_number_exactly_at_any_size() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        let below = "115792089237316195423570985008687907853269984665640564039457584007913129639934";
        assert!(matches(&format!("amount = {max}"), LINE));
        assert!(matches(&format!("amount > {below}"), LINE));
        assert!(!matches(&format!("amount > {max}"), LINE));
        assert!(matches(&format!("amount >= {max}"), LINE));
        assert!(matches("amount > 1e77 and amount < 1.2e77", LINE));
        assert!(matches("big = 340282366920938463463374607431768211455", LINE));
        assert!(matches("big > 340282366920938463463374607431768211454", LINE));
        assert!(matches(r#"block_number = "18000000""#, LINE), "a number equals a string that spells it");
        assert!(matches("price = 1.5 and price < 1.51 and price > -2", LINE));
        // Two strings compare as text.
        assert!(matches(r#"price = "1.50" and price != "1.5""#, LINE));
    }

    #[test]
    fn decimals_order_exactly() {
        let order = |a: &str, b: &str| compare_numbers(a, b).unwrap();
        assert_eq!(order("0", "-0"), Ordering::Equal);
        assert_eq!(order("0.000", "0e99"), Ordering::Equal);
        assert_eq!(order("10", "9"), Ordering::Greater);
        assert_eq!(order("-10", "-9"), Ordering::Less);
        assert_eq!(order("1.10", "1.1"), Ordering::Equal);
        assert_eq!(order("007", "7"), Ordering::Equal);
        assert_eq!(order("1e3", "999.9999999999999999999"), Ordering::Greater);
        assert_eq!(order("0.05", "5e-2"), Ordering::Equal);
        assert_eq!(order("-1", "0.0001"), Ordering::Less);
        assert_eq!(order("1e99999999999999999999999", "1e99999999999999999999998"), Ordering::Equal);
        assert_eq!(order("123456789012345678901234567890", "123456789012345678901234567891"), Ordering::Less);
        for bad in ["", "-", "1.", ".5", "1e", "0x10", "1_000", "+1", "1e+", "--1"] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_field_is_null_and_no_pattern_matches_it() {
        assert!(matches("absent = null and none = null", LINE));
        assert!(matches("absent != 1", LINE));
        assert!(!matches("absent < 1 or absent > 1", LINE));
        assert!(!matches(r#"absent ~ "null""#, LINE));
        assert!(matches(r#"absent !~ "x""#, LINE));
        assert!(matches(r#"ok ~ "^t" and big ~ "^3402""#, LINE), "a non-string is matched as its JSON");
    }

    #[test]
    fn escaped_keys_and_values_are_compared_unescaped() {
        assert!(matches("tags.0 = \"x\ny\"", r#"{"context":{"tags":["x\ny"]}}"#));
        assert!(matches(r#"weird = "a\"b""#, r#"{"context":{"we\u0069rd":"a\"b"}}"#));
        // `\` escapes the quote and itself only: a pattern's `\d` stays `\d`.
        assert!(matches(r#"path ~ "^C:\\\\dir" and path !~ "\d""#, r#"{"context":{"path":"C:\\dir"}}"#));
        assert!(matches(r#"n ~ '^\d+$'"#, r#"{"context":{"n":"123"}}"#));
    }

    #[test]
    fn a_field_and_a_member_of_it_are_both_given() {
        let mut fields = FieldSet::default();
        let context = fields.slot(&field_path("context").unwrap());
        let protocol = fields.slot(&field_path("protocol").unwrap());
        let first = fields.slot(&field_path("span.0").unwrap());
        let block = fields.slot(&field_path("span.0.block").unwrap());
        assert_eq!(fields.slot(&field_path("context.protocol").unwrap()), protocol, "one slot per path");
        let mut values = Vec::new();
        fields.extract(LINE, &mut values).unwrap();
        assert!(values[context].unwrap().starts_with(r#"{"protocol":"aave""#));
        assert_eq!(values[protocol], Some(r#""aave""#));
        assert_eq!(values[first], Some(r#"{"block":7}"#));
        assert_eq!(values[block], Some("7"));
    }

    #[test]
    fn a_line_that_is_not_json_is_an_error_even_after_the_fields_wanted() {
        let mut fields = FieldSet::default();
        fields.slot(&field_path("event").unwrap());
        let mut values = Vec::new();
        assert!(fields.extract(r#"{"event":"x","context":{"a":[1,2}}"#, &mut values).is_err());
        assert!(fields.extract(r#"{"event":"x"} trailing"#, &mut values).is_err());
        assert!(fields.extract(r#"{"event":"x""#, &mut values).is_err());
        assert!(fields.extract("[1,2,3]", &mut values).is_ok(), "JSON, though not a line of ours");
    }

    #[test]
    fn the_texts_an_and_of_string_equalities_requires_are_given_for_a_pre_check() {
        let required = |text: &str| -> Vec<String> {
            parse(text).unwrap().required_texts().into_iter().map(str::to_owned).collect()
        };
        assert_eq!(required(r#"event = "sent" and (protocol = "aave" and n > 1)"#), ["sent", "aave"]);
        assert!(required(r#"event = "sent" or protocol = "aave""#).is_empty());
        assert!(required(r#"not event = "sent""#).is_empty());
        assert!(required(r#"event != "sent""#).is_empty());
        // A string a number field can equal, or one JSON writes escaped, is never required.
        assert!(required(r#"n = "42" and a = "say \"hi\"" and b = "" and c = "C:\\x""#).is_empty());
    }

    /// Parses `text`, which must fail; returns the message.
    fn parse_error(text: &str) -> String {
        match parse(text) {
            Ok(expr) => panic!("{text:?} parsed: {expr:?}"),
            Err(message) => message,
        }
    }

    #[test]
    fn a_parse_error_names_the_column_and_points_at_it() {
        let message = parse_error("protocol = 1 and");
        assert_eq!(
            message,
            "--filter: expected a field (a context key such as `protocol`, or `event`, `level`, ...) at column 17\n  protocol = 1 and\n                  ^"
        );
        assert!(
            parse_error("a = 1 and b =").starts_with("--filter: expected a value"),
            "{}",
            parse_error("a = 1 and b =")
        );
        assert!(parse_error("a = 1 and b =").contains("at column 14"));
        assert!(parse_error("a = aave").contains("(quote text: \"aave\") at column 5"));
    }

    #[test]
    fn hostile_expressions_are_errors_not_panics() {
        let cases = [
            ("", "the expression is empty at column 1"),
            ("   ", "the expression is empty"),
            ("(a = 1", "expected `)` to close the `(` of column 1 at column 7"),
            ("a = 1)", "`)` without its `(` at column 6"),
            ("((a = 1) or (b = 2)", "expected `)`"),
            ("()", "expected a field at column 2"),
            ("a = \"open", "unterminated string at column 5"),
            ("a = 'it\\'s", "unterminated string"),
            ("a => 1", "unknown operator `=>` at column 3"),
            ("a <> 1", "unknown operator `<>`"),
            ("a ! 1", "unknown operator `!`"),
            ("a 1", "expected an operator"),
            ("= 1", "expected a field at column 1"),
            ("a = 1 b = 2", "expected `and`, `or`, `)` or the end at column 7"),
            ("a = 1 and and b = 2", "expected a field at column 11"),
            ("a = 0x10", "`0x10` is not a number at column 5"),
            ("a < true", "compare numbers or strings"),
            ("a ~ 1", "take a quoted pattern"),
            ("a ~ \"(unclosed\"", "not a regular expression"),
            ("a..b = 1", "`a..b` has an empty part"),
            ("a = 1 ; drop", "unexpected `;` at column 7"),
            ("not", "expected a field at column 4"),
        ];
        for (text, wanted) in cases {
            let message = parse_error(text);
            let message_line = message.lines().next().unwrap();
            let wanted_parts: Vec<&str> = wanted.split(" at column").collect();
            assert!(message_line.contains(wanted_parts[0]), "{text:?}: {message}");
            if wanted_parts.len() == 2 {
                assert!(message_line.ends_with(&format!("at column{}", wanted_parts[1])), "{text:?}: {message}");
            }
        }
    }

    #[test]
    fn nesting_ten_thousand_deep_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(
            parse_error(&deep).contains("nested deeper than 100 levels at column 101"),
            "{}",
            &parse_error(&deep)[..80]
        );
        let nots = format!("{}a = 1", "not ".repeat(10_000));
        assert!(parse_error(&nots).contains("nested deeper than 100 levels"));
        // As deep as allowed parses and evaluates.
        let ok = format!("{}a = 1{}", "(".repeat(99), ")".repeat(99));
        assert!(matches(&ok, r#"{"context":{"a":1}}"#));
        // A long flat chain is no nesting at all.
        let long = vec!["a = 1"; 10_000].join(" and ");
        assert!(matches(&long, r#"{"context":{"a":1}}"#));
    }
}
