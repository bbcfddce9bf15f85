//! The bounds-checked byte reader every part of the QPY reader goes through, and the generic
//! `(type key, payload)` values of the format.

use super::syntax;
use crate::error::ReadError;

/// A read position in a byte slice; every read is bounds-checked.
#[derive(Clone, Copy)]
pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pub(super) pos: usize,
    /// Offset of `data[0]` in the whole file, for error locations.
    pub(super) base: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0, base: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(super) fn at_end(&self) -> bool {
        self.remaining() == 0
    }

    pub(super) fn err(&self, message: &str) -> ReadError {
        syntax(message.to_string(), self.base + self.pos)
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if n > self.remaining() {
            return Err(self.err(&format!("unexpected end of data: need {n} bytes, {} left", self.remaining())));
        }
        let start = self.pos;
        self.pos += n;
        self.data.get(start..start + n).ok_or_else(|| self.err("unexpected end of data"))
    }

    /// Take a length-prefixed payload given as u64.
    pub(super) fn take_u64_len(&mut self, n: u64) -> Result<&'a [u8], ReadError> {
        let n = usize::try_from(n).map_err(|_| self.err("length does not fit in memory"))?;
        self.take(n)
    }

    /// A sub-cursor over the next `n` bytes (which are consumed).
    pub(super) fn sub(&mut self, n: usize) -> Result<Cursor<'a>, ReadError> {
        let base = self.base + self.pos;
        let data = self.take(n)?;
        Ok(Cursor { data, pos: 0, base })
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(super) fn i32(&mut self) -> Result<i32, ReadError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(super) fn i64(&mut self) -> Result<i64, ReadError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub(super) fn string(&mut self, n: usize) -> Result<String, ReadError> {
        let pos = self.base + self.pos;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| syntax("string is not valid UTF-8".into(), pos))
    }

    /// Check that `count` items of at least `width` bytes each can still follow.
    pub(super) fn check_count(&self, count: u64, width: usize, what: &str) -> Result<(), ReadError> {
        let max = (self.remaining() / width.max(1)) as u64;
        if count > max {
            return Err(
                self.err(&format!("{what}: {count} entries announced but only {} bytes left", self.remaining()))
            );
        }
        Ok(())
    }
}

/// A generic `(type key, payload)` pair (INSTRUCTION_PARAM), decoded lazily.
#[derive(Clone, Copy)]
pub(super) struct Generic<'a> {
    pub(super) key: u8,
    pub(super) data: Cursor<'a>,
}

pub(super) fn read_generic<'a>(c: &mut Cursor<'a>) -> Result<Generic<'a>, ReadError> {
    let key = c.u8()?;
    let len = c.u64()?;
    let len = usize::try_from(len).map_err(|_| c.err("length does not fit in memory"))?;
    let data = c.sub(len)?;
    Ok(Generic { key, data })
}

pub(super) fn exact<const N: usize>(d: &mut Cursor<'_>) -> Result<[u8; N], ReadError> {
    if d.remaining() != N {
        return Err(d.err(&format!("value payload has {} bytes, expected {N}", d.remaining())));
    }
    d.array()
}

pub(super) fn end(d: &Cursor<'_>) -> Result<(), ReadError> {
    if d.at_end() {
        Ok(())
    } else {
        Err(d.err("trailing bytes in value payload"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_are_checked() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16().unwrap(), 0x0102);
        assert!(c.u16().is_err());
        assert_eq!(c.u8().unwrap(), 3);
        assert!(c.u8().is_err());
        let mut c = Cursor::new(&[0; 4]);
        assert!(c.take_u64_len(u64::MAX).is_err());
        assert!(c.check_count(u64::MAX, 1, "x").is_err());
        assert!(c.check_count(4, 1, "x").is_ok());
    }
}
