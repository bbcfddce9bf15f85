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
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut line = 1u32;
    let mut col = 1u32;
    // Advance over `n` chars, tracking the position.
    let advance = |i: &mut usize, line: &mut u32, col: &mut u32, n: usize| {
        for _ in 0..n {
            if let Some(&c) = chars.get(*i) {
                if c == '\n' {
                    *line = line.saturating_add(1);
                    *col = 1;
                } else {
                    *col = col.saturating_add(1);
                }
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            advance(&mut i, &mut line, &mut col, 2);
            loop {
                if i >= chars.len() {
                    return Err(syntax("unterminated block comment", tl, tc));
                }
                if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    advance(&mut i, &mut line, &mut col, 2);
                    break;
                }
                advance(&mut i, &mut line, &mut col, 1);
            }
            continue;
        }
        if c == '#' {
            // `#pragma ...` (and `#dim` etc.): ignored to the end of the line.
            let word: String = chars[i..].iter().take(7).collect();
            if word == "#pragma" {
                while i < chars.len() && chars[i] != '\n' {
                    advance(&mut i, &mut line, &mut col, 1);
                }
                continue;
            }
            return Err(syntax("unexpected character '#'", tl, tc));
        }
        let push = |out: &mut Vec<Token>, tok: Tok| out.push(Token { tok, line: tl, col: tc });
        if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_continue(chars[i]) {
                advance(&mut i, &mut line, &mut col, 1);
            }
            push(&mut out, Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '$' {
            advance(&mut i, &mut line, &mut col, 1);
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                advance(&mut i, &mut line, &mut col, 1);
            }
            if start == i {
                return Err(syntax("expected digits after '$'", tl, tc));
            }
            push(&mut out, Tok::HwQubit(chars[start..i].iter().collect()));
            continue;
        }
        if c == '"' || c == '\'' {
            advance(&mut i, &mut line, &mut col, 1);
            let start = i;
            while i < chars.len() && chars[i] != c && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
            if i >= chars.len() || chars[i] != c {
                return Err(syntax("unterminated string literal", tl, tc));
            }
            let s: String = chars[start..i].iter().collect();
            advance(&mut i, &mut line, &mut col, 1);
            push(&mut out, Tok::Str(s));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            let tok = if c == '0' && matches!(chars.get(i + 1), Some('x' | 'X' | 'o' | 'O' | 'b' | 'B')) {
                let radix = match chars[i + 1] {
                    'x' | 'X' => 16,
                    'o' | 'O' => 8,
                    _ => 2,
                };
                advance(&mut i, &mut line, &mut col, 2);
                let ds = i;
                while i < chars.len() && (chars[i].is_ascii_hexdigit() || chars[i] == '_') {
                    advance(&mut i, &mut line, &mut col, 1);
                }
                let digits: String = chars[ds..i].iter().filter(|&&d| d != '_').collect();
                if digits.is_empty() {
                    return Err(syntax("malformed integer literal", tl, tc));
                }
                match u128::from_str_radix(&digits, radix) {
                    Ok(v) => Tok::Int(Some(v)),
                    Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => Tok::Int(None),
                    Err(_) => return Err(syntax("malformed integer literal", tl, tc)),
                }
            } else {
                let mut is_float = false;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                    advance(&mut i, &mut line, &mut col, 1);
                }
                if i < chars.len() && chars[i] == '.' {
                    is_float = true;
                    advance(&mut i, &mut line, &mut col, 1);
                    while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                        advance(&mut i, &mut line, &mut col, 1);
                    }
                }
                if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                    let mut j = i + 1;
                    if matches!(chars.get(j), Some('+' | '-')) {
                        j += 1;
                    }
                    if chars.get(j).is_some_and(|d| d.is_ascii_digit()) {
                        is_float = true;
                        let n = j - i;
                        advance(&mut i, &mut line, &mut col, n);
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            advance(&mut i, &mut line, &mut col, 1);
                        }
                    }
                }
                let text: String = chars[start..i].iter().filter(|&&d| d != '_').collect();
                if is_float {
                    match text.parse::<f64>() {
                        Ok(v) => Tok::Float(v),
                        Err(_) => return Err(syntax("malformed number", tl, tc)),
                    }
                } else {
                    match text.parse::<u128>() {
                        Ok(v) => Tok::Int(Some(v)),
                        Err(_) => Tok::Int(None),
                    }
                }
            };
            // A timing unit or the imaginary suffix directly after the number.
            if i < chars.len() && is_ident_start(chars[i]) {
                let ss = i;
                let mut j = i;
                while j < chars.len() && is_ident_continue(chars[j]) {
                    j += 1;
                }
                let suffix: String = chars[ss..j].iter().collect();
                if TIME_UNITS.contains(&suffix.as_str()) {
                    let n = j - i;
                    advance(&mut i, &mut line, &mut col, n);
                    push(&mut out, Tok::Duration);
                    continue;
                }
                if suffix == "im" {
                    return Err(ReadError::Unsupported {
                        format: FORMAT,
                        message: format!("imaginary literals (line {tl}, column {tc})"),
                    });
                }
                return Err(syntax(
                    &format!("malformed number literal '{}{suffix}'", chars[start..i].iter().collect::<String>()),
                    tl,
                    tc,
                ));
            }
            push(&mut out, tok);
            continue;
        }
        let mut matched = None;
        for p in PUNCTS {
            let n = p.chars().count();
            if i + n <= chars.len() && p.chars().zip(&chars[i..i + n]).all(|(a, &b)| a == b) {
                matched = Some((*p, n));
                break;
            }
        }
        match matched {
            Some((p, n)) => {
                advance(&mut i, &mut line, &mut col, n);
                push(&mut out, Tok::Punct(p));
            }
            None => {
                let shown: String = if c.is_control() { format!("\\u{{{:x}}}", c as u32) } else { c.to_string() };
                return Err(syntax(&format!("unexpected character '{shown}'"), tl, tc));
            }
        }
    }
    out.push(Token { tok: Tok::Eof, line, col });
    Ok(out)
}
