//! cbam-core: the `no_std`, allocation-free int8 inference core.
#![no_std]
