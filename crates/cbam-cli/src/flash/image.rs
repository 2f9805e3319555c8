//! What a firmware ELF occupies: flash bytes (everything with file contents) and static
//! RAM (`.data`, `.bss`, ...), read from the ELF program headers so that `.data`, which
//! lives in RAM but is initialised from flash, is charged to both.

use std::ops::Range;

use object::elf::PT_LOAD;
use object::read::elf::{ElfFile32, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

use super::error::FlashError;

/// The static the firmware runs the model in (`StaticArena`); its size came from the blob
/// it was built with, so the new model's arena replaces it in the RAM budget.
pub const ARENA_STATIC: &str = "CBAM_ARENA";
/// The static holding the blob the firmware was built with (firmware/build-support).
pub const MODEL_STATIC: &str = "MODEL_BLOB";

/// Where the ELF's bytes land, as the fit check understands the board.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The dedicated model region, whose contents are not firmware code.
    pub model_region: Option<Range<u64>>,
    /// Every address window that is RAM.
    pub ram: Vec<Range<u64>>,
}

/// The sizes of one firmware ELF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareImage {
    /// Flash bytes of the firmware itself: loadable contents outside the model region,
    /// minus an embedded model.
    pub code_bytes: u64,
    /// Static RAM (`.data`, `.bss`, ...) without the model arena buffer.
    pub static_ram_bytes: u64,
    /// Size of the firmware's model arena buffer, when the ELF names it.
    pub arena_buffer: Option<u64>,
    /// The blob linked into the firmware (embedded placement), when there is one.
    pub embedded_model: Option<Vec<u8>>,
}

impl FirmwareImage {
    /// Measures an ELF32 firmware image (every supported MCU is 32-bit).
    pub fn measure(elf: &[u8], layout: &Layout) -> Result<Self, FlashError> {
        let bad = |reason: String| FlashError::BadFirmware { reason };
        let file = ElfFile32::<Endianness>::parse(elf)
            .map_err(|e| bad(format!("not a 32-bit ELF file ({e})")))?;
        let endian = file.endian();

        let mut flash = 0u64;
        let mut ram = 0u64;
        for ph in file.elf_program_headers() {
            if ph.p_type(endian) != PT_LOAD {
                continue;
            }
            let load = u64::from(ph.p_paddr(endian));
            let file_size = u64::from(ph.p_filesz(endian));
            let stored = load..load.saturating_add(file_size);
            flash =
                flash.saturating_add(file_size - overlap(&stored, layout.model_region.as_ref()));
            let run = u64::from(ph.p_vaddr(endian));
            if layout.ram.iter().any(|r| r.contains(&run)) {
                ram = ram.saturating_add(u64::from(ph.p_memsz(endian)));
            }
        }

        let arena_buffer = find_static(&file, ARENA_STATIC).map(|s| s.size());
        let embedded_model = match find_static(&file, MODEL_STATIC) {
            // In a model region it is the region's initial contents, already not code.
            Some(sym) if !in_region(sym.address(), layout) => Some(static_bytes(&file, &sym)?),
            _ => None,
        };
        let embedded_len = embedded_model.as_ref().map_or(0, |m| m.len() as u64);

        Ok(FirmwareImage {
            code_bytes: flash.saturating_sub(embedded_len),
            static_ram_bytes: ram.saturating_sub(arena_buffer.unwrap_or(0)),
            arena_buffer,
            embedded_model,
        })
    }
}

/// The symbol of a Rust `static` named `ident`, mangled (`..10CBAM_ARENA17h..E`) or not.
fn find_static<'d, 'f>(
    file: &'f ElfFile32<'d, Endianness>,
    ident: &str,
) -> Option<object::read::elf::ElfSymbol32<'d, 'f, Endianness>> {
    let mangled = format!("{}{}", ident.len(), ident);
    file.symbols().find(|s| {
        s.name()
            .is_ok_and(|n| n == ident || mangled_segment(n, &mangled))
    })
}

/// `name` has `segment` as a whole path segment of a legacy-mangled symbol (followed by
/// the next segment's length digit or the closing `E`).
fn mangled_segment(name: &str, segment: &str) -> bool {
    name.match_indices(segment).any(|(at, _)| {
        let preceded_ok = !name[..at].ends_with(|c: char| c.is_ascii_digit());
        let next = name[at + segment.len()..].chars().next();
        preceded_ok && matches!(next, Some('E') | Some('0'..='9'))
    })
}

fn in_region(address: u64, layout: &Layout) -> bool {
    layout
        .model_region
        .as_ref()
        .is_some_and(|r| r.contains(&address))
}

