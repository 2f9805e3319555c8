//! Parameter words: `i32`s in FORMAT.md order, decoded into named values and encoded back.
//!
//! A words layout is a `#[repr(C)]` struct of `i32` fields and smaller layouts, declared in
//! word order with [`words!`]: decoding and encoding follow the declaration, and a field's
//! word index is its `core::mem::offset_of!` divided by 4.

use crate::le::I32Le;

/// The most words any op carries (CBAM's 26).
pub const MAX_WORDS: usize = 26;

/// A group of parameter words in FORMAT.md order.
pub trait Words: Sized + Copy + Default {
    /// Words in the group.
    const COUNT: usize;

    /// Takes the group's words from the front of `words`; `None` if they run out.
    fn read(words: &mut impl Iterator<Item = i32>) -> Option<Self>;

    /// Appends the group's words.
    fn write(&self, out: &mut WordBuf);

    /// The group from exactly `COUNT` stored words.
    fn decode(words: I32Le<'_>) -> Option<Self> {
        if words.len() != Self::COUNT {
            return None;
        }
        Self::read(&mut words.iter())
    }

    /// The group's words.
    fn encode(&self) -> WordBuf {
        let mut out = WordBuf::default();
        self.write(&mut out);
        out
    }
}

impl Words for i32 {
    const COUNT: usize = 1;

    fn read(words: &mut impl Iterator<Item = i32>) -> Option<Self> {
        words.next()
    }

    fn write(&self, out: &mut WordBuf) {
        out.push(*self);
    }
}

/// Up to [`MAX_WORDS`] words, without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WordBuf {
    words: [i32; MAX_WORDS],
    len: usize,
}

impl Default for WordBuf {
    fn default() -> Self {
        Self {
            words: [0; MAX_WORDS],
            len: 0,
        }
    }
}

impl WordBuf {
    /// Appends a word. Every layout fits (checked at compile time in the op table), so a
    /// word past [`MAX_WORDS`] cannot occur; it would be dropped rather than panic.
    pub fn push(&mut self, word: i32) {
        if let Some(slot) = self.words.get_mut(self.len) {
            *slot = word;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[i32] {
        self.words.get(..self.len).unwrap_or_default()
    }
}

impl core::ops::Deref for WordBuf {
    type Target = [i32];

    fn deref(&self) -> &[i32] {
        self.as_slice()
    }
}

/// Declares a words layout: a `#[repr(C)]` struct whose fields are words or smaller layouts,
/// in word order, and its [`Words`] implementation.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[repr(C)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $crate::format::Words for $name {
            const COUNT: usize = 0 $(+ <$ty as $crate::format::Words>::COUNT)*;

            fn read(words: &mut impl Iterator<Item = i32>) -> Option<Self> {
                let _ = &words;
                Some(Self {
                    $($field: <$ty as $crate::format::Words>::read(words)?,)*
                })
            }

            fn write(&self, out: &mut $crate::format::WordBuf) {
                let _ = &out;
                $($crate::format::Words::write(&self.$field, out);)*
            }
        }
    };
}
pub(crate) use words;

words! {
    /// The fused activation clamp in the output's int8 domain: `act_min, act_max`.
    pub struct ActWords {
        pub min: i32,
        pub max: i32,
    }
}

words! {
    /// A requantizer: `mult, shift` (FORMAT.md "Conventions").
    pub struct RequantWords {
        pub mult: i32,
        pub shift: i32,
    }
}

words! {
    /// Blob offsets of per-output-channel `i32` arrays: `bias_off, mult_off, shift_off`.
    pub struct PerChannelWords {
        pub bias_off: i32,
        pub mult_off: i32,
        pub shift_off: i32,
    }
}
