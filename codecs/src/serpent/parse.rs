//! The serpent parser: a Python literal expression (what `ast.literal_eval` accepts within
//! serpent's grammar) into a tree of positioned nodes.

use num_bigint::BigInt;

use super::error::{SerpentError, SerpentErrorKind as K};
use super::write::PY_INT_MAX_DIGITS;

/// A parsed literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    None,
    Bool(bool),
    Int(i128),
    BigInt(BigInt),
    Float(f64),
    /// A complex number (real, imaginary).
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Spanned>),
    Tuple(Vec<Spanned>),
    Set(Vec<Spanned>),
    Dict(Vec<(Spanned, Spanned)>),
}

/// A node and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub(crate) pos: usize,
    pub(crate) node: Node,
}

impl Node {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Complex(..) => "complex",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Set(_) => "set",
            Node::Dict(_) => "dict",
        }
    }

    fn hashable(&self) -> bool {
        match self {
            Node::List(_) | Node::Set(_) | Node::Dict(_) => false,
            Node::Tuple(items) => items.iter().all(|i| i.node.hashable()),
            _ => true,
        }
    }
}

/// A parser positioned at the expression of a complete serpent document: the input checked
/// (UTF-8, no NUL), a byte-order mark, the header comment and blank lines skipped.
pub(super) fn document(src: &[u8], max_depth: usize) -> Result<Parser<'_>, SerpentError> {
    let text = match std::str::from_utf8(src) {
        Ok(t) => t,
        Err(e) => {
            return Err(SerpentError::at(
                K::InvalidUtf8,
                "invalid UTF-8 (serpent data is UTF-8 text)",
                src,
                e.valid_up_to(),
            ))
        }
    };
    // `contains` on bytes is core's word-at-a-time memchr; the position only on error.
    if let Some(p) = src
        .contains(&0)
        .then(|| src.iter().position(|&b| b == 0))
        .flatten()
    {
        return Err(SerpentError::at(
            K::NulCharacter,
            "the data contains a NUL character, which Python's serpent refuses (it is probably \
             corrupted; NUL inside strings is written as \\x00)",
            src,
            p,
        ));
    }
    let mut p = Parser {
        s: text,
        b: src,
        pos: 0,
        depth: 0,
        max_depth: max_depth.min(super::MAX_DEPTH_CAP),
    };
    if src.starts_with(b"\xEF\xBB\xBF") {
        p.pos = 3;
    }
    p.skip_ws(true);
    if p.pos >= p.b.len() {
        return Err(p.err(K::UnexpectedEof, "no expression: the document is empty"));
    }
    Ok(p)
}

/// Parses a complete serpent document (optional header comment, one expression).
pub(crate) fn parse(src: &[u8], max_depth: usize) -> Result<Spanned, SerpentError> {
    let mut p = document(src, max_depth)?;
    let start = p.pos;
    let first = p.expr()?;
    p.skip_ws(false);
    let result = if p.peek() == Some(b',') {
        // A bare top-level tuple `1, 2` (ast.literal_eval accepts it).
        let mut items = vec![first];
        while p.peek() == Some(b',') {
            p.pos += 1;
            p.skip_ws(false);
            match p.peek() {
                None | Some(b'\n') | Some(b'\r') => break,
                _ => {}
            }
            items.push(p.expr()?);
            p.skip_ws(false);
        }
        Spanned {
            pos: start,
            node: Node::Tuple(items),
        }
    } else {
        first
    };
    p.skip_ws(true);
    if p.pos < p.b.len() {
        return Err(p.err(
            K::TrailingCharacters,
            "unexpected data after the expression (a serpent document holds one literal)",
        ));
    }
    Ok(result)
}

pub(super) struct Parser<'a> {
    /// The whole document, checked as UTF-8 once ([`document`]): slices of it at ASCII
    /// delimiters are `str`s without another check.
    pub(super) s: &'a str,
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    depth: usize,
    max_depth: usize,
}

/// A number read by [`Parser::fast_number`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum FastNum {
    Int(i64),
    Float(f64),
}

/// 10^0 ..= 10^22, the powers of ten an f64 holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

impl<'a> Parser<'a> {
    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn peek_at(&self, off: usize) -> Option<u8> {
        self.b.get(self.pos + off).copied()
    }

    pub(super) fn err(&self, kind: K, msg: impl Into<String>) -> SerpentError {
        SerpentError::at(kind, msg, self.b, self.pos)
    }

    fn err_at(&self, kind: K, msg: impl Into<String>, pos: usize) -> SerpentError {
        SerpentError::at(kind, msg, self.b, pos)
    }

