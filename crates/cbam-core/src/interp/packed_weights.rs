//! A model's convolution weights packed once for this CPU's kernels, in a buffer the caller
//! owns. The host kernels rearrange a layer's weights into panels before multiplying; done
//! on every call, that is a few percent of an inference, and it is paid again by every
//! thread's share of a split one. A host that runs many frames packs them once here.
//! Microcontroller kernels read the weights as they are: there no layer is packed.
//!
//! Layout (`i32` words): the blob's CRC, its op count and the architecture, one word per
//! op (where the op's packing starts, 0 for none), then the packings (see
//! `kernels::conv2d::conv2d_packing`).

use crate::blob::{decode_op, Kernel, Model, Op};
use crate::error::Error;
use crate::kernels::conv2d::conv2d_packing;

/// Words before the per-op table.
const HEADER: usize = 3;

/// Which kernels the packing is for: their layouts differ between architectures.
const ARCH: i32 = if cfg!(target_arch = "x86_64") {
    0x7838_3634
} else if cfg!(target_arch = "aarch64") {
    0x6136_3420
} else {
    0
};

impl<'a> Model<'a> {
    /// Words of buffer [`Model::pack_weights`] needs on this CPU.
    pub fn packed_weights_len(&self) -> Result<usize, Error> {
        self.pack(None)
    }

    /// Packs every convolution's weights as this CPU's kernels want them, into `buf` (at
    /// least [`Model::packed_weights_len`] words); returns the words written.
    pub fn pack_weights(&self, buf: &mut [i32]) -> Result<usize, Error> {
        let needed = self.pack(None)?;
        let found = buf.len();
        let words = buf
            .get_mut(..needed)
            .ok_or(Error::PackBufferTooSmall { needed, found })?;
        self.pack(Some(words))
    }

    /// This model, its convolutions reading their weights from `packed` (written by
    /// [`Model::pack_weights`] from the same blob on this machine) instead of packing them
    /// on every call. Words from another blob or architecture are refused; a layer whose
    /// packing does not match the path a call takes packs its own, so the outputs are the
    /// same bits either way.
    pub fn with_packed_weights(self, packed: &'a [i32]) -> Result<Self, Error> {
        let table = HEADER + usize::from(self.header.n_ops);
        if packed.get(..HEADER) != Some(&self.identity()[..]) || packed.len() < table {
            return Err(Error::PackedForOtherModel);
        }
        let mut model = self;
        model.packed = packed;
        Ok(model)
    }

    fn identity(&self) -> [i32; HEADER] {
        [self.header.crc32 as i32, i32::from(self.header.n_ops), ARCH]
    }

    /// The words the packing takes; with `out`, writes them there.
    fn pack(&self, mut out: Option<&mut [i32]>) -> Result<usize, Error> {
        let n_ops = self.header.n_ops;
        let mut at = HEADER + usize::from(n_ops);
        if let Some(head) = out.as_deref_mut().and_then(|o| o.get_mut(..at)) {
            head.fill(0);
            head.get_mut(..HEADER)
                .unwrap_or_default()
                .copy_from_slice(&self.identity());
        }
        for index in 0..n_ops {
            let op = decode_op(self.blob, &self.header, index)?;
            let Kernel::Conv2d(p) = &op.kernel else {
                continue;
            };
            let (in_shape, out_shape) = (op.input(0)?.shape, op.output.shape);
            // Writes the layer when `out` holds it (sized by a first pass), else only
            // measures it.
            let dst = out.as_deref_mut().and_then(|o| o.get_mut(at..));
            let len = conv2d_packing(p, in_shape, out_shape, dst.unwrap_or_default());
            if len == 0 {
                continue;
            }
            let too_big = Error::ShapeOverflow {
                what: "packed weights",
            };
            let start = i32::try_from(at).map_err(|_| too_big)?;
            if let Some(w) = out
                .as_deref_mut()
                .and_then(|o| o.get_mut(HEADER + usize::from(index)))
            {
                *w = start;
            }
            at = at.checked_add(len).ok_or(too_big)?;
        }
        Ok(at)
    }

    /// Gives op `index`, decoded to run, its packed weights if it is a convolution that
    /// has some. In place: an `Op` returned by value is copied whole, which cost a
    /// Cortex-M4 0.1% of an inference.
    #[inline]
    pub(crate) fn attach_packing(&self, index: u16, op: &mut Op<'a>) {
        if self.packed.is_empty() {
            return;
        }
        if let Kernel::Conv2d(p) = &mut op.kernel {
            p.packed = self.packed_of(index);
        }
    }

