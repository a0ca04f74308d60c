//! `libcvmprobe.a`: the guest library (`cvmprobe_guest`) behind the C ABI of
//! `selftest/cvmprobe.h`, for a KVM selftest that runs the tables as guest code
//! (`selftest/cvmprobe_test.c`).
//!
//! The entry points (`cvmprobe_run`, `cvmprobe_trap`, `cvmprobe_pio_write32`) run in the
//! guest. The pure functions (`cvmprobe_host_value`, `cvmprobe_memslot_value`,
//! `cvmprobe_case_name`, `cvmprobe_check_case`) touch no state, no
//! hardware and no heap: the selftest is one binary, and its host half calls them too, so
//! host and guest share one definition of the test device's values and of what each case
//! declares, as cvmprobe's own VMM shares `protocol` with its kernel.
#![no_std]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_char;
use core::fmt::Write;
use linked_list_allocator::Heap;
use protocol::abi::{self, Access, Ops, TrapFrame};
use protocol::access::{Direction, Width};
use protocol::testdev::explain::{self, CHECK_MAX};
use protocol::testdev::{self, Seen, Space};

/// The library's heap (diagnostics, error texts): `.bss` of the selftest's image, which
/// kvm_util copies into guest memory with the rest.
const HEAP_SIZE: usize = 128 * 1024;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

/// A heap set up on its first use: the guest's statics are a copy of the executable's image
/// and nothing runs before `cvmprobe_run` to set one up.
struct LazyHeap(spin::Once<spin::Mutex<Heap>>);

impl LazyHeap {
    fn heap(&self) -> &spin::Mutex<Heap> {
        self.0.call_once(|| {
            // SAFETY: HEAP_SPACE is used by this heap only, which is set up once.
            let heap = unsafe { Heap::new((&raw mut HEAP_SPACE).cast::<u8>(), HEAP_SIZE) };
            spin::Mutex::new(heap)
        })
    }
}