    fn describe_here(&self) -> String {
        match self.s.get(self.pos..).and_then(|r| r.chars().next()) {
            None => "end of input".to_owned(),
            Some(c) => format!("{c:?}"),
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn unexpected(&self, expected: &str) -> SerpentError {
        if self.pos >= self.b.len() {
            self.err(
                K::UnexpectedEof,
                format!("unexpected end of input, expected {expected}"),
            )
        } else {
            self.err(
                K::Syntax,
                format!("unexpected {}, expected {expected}", self.describe_here()),
            )
        }
    }

    /// Skips spaces, tabs, form feeds, comments and line continuations; newlines too when
    /// `newlines` is set or inside brackets.
    #[inline]
    pub(super) fn skip_ws(&mut self, newlines: bool) {
        // Compact serpent has no blanks between tokens: most calls stop at once.
        if matches!(
            self.peek(),
            Some(b' ' | b'\t' | 0x0C | b'\n' | b'\r' | b'#' | b'\\')
        ) {
            self.skip_ws_slow(newlines);
        }
    }

    #[inline(never)]
    fn skip_ws_slow(&mut self, newlines: bool) {
        let newlines = newlines || self.depth > 0;
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | 0x0C => self.pos += 1,
                b'\n' | b'\r' if newlines => self.pos += 1,
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' || c == b'\r' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                b'\\' => match (self.peek_at(1), self.peek_at(2)) {
                    (Some(b'\r'), Some(b'\n')) => self.pos += 3,
                    (Some(b'\n'), _) | (Some(b'\r'), _) => self.pos += 2,
                    _ => break,
                },
                _ => break,
            }
        }
    }

    fn enter(&mut self) -> Result<(), SerpentError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.too_deep());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> SerpentError {
        {
            self.err(
                K::TooDeep,
                format!(
                    "containers nested deeper than {} levels; the data is malformed or needs a \
                     higher max_depth",
                    self.max_depth
                ),
            )
        }
    }

    /// One expression: an atom, or `signed_number (+|-) imaginary` (a complex number).
    pub(super) fn expr(&mut self) -> Result<Spanned, SerpentError> {
        let left = self.atom()?;
        match left.node {
            Node::Int(_) | Node::BigInt(_) | Node::Float(_) => self.complex_tail(left),
            _ => Ok(left),
        }
    }

    /// After a real number: an optional `(+|-) imaginary` making it a complex number.
    #[inline(never)]
    fn complex_tail(&mut self, left: Spanned) -> Result<Spanned, SerpentError> {
        let start = left.pos;
        let lv = match &left.node {
            Node::Int(i) => *i as f64,
            Node::BigInt(b) => bigint_to_f64(b),
            Node::Float(f) => *f,
            _ => return Ok(left),
        };
        let save = self.pos;
        self.skip_ws(false);
        let op = match self.peek() {
            Some(b'+') => 1.0,
            Some(b'-') => -1.0,
            _ => {
                self.pos = save;
                return Ok(left);
            }
        };
        let op_pos = self.pos;
        self.pos += 1;
        self.skip_ws(false);
        match self.peek() {
            Some(c) if c.is_ascii_digit() || c == b'.' => {}
            _ => {
                return Err(self.err_at(
                    K::Syntax,
                    "only an imaginary number literal (like 2.0j) may follow + or - here",
                    op_pos,
                ))
            }
        }
        let right = self.number()?;
        let Node::Complex(_, im) = right.node else {
            return Err(self.err_at(
                K::Syntax,
                "malformed expression: + and - are only allowed to form a complex number \
                 (like 1.0+2.0j)",
                op_pos,
            ));
        };
        if let Node::BigInt(_) = left.node {
            if !lv.is_finite() {
                return Err(self.err_at(
                    K::BadNumber,
                    "int too large to convert to float in a complex number",
                    start,
                ));
            }
        }
        // Python: complex(left, 0.0) (+|-) complex(0.0, im), component-wise.
        let (re, im) = if op > 0.0 {
            (lv + 0.0, 0.0 + im)
        } else {
            (lv - 0.0, 0.0 - im)
        };
        Ok(Spanned {
            pos: start,
            node: Node::Complex(re, im),
        })
    }

    /// One atom. Kept small (dispatch only): it is on the recursion path, once per level.
    fn atom(&mut self) -> Result<Spanned, SerpentError> {
        self.skip_ws(false);
        let Some(b) = self.peek() else {
            return Err(self.unexpected("a value"));
        };
        match b {
            b'(' => self.paren(),
            b'[' => self.list(),
            b'{' => self.brace(),
            b'\'' | b'"' => self.strings(),
            b'-' | b'+' => self.signed(b),
            b'0'..=b'9' => self.number(),
            b'.' if matches!(self.peek_at(1), Some(b'0'..=b'9')) => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => self.name(),
            _ => Err(self.unexpected("a value")),
        }
    }

    #[inline(never)]
    fn signed(&mut self, sign: u8) -> Result<Spanned, SerpentError> {
        let start = self.pos;
        self.pos += 1;
        self.skip_ws(false);
        match self.peek() {
            Some(c) if c.is_ascii_digit() || c == b'.' => {}
            _ => return Err(self.unexpected("a number after the sign")),
        }
        let n = self.number()?;
        let node = if sign == b'+' {
            n.node
        } else {
            match n.node {
                Node::Int(i) => match i.checked_neg() {
                    Some(v) => Node::Int(v),
                    None => Node::BigInt(-BigInt::from(i)),
                },
                Node::BigInt(v) => normalize_bigint(-v),
                Node::Float(f) => Node::Float(-f),
                Node::Complex(re, im) => Node::Complex(-re, -im),
                other => other,
            }
        };
        Ok(Spanned { pos: start, node })
    }

    /// `None`, `True`, `False`, `set()`, or a prefixed string literal.
    #[inline(never)]
    fn name(&mut self) -> Result<Spanned, SerpentError> {
        let start = self.pos;
        let mut end = self.pos;
        while self.b.get(end).is_some_and(|&c| is_ident_byte(c)) {
            end += 1;
        }
        let ident = self.s.get(self.pos..end).unwrap_or("");
        if matches!(self.b.get(end), Some(b'\'') | Some(b'"')) && string_prefix(ident).is_some() {
            return self.strings();
        }
        let node = match ident {
            "None" => Node::None,
            "True" => Node::Bool(true),
            "False" => Node::Bool(false),
            "set" => {
                self.pos = end;
                self.skip_ws(false);
                if self.peek() == Some(b'(') {
                    self.pos += 1;
                    self.depth += 1;
                    self.skip_ws(false);
                    self.depth -= 1;
                    if self.peek() == Some(b')') {
                        self.pos += 1;
                        return Ok(Spanned {
                            pos: start,
                            node: Node::Set(Vec::new()),
                        });
                    }
                }
                return Err(self.err_at(
                    K::Syntax,
                    "only the empty set() call is a literal",
                    start,
                ));
            }
            _ => {
                return Err(self.err_at(
                    K::Syntax,
                    format!(
                        "unknown name {ident:?}: serpent data may only contain literals \
                         (None, True, False, numbers, strings, containers)"
                    ),
                    start,
                ))
            }
        };
        self.pos = end;
        Ok(Spanned { pos: start, node })
    }

    /// Enters a container at its opening bracket (checking the nesting depth) and skips
    /// the bracket and any whitespace after it; returns where the container starts.
    pub(super) fn open(&mut self) -> Result<usize, SerpentError> {
        let start = self.pos;
        self.enter()?;
        self.pos += 1;
        self.skip_ws(true);
        Ok(start)
    }

    /// Leaves a container at its closing bracket without building a node.
    pub(super) fn leave(&mut self) {
        self.pos += 1;
        self.depth -= 1;
    }

    /// Leaves a container at its closing bracket.
    fn close(&mut self, start: usize, node: Node) -> Spanned {
        self.pos += 1;
        self.depth -= 1;
        Spanned { pos: start, node }
    }

    /// After an item: skips a ',' and says whether another item follows it (false at the
    /// `close` bracket, which is left to [`close`](Self::close)); anything else is an error
    /// expecting `expected`.
    pub(super) fn more(&mut self, close: u8, expected: &str) -> Result<bool, SerpentError> {
        self.skip_ws(true);
        match self.peek() {
            Some(b',') => self.pos += 1,
            Some(c) if c == close => return Ok(false),
            _ => return Err(self.unexpected(expected)),
        }
        self.skip_ws(true);
        Ok(self.peek() != Some(close))
    }

    fn paren(&mut self) -> Result<Spanned, SerpentError> {
        let start = self.open()?;
        if self.peek() == Some(b')') {
            return Ok(self.close(start, Node::Tuple(Vec::new())));
        }
        let first = self.expr()?;
        self.skip_ws(true);
        if self.peek() == Some(b')') {
            // A parenthesized expression, not a tuple.
            return Ok(self.close(start, first.node));
        }
        let mut items = vec![first];
        while self.more(b')', "',' or ')'")? {
            items.push(self.expr()?);
        }
        Ok(self.close(start, Node::Tuple(items)))
    }

    fn list(&mut self) -> Result<Spanned, SerpentError> {
        let start = self.open()?;
        let mut items = Vec::new();
        if self.peek() != Some(b']') {
            loop {
                items.push(self.expr()?);
                if !self.more(b']', "',' or ']'")? {
                    break;
                }
            }
        }
        Ok(self.close(start, Node::List(items)))
    }

    fn check_hashable(&self, item: &Spanned, what: &str) -> Result<(), SerpentError> {
        if item.node.hashable() {
            Ok(())
        } else {
            Err(self.unhashable(item, what))
        }
    }

    #[cold]
    #[inline(never)]
    fn unhashable(&self, item: &Spanned, what: &str) -> SerpentError {
        {
            self.err_at(
                K::Syntax,
                format!(
                    "unhashable {} as a {what} (Python refuses lists, dicts and sets there)",
                    item.node.type_name()
                ),
                item.pos,
            )
        }
    }

    fn brace(&mut self) -> Result<Spanned, SerpentError> {
        let start = self.open()?;
        if self.peek() == Some(b'}') {
            return Ok(self.close(start, Node::Dict(Vec::new())));
        }
        let first = self.expr()?;
        self.skip_ws(true);
        let node = if self.peek() == Some(b':') {
            self.check_hashable(&first, "dict key")?;
            self.pos += 1;
            let v = self.expr()?;
            let mut entries = vec![(first, v)];
            while self.more(b'}', "',' or '}'")? {
                let k = self.expr()?;
                self.check_hashable(&k, "dict key")?;
                self.skip_ws(true);
                if self.peek() != Some(b':') {
                    return Err(self.unexpected("':' after a dict key"));
                }
                self.pos += 1;
                let v = self.expr()?;
                entries.push((k, v));
            }
            Node::Dict(dedup_dict(entries))
        } else {
            self.check_hashable(&first, "set member")?;
            let mut items = vec![first];
            while self.more(b'}', "',' or '}'")? {
                let item = self.expr()?;
                self.check_hashable(&item, "set member")?;
                items.push(item);
            }
            Node::Set(dedup_set(items))
        };
        Ok(self.close(start, node))
    }

    /// A number literal without sign: int (decimal, 0x, 0o, 0b), float, or imaginary.
    fn number(&mut self) -> Result<Spanned, SerpentError> {
        let start = self.pos;
        let radix = match (self.peek(), self.peek_at(1)) {
            (Some(b'0'), Some(b'x' | b'X')) => 16,
            (Some(b'0'), Some(b'o' | b'O')) => 8,
            (Some(b'0'), Some(b'b' | b'B')) => 2,
            _ => 10,
        };
        if radix != 10 {
            self.pos += 2;
            let mut digits = Vec::new();
            while let Some(c) = self.peek() {
                if c == b'_' {
                    // A single `_` is allowed before each digit (also right after `0x`).
                    let next_ok = self.peek_at(1).is_some_and(|d| (d as char).is_digit(radix));
                    if !next_ok {
                        return Err(
                            self.err(K::BadNumber, "invalid number literal (misplaced '_')")
                        );
                    }
                    self.pos += 1;
                    continue;
                }
                if !(c as char).is_digit(radix) {
                    break;
                }
                digits.push(c);
                self.pos += 1;
            }
            if digits.is_empty() || self.peek().is_some_and(is_ident_byte) {
                return Err(self.err_at(K::BadNumber, "invalid number literal", start));
            }
            let node = int_from_digits(&digits, radix)
                .ok_or_else(|| self.err_at(K::BadNumber, "invalid number literal", start))?;
            return Ok(Spanned { pos: start, node });
        }
        if let Some(node) = self.plain_number() {
            return Ok(Spanned { pos: start, node });
        }
        let mut text: Vec<u8> = Vec::new();
        let int_digits = self.digit_run(&mut text)?;
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            is_float = true;
            text.push(b'.');
            self.pos += 1;
            let frac = self.digit_run(&mut text)?;
            if int_digits == 0 && frac == 0 {
                return Err(self.err_at(K::BadNumber, "invalid number literal", start));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            let mut exp = vec![b'e'];
            if let Some(sign @ (b'+' | b'-')) = self.peek() {
                exp.push(sign);
                self.pos += 1;
            }
            if self.digit_run(&mut exp)? == 0 {
                self.pos = save;
                return Err(self.err(K::BadNumber, "invalid decimal literal (bad exponent)"));
            }
            text.extend_from_slice(&exp);
            is_float = true;
        }
        let imaginary = matches!(self.peek(), Some(b'j' | b'J'));
        if imaginary {
            self.pos += 1;
        }
        if self.peek().is_some_and(is_ident_byte) {
            return Err(self.err(K::BadNumber, "invalid decimal literal"));
        }
        let text_str = std::str::from_utf8(&text).unwrap_or("");
        if imaginary || is_float {
            let v: f64 = text_str
                .parse()
                .map_err(|_| self.err_at(K::BadNumber, "invalid float literal", start))?;
            let node = if imaginary {
                Node::Complex(0.0, v)
            } else {
                Node::Float(v)
            };
            return Ok(Spanned { pos: start, node });
        }
        if text.len() > 1 && text.first() == Some(&b'0') && text.iter().any(|&c| c != b'0') {
            return Err(self.err_at(
                K::BadNumber,
                "leading zeros in decimal integer literals are not permitted",
                start,
            ));
        }
        if text.len() > PY_INT_MAX_DIGITS {
            return Err(self.err_at(
                K::BadNumber,
                format!(
                    "integer literal with {} digits exceeds Python's limit of {PY_INT_MAX_DIGITS}",
                    text.len()
                ),
                start,
            ));
        }
        let node = int_from_digits(&text, 10)
            .ok_or_else(|| self.err_at(K::BadNumber, "invalid integer literal", start))?;
        Ok(Spanned { pos: start, node })
    }

    /// Fast path for the numbers serpent writes: `123`, `-` handled by the caller, `1.5`,
    /// `1e+16`, `2.5e-07`, without underscores or an imaginary suffix. Parses straight from
    /// the input; returns `None` (consuming nothing) for anything else.
    fn plain_number(&mut self) -> Option<Node> {
        let start = self.pos;
        let b = self.b;
        let mut p = start;
        while b.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        }
        let int_end = p;
        let mut is_float = false;
        if b.get(p) == Some(&b'.') {
            is_float = true;
            p += 1;
            while b.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
        }
        if matches!(b.get(p), Some(b'e' | b'E')) {
            is_float = true;
            p += 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            let exp_start = p;
            while b.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
            if p == exp_start {
                return None;
            }
        }
        // Anything else attached (`_`, `j`, letters) goes the careful way.
        if b.get(p).is_some_and(|&c| is_ident_byte(c) || c == b'.') || int_end == start {
            return None;
        }
        let text = self.s.get(start..p)?;
        let node = if is_float {
            Node::Float(text.parse().ok()?)
        } else {
            let digits = b.get(start..int_end)?;
            if digits.len() > 38 || (digits.len() > 1 && digits.first() == Some(&b'0')) {
                return None;
            }
            let mut acc: i128 = 0;
            for &d in digits {
                acc = acc * 10 + i128::from(d - b'0');
            }
            Node::Int(acc)
        };
        self.pos = p;
        Some(node)
    }

    /// The streaming fast path for the numbers serpent writes: an optional `-` directly
    /// followed by a decimal int (at most 18 digits, no leading zero) or a float (`1.5`,
    /// `1e+16`, `2.5e-07`), directly followed by `,`, `:`, `]`, `)`, `}` or the end of the
    /// input. Anything else (blanks, underscores, `+`, a complex tail, `0x..`, big or
    /// zero-padded ints) returns `None` without consuming anything, for the tree parser.
    /// The value is the one [`Parser::expr`] gives: ints exactly, floats correctly rounded.
    #[inline]
    pub(super) fn fast_number(&mut self) -> Option<FastNum> {
        let b = self.b;
        let start = self.pos;
        let neg = b.get(start) == Some(&b'-');
        let digits_start = start + usize::from(neg);
        let mut p = digits_start;
        // All digits of the significand (integer and fraction part), as long as they fit.
        let mut mant: u64 = 0;
        let mut n_digits = 0usize;
        while let Some(&c) = b.get(p) {
            if !c.is_ascii_digit() {
                break;
            }
            if n_digits < 19 {
                mant = mant * 10 + u64::from(c - b'0');
            }
            n_digits += 1;
            p += 1;
        }
        let int_digits = p - digits_start;
        if int_digits == 0 {
            return None;
        }
        let mut is_float = false;
        let mut frac_digits = 0i32;
        if b.get(p) == Some(&b'.') {
            is_float = true;
            p += 1;
            while let Some(&c) = b.get(p) {
                if !c.is_ascii_digit() {
                    break;
                }
                if n_digits < 19 {
                    mant = mant * 10 + u64::from(c - b'0');
                    frac_digits += 1;
                }
                n_digits += 1;
                p += 1;
            }
        }
        let mut exp = 0i32;
        let mut exp_ok = true;
        if matches!(b.get(p), Some(b'e' | b'E')) {
            is_float = true;
            p += 1;
            let exp_neg = match b.get(p) {
                Some(b'-') => {
                    p += 1;
                    true
                }
                Some(b'+') => {
                    p += 1;
                    false
                }
                _ => false,
            };
            let exp_start = p;
            while let Some(&c) = b.get(p) {
                if !c.is_ascii_digit() {
                    break;
                }
                if p - exp_start < 5 {
                    exp = exp * 10 + i32::from(c - b'0');
                } else {
                    exp_ok = false;
                }
                p += 1;
            }
            if p == exp_start {
                return None;
            }
            if exp_neg {
                exp = -exp;
            }
        }
        match b.get(p) {
            None | Some(b',' | b':' | b']' | b')' | b'}') => {}
            _ => return None,
        }
        let num = if is_float {
            let e = exp - frac_digits;
            let v = if n_digits <= 19 && exp_ok && mant <= 1 << 53 && (-22..=22).contains(&e) {
                // Clinger's fast path: both operands exact, one correctly rounded operation.
                let scale = POW10[e.unsigned_abs() as usize];
                if e >= 0 {
                    mant as f64 * scale
                } else {
                    mant as f64 / scale
                }
            } else {
                self.s.get(digits_start..p)?.parse::<f64>().ok()?
            };
            FastNum::Float(if neg { -v } else { v })
        } else {
            if int_digits > 18 || (int_digits > 1 && b.get(digits_start) == Some(&b'0')) {
                return None;
            }
            let v = mant as i64;
            FastNum::Int(if neg { -v } else { v })
        };
        self.pos = p;
        Some(num)
    }

    /// Decimal digits with single `_` separators between them; returns the digit count.
    fn digit_run(&mut self, out: &mut Vec<u8>) -> Result<usize, SerpentError> {
        let mut n = 0usize;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                out.push(c);
                n += 1;
                self.pos += 1;
            } else if c == b'_' && n > 0 && matches!(self.peek_at(1), Some(b'0'..=b'9')) {
                self.pos += 1;
            } else if c == b'_' {
                return Err(self.err(K::BadNumber, "invalid decimal literal (misplaced '_')"));
            } else {
                break;
            }
        }
        Ok(n)
    }

    /// One or more adjacent string literals (implicitly concatenated, as in Python).
    fn strings(&mut self) -> Result<Spanned, SerpentError> {
        let start = self.pos;
        let (mut is_bytes, mut text, mut bytes) = (false, String::new(), Vec::new());
        let mut first = true;
        loop {
            let lit_start = self.pos;
            let mut end = self.pos;
            while self.b.get(end).is_some_and(|c| c.is_ascii_alphabetic()) {
                end += 1;
            }
            let prefix = self.s.get(self.pos..end).unwrap_or("");
            let Some((raw, b)) = string_prefix(prefix) else {
                return Err(self.err(K::Syntax, format!("unsupported string prefix {prefix:?}")));
            };
            if !first && b != is_bytes {
                return Err(self.err_at(K::Syntax, "cannot mix bytes and str literals", lit_start));
            }
            is_bytes = b;
            first = false;
            self.pos = end;
            self.literal(raw, b, &mut text, &mut bytes)?;
            // Another literal directly after it?
            self.skip_ws(false);
            let mut p = self.pos;
            while self.b.get(p).is_some_and(|c| c.is_ascii_alphabetic()) {
                p += 1;
            }
            let next_prefix = self.s.get(self.pos..p).unwrap_or("");
            let quote_follows = matches!(self.b.get(p), Some(b'\'' | b'"'));
            if !(quote_follows && string_prefix(next_prefix).is_some()) {
                break;
            }
        }
        let node = if is_bytes {
            Node::Bytes(bytes)
        } else {
            Node::Str(text)
        };
        Ok(Spanned { pos: start, node })
    }

    /// One quoted literal; `self.pos` is at the opening quote.
    fn literal(
        &mut self,
        raw: bool,
        is_bytes: bool,
        text: &mut String,
        bytes: &mut Vec<u8>,
    ) -> Result<(), SerpentError> {
        let start = self.pos;
        let Some(q) = self.peek() else {
            return Err(self.unexpected("a quote"));
        };
        let triple = self.peek_at(1) == Some(q) && self.peek_at(2) == Some(q);
        self.pos += if triple { 3 } else { 1 };
        let unterminated = |p: &Self| {
            p.err_at(
                K::UnterminatedString,
                if triple {
                    "unterminated triple-quoted string"
                } else {
                    "unterminated string literal (a raw newline ends it; write \\n)"
                },
                start,
            )
        };
        let mut run = self.pos;
        loop {
            let Some(c) = self.peek() else {
                return Err(unterminated(self));
            };
            if c != q && c != b'\\' && c != b'\n' && c != b'\r' && c < 0x80 {
                self.pos += 1;
                continue;
            }
            if c >= 0x80 {
                if is_bytes {
                    return Err(self.err(
                        K::Syntax,
                        "bytes literals may only contain ASCII characters (use \\x escapes)",
                    ));
                }
                self.pos += 1;
                continue;
            }
            // Flush the pending run.
            self.flush(run, is_bytes, text, bytes);
            match c {
                _ if c == q => {
                    if !triple {
                        self.pos += 1;
                        return Ok(());
                    }
                    if self.peek_at(1) == Some(q) && self.peek_at(2) == Some(q) {
                        self.pos += 3;
                        return Ok(());
                    }
                    self.pos += 1;
                    push_char(q as char, is_bytes, text, bytes);
                }
                b'\n' | b'\r' => {
                    if !triple {
                        return Err(unterminated(self));
                    }
                    self.pos += 1;
                    if c == b'\r' && self.peek() == Some(b'\n') {
                        self.pos += 1;
                    }
                    push_char('\n', is_bytes, text, bytes);
                }
                _ => {
                    // Backslash.
                    if raw {
                        // Kept as-is, but the next character cannot end the literal.
                        let Some(next) = self.s.get(self.pos + 1..).and_then(|r| r.chars().next())
                        else {
                            return Err(unterminated(self));
                        };
                        // (A backslash-newline is kept too, even in a single-quoted raw
                        // string, as Python does.)
                        if is_bytes && !next.is_ascii() {
                            return Err(self.err(
                                K::Syntax,
                                "bytes literals may only contain ASCII characters",
                            ));
                        }
                        push_char('\\', is_bytes, text, bytes);
                        push_char(next, is_bytes, text, bytes);
                        self.pos += 1 + next.len_utf8();
                    } else {
                        self.escape(is_bytes, text, bytes)?;
                    }
                }
            }
            run = self.pos;
        }
    }

    fn flush(&self, run: usize, is_bytes: bool, text: &mut String, bytes: &mut Vec<u8>) {
        if is_bytes {
            bytes.extend_from_slice(self.b.get(run..self.pos).unwrap_or(&[]));
        } else {
            text.push_str(self.s.get(run..self.pos).unwrap_or(""));
        }
    }

    fn hex_digits(&mut self, n: usize, esc_start: usize, name: &str) -> Result<u32, SerpentError> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|c| (c as char).to_digit(16))
                .ok_or_else(|| {
                    self.err_at(
                        K::BadEscape,
                        format!("truncated {name} escape: it needs {n} hex digits"),
                        esc_start,
                    )
                })?;
            v = (v << 4) | d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// A backslash escape in a non-raw literal; `self.pos` is at the backslash.
    fn escape(
        &mut self,
        is_bytes: bool,
        text: &mut String,
        bytes: &mut Vec<u8>,
    ) -> Result<(), SerpentError> {
        let esc_start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(self.err_at(
                K::UnterminatedString,
                "unterminated string literal",
                esc_start,
            ));
        };
        self.pos += 1;
        let simple = match c {
            b'\n' => return Ok(()), // line continuation
            b'\r' => {
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                }
                return Ok(());
            }
            b'\\' => Some('\\'),
            b'\'' => Some('\''),
            b'"' => Some('"'),
            b'a' => Some('\x07'),
            b'b' => Some('\x08'),
            b'f' => Some('\x0c'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            b'v' => Some('\x0b'),
            _ => None,
        };
        if let Some(ch) = simple {
            push_char(ch, is_bytes, text, bytes);
            return Ok(());
        }
        match c {
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                if is_bytes {
                    bytes.push((v & 0xFF) as u8);
                } else {
                    text.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                }
            }
            b'x' => {
                let v = self.hex_digits(2, esc_start, "\\xXX")?;
                if is_bytes {
                    bytes.push((v & 0xFF) as u8);
                } else {
                    text.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                }
            }
            b'u' | b'U' if !is_bytes => {
                let (n, name) = if c == b'u' {
                    (4, "\\uXXXX")
                } else {
                    (8, "\\UXXXXXXXX")
                };
                let v = self.hex_digits(n, esc_start, name)?;
                if (0xD800..=0xDFFF).contains(&v) {
                    return Err(self.err_at(
                        K::UnsupportedEscape,
                        format!(
                            "lone surrogate \\u{v:04x}: Python allows it but a Rust string \
                             cannot hold it"
                        ),
                        esc_start,
                    ));
                }
                let ch = char::from_u32(v).ok_or_else(|| {
                    self.err_at(
                        K::BadEscape,
                        format!("illegal Unicode character \\U{v:08x} (above U+10FFFF)"),
                        esc_start,
                    )
                })?;
                text.push(ch);
            }
            b'N' if !is_bytes => {
                return Err(self.err_at(
                    K::UnsupportedEscape,
                    "\\N{...} named escapes are not supported; use \\u or \\U escapes",
                    esc_start,
                ));
            }
            _ => {
                // Unknown escape: Python keeps the backslash and the character.
                self.pos -= 1;
                let Some(ch) = self.s.get(self.pos..).and_then(|r| r.chars().next()) else {
                    return Err(self.err_at(
                        K::UnterminatedString,
                        "unterminated string literal",
                        esc_start,
                    ));
                };
                if is_bytes && !ch.is_ascii() {
                    return Err(self.err(
                        K::Syntax,
                        "bytes literals may only contain ASCII characters",
                    ));
                }
                push_char('\\', is_bytes, text, bytes);
                push_char(ch, is_bytes, text, bytes);
                self.pos += ch.len_utf8();
            }
        }
        Ok(())
    }
}

