//! The CPU pieces the library owns: the trap entry the environment's stubs call, the
//! exception fixup table, page walks over the environment's tables, and the raw instruction
//! wrappers (used only by the legacy backend and the platform detection probe).

pub mod fixup;
pub mod insn;
pub mod paging;
pub mod trap;