/// The initial bytes of a static, read from the section that holds it.
fn static_bytes(
    file: &ElfFile32<'_, Endianness>,
    sym: &object::read::elf::ElfSymbol32<'_, '_, Endianness>,
) -> Result<Vec<u8>, FlashError> {
    let missing = || FlashError::BadFirmware {
        reason: format!("the bytes of `{MODEL_STATIC}` are not in the file"),
    };
    let index = sym.section_index().ok_or_else(missing)?;
    let section = file.section_by_index(index).map_err(|_| missing())?;
    let data = section
        .data_range(sym.address(), sym.size())
        .map_err(|_| missing())?
        .ok_or_else(missing)?;
    Ok(data.to_vec())
}

/// Bytes of `span` inside `region`.
fn overlap(span: &Range<u64>, region: Option<&Range<u64>>) -> u64 {
    region.map_or(0, |r| {
        let start = span.start.max(r.start);
        let end = span.end.min(r.end);
        end.saturating_sub(start)
    })
}

/// Test ELFs written byte by byte: only the header, program headers, a symbol table and
/// one named section, which is all `measure` reads.
#[cfg(test)]
pub(crate) mod test_elf {
    /// A loadable segment: (load address, run address, file bytes, memory bytes).
    pub type Segment = (u32, u32, u32, u32);

