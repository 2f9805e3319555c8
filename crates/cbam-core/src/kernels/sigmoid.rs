//! SIGMOID (op 11): a 256-entry table built on the host; output scale 1/256, zero point -128.

use super::{check_len, SigmoidLut};
use crate::error::Error;

/// Looks one value up; indexing a 256-entry table with a `u8` cannot go out of bounds.
#[inline]
pub fn lookup(lut: &SigmoidLut, x: i8) -> i8 {
    lut[usize::from((x as u8) ^ 0x80)]
}

/// Applies the table elementwise.
pub fn sigmoid(lut: &SigmoidLut, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    check_len(output.len(), Some(input.len()), "sigmoid output")?;
    for (o, &x) in output.iter_mut().zip(input) {
        *o = lookup(lut, x);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::Rng;

    #[test]
    fn indexes_entry_x_plus_128() {
        let mut rng = Rng::new(0x51);
        let lut: SigmoidLut = core::array::from_fn(|_| rng.i8());
        let input: Vec<i8> = (i8::MIN..=i8::MAX).collect();
        let mut out = vec![0i8; 256];
        sigmoid(&lut, &input, &mut out).unwrap();
        for (i, &x) in input.iter().enumerate() {
            assert_eq!(out[i], lut[(i32::from(x) + 128) as usize]);
        }
        assert!(sigmoid(&lut, &input, &mut [0; 3]).is_err());
    }
}
