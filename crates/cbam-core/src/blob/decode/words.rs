//! Parameter words and the constant arrays they point at, with the checks all ops share.

use crate::blob::read::region;
use crate::error::Error;
use crate::kernels::{ConvGeometry, SigmoidLut};
use crate::le::{as_i8, I32Le};
use crate::math::{ActRange, Requant};

/// Reads an op's parameter words with the checks every op shares.
pub(super) struct Words<'a> {
    pub blob: &'a [u8],
    pub words: I32Le<'a>,
    pub op: u16,
}

impl<'a> Words<'a> {
    pub(super) fn bad(&self, reason: &'static str) -> Error {
        Error::BadParams {
            op: self.op,
            reason,
        }
    }

    pub(super) fn word(&self, i: usize) -> i32 {
        // `op_record` checked params_len against the code's word count.
        self.words.get(i).unwrap_or(0)
    }

    pub(super) fn count(&self, i: usize, min: usize, reason: &'static str) -> Result<usize, Error> {
        usize::try_from(self.word(i))
            .ok()
            .filter(|&v| v >= min)
            .ok_or(self.bad(reason))
    }

    pub(super) fn zero_point(&self, i: usize, reason: &'static str) -> Result<i32, Error> {
        let v = self.word(i);
        if (-128..=127).contains(&v) {
            Ok(v)
        } else {
            Err(self.bad(reason))
        }
    }

    pub(super) fn act(&self, i: usize) -> Result<ActRange, Error> {
        let (lo, hi) = (self.word(i), self.word(i + 1));
        if (-128..=127).contains(&lo) && (-128..=127).contains(&hi) && lo <= hi {
            Ok(ActRange::from_words(lo, hi))
        } else {
            Err(self.bad("act_min/act_max outside -128..=127 or act_min > act_max"))
        }
    }

    pub(super) fn requant(&self, i: usize) -> Result<Requant, Error> {
        let rq = Requant::new(self.word(i), self.word(i + 1));
        if rq.is_valid() {
            Ok(rq)
        } else {
            Err(self.bad("requant mult < 0 or shift outside -31..=30"))
        }
    }

    /// The constant array whose offset is word `i`, `len` bytes long.
    pub(super) fn array(
        &self,
        i: usize,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], Error> {
        let off = usize::try_from(self.word(i))
            .ok()
            .filter(|&o| o != 0)
            .ok_or(self.bad(what))?;
        region(self.blob, what, off, len)
    }

    pub(super) fn i8s(
        &self,
        i: usize,
        len: Option<usize>,
        what: &'static str,
    ) -> Result<&'a [i8], Error> {
        let len = len.ok_or(Error::ShapeOverflow { what })?;
        self.array(i, len, what).map(as_i8)
    }

    pub(super) fn i32s(&self, i: usize, n: usize, what: &'static str) -> Result<I32Le<'a>, Error> {
        let len = n.checked_mul(4).ok_or(Error::ShapeOverflow { what })?;
        self.array(i, len, what).map(I32Le::new)
    }

    pub(super) fn lut(&self, i: usize) -> Result<&'a SigmoidLut, Error> {
        let bytes = self.array(i, 256, "sigmoid table")?;
        <&SigmoidLut>::try_from(as_i8(bytes)).map_err(|_| self.bad("sigmoid table"))
    }

    /// bias/mult/shift arrays at words `i..i+3`, every requantizer checked.
    pub(super) fn per_channel(
        &self,
        i: usize,
        n: usize,
    ) -> Result<(I32Le<'a>, I32Le<'a>, I32Le<'a>), Error> {
        let bias = self.i32s(i, n, "bias array")?;
        let mult = self.i32s(i + 1, n, "multiplier array")?;
        let shift = self.i32s(i + 2, n, "shift array")?;
        if mult
            .iter()
            .zip(shift.iter())
            .any(|(m, s)| !Requant::new(m, s).is_valid())
        {
            return Err(self.bad("per-channel mult < 0 or shift outside -31..=30"));
        }
        Ok((bias, mult, shift))
    }

    pub(super) fn geometry(&self, dilated: bool) -> Result<ConvGeometry, Error> {
        let w = |i| self.count(i, 0, "negative geometry word");
        let pos = |i| self.count(i, 1, "kernel, stride and dilation must be >= 1");
        let (pads_at, dil) = if dilated {
            (6, (pos(4)?, pos(5)?))
        } else {
            (4, (1, 1))
        };
        Ok(ConvGeometry {
            kh: pos(0)?,
            kw: pos(1)?,
            stride_h: pos(2)?,
            stride_w: pos(3)?,
            dil_h: dil.0,
            dil_w: dil.1,
            pad_top: w(pads_at)?,
            pad_left: w(pads_at + 1)?,
            pad_bottom: w(pads_at + 2)?,
            pad_right: w(pads_at + 3)?,
        })
    }
}