    /// Op `index`'s packing: from its start to the next packed op's (or the end).
    fn packed_of(&self, index: u16) -> &'a [i32] {
        let words = self.packed;
        let table = words
            .get(HEADER..HEADER + usize::from(self.header.n_ops))
            .unwrap_or_default();
        let start = |w: i32| usize::try_from(w).ok().filter(|&s| s != 0);
        let Some(first) = table.get(usize::from(index)).and_then(|&w| start(w)) else {
            return &[];
        };
        let next = table
            .iter()
            .skip(usize::from(index) + 1)
            .find_map(|&w| start(w))
            .unwrap_or(words.len());
        words.get(first..next).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use crate::error::Error;
    use crate::kernels::test_support::Rng;
    use crate::testblob::{all_ops_blob, tiny_cbam_blob};
    use crate::{Model, RowShare, Split};

    fn run(model: &Model, input: &[i8], shares: usize) -> Vec<i8> {
        let mut arena = vec![0x5Au8; model.arena_size()];
        let mut out = vec![0i8; model.output().len()];
        let split = Split {
            shares,
            min_share_work: 1,
            min_share_pixels: 1,
        };
        let mut exec = |s: &mut [RowShare<'_>]| s.iter_mut().for_each(RowShare::run);
        model
            .run_split(&mut arena, input, &mut out, split, &mut exec)
            .unwrap();
        out
    }

    /// Every op's output, one after another.
    fn trace(model: &Model, input: &[i8]) -> Vec<i8> {
        struct Outputs(Vec<i8>);
        impl crate::Observer for Outputs {
            fn op_end(&mut self, _: usize, _: crate::OpCode, output: &[i8]) {
                self.0.extend_from_slice(output);
            }
        }
        let mut arena = vec![0u8; model.arena_size()];
        let mut out = vec![0i8; model.output().len()];
        let mut seen = Outputs(Vec::new());
        model
            .run_observed(&mut arena, input, &mut out, &mut seen)
            .unwrap();
        seen.0
    }

    fn packed(model: &Model) -> Vec<i32> {
        let mut buf = vec![0i32; model.packed_weights_len().unwrap()];
        assert_eq!(model.pack_weights(&mut buf).unwrap(), buf.len());
        buf
    }

    /// Whole and split into shares, a model with packed weights gives the bits it gives
    /// without; it reads them (spoiled ones change the output).
    #[test]
    fn packed_weights_give_the_same_bits_whole_and_split() {
        let mut rng = Rng::new(0x9AC);
        for blob in [all_ops_blob(), tiny_cbam_blob()] {
            let model = Model::parse(&blob).unwrap();
            let mut input = vec![0i8; model.input().len()];
            rng.fill(&mut input);
            let words = packed(&model);
            let with = model.with_packed_weights(&words).unwrap();
            for shares in [1, 2, 3] {
                assert_eq!(run(&with, &input, shares), run(&model, &input, shares));
            }
            let on_host_simd = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
            let table = super::HEADER..super::HEADER + model.n_ops();
            let packs = words[table.clone()].iter().any(|&s| s != 0);
            assert!(packs || !on_host_simd, "no layer packed on this host");
            if packs {
                // Every layer's words past its own header, which its kernel checks.
                let mut spoiled = words.clone();
                for start in words[table].iter().filter(|&&s| s != 0) {
                    let start = *start as usize + 4;
                    spoiled[start] = spoiled[start].wrapping_add(0x0101_0101);
                    spoiled[start + 40] = spoiled[start + 40].wrapping_add(0x0101_0101);
                }
                let bad = model.with_packed_weights(&spoiled).unwrap();
                assert_ne!(trace(&bad, &input), trace(&model, &input));
            }
        }
    }

    #[test]
    fn a_short_buffer_or_another_models_packing_is_an_error() {
        let (a, b) = (all_ops_blob(), tiny_cbam_blob());
        let (a, b) = (Model::parse(&a).unwrap(), Model::parse(&b).unwrap());
        let needed = a.packed_weights_len().unwrap();
        let mut short = vec![0i32; needed - 1];
        assert_eq!(
            a.pack_weights(&mut short).unwrap_err(),
            Error::PackBufferTooSmall {
                needed,
                found: needed - 1
            }
        );
        let words = packed(&b);
        let err = a.with_packed_weights(&words);
        assert_eq!(err.unwrap_err(), Error::PackedForOtherModel);
        let mut words = packed(&a);
        assert!(a.with_packed_weights(&words[..super::HEADER]).is_err());
        words[2] ^= 1;
        let err = a.with_packed_weights(&words);
        assert_eq!(
            err.unwrap_err(),
            Error::PackedForOtherModel,
            "another architecture"
        );
    }
}