fn push_char(c: char, is_bytes: bool, text: &mut String, bytes: &mut Vec<u8>) {
    if is_bytes {
        let mut buf = [0u8; 4];
        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    } else {
        text.push(c);
    }
}

/// `(raw, bytes)` for a valid str/bytes literal prefix, `None` otherwise (including f-strings).
fn string_prefix(p: &str) -> Option<(bool, bool)> {
    match p.to_ascii_lowercase().as_str() {
        "" | "u" => Some((false, false)),
        "r" => Some((true, false)),
        "b" => Some((false, true)),
        "br" | "rb" => Some((true, true)),
        _ => None,
    }
}

fn int_from_digits(digits: &[u8], radix: u32) -> Option<Node> {
    let mut acc: i128 = 0;
    let mut overflow = false;
    for &d in digits {
        let v = (d as char).to_digit(radix)?;
        match acc
            .checked_mul(i128::from(radix))
            .and_then(|a| a.checked_add(i128::from(v)))
        {
            Some(a) => acc = a,
            None => {
                overflow = true;
                break;
            }
        }
    }
    if !overflow {
        return Some(Node::Int(acc));
    }
    BigInt::parse_bytes(digits, radix).map(normalize_bigint)
}

/// A BigInt that fits i128 becomes `Node::Int`.
pub(crate) fn normalize_bigint(b: BigInt) -> Node {
    match i128::try_from(&b) {
        Ok(i) => Node::Int(i),
        Err(_) => Node::BigInt(b),
    }
}