// SAFETY: allocation and deallocation go to one linked-list heap under a lock.
unsafe impl GlobalAlloc for LazyHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap()
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = core::ptr::NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` on this heap with `layout`.
            unsafe { self.heap().lock().deallocate(p, layout) }
        }
    }
}

#[global_allocator]
static HEAP: LazyHeap = LazyHeap(spin::Once::new());

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    cvmprobe_guest::report::panic(info)
}

/// Runs the tables in the environment `ops` describes (see `cvmprobe.h`).
///
/// # Safety
/// `ops` points at a table whose callbacks may be called for the rest of the run; `cmdline`
/// is NUL-ended and lives for the run.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cvmprobe_run(ops: *const Ops, cmdline: *const c_char) -> ! {
    // SAFETY: per the function contract; the table is copied once.
    let ops = unsafe { *ops };
    let cmdline = if cmdline.is_null() {
        ""
    } else {
        // SAFETY: per the function contract.
        unsafe { cvmprobe_guest::env::c_text(cmdline) }
    };
    cvmprobe_guest::run(ops, cmdline)
}

/// The library's trap entry (see `cvmprobe.h`).
///
/// # Safety
/// `frame` is the interrupted code's saved state, as the environment's stub pushed it; the
/// stub resumes from it (possibly changed) when this returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cvmprobe_trap(frame: *mut TrapFrame) {
    // SAFETY: per the function contract.
    cvmprobe_guest::trap(unsafe { &mut *frame })
}

/// A 4-byte port write through the detected platform's backend.
#[unsafe(no_mangle)]
pub extern "C" fn cvmprobe_pio_write32(port: u16, value: u32) {
    cvmprobe_guest::io::pio_write::<u32>(port, value)
}

fn width(size: u32) -> Option<Width> {
    Width::from_bytes(u64::from(size))
}

/// `protocol::testdev::host_value` (0 for a size that is not 1, 2, 4 or 8).
#[unsafe(no_mangle)]
pub extern "C" fn cvmprobe_host_value(seed: u64, space: u32, offset: u64, size: u32) -> u64 {
    let space = if space == u32::from(abi::SPACE_MMIO) {
        Space::Mmio
    } else {
        Space::Pio
    };
    width(size).map_or(0, |w| testdev::host_value(seed, space, offset, w))
}

/// `protocol::memslot::{ram_value, marker_value, write_value}` (0 for a bad size or `which`).
#[unsafe(no_mangle)]
pub extern "C" fn cvmprobe_memslot_value(seed: u64, which: u32, offset: u64, size: u32) -> u64 {
    use protocol::memslot::{marker_value, ram_value, write_value};
    let Some(w) = width(size) else { return 0 };
    match which {
        abi::MEMSLOT_RAM => ram_value(seed, offset, w),
        abi::MEMSLOT_MARKER => marker_value(seed, offset, w),
        abi::MEMSLOT_WRITE => write_value(seed, offset, w),
        _ => 0,
    }
}

/// A `core::fmt` writer into a C buffer, NUL-ended, cut at its size.
struct CBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl CBuf<'_> {
    /// The length written, after the NUL.
    fn finish(self) -> u64 {
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = 0;
        }
        self.len as u64
    }
}

impl Write for CBuf<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len().saturating_sub(self.len + 1);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A C buffer as a writer.
///
/// # Safety
/// `buf` is writable for `size` bytes (or `size` is 0).
unsafe fn cbuf<'a>(buf: *mut c_char, size: u64) -> CBuf<'a> {
    let buf = if buf.is_null() || size == 0 {
        &mut [][..]
    } else {
        // SAFETY: per the function contract.
        unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), size as usize) }
    };
    CBuf { buf, len: 0 }
}

/// `suite.case` of a case id, NUL-ended in `buf`; its length, 0 for an unknown id.
///
/// # Safety
/// `buf` is writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cvmprobe_case_name(id: u32, buf: *mut c_char, size: u64) -> u64 {
    let Some((suite, case)) = testdev::case_of_id(id) else {
        return 0;
    };
    // SAFETY: per the function contract.
    let mut w = unsafe { cbuf(buf, size) };
    let _ = write!(w, "{suite}.{case}");
    w.finish()
}

/// Checks the accesses case `id` made against its declaration and its reported data (see
/// `cvmprobe.h`); 0 when they match, else the finding's length, NUL-ended in `msg`.
///
/// # Safety
/// `log` holds `n` records, `reported` `n_reported` values (either may be NULL when its count
/// is 0); `msg` is writable for `msg_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cvmprobe_check_case(
    id: u32,
    log: *const Access,
    n: u64,
    reported: *const u64,
    n_reported: u64,
    msg: *mut c_char,
    msg_size: u64,
) -> u64 {
    // SAFETY: per the function contract.
    let mut w = unsafe { cbuf(msg, msg_size) };
    let Some((suite, case)) = testdev::case_of_id(id) else {
        let _ = write!(w, "case id {id:#x} is not in the catalog");
        return w.finish();
    };
    let slice = |p: *const u64, n: u64| {
        if p.is_null() || n == 0 {
            &[][..]
        } else {
            // SAFETY: per the function contract.
            unsafe { core::slice::from_raw_parts(p, n as usize) }
        }
    };
    let log: &[Access] = if log.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: per the function contract.
        unsafe { core::slice::from_raw_parts(log, n as usize) }
    };
    let reported = slice(reported, n_reported);
    if log.len() > CHECK_MAX {
        let _ = write!(w, "{}", explain::Finding::TooMany { count: log.len() });
        return w.finish();
    }
    let mut seen = [Seen {
        space: Space::Pio,
        offset: 0,
        size: 0,
        dir: Direction::Read,
    }; CHECK_MAX];
    let mut rips = [0u64; CHECK_MAX];
    let mut data = [(Direction::Read, 0u64); CHECK_MAX];
    for (i, a) in log.iter().enumerate() {
        let dir = if a.write != 0 {
            Direction::Write
        } else {
            Direction::Read
        };
        seen[i] = Seen {
            space: if a.space == abi::SPACE_MMIO {
                Space::Mmio
            } else {
                Space::Pio
            },
            offset: a.offset,
            size: u64::from(a.size),
            dir,
        };
        rips[i] = a.rip;
        let mask = Width::from_bytes(u64::from(a.size)).map_or(u64::MAX, Width::mask);
        data[i] = (dir, a.data & mask);
    }
    let n = log.len();
    let steps = testdev::declared(suite, case);
    match explain::check_case(steps, &seen[..n], &rips[..n], &data[..n], reported) {
        Ok(()) => 0,
        Err(f) => {
            let _ = write!(w, "{f}");
            w.finish().max(1)
        }
    }
}
