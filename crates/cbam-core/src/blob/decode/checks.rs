//! The checks every op's parameter words share, and the constant arrays they point at.

use crate::blob::read::region;
use crate::error::Error;
use crate::format::{ActWords, PerChannelWords, RequantWords};
use crate::kernels::SigmoidLut;
use crate::le::{as_i8, I32Le};
use crate::math::{ActRange, Requant};

/// Checks one op's words against the blob it came from.
pub(super) struct Checks<'a> {
    pub blob: &'a [u8],
    pub op: u16,
}

impl<'a> Checks<'a> {
    pub(super) fn bad(&self, reason: &'static str) -> Error {
        Error::BadParams {
            op: self.op,
            reason,
        }
    }

    /// A word that counts something: at least `min`.
    pub(super) fn count(&self, v: i32, min: usize, reason: &'static str) -> Result<usize, Error> {
        usize::try_from(v)
            .ok()
            .filter(|&v| v >= min)
            .ok_or(self.bad(reason))
    }

    pub(super) fn zero_point(&self, v: i32, reason: &'static str) -> Result<i32, Error> {
        if (-128..=127).contains(&v) {
            Ok(v)
        } else {
            Err(self.bad(reason))
        }
    }

    pub(super) fn act(&self, a: ActWords) -> Result<ActRange, Error> {
        let (lo, hi) = (a.min, a.max);
        if (-128..=127).contains(&lo) && (-128..=127).contains(&hi) && lo <= hi {
            Ok(ActRange::from_words(lo, hi))
        } else {
            Err(self.bad("act_min/act_max outside -128..=127 or act_min > act_max"))
        }
    }

    pub(super) fn requant(&self, r: RequantWords) -> Result<Requant, Error> {
        let rq = Requant::new(r.mult, r.shift);
        if rq.is_valid() {
            Ok(rq)
        } else {
            Err(self.bad("requant mult < 0 or shift outside -31..=30"))
        }
    }

    /// The constant array at offset word `off`, `len` bytes long.
    pub(super) fn array(
        &self,
        off: i32,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], Error> {
        let off = usize::try_from(off)
            .ok()
            .filter(|&o| o != 0)
            .ok_or(self.bad(what))?;
        region(self.blob, what, off, len)
    }

    pub(super) fn i8s(
        &self,
        off: i32,
        len: Option<usize>,
        what: &'static str,
    ) -> Result<&'a [i8], Error> {
        let len = len.ok_or(Error::ShapeOverflow { what })?;
        self.array(off, len, what).map(as_i8)
    }

    pub(super) fn i32s(&self, off: i32, n: usize, what: &'static str) -> Result<I32Le<'a>, Error> {
        let len = n.checked_mul(4).ok_or(Error::ShapeOverflow { what })?;
        self.array(off, len, what).map(I32Le::new)
    }

    pub(super) fn lut(&self, off: i32) -> Result<&'a SigmoidLut, Error> {
        let bytes = self.array(off, 256, "sigmoid table")?;
        <&SigmoidLut>::try_from(as_i8(bytes)).map_err(|_| self.bad("sigmoid table"))
    }

    /// `n` per-channel biases and requantizers, every requantizer checked; `what` names
    /// the three arrays in errors.
    pub(super) fn per_channel(
        &self,
        p: PerChannelWords,
        n: usize,
        what: [&'static str; 3],
    ) -> Result<(I32Le<'a>, I32Le<'a>, I32Le<'a>), Error> {
        let bias = self.i32s(p.bias_off, n, what[0])?;
        let mult = self.i32s(p.mult_off, n, what[1])?;
        let shift = self.i32s(p.shift_off, n, what[2])?;
        if mult
            .iter()
            .zip(shift.iter())
            .any(|(m, s)| !Requant::new(m, s).is_valid())
        {
            return Err(self.bad("per-channel mult < 0 or shift outside -31..=30"));
        }
        Ok((bias, mult, shift))
    }
}
