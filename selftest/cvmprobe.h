/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * cvmprobe as a library: the guest's test tables, its I/O API, its platform backends
 * (a normal VM, TDX, SEV-ES) and its KTAP writer, for an environment that is not cvmprobe's
 * own kernel, such as a KVM selftest (selftest/cvmprobe_test.c).
 *
 * libcvmprobe.a is built for x86_64-unknown-none (no SSE, no red zone, static relocations,
 * no GOT): it runs as guest code in a kvm_util VM, whose page tables, GDT and IDT are
 * kvm_util's. What the library needs from the place it runs in comes through struct
 * cvmprobe_ops; the layout below is checked against the Rust definition
 * (protocol::abi) by cvmprobe's tests.
 */
#ifndef CVMPROBE_H
#define CVMPROBE_H

#include <stdint.h>

#define CVMPROBE_ABI_VERSION		1

/* Results of a case (cvmprobe_ops.result). */
#define CVMPROBE_PASS			0
#define CVMPROBE_FAIL			1
#define CVMPROBE_SKIP			2
#define CVMPROBE_TODO			3	/* not ok # TODO: the todo fault injection */

/* Exit codes (cvmprobe_ops.exit). */
#define CVMPROBE_EXIT_PASS		0
#define CVMPROBE_EXIT_FAIL		1
#define CVMPROBE_EXIT_BAIL		2

/* cvmprobe_ops.write flags: the line is written from a fault or panic context. */
#define CVMPROBE_WRITE_EMERGENCY	1

/*
 * The vectors cvmprobe_trap() must receive: every exception (0-31), the device-interrupt
 * vectors CVMPROBE_IRQ_BASE .. CVMPROBE_IRQ_BASE + CVMPROBE_IRQ_COUNT - 1 (the local APIC
 * timer of the halt suite fires on CVMPROBE_IRQ_BASE) and CVMPROBE_SPURIOUS_VECTOR.
 */
#define CVMPROBE_IRQ_BASE		32
#define CVMPROBE_IRQ_COUNT		16
#define CVMPROBE_SPURIOUS_VECTOR	255

/*
 * What the environment provides. Callbacks get .ctx back as their first argument. All
 * callbacks but plan, result, map_mmio and sev_es_memory are required.
 */
struct cvmprobe_ops {
	/* sizeof(struct cvmprobe_ops) and CVMPROBE_ABI_VERSION: cvmprobe_run() checks both. */
	uint32_t size;
	uint32_t version;
	void *ctx;

	/*
	 * The guest reaches guest-physical address g at virtual address g + phys_offset: its
	 * RAM (page tables included: the #VE/#VC handlers and the SEV-ES and TDX backends walk
	 * them) and, on a normal VM, every MMIO range the tables use (the test device, the
	 * local APIC).
	 */
	uint64_t phys_offset;
	/* RAM is [0, ram_end) and [4 GiB, ram_end_high) (0: none above 4 GiB): the MMIO API
	 * refuses it. */
	uint64_t ram_end;
	uint64_t ram_end_high;
	/* Virtual address of a 4 KiB page the environment keeps shared with the host (the GHCB
	 * on SEV-ES); 0: none. */
	uint64_t shared_page;
	/* 4 or 5. */
	uint32_t paging_levels;
	uint32_t reserved;

	/* One output line of len bytes, its newline included. */
	void (*write)(void *ctx, const char *line, uint64_t len, uint32_t flags);
	/* Ends the run; code is a CVMPROBE_EXIT_* value. */
	void (*exit)(void *ctx, uint32_t code) __attribute__((noreturn));
	/*
	 * The platform is fixed (detection ran, the backend is up): finish setting up (a console
	 * that needs the backend, a heap that needs the final memory encryption). Returns NULL,
	 * or why the run cannot go on. Optional.
	 */
	const char *(*ready)(void *ctx);
	/*
	 * Virtual address through which the guest makes plain loads and stores to
	 * [gpa, gpa + len), memory the host may turn into MMIO (the memslot suite's page);
	 * 0 if the environment did not map it. On TDX the library sets the shared bit in the
	 * leaf entry itself. Optional.
	 */
	uint64_t (*map_mmio)(void *ctx, uint64_t gpa, uint64_t len);
	/*
	 * SEV-ES: the host's C-bit is cbit and the shared page is at ghcb_gpa. Map private
	 * memory with the C-bit and the shared page without it; return NULL, or why not (with
	 * the value concerned in *value). Optional when the environment's tables already do.
	 */
	const char *(*sev_es_memory)(void *ctx, uint32_t cbit, uint64_t ghcb_gpa,
				     uint64_t *value);
	/*
	 * When set, the environment prints the results: plan() gets the number of selected
	 * cases before the first one runs, result() each case's id (protocol::testdev::case_id,
	 * see cvmprobe_case_name()), its CVMPROBE_PASS/FAIL/SKIP/TODO and a skip's reason; write() then
	 * gets only diagnostics ("# ..."). When unset, write() gets the whole KTAP report.
	 */
	void (*plan)(void *ctx, uint32_t cases);
	void (*result)(void *ctx, uint32_t id, uint32_t result, const char *reason,
		       uint64_t reason_len);
};

/*
 * The register frame cvmprobe_trap() takes: the first twenty fields are kvm_util's struct
 * ex_regs in its order, and rsp and ss follow them on the stack as the CPU pushed them, so
 * route_exception()'s regs pointer is one.
 */
