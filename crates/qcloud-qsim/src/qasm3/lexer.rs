//! Tokenizer for the OpenQASM 3 subset the reader accepts. Iterative (no recursion), bounded by the
//! source size, never panics.

use super::{syntax, FORMAT};
use crate::error::ReadError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// `$n`
    HwQubit(String),
    /// Integer literal (decimal, or 0x / 0o / 0b), as its value when it fits.
    Int(Option<u128>),
    Float(f64),
    /// A string literal (include paths, bit strings), without the quotes.
    Str(String),
    /// A literal with a timing unit (`100ns`, `10dt`); the value is ignored by the reader.
    Duration,
    Punct(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: u32,
    pub col: u32,
}

/// Longest punctuators first.
const PUNCTS: &[&str] = &[
    "<<=", ">>=", "**=", "**", "->", "==", "!=", "<=", ">=", "&&", "||", "<<", ">>", "++", "+=", "-=", "*=", "/=",
    "%=", "&=", "|=", "^=", ";", ",", "(", ")", "[", "]", "{", "}", ":", "@", "=", "<", ">", "+", "-", "*", "/", "%",
    "!", "~", "&", "|", "^", ".",
];

const TIME_UNITS: &[&str] = &["dt", "ns", "us", "µs", "ms", "s"];

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ReadError> {
    let chars: Vec<char> = src.chars().collect();
    let mut s = Scanner { chars: &chars, i: 0, line: 1, col: 1 };
    let mut out = Vec::new();
    while s.i < chars.len() {
        let c = chars[s.i];
        let (tl, tc) = (s.line, s.col);
        if s.skip_trivia(c, tl, tc)? {
            continue;
        }
        let tok = if is_ident_start(c) {
            s.ident()
        } else if c == '$' {
            s.hw_qubit(tl, tc)?
        } else if c == '"' || c == '\'' {
            s.string(c, tl, tc)?
        } else if c.is_ascii_digit() || (c == '.' && s.at(1).is_some_and(|d| d.is_ascii_digit())) {
            s.number(tl, tc)?
        } else {
            s.punct(c, tl, tc)?
        };
        out.push(Token { tok, line: tl, col: tc });
    }
    out.push(Token { tok: Tok::Eof, line: s.line, col: s.col });
    Ok(out)
}

/// The scan position: index into `chars`, and the line and column of that character.
struct Scanner<'s> {
    chars: &'s [char],
    i: usize,
    line: u32,
    col: u32,
}