    pub struct Spec<'a> {
        pub segments: &'a [Segment],
        /// Global object symbols (name, address, size), defined in `section` when there
        /// is one, else absolute.
        pub symbols: &'a [(&'a str, u32, u32)],
        /// A section (name, address, contents).
        pub section: Option<(&'a str, u32, &'a [u8])>,
    }

    fn u16le(v: &mut Vec<u8>, x: u16) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn u32le(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn pos(v: &[u8]) -> u32 {
        u32::try_from(v.len()).unwrap()
    }
    fn align4(v: &mut Vec<u8>) {
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
    }

    /// sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_entsize.
    type SectionHeader = [u32; 9];

    fn push_header(out: &mut Vec<u8>, h: SectionHeader) {
        let [name, kind, flags, addr, offset, size, link, info, entsize] = h;
        for x in [
            name, kind, flags, addr, offset, size, link, info, 1, entsize,
        ] {
            u32le(out, x);
        }
    }

    pub fn build(spec: &Spec) -> Vec<u8> {
        let mut v = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0];
        v.resize(16, 0);
        u16le(&mut v, 2); // ET_EXEC
        u16le(&mut v, 40); // EM_ARM
        u32le(&mut v, 1);
        u32le(&mut v, 0); // entry
        u32le(&mut v, 52); // phoff
        let shoff_at = v.len();
        u32le(&mut v, 0); // shoff, patched below
        u32le(&mut v, 0x0500_0000); // flags
        u16le(&mut v, 52);
        u16le(&mut v, 32);
        u16le(&mut v, u16::try_from(spec.segments.len()).unwrap());
        u16le(&mut v, 40);
        let shnum_at = v.len();
        u16le(&mut v, 0);
        u16le(&mut v, 0);
        for &(paddr, vaddr, filesz, memsz) in spec.segments {
            for x in [1, 0, vaddr, paddr, filesz, memsz, 6, 4] {
                u32le(&mut v, x);
            }
        }

        // Sections: 0 null, 1 .shstrtab, 2 .strtab, 3 .symtab, 4 the optional one.
        let names = [
            ".shstrtab",
            ".strtab",
            ".symtab",
            spec.section.map_or("", |s| s.0),
        ];
        let mut shstr = vec![0u8];
        let mut name_at = Vec::new();
        for n in names {
            name_at.push(pos(&shstr));
            shstr.extend_from_slice(n.as_bytes());
            shstr.push(0);
        }
        let mut headers = Vec::new();
        push_header(&mut headers, [0; 9]);
        let shstr_off = pos(&v);
        v.extend_from_slice(&shstr);
        push_header(
            &mut headers,
            [name_at[0], 3, 0, 0, shstr_off, pos(&shstr), 0, 0, 0],
        );

        let str_off = pos(&v);
        v.push(0);
        let mut sym_name_at = Vec::new();
        for (name, _, _) in spec.symbols {
            sym_name_at.push(pos(&v) - str_off);
            v.extend_from_slice(name.as_bytes());
            v.push(0);
        }
        push_header(
            &mut headers,
            [name_at[1], 3, 0, 0, str_off, pos(&v) - str_off, 0, 0, 0],
        );

        align4(&mut v);
        let sym_off = pos(&v);
        v.extend_from_slice(&[0; 16]);
        let shndx: u16 = if spec.section.is_some() { 4 } else { 0xfff1 };
        for (&(_, value, size), &name) in spec.symbols.iter().zip(&sym_name_at) {
            for x in [name, value, size] {
                u32le(&mut v, x);
            }
            v.extend_from_slice(&[0x11, 0]); // STB_GLOBAL | STT_OBJECT
            u16le(&mut v, shndx);
        }
        let sym_len = pos(&v) - sym_off;
        push_header(
            &mut headers,
            [name_at[2], 2, 0, 0, sym_off, sym_len, 2, 1, 16],
        );

        let mut count = 4u16;
        if let Some((_, addr, data)) = spec.section {
            let off = pos(&v);
            v.extend_from_slice(data);
            // SHT_PROGBITS, SHF_ALLOC
            push_header(
                &mut headers,
                [name_at[3], 1, 2, addr, off, pos(data), 0, 0, 0],
            );
            count += 1;
        }
        align4(&mut v);
        let shoff = pos(&v);
        v.extend_from_slice(&headers);
        v[shoff_at..shoff_at + 4].copy_from_slice(&shoff.to_le_bytes());
        v[shnum_at..shnum_at + 2].copy_from_slice(&count.to_le_bytes());
        v[shnum_at + 2..shnum_at + 4].copy_from_slice(&1u16.to_le_bytes());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::test_elf::{build, Spec};
    use super::*;

    fn layout() -> Layout {
        let sram = 0x2000_0000..0x2002_0000;
        Layout {
            model_region: Some(0x0804_0000..0x0808_0000),
            ram: vec![sram],
        }
    }

    #[test]
    fn data_counts_in_flash_and_ram_and_bss_only_in_ram() {
        let elf = build(&Spec {
            segments: &[
                (0x0800_0000, 0x0800_0000, 10_000, 10_000), // .text
                (0x0800_2710, 0x2000_0000, 300, 300),       // .data
                (0x2000_012C, 0x2000_012C, 0, 4_000),       // .bss
            ],
            symbols: &[],
            section: None,
        });
        let image = FirmwareImage::measure(&elf, &layout()).unwrap();
        assert_eq!(image.code_bytes, 10_300);
        assert_eq!(image.static_ram_bytes, 4_300);
        assert_eq!(image.arena_buffer, None);
        assert_eq!(image.embedded_model, None);
    }

    #[test]
    fn contents_in_the_model_region_are_not_code() {
        let elf = build(&Spec {
            segments: &[
                (0x0800_0000, 0x0800_0000, 8_000, 8_000),
                (0x0804_0000, 0x0804_0000, 5_000, 5_000),
            ],
            symbols: &[],
            section: None,
        });
        let image = FirmwareImage::measure(&elf, &layout()).unwrap();
        assert_eq!(image.code_bytes, 8_000);
    }

    #[test]
    fn the_arena_buffer_is_taken_out_of_static_ram() {
        let elf = build(&Spec {
            segments: &[(0x2000_0000, 0x2000_0000, 0, 50_000)],
            symbols: &[(
                "_ZN7cbam_fw10CBAM_ARENA17h0123456789abcdefE",
                0x2000_0000,
                40_000,
            )],
            section: None,
        });
        let image = FirmwareImage::measure(&elf, &layout()).unwrap();
        assert_eq!(image.arena_buffer, Some(40_000));
        assert_eq!(image.static_ram_bytes, 10_000);
    }

    #[test]
    fn an_embedded_model_is_reported_and_not_counted_as_code() {
        let blob = [7u8; 64];
        let elf = build(&Spec {
            segments: &[(0x0800_0000, 0x0800_0000, 1_000, 1_000)],
            symbols: &[(MODEL_STATIC, 0x0800_0100, 64)],
            section: Some((".rodata", 0x0800_0100, &blob)),
        });
        let image = FirmwareImage::measure(&elf, &layout()).unwrap();
        assert_eq!(image.embedded_model.as_deref(), Some(&blob[..]));
        assert_eq!(image.code_bytes, 936);
    }

    #[test]
    fn a_model_static_in_the_model_region_is_not_an_embedded_model() {
        let blob = [7u8; 64];
        let elf = build(&Spec {
            segments: &[(0x0804_0000, 0x0804_0000, 64, 64)],
            symbols: &[(MODEL_STATIC, 0x0804_0000, 64)],
            section: Some((".cbam_model", 0x0804_0000, &blob)),
        });
        let image = FirmwareImage::measure(&elf, &layout()).unwrap();
        assert_eq!(image.embedded_model, None);
        assert_eq!(image.code_bytes, 0);
    }

    #[test]
    fn only_whole_mangled_segments_name_a_static() {
        assert!(mangled_segment("_ZN2fw10CBAM_ARENA17h00E", "10CBAM_ARENA"));
        assert!(mangled_segment("_ZN2fw10CBAM_ARENAE", "10CBAM_ARENA"));
        assert!(!mangled_segment(
            "_ZN2fw110CBAM_ARENA17h00E",
            "10CBAM_ARENA"
        ));
        assert!(!mangled_segment(
            "_ZN2fw10CBAM_ARENA_X17h00E",
            "10CBAM_ARENA"
        ));
    }

    #[test]
    fn a_non_elf_file_is_a_clear_error() {
        let err = FirmwareImage::measure(b"CBAM not an elf", &layout()).unwrap_err();
        assert!(err.to_string().contains("ELF"), "{err}");
    }
}