struct cvmprobe_frame {
	uint64_t rax, rcx, rdx, rbx;
	uint64_t rbp, rsi, rdi;
	uint64_t r8, r9, r10, r11;
	uint64_t r12, r13, r14, r15;
	uint64_t vector;
	uint64_t error_code;
	uint64_t rip;
	uint64_t cs;
	uint64_t rflags;
	uint64_t rsp;
	uint64_t ss;
};

/* Runs the tables (cmdline: "cvmprobe.filter=io cvmprobe.platform=legacy ...", NUL-ended). */
void cvmprobe_run(const struct cvmprobe_ops *ops, const char *cmdline)
	__attribute__((noreturn));

/* The library's trap entry; the frame may be changed (RIP, registers) before it returns. */
void cvmprobe_trap(struct cvmprobe_frame *frame);

/* The library's port IO, through the detected platform's backend. */
void cvmprobe_pio_write32(uint16_t port, uint32_t value);

/*
 * cvmprobe's test device (protocol::testdev) and memslot scenario (protocol::memslot).
 */
#define CVMPROBE_TESTDEV_PIO_BASE	0xd100
#define CVMPROBE_TESTDEV_PIO_LEN	0x20
#define CVMPROBE_TESTDEV_PIO_ID		0x00
#define CVMPROBE_TESTDEV_PIO_DATA	0x04
#define CVMPROBE_TESTDEV_PIO_DATA_BYTE	0x08
#define CVMPROBE_TESTDEV_PIO_VALUE	0x0c
#define CVMPROBE_TESTDEV_PIO_CASE	0x10
#define CVMPROBE_TESTDEV_PIO_BENCH	0x14
#define CVMPROBE_TESTDEV_MMIO_BASE	0xd0000000ull
#define CVMPROBE_TESTDEV_MMIO_LEN	0x10000
#define CVMPROBE_TESTDEV_MMIO_ID	0x000
#define CVMPROBE_TESTDEV_MMIO_SEED	0x008
#define CVMPROBE_TESTDEV_MMIO_REPORT	0x010
#define CVMPROBE_TESTDEV_MMIO_VALUE	0x100
#define CVMPROBE_TESTDEV_MMIO_VALUE_LEN	0x40
#define CVMPROBE_TESTDEV_MMIO_SCRATCH	0x1000
#define CVMPROBE_TESTDEV_MMIO_SCRATCH_LEN 0x1000
#define CVMPROBE_TESTDEV_ID		0x504d5643	/* "CVMP" */

#define CVMPROBE_MEMSLOT_GPA		0xc8000000ull
#define CVMPROBE_MEMSLOT_SIZE		0x1000
#define CVMPROBE_MEMSLOT_CONTROL_PORT	0xd120
#define CVMPROBE_MEMSLOT_CONTROL_ID	0x544c534d	/* "MSLT" */
#define CVMPROBE_MEMSLOT_DELETE		1
#define CVMPROBE_MEMSLOT_RESTORE	2
#define CVMPROBE_MEMSLOT_REPORT		3	/* accesses in bits 31:8 */

/* The address spaces of the test device. */
#define CVMPROBE_SPACE_PIO		0
#define CVMPROBE_SPACE_MMIO		1

/* One access to the test device, as the host saw it. */
struct cvmprobe_access {
	uint64_t offset;	/* from the space's base */
	uint64_t data;		/* the value written, or the value answered */
	uint64_t rip;		/* guest RIP, 0 if unknown */
	uint8_t space;		/* CVMPROBE_SPACE_* */
	uint8_t write;		/* 1: write, 0: read */
	uint8_t size;		/* bytes */
	uint8_t reserved[5];
};

/*
 * Pure functions: no state, no I/O. The selftest is one binary, so its host half calls them
 * too: host and guest share one definition of the device's values and of what each case
 * declares, as cvmprobe's own VMM shares the protocol crate with its kernel.
 */

/* The value a test-device VALUE register answers (protocol::testdev::host_value). */
uint64_t cvmprobe_host_value(uint64_t seed, uint32_t space, uint64_t offset, uint32_t size);

/* The memslot page's bytes: RAM at the start, the emulated page's answer, the guest's
 * write (protocol::memslot::{ram_value, marker_value, write_value}). */
#define CVMPROBE_MEMSLOT_RAM		0
#define CVMPROBE_MEMSLOT_MARKER		1
#define CVMPROBE_MEMSLOT_WRITE		2
uint64_t cvmprobe_memslot_value(uint64_t seed, uint32_t which, uint64_t offset, uint32_t size);

/* "suite.case" of a case id, NUL-ended in buf; its length, 0 for an unknown id. */
uint64_t cvmprobe_case_name(uint32_t id, char *buf, uint64_t size);

/*
 * Compares the accesses case `id` made to the test device (log, in order; the CASE, BENCH
 * and REPORT writes left out) with the sequence it declares, and their data with the values
 * it reported through REPORT. Returns 0 when they match, else the length of the finding
 * written NUL-ended to msg.
 */
uint64_t cvmprobe_check_case(uint32_t id, const struct cvmprobe_access *log, uint64_t n,
			     const uint64_t *reported, uint64_t n_reported,
			     char *msg, uint64_t msg_size);

#endif /* CVMPROBE_H */