impl Scanner<'_> {
    /// The character `k` places ahead of the position.
    fn at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    /// Whether the position is before the end and its character satisfies `f`.
    fn is(&self, f: impl Fn(char) -> bool) -> bool {
        self.i < self.chars.len() && f(self.chars[self.i])
    }

    /// Advance over `n` chars, tracking the position.
    fn advance(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(&c) = self.chars.get(self.i) {
                if c == '\n' {
                    self.line = self.line.saturating_add(1);
                    self.col = 1;
                } else {
                    self.col = self.col.saturating_add(1);
                }
            }
            self.i += 1;
        }
    }

    fn advance_while(&mut self, f: impl Fn(char) -> bool) {
        while self.is(&f) {
            self.advance(1);
        }
    }

    fn text(&self, start: usize) -> String {
        self.chars[start..self.i].iter().collect()
    }

    /// Skip whitespace, comments and `#pragma` lines; `Ok(false)` if none starts here.
    fn skip_trivia(&mut self, c: char, tl: u32, tc: u32) -> Result<bool, ReadError> {
        if c.is_whitespace() {
            self.advance(1);
            return Ok(true);
        }
        if c == '/' && self.at(1) == Some('/') {
            self.advance_while(|ch| ch != '\n');
            return Ok(true);
        }
        if c == '/' && self.at(1) == Some('*') {
            self.advance(2);
            loop {
                if self.i >= self.chars.len() {
                    return Err(syntax("unterminated block comment", tl, tc));
                }
                if self.chars[self.i] == '*' && self.at(1) == Some('/') {
                    self.advance(2);
                    break;
                }
                self.advance(1);
            }
            return Ok(true);
        }
        if c == '#' {
            // `#pragma ...` (and `#dim` etc.): ignored to the end of the line.
            let word: String = self.chars[self.i..].iter().take(7).collect();
            if word == "#pragma" {
                self.advance_while(|ch| ch != '\n');
                return Ok(true);
            }
            return Err(syntax("unexpected character '#'", tl, tc));
        }
        Ok(false)
    }

    fn ident(&mut self) -> Tok {
        let start = self.i;
        self.advance_while(is_ident_continue);
        Tok::Ident(self.text(start))
    }

    /// `$n`
    fn hw_qubit(&mut self, tl: u32, tc: u32) -> Result<Tok, ReadError> {
        self.advance(1);
        let start = self.i;
        self.advance_while(|ch| ch.is_ascii_digit());
        if start == self.i {
            return Err(syntax("expected digits after '$'", tl, tc));
        }
        Ok(Tok::HwQubit(self.text(start)))
    }

    /// A string literal quoted with `quote`, on one line.
    fn string(&mut self, quote: char, tl: u32, tc: u32) -> Result<Tok, ReadError> {
        self.advance(1);
        let start = self.i;
        self.advance_while(|ch| ch != quote && ch != '\n');
        if !self.is(|ch| ch == quote) {
            return Err(syntax("unterminated string literal", tl, tc));
        }
        let s = self.text(start);
        self.advance(1);
        Ok(Tok::Str(s))
    }

    /// A number, possibly with a timing unit (then a [`Tok::Duration`]).
    fn number(&mut self, tl: u32, tc: u32) -> Result<Tok, ReadError> {
        let start = self.i;
        let tok = if self.at(0) == Some('0') && matches!(self.at(1), Some('x' | 'X' | 'o' | 'O' | 'b' | 'B')) {
            self.radix_int(tl, tc)?
        } else {
            self.decimal(start, tl, tc)?
        };
        // A timing unit or the imaginary suffix directly after the number.
        if !self.is(is_ident_start) {
            return Ok(tok);
        }
        let mut j = self.i;
        while j < self.chars.len() && is_ident_continue(self.chars[j]) {
            j += 1;
        }
        let suffix: String = self.chars[self.i..j].iter().collect();
        if TIME_UNITS.contains(&suffix.as_str()) {
            self.advance(j - self.i);
            return Ok(Tok::Duration);
        }
        if suffix == "im" {
            return Err(ReadError::Unsupported {
                format: FORMAT,
                message: format!("imaginary literals (line {tl}, column {tc})"),
            });
        }
        Err(syntax(&format!("malformed number literal '{}{suffix}'", self.text(start)), tl, tc))
    }

    /// `0x..`, `0o..`, `0b..`: the value, or `Int(None)` when it does not fit.
    fn radix_int(&mut self, tl: u32, tc: u32) -> Result<Tok, ReadError> {
        let radix = match self.at(1) {
            Some('x' | 'X') => 16,
            Some('o' | 'O') => 8,
            _ => 2,
        };
        self.advance(2);
        let ds = self.i;
        self.advance_while(|ch| ch.is_ascii_hexdigit() || ch == '_');
        let digits: String = self.chars[ds..self.i].iter().filter(|&&d| d != '_').collect();
        if digits.is_empty() {
            return Err(syntax("malformed integer literal", tl, tc));
        }
        match u128::from_str_radix(&digits, radix) {
            Ok(v) => Ok(Tok::Int(Some(v))),
            Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => Ok(Tok::Int(None)),
            Err(_) => Err(syntax("malformed integer literal", tl, tc)),
        }
    }

    /// A decimal integer or float (digits, optional fraction, optional exponent, `_` separators).
    fn decimal(&mut self, start: usize, tl: u32, tc: u32) -> Result<Tok, ReadError> {
        let mut is_float = false;
        self.advance_while(|ch| ch.is_ascii_digit() || ch == '_');
        if self.is(|ch| ch == '.') {
            is_float = true;
            self.advance(1);
            self.advance_while(|ch| ch.is_ascii_digit() || ch == '_');
        }
        if self.is(|ch| ch == 'e' || ch == 'E') {
            let mut j = 1;
            if matches!(self.at(j), Some('+' | '-')) {
                j += 1;
            }
            if self.at(j).is_some_and(|d| d.is_ascii_digit()) {
                is_float = true;
                self.advance(j);
                self.advance_while(|ch| ch.is_ascii_digit());
            }
        }
        let text: String = self.chars[start..self.i].iter().filter(|&&d| d != '_').collect();
        if is_float {
            match text.parse::<f64>() {
                Ok(v) => Ok(Tok::Float(v)),
                Err(_) => Err(syntax("malformed number", tl, tc)),
            }
        } else {
            match text.parse::<u128>() {
                Ok(v) => Ok(Tok::Int(Some(v))),
                Err(_) => Ok(Tok::Int(None)),
            }
        }
    }

    /// The longest punctuator at the position.
    fn punct(&mut self, c: char, tl: u32, tc: u32) -> Result<Tok, ReadError> {
        let (chars, i) = (self.chars, self.i);
        for p in PUNCTS {
            let n = p.chars().count();
            if i + n <= chars.len() && p.chars().zip(&chars[i..i + n]).all(|(a, &b)| a == b) {
                self.advance(n);
                return Ok(Tok::Punct(p));
            }
        }
        let shown: String = if c.is_control() { format!("\\u{{{:x}}}", c as u32) } else { c.to_string() };
        Err(syntax(&format!("unexpected character '{shown}'"), tl, tc))
    }
}
