//! A minimal reader of the kernel's BPF Type Format, for one purpose: the byte offset of a
//! named member inside a named struct, looking through anonymous struct/union members.
//!
//! Rust eBPF has no CO-RE relocations, so the agent resolves the few offsets its programs
//! need from `/sys/kernel/btf/vmlinux` at load time. The reader is strict: any structural
//! inconsistency is an error, never a guess (a wrong offset would make the program read the
//! wrong field).

use std::collections::HashMap;

use thiserror::Error;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_HEADER_LEN: usize = 12;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Why BTF could not be read or a member not found.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    /// A section or record ends past the data.
    #[error("BTF data is truncated ({0})")]
    Truncated(&'static str),
    /// The header's magic is not BTF's.
    #[error("not BTF data (bad magic {0:#06x}); only little-endian BTF is supported")]
    BadMagic(u16),
    /// A type record of a kind this reader does not know.
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind {
        /// The type id.
        id: u32,
        /// Its kind number.
        kind: u32,
    },
    /// A name offset outside the string section.
    #[error("BTF name offset {0} is outside the string section")]
    BadString(u32),
    /// A reference to a type that does not exist.
    #[error("BTF refers to type id {0}, which does not exist")]
    BadTypeId(u32),
    /// The struct is not described.
    #[error("struct {0} is not in the kernel's BTF")]
    NoSuchStruct(String),
    /// The struct has no such member.
    #[error("struct {0} has no member {1}")]
    NoSuchMember(String, String),
    /// An LSM hook the programs need has a form (argument count) they were not built for.
    #[error(
        "the kernel's {0} takes {1:?} arguments, a form Rampart has no program for; \
         this kernel is not supported (see docs/ARCHITECTURE.md, supported kernels)"
    )]
    HookShape(String, Option<usize>),
    /// The member is a bitfield, which has no byte offset.
    #[error("struct {0} member {1} is a bitfield; only whole members can be read")]
    Bitfield(String, String),
    /// Following typedefs and modifiers never ends.
    #[error("type chain from id {0} is too long or cyclic")]
    Cycle(u32),
}

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield: bool,
}

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    /// For modifiers, typedefs and pointers: the referenced type.
    referenced: u32,
    /// The record's count of members, enumerators or parameters.
    vlen: u32,
    members: Vec<Member>,
}

/// Parsed BTF: the types the member search needs, and the string section.
#[derive(Debug)]
pub struct Btf {
    /// Index 0 is the implicit `void` type.
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
    /// Functions by name, with the type id of their prototype.
    functions: HashMap<String, u32>,
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, BtfError> {
    data.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or(BtfError::Truncated("u16"))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Truncated("u32"))
}

fn section<'a>(
    data: &'a [u8],
    start: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], BtfError> {
    let end = start.checked_add(len).ok_or(BtfError::Truncated(what))?;
    data.get(start..end).ok_or(BtfError::Truncated(what))
}

impl Btf {
    /// Reads the BTF of the running kernel.
    pub fn from_sys_fs() -> std::io::Result<Vec<u8>> {
        std::fs::read("/sys/kernel/btf/vmlinux")
    }