pub(crate) fn bigint_to_f64(b: &BigInt) -> f64 {
    use num_bigint::Sign;
    let negative = b.sign() == Sign::Minus;
    // Beyond 1100 bits the value overflows f64 anyway; skip the (quadratic) decimal text.
    let v = if b.bits() > 1100 {
        f64::INFINITY
    } else {
        // Correctly rounded conversion through the decimal text.
        b.magnitude()
            .to_str_radix(10)
            .parse()
            .unwrap_or(f64::INFINITY)
    };
    if negative {
        -v
    } else {
        v
    }
}

/// What Python's `==` / `hash` identify among hashable literals: `1`, `1.0`, `True` and
/// `(1+0j)` are one key; `-0.0` and `0` too.
#[derive(PartialEq, Eq, Hash)]
enum HKey<'a> {
    Int(i128),
    Big(BigInt),
    Float(u64),
    Complex(u64, u64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Tuple(Vec<HKey<'a>>),
    None,
    /// Never equal to anything else (unhashable; refused earlier).
    Unique(usize),
}

fn float_key(f: f64) -> HKey<'static> {
    if f.is_finite() && f.fract() == 0.0 {
        if f.abs() < 1.0e38 {
            return HKey::Int(f as i128);
        }
        if let Some(b) = bigint_from_integral(f) {
            return match i128::try_from(&b) {
                Ok(i) => HKey::Int(i),
                Err(_) => HKey::Big(b),
            };
        }
    }
    HKey::Float(f.to_bits())
}

