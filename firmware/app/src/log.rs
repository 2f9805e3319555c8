//! `defmt` logging that compiles away for the host unit tests.
//!
//! With the `defmt` feature the macros are `defmt`'s; without it they only
//! borrow their arguments, so a value computed just for a log line does not
//! turn into an unused-variable warning.

#[cfg(feature = "defmt")]
macro_rules! info {
    ($($t:tt)*) => { defmt::info!($($t)*) };
}
#[cfg(feature = "defmt")]
macro_rules! warn {
    ($($t:tt)*) => { defmt::warn!($($t)*) };
}
#[cfg(feature = "defmt")]
macro_rules! error {
    ($($t:tt)*) => { defmt::error!($($t)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! discard {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}
#[cfg(not(feature = "defmt"))]
macro_rules! info {
    ($($t:tt)*) => { discard!($($t)*) };
}
#[cfg(not(feature = "defmt"))]
macro_rules! warn {
    ($($t:tt)*) => { discard!($($t)*) };
}
#[cfg(not(feature = "defmt"))]
macro_rules! error {
    ($($t:tt)*) => { discard!($($t)*) };
}