    /// Parses raw (non-ELF) little-endian BTF, as found in `/sys/kernel/btf/vmlinux`.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = u16_at(data, 0)?;
        if magic != MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        if hdr_len < HEADER_LEN {
            return Err(BtfError::Truncated("header"));
        }
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let body = data.get(hdr_len..).ok_or(BtfError::Truncated("header"))?;
        let type_data = section(body, type_off, type_len, "type section")?;
        let strings = section(body, str_off, str_len, "string section")?.to_vec();

        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            referenced: 0,
            vlen: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < type_data.len() {
            let id = types.len() as u32;
            let name_off = u32_at(type_data, at)?;
            let info = u32_at(type_data, at + 4)?;
            let size_or_type = u32_at(type_data, at + 8)?;
            at += TYPE_HEADER_LEN;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let trailing = match kind {
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let raw_offset = u32_at(type_data, m + 8)?;
                        let (bit_offset, bitfield) = if kind_flag {
                            (raw_offset & 0x00ff_ffff, raw_offset >> 24 != 0)
                        } else {
                            (raw_offset, false)
                        };
                        members.push(Member {
                            name_off: u32_at(type_data, m)?,
                            type_id: u32_at(type_data, m + 4)?,
                            bit_offset,
                            bitfield,
                        });
                    }
                    vlen * 12
                }
                _ => return Err(BtfError::UnknownKind { id, kind }),
            };
            if at + trailing > type_data.len() {
                return Err(BtfError::Truncated("type record"));
            }
            at += trailing;
            types.push(Type {
                name_off,
                kind,
                referenced: size_or_type,
                vlen: vlen as u32,
                members,
            });
        }

        let mut btf = Btf {
            types,
            strings,
            structs_by_name: HashMap::new(),
            functions: Default::default(),
        };
        for id in 1..btf.types.len() as u32 {
            let ty = &btf.types[id as usize];
            if ty.kind == KIND_STRUCT && ty.name_off != 0 {
                let name = btf.string(ty.name_off)?.to_owned();
                // Keep the first definition; vmlinux BTF is deduplicated.
                btf.structs_by_name.entry(name).or_insert(id);
            } else if ty.kind == KIND_FUNC && ty.name_off != 0 {
                let name = btf.string(ty.name_off)?.to_owned();
                btf.functions.entry(name).or_insert(ty.referenced);
            }
        }
        Ok(btf)
    }

    fn string(&self, off: u32) -> Result<&str, BtfError> {
        let tail = self
            .strings
            .get(off as usize..)
            .ok_or(BtfError::BadString(off))?;
        let end = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString(off))?;
        std::str::from_utf8(&tail[..end]).map_err(|_| BtfError::BadString(off))
    }

    fn ty(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::BadTypeId(id))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut id: u32) -> Result<&Type, BtfError> {
        for _ in 0..32 {
            let ty = self.ty(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.referenced
                }
                _ => return Ok(ty),
            }
        }
        Err(BtfError::Cycle(id))
    }

    /// Whether the kernel has a function of this name (e.g. `bpf_lsm_file_truncate`: an
    /// LSM hook a BPF program can attach to).
    pub fn has_function(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// How many parameters the kernel's function of this name takes (none if there is no
    /// such function, or its prototype is not in the BTF).
    pub fn function_params(&self, name: &str) -> Option<usize> {
        let proto = self.types.get(*self.functions.get(name)? as usize)?;
        (proto.kind == KIND_FUNC_PROTO).then_some(proto.vlen as usize)
    }

    /// Byte offset of `member` in `struct strukt`, looking into anonymous struct and union
    /// members (as C does when you write `s.member`).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs_by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoSuchStruct(strukt.to_owned()))?;
        let found = self.find_member(self.ty(id)?, member, 0, 0)?;
        match found {
            Some((_, true)) => Err(BtfError::Bitfield(strukt.to_owned(), member.to_owned())),
            Some((bits, false)) if bits % 8 == 0 => Ok(bits / 8),
            Some(_) => Err(BtfError::Bitfield(strukt.to_owned(), member.to_owned())),
            None => Err(BtfError::NoSuchMember(strukt.to_owned(), member.to_owned())),
        }
    }

    /// Depth-first search; returns the member's bit offset from the outer struct and
    /// whether it is a bitfield.
    fn find_member(
        &self,
        ty: &Type,
        member: &str,
        base_bits: u32,
        depth: u32,
    ) -> Result<Option<(u32, bool)>, BtfError> {
        if depth > 16 {
            return Err(BtfError::Cycle(ty.referenced));
        }
        for m in &ty.members {
            let bits = base_bits
                .checked_add(m.bit_offset)
                .ok_or(BtfError::Truncated("member offset"))?;
            if m.name_off == 0 {
                let inner = self.strip(m.type_id)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                    if let Some(hit) = self.find_member(inner, member, bits, depth + 1)? {
                        return Ok(Some(hit));
                    }
                }
            } else if self.string(m.name_off)? == member {
                return Ok(Some((bits, m.bitfield)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds raw BTF from a string table and type records, for tests.
    pub(crate) struct BtfBuilder {
        strings: Vec<u8>,
        types: Vec<u8>,
        next_id: u32,
    }

    impl BtfBuilder {
        pub(crate) fn new() -> Self {
            Self {
                strings: vec![0],
                types: Vec::new(),
                next_id: 1,
            }
        }

        fn name(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn push(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32) -> u32 {
            let name_off = self.name(name);
            for w in [name_off, (kind << 24) | vlen, size_or_type] {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        pub(crate) fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.push(name, KIND_INT, 0, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }

        pub(crate) fn ptr(&mut self, to: u32) -> u32 {
            self.push("", KIND_PTR, 0, to)
        }

        /// A function of this name (its prototype is not modelled: type 0).
        pub(crate) fn func(&mut self, name: &str) -> u32 {
            self.push(name, KIND_FUNC, 0, 0)
        }

        /// A function whose prototype takes `params` parameters of type `ty`.
        pub(crate) fn func_with(&mut self, name: &str, params: &[u32]) -> u32 {
            let proto = self.push("", KIND_FUNC_PROTO, params.len() as u32, 0);
            for ty in params {
                self.types.extend_from_slice(&0u32.to_le_bytes());
                self.types.extend_from_slice(&ty.to_le_bytes());
            }
            self.push(name, KIND_FUNC, 0, proto)
        }

        /// A struct or union with `(name, type, bit offset)` members.
        pub(crate) fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let kind = if union { KIND_UNION } else { KIND_STRUCT };
            let id = self.push(name, kind, members.len() as u32, size);
            for (mname, mtype, off) in members {
                let n = self.name(mname);
                for w in [n, *mtype, *off] {
                    self.types.extend_from_slice(&w.to_le_bytes());
                }
            }
            id
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.push(1);
            out.push(0);
            for w in [
                HEADER_LEN as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    #[test]
    fn finds_direct_member_offset() {
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        b.composite(
            false,
            "inode",
            16,
            &[("i_mode", long, 0), ("i_ino", long, 64)],
        );
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.member_offset("inode", "i_ino").unwrap(), 8);
        assert_eq!(btf.member_offset("inode", "i_mode").unwrap(), 0);
    }

    #[test]
    fn finds_member_inside_anonymous_union() {
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        let p = b.ptr(long);
        let anon = b.composite(true, "", 8, &[("f_llist", long, 0), ("f_inode", p, 0)]);
        b.composite(false, "file", 32, &[("f_flags", long, 0), ("", anon, 128)]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.member_offset("file", "f_inode").unwrap(), 16);
    }

    #[test]
    fn missing_struct_and_member_are_errors() {
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        b.composite(false, "inode", 8, &[("i_ino", long, 0)]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(
            btf.member_offset("file", "f_inode"),
            Err(BtfError::NoSuchStruct("file".into()))
        );
        assert_eq!(
            btf.member_offset("inode", "i_sb"),
            Err(BtfError::NoSuchMember("inode".into(), "i_sb".into()))
        );
    }

    #[test]
    fn bad_magic_is_rejected() {
        assert_eq!(
            Btf::parse(&[0, 0, 1, 0]).unwrap_err(),
            BtfError::BadMagic(0)
        );
    }

    #[test]
    fn truncated_type_section_is_rejected() {
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        b.composite(false, "inode", 8, &[("i_ino", long, 0)]);
        let mut raw = b.build();
        // Claim a type section longer than the data.
        raw[12..16].copy_from_slice(&10_000u32.to_le_bytes());
        assert!(matches!(Btf::parse(&raw), Err(BtfError::Truncated(_))));
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let mut b = BtfBuilder::new();
        b.push("x", 30, 0, 0);
        assert_eq!(
            Btf::parse(&b.build()).unwrap_err(),
            BtfError::UnknownKind { id: 1, kind: 30 }
        );
    }

    #[test]
    fn bitfield_member_is_refused() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4);
        let name = b.name("flags");
        let id = b.push("s", KIND_STRUCT, 1, 4);
        assert_eq!(id, 2);
        // Set kind_flag (bit 31) on the struct just pushed, so each member's offset word
        // carries a bitfield size in its top byte (here 3 bits at bit offset 5).
        let last = b.types.len();
        let info = (KIND_STRUCT << 24) | 1 | (1 << 31);
        b.types[last - 8..last - 4].copy_from_slice(&info.to_le_bytes());
        for w in [name, int, (3 << 24) | 5] {
            b.types.extend_from_slice(&w.to_le_bytes());
        }
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(
            btf.member_offset("s", "flags"),
            Err(BtfError::Bitfield("s".into(), "flags".into()))
        );
    }
}