fn bigint_from_integral(f: f64) -> Option<BigInt> {
    // The decimal expansion of an integral f64 is exact in Rust's `{}` formatting.
    format!("{f:.0}").parse().ok()
}

fn hkey(node: &Node, idx: usize) -> HKey<'_> {
    match node {
        Node::None => HKey::None,
        Node::Bool(b) => HKey::Int(i128::from(*b)),
        Node::Int(i) => HKey::Int(*i),
        Node::BigInt(b) => HKey::Big(b.clone()),
        Node::Float(f) => float_key(*f),
        Node::Complex(re, im) => {
            if *im == 0.0 {
                float_key(*re)
            } else {
                let re = if *re == 0.0 { 0.0 } else { *re };
                HKey::Complex(re.to_bits(), im.to_bits())
            }
        }
        Node::Str(s) => HKey::Str(s),
        Node::Bytes(b) => HKey::Bytes(b),
        Node::Tuple(items) => HKey::Tuple(items.iter().map(|i| hkey(&i.node, idx)).collect()),
        Node::List(_) | Node::Set(_) | Node::Dict(_) => HKey::Unique(idx),
    }
}

/// Python's dict display semantics: a repeated key keeps its first position and takes the
/// last value.
fn dedup_dict(entries: Vec<(Spanned, Spanned)>) -> Vec<(Spanned, Spanned)> {
    if entries.len() < 2 {
        return entries;
    }
    if entries.len() <= 16 {
        // Small dicts: pairwise comparison beats hashing.
        let keys: Vec<HKey<'_>> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| hkey(&k.node, i))
            .collect();
        let unique = keys
            .iter()
            .enumerate()
            .all(|(i, k)| keys.get(..i).is_some_and(|before| !before.contains(k)));
        if unique {
            return entries;
        }
    }
    let plan: Vec<(usize, usize)> = {
        let mut first: std::collections::HashMap<HKey<'_>, usize> =
            std::collections::HashMap::with_capacity(entries.len());
        let mut plan: Vec<(usize, usize)> = Vec::with_capacity(entries.len());
        for (i, (k, _)) in entries.iter().enumerate() {
            match first.entry(hkey(&k.node, i)) {
                std::collections::hash_map::Entry::Occupied(o) => {
                    if let Some(slot) = plan.get_mut(*o.get()) {
                        slot.1 = i;
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(plan.len());
                    plan.push((i, i));
                }
            }
        }
        plan
    };
    if plan.len() == entries.len() {
        return entries;
    }
    let mut slots: Vec<Option<(Spanned, Spanned)>> = entries.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(plan.len());
    for (ki, vi) in plan {
        if ki == vi {
            if let Some(e) = slots.get_mut(ki).and_then(Option::take) {
                out.push(e);
            }
        } else {
            let key = slots.get_mut(ki).and_then(Option::take).map(|e| e.0);
            let value = slots.get_mut(vi).and_then(Option::take).map(|e| e.1);
            if let (Some(k), Some(v)) = (key, value) {
                out.push((k, v));
            }
        }
    }
    out
}

/// Python's set display semantics: the first of equal members is kept.
fn dedup_set(items: Vec<Spanned>) -> Vec<Spanned> {
    if items.len() < 2 {
        return items;
    }
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        items
            .iter()
            .enumerate()
            .map(|(i, it)| seen.insert(hkey(&it.node, i)))
            .collect()
    };
    if keep.iter().all(|&k| k) {
        return items;
    }
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(it, k)| k.then_some(it))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number fast path reads what the tree parser reads, or leaves the text alone.
    #[test]
    fn fast_number_agrees_with_the_tree() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "7",
            "-98765",
            "1234567890123",
            "999999999999999999",
            "-999999999999999999",
            "1000000000000000000",
            "00",
            "01",
            "0.0",
            "-0.0",
            "1.",
            "1.e5",
            "00.5",
            "0.1",
            "1.4700000000000002",
            "20.650000000000002",
            "1e+16",
            "1e16",
            "2.5e-07",
            "1E5",
            "1e-400",
            "1e400",
            "1e999999",
            "1e",
            "1e+",
            "1.5j",
            "1_0",
            "1+2j",
            "1 ",
            "0x10",
            ".5",
            "-.5",
            "- 5",
            "5e-324",
            "1.7976931348623157e+308",
            "9007199254740993",
            "9007199254740993.0",
            "123456789012345678901234567890.5",
            "0.000000000000000000000000000001",
            "4.9406564584124654e-324",
            "1e22",
            "1e23",
            "12345678901234567890e-10",
            "3.14159",
            "-2.718281828459045",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                texts.push(format!("{f:?}"));
                texts.push(format!("{:e}", f));
            }
            texts.push(format!("{}", (x >> 3) as i64 % 1_000_000_000_000_000_000));
            texts.push(format!(
                "{}.{}e{}",
                x % 1000,
                (x >> 20) % 100_000,
                (x >> 40) % 40
            ));
        }
        let mut checked = 0usize;
        for t in texts {
            for follow in ["", ",", "]", ")", "}", ":", " ", "j", "+1j"] {
                let src = format!("[{t}{follow}");
                let mut p = document(src.as_bytes(), 10).unwrap();
                p.pos = 1;
                let Some(fast) = p.fast_number() else {
                    continue;
                };
                let end = p.pos;
                assert_eq!(&src[end..], follow, "{src:?}: stopped early");
                let mut q = document(src.as_bytes(), 10).unwrap();
                q.pos = 1;
                let tree = q.expr().map(|s| s.node);
                match (fast, tree) {
                    (FastNum::Int(a), Ok(Node::Int(b))) => assert_eq!(i128::from(a), b, "{src:?}"),
                    (FastNum::Float(a), Ok(Node::Float(b))) => {
                        assert_eq!(a.to_bits(), b.to_bits(), "{src:?}")
                    }
                    (a, b) => panic!("{src:?}: fast {a:?}, tree {b:?}"),
                }
                assert_eq!(q.pos, end, "{src:?}");
                checked += 1;
            }
        }
        assert!(
            checked > 50_000,
            "only {checked} numbers took the fast path"
        );
    }
}
