// SPDX-License-Identifier: GPL-2.0-only
/*
 * cvmprobe_test: cvmprobe's test tables (port IO, MMIO, CPUID, MSR, HLT, memslot deletion)
 * as guest code in a kvm_util VM: a normal VM, SEV-ES, or a TD in trees with the TDX
 * selftests.
 *
 * The guest half is libcvmprobe.a (Rust, built for x86_64-unknown-none): cvmprobe_run()
 * detects the platform, runs the tables through its backend (plain instructions, the GHCB,
 * TDG.VP.VMCALL) and reports each case through the callbacks below.  The host half is the
 * run loop: it plays cvmprobe's test device (a port range and an MMIO window) and the memslot
 * scenario, answers every access with values derived from a per-run seed, checks the
 * accesses each case made against the sequence the case declares, and prints one kselftest
 * result per case.
 *
 * Guest and host talk through a shared page: the guest fills in a message and writes
 * CHANNEL_PORT through cvmprobe's port IO, i.e. a plain OUT on a normal VM, a GHCB IOIO
 * request on SEV-ES and TDG.VP.VMCALL<Instruction.IO> in a TD.  kvm_util's ucall() cannot
 * be used: the host side reads RDI with KVM_GET_REGS, which SEV-ES and TDX vCPUs refuse.
 */
#include <getopt.h>
#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "sev.h"

#if __has_include("tdx/tdx_util.h")
#include "tdx/tdx_util.h"
#define HAVE_TDX_SELFTESTS 1
#endif

#include "cvmprobe.h"

/* The guest reaches guest-physical address g at virtual address g + PHYS_OFFSET. */
#define PHYS_OFFSET		(1ull << 44)

#define CHANNEL_PORT		0xd1f0
#define MEMSLOT_SLOT		10
#define LAPIC_GPA		0xfee00000ull

enum vm_kind { VM_LEGACY, VM_SEV_ES, VM_TDX };

static const char * const vm_kind_name[] = {
	[VM_LEGACY] = "legacy",
	[VM_SEV_ES] = "sev-es",
	[VM_TDX] = "tdx",
};

enum { MSG_LINE = 1, MSG_PLAN, MSG_RESULT, MSG_EXIT };

struct channel {
	uint64_t msg;
	uint64_t arg[2];
	uint64_t len;
	char text[4096 - 32];
};

kvm_static_assert(sizeof(struct channel) == 4096);

#define FRAME_FIELD_IS_EX_REGS(f) \
	kvm_static_assert(offsetof(struct cvmprobe_frame, f) == offsetof(struct ex_regs, f))
FRAME_FIELD_IS_EX_REGS(rax);
FRAME_FIELD_IS_EX_REGS(rcx);
FRAME_FIELD_IS_EX_REGS(rdx);
FRAME_FIELD_IS_EX_REGS(rbx);
FRAME_FIELD_IS_EX_REGS(rbp);
FRAME_FIELD_IS_EX_REGS(rsi);
FRAME_FIELD_IS_EX_REGS(rdi);
FRAME_FIELD_IS_EX_REGS(r8);
FRAME_FIELD_IS_EX_REGS(r9);
FRAME_FIELD_IS_EX_REGS(r10);
FRAME_FIELD_IS_EX_REGS(r11);
FRAME_FIELD_IS_EX_REGS(r12);
FRAME_FIELD_IS_EX_REGS(r13);
FRAME_FIELD_IS_EX_REGS(r14);
FRAME_FIELD_IS_EX_REGS(r15);
FRAME_FIELD_IS_EX_REGS(vector);
FRAME_FIELD_IS_EX_REGS(error_code);
FRAME_FIELD_IS_EX_REGS(rip);
FRAME_FIELD_IS_EX_REGS(cs);
FRAME_FIELD_IS_EX_REGS(rflags);
kvm_static_assert(sizeof(struct ex_regs) == offsetof(struct cvmprobe_frame, rsp));

/* Guest state, written by the host with sync_global_to_guest() before the vCPU runs. */
static struct channel *channel;
static uint64_t shared_page;
static uint64_t ram_end;
static uint64_t c_bit;
static uint32_t paging_levels;
static char cmdline[1024];

static void guest_send(uint64_t msg, uint64_t arg0, uint64_t arg1,
		       const char *text, uint64_t len)
{
	if (len > sizeof(channel->text))
		len = sizeof(channel->text);
	channel->msg = msg;
	channel->arg[0] = arg0;
	channel->arg[1] = arg1;
	channel->len = len;
	if (len)
		memcpy(channel->text, text, len);
	cvmprobe_pio_write32(CHANNEL_PORT, msg);
}

static void guest_write(void *ctx, const char *line, uint64_t len, uint32_t flags)
{
	guest_send(MSG_LINE, flags, 0, line, len);
}

static void __attribute__((noreturn)) guest_exit(void *ctx, uint32_t code)
{
	guest_send(MSG_EXIT, code, 0, NULL, 0);
	for (;;)
		;
}

static uint64_t guest_map_mmio(void *ctx, uint64_t gpa, uint64_t len)
{
	/* main() maps the memslot page, and only it, for plain accesses. */
	if (gpa < CVMPROBE_MEMSLOT_GPA || gpa + len > CVMPROBE_MEMSLOT_GPA + CVMPROBE_MEMSLOT_SIZE)
		return 0;
	return gpa + PHYS_OFFSET;
}

static const char *guest_sev_es_memory(void *ctx, uint32_t cbit, uint64_t ghcb_gpa,
				       uint64_t *value)
{
	/* kvm_util mapped private memory with its C-bit before launch, shared pages without. */
	if (BIT_ULL(cbit) != c_bit) {
		*value = c_bit;
		return "C-bit (SEV information) against kvm_util's page tables";
	}
	return NULL;
}

static void guest_plan(void *ctx, uint32_t cases)
{
	guest_send(MSG_PLAN, cases, 0, NULL, 0);
}

static void guest_result(void *ctx, uint32_t id, uint32_t result,
			 const char *reason, uint64_t len)
{
	guest_send(MSG_RESULT, id, result, reason, len);
}

static void guest_code(void)
{
	struct cvmprobe_ops ops = {
		.size = sizeof(ops),
		.version = CVMPROBE_ABI_VERSION,
		.phys_offset = PHYS_OFFSET,
		.ram_end = ram_end,
		.shared_page = shared_page,
		.paging_levels = paging_levels,
		.write = guest_write,
		.exit = guest_exit,
		.map_mmio = guest_map_mmio,
		.sev_es_memory = guest_sev_es_memory,
		.plan = guest_plan,
		.result = guest_result,
	};

	cvmprobe_run(&ops, cmdline);
}

static void guest_trap(struct ex_regs *regs)
{
	cvmprobe_trap((struct cvmprobe_frame *)regs);
}

/* Host state. */
static struct kvm_vm *vm;
static struct kvm_run *run;
static struct channel *host_channel;
static uint64_t seed;

/* The test device: its data register, scratch window, and the running case's log. */
#define LOG_MAX		64
#define REPORTED_MAX	64

static uint32_t data_reg;
static uint8_t scratch[CVMPROBE_TESTDEV_MMIO_SCRATCH_LEN];

static struct {
	uint32_t id;		/* announced through CASE, 0 between cases */
	uint32_t closed_id;	/* the last case CASE = 0 closed */
	struct cvmprobe_access log[LOG_MAX];
	uint64_t nr_log;
	uint64_t reported[REPORTED_MAX];
	uint64_t nr_reported;
	char finding[512];
} tc;

/* The memslot scenario: the slot's memory, and what happened while it was deleted. */
static void *memslot_hva;
static sem_t memslot_cmd;
static uint32_t memslot_next_cmd;
static uint64_t memslot_accesses;
static char memslot_finding[256];

static uint32_t plan_cases;
static uint32_t results;

static void add_finding(const char *fmt, ...)
{
	size_t len = strlen(tc.finding);
	va_list ap;

	if (len)
		len += snprintf(tc.finding + len, sizeof(tc.finding) - len, "; ");
	va_start(ap, fmt);
	vsnprintf(tc.finding + len, sizeof(tc.finding) - len, fmt, ap);
	va_end(ap);
}

static void log_access(uint8_t space, uint64_t offset, uint8_t size, bool write,
		       uint64_t data)
{
	if (!tc.id)
		return;
	if (tc.nr_log < LOG_MAX)
		tc.log[tc.nr_log] = (struct cvmprobe_access) {
			.offset = offset, .data = data, .space = space,
			.write = write, .size = size,
			/* From the exit's sync regs, on the VMs that have them. */
			.rip = run->kvm_valid_regs & KVM_SYNC_X86_REGS ? run->s.regs.regs.rip : 0,
		};
	tc.nr_log++;
}

static void case_announced(uint32_t id)
{
	char msg[256];

	if (id) {
		tc.id = id;
		tc.nr_log = 0;
		tc.nr_reported = 0;
		tc.finding[0] = '\0';
		return;
	}
	if (tc.nr_log > LOG_MAX)
		add_finding("access log: %lu accesses, more than the %u kept", tc.nr_log, LOG_MAX);
	else if (cvmprobe_check_case(tc.id, tc.log, tc.nr_log, tc.reported,
				     tc.nr_reported, msg, sizeof(msg)))
		add_finding("access log: %s", msg);
	tc.closed_id = tc.id;
	tc.id = 0;
}

static uint64_t data_lanes(uint64_t lane, uint8_t size, bool write, uint64_t val)
{
	uint64_t mask = size == 4 ? 0xffffffffull : (1ull << (8 * size)) - 1;

	if (lane + size > 4)
		return ~0ull;
	if (write) {
		data_reg &= ~(mask << (8 * lane));
		data_reg |= (val & mask) << (8 * lane);
		return 0;
	}
	return (data_reg >> (8 * lane)) & mask;
}

static uint64_t testdev_pio(uint64_t off, uint8_t size, bool write, uint64_t val)
{
	uint64_t ret = ~0ull;

	switch (off & ~3ull) {
	case CVMPROBE_TESTDEV_PIO_ID:
		if (!write && off == CVMPROBE_TESTDEV_PIO_ID && size == 4)
			ret = CVMPROBE_TESTDEV_ID;
		break;
	case CVMPROBE_TESTDEV_PIO_DATA:
	case CVMPROBE_TESTDEV_PIO_DATA_BYTE:
		ret = data_lanes(off & 3, size, write, val);
		break;
	case CVMPROBE_TESTDEV_PIO_VALUE:
		if (!write && !(off % size))
			ret = cvmprobe_host_value(seed, CVMPROBE_SPACE_PIO, off, size);
		break;
	case CVMPROBE_TESTDEV_PIO_CASE:
		if (write && size == 4) {
			case_announced(val);
			return 0;
		}
		break;
	case CVMPROBE_TESTDEV_PIO_BENCH:
		if (write && size == 4)
			return 0;
		break;
	}
	log_access(CVMPROBE_SPACE_PIO, off, size, write, write ? val : ret);
	return ret;
}

static uint64_t testdev_mmio(uint64_t off, uint8_t size, bool write, uint64_t val)
{
	uint64_t ret = ~0ull;

	if (off == CVMPROBE_TESTDEV_MMIO_REPORT && size == 8 && write) {
		if (tc.nr_reported < REPORTED_MAX)
			tc.reported[tc.nr_reported] = val;
		tc.nr_reported++;
		return 0;
	}
	if (off == CVMPROBE_TESTDEV_MMIO_ID && size == 4 && !write) {
		ret = CVMPROBE_TESTDEV_ID;
	} else if (off >= CVMPROBE_TESTDEV_MMIO_SEED && off + size <= CVMPROBE_TESTDEV_MMIO_SEED + 8 &&
		   !write && (size == 8 || (size == 4 && !(off % 4)))) {
		ret = seed >> (8 * (off - CVMPROBE_TESTDEV_MMIO_SEED));
	} else if (off >= CVMPROBE_TESTDEV_MMIO_VALUE &&
		   off + size <= CVMPROBE_TESTDEV_MMIO_VALUE + CVMPROBE_TESTDEV_MMIO_VALUE_LEN &&
		   !write && !(off % size)) {
		ret = cvmprobe_host_value(seed, CVMPROBE_SPACE_MMIO, off, size);
	} else if (off >= CVMPROBE_TESTDEV_MMIO_SCRATCH &&
		   off + size <= CVMPROBE_TESTDEV_MMIO_SCRATCH + CVMPROBE_TESTDEV_MMIO_SCRATCH_LEN) {
		uint8_t *p = &scratch[off - CVMPROBE_TESTDEV_MMIO_SCRATCH];

		if (write) {
			memcpy(p, &val, size);
		} else {
			ret = 0;
			memcpy(&ret, p, size);
		}
	}
	if (size < 8)
		ret &= (1ull << (8 * size)) - 1;
	log_access(CVMPROBE_SPACE_MMIO, off, size, write, write ? val : ret);
	return ret;
}

static void *memslot_worker(void *arg)
{
	for (;;) {
		sem_wait(&memslot_cmd);
		/* Deleted and re-created while the vCPU runs, as in set_memory_region_test. */
		if (memslot_next_cmd == CVMPROBE_MEMSLOT_DELETE)
			vm_set_user_memory_region(vm, MEMSLOT_SLOT, 0, CVMPROBE_MEMSLOT_GPA,
						  0, NULL);
		else
			vm_set_user_memory_region(vm, MEMSLOT_SLOT, 0, CVMPROBE_MEMSLOT_GPA,
						  CVMPROBE_MEMSLOT_SIZE, memslot_hva);
	}
	return NULL;
}

static void memslot_control(uint32_t val)
{
	uint32_t cmd = val & 0xff, arg = val >> 8;

	switch (cmd) {
	case CVMPROBE_MEMSLOT_DELETE:
	case CVMPROBE_MEMSLOT_RESTORE:
		if (cmd == CVMPROBE_MEMSLOT_DELETE) {
			memslot_accesses = 0;
			memslot_finding[0] = '\0';
		}
		memslot_next_cmd = cmd;
		sem_post(&memslot_cmd);
		break;
	case CVMPROBE_MEMSLOT_REPORT:
		if (memslot_finding[0])
			add_finding("memslot: %s", memslot_finding);
		if (arg != memslot_accesses)
			add_finding("memslot: the guest counted %u accesses to the deleted page, the host %lu",
				    arg, memslot_accesses);
		break;
	default:
		add_finding("memslot: unknown command 0x%x", val);
	}
}

static uint64_t memslot_mmio(uint64_t off, uint8_t size, bool write, uint64_t val)
{
	uint64_t want = cvmprobe_memslot_value(seed, CVMPROBE_MEMSLOT_WRITE, off, size);

	memslot_accesses++;
	if (write && val != want && !memslot_finding[0])
		snprintf(memslot_finding, sizeof(memslot_finding),
			 "a %u-byte write of 0x%lx at page offset 0x%lx, the case writes 0x%lx",
			 size, val, off, want);
	return cvmprobe_memslot_value(seed, CVMPROBE_MEMSLOT_MARKER, off, size);
}

static uint64_t pio(uint16_t port, uint8_t size, bool write, uint64_t val)
{
	if (port >= CVMPROBE_TESTDEV_PIO_BASE &&
	    port < CVMPROBE_TESTDEV_PIO_BASE + CVMPROBE_TESTDEV_PIO_LEN)
		return testdev_pio(port - CVMPROBE_TESTDEV_PIO_BASE, size, write, val);
	if (port == CVMPROBE_MEMSLOT_CONTROL_PORT && size == 4) {
		if (write)
			memslot_control(val);
		return CVMPROBE_MEMSLOT_CONTROL_ID;
	}
	/* Nothing else is there: reads float high, writes vanish. */
	return ~0ull;
}

static void handle_io(void)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	uint32_t i;

	for (i = 0; i < run->io.count; i++, data += run->io.size) {
		uint64_t val = 0;

		if (write)
			memcpy(&val, data, run->io.size);
		val = pio(run->io.port, run->io.size, write, val);
		if (!write)
			memcpy(data, &val, run->io.size);
	}
}

static void handle_mmio(void)
{
	uint64_t gpa = run->mmio.phys_addr, val = 0;
	uint8_t size = run->mmio.len;
	bool write = run->mmio.is_write;

	if (write)
		memcpy(&val, run->mmio.data, size);
	if (gpa >= CVMPROBE_TESTDEV_MMIO_BASE &&
	    gpa + size <= CVMPROBE_TESTDEV_MMIO_BASE + CVMPROBE_TESTDEV_MMIO_LEN)
		val = testdev_mmio(gpa - CVMPROBE_TESTDEV_MMIO_BASE, size, write, val);
	else if (gpa >= CVMPROBE_MEMSLOT_GPA &&
		 gpa + size <= CVMPROBE_MEMSLOT_GPA + CVMPROBE_MEMSLOT_SIZE)
		val = memslot_mmio(gpa - CVMPROBE_MEMSLOT_GPA, size, write, val);
	else
		val = ~0ull;
	if (!write)
		memcpy(run->mmio.data, &val, size);
}

static void report_case(uint32_t id, uint32_t result, const char *reason, uint64_t len)
{
	char name[128];

	TEST_ASSERT(cvmprobe_case_name(id, name, sizeof(name)),
		    "The guest reported case id 0x%x, which the catalog does not have", id);
	if (id != tc.closed_id)
		add_finding("the guest reported %s, but announced 0x%x", name, tc.closed_id);
	results++;

	/* The host's finding fails the case, whatever the guest said. */
	if (tc.finding[0]) {
		ksft_print_msg("%s: host: %s\n", name, tc.finding);
		ksft_test_result_code(KSFT_FAIL, name, NULL);
	} else if (result == CVMPROBE_PASS) {
		ksft_test_result_code(KSFT_PASS, name, NULL);
	} else if (result == CVMPROBE_SKIP) {
		ksft_test_result_code(KSFT_SKIP, name, "%.*s", (int)len, reason);
	} else if (result == CVMPROBE_TODO) {
		/* KTAP's "not ok # TODO", which kselftest.h has no helper for. */
		ksft_inc_fail_cnt();
		printf("not ok %u %s # TODO %.*s\n", ksft_test_num(), name, (int)len, reason);
	} else {
		ksft_test_result_code(KSFT_FAIL, name, NULL);
	}
	tc.finding[0] = '\0';
}

/* Returns true when the guest ended the run. */
static bool handle_message(void)
{
	struct channel *c = host_channel;
	int len = c->len < sizeof(c->text) ? c->len : sizeof(c->text);

	switch (c->msg) {
	case MSG_LINE:
		printf("%.*s", len, c->text);
		return false;
	case MSG_PLAN:
		plan_cases = c->arg[0];
		ksft_set_plan(plan_cases);
		return false;
	case MSG_RESULT:
		report_case(c->arg[0], c->arg[1], c->text, len);
		return false;
	case MSG_EXIT:
		if (c->arg[0] == CVMPROBE_EXIT_BAIL || results != plan_cases)
			ksft_exit_fail_msg("the guest stopped after %u of %u cases (exit code %lu)\n",
					   results, plan_cases, c->arg[0]);
		return true;
	default:
		TEST_FAIL("Unknown guest message %lu", c->msg);
	}
}

static void run_tables(struct kvm_vcpu *vcpu)
{
	struct kvm_regs regs;

	for (;;) {
		vcpu_run(vcpu);

		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.port == CHANNEL_PORT) {
				if (handle_message())
					return;
			} else {
				handle_io();
			}
			break;
		case KVM_EXIT_MMIO:
			handle_mmio();
			break;
		default:
			if (__vcpu_ioctl(vcpu, KVM_GET_REGS, &regs))
				regs.rip = 0;
			ksft_exit_fail_msg("the guest stopped after %u of %u cases: %s at rip 0x%llx\n",
					   results, plan_cases, exit_reason_str(run->exit_reason),
					   regs.rip);
		}
	}
}

static struct kvm_vm *create_vm(enum vm_kind kind, struct kvm_vcpu **vcpu)
{
	if (kind == VM_LEGACY)
		return vm_create_with_one_vcpu(vcpu, guest_code);
	if (kind == VM_SEV_ES)
		return vm_sev_create_with_one_vcpu(KVM_X86_SEV_ES_VM, guest_code, vcpu);
#ifdef HAVE_TDX_SELFTESTS
	/*
	 * Not vm_create_shape_with_one_vcpu(): it finalizes the TD, and main() still writes
	 * guest memory.
	 */
	vm = __vm_create(VM_SHAPE_TDX, 1, 0);
	*vcpu = vm_vcpu_add(vm, 0, guest_code);
	return vm;
#else
	TEST_FAIL("No TDX selftests in this tree");
	return NULL;
#endif
}

static void launch_vm(enum vm_kind kind)
{
	if (kind == VM_SEV_ES)
		vm_sev_launch(vm, SEV_POLICY_ES, NULL);
#ifdef HAVE_TDX_SELFTESTS
	if (kind == VM_TDX)
		kvm_arch_vm_finalize_vcpus(vm);
#endif
}

static void require_vm_kind(enum vm_kind kind)
{
	switch (kind) {
	case VM_LEGACY:
		return;
	case VM_SEV_ES:
		TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SEV_ES));
		TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SEV_ES_VM));
		return;
	case VM_TDX:
#ifdef HAVE_TDX_SELFTESTS
		TEST_REQUIRE(is_tdx_enabled());
#else
		ksft_exit_skip("- this tree has no TDX selftests (include/x86/tdx/tdx_util.h)\n");
#endif
		return;
	}
}

/* What a VMM sets in CPUID: the initial APIC ID (vCPU 0), and a brand string per run. */
static void set_cpuid(struct kvm_vcpu *vcpu, const char *brand)
{
	struct kvm_cpuid_entry2 *e = vcpu_get_cpuid_entry(vcpu, 1);
	char buf[48] = {};
	uint32_t i;

	e->ebx &= ~0xff000000u;
	snprintf(buf, sizeof(buf), "%s", brand);
	for (i = 0; i < 3; i++) {
		e = vcpu_get_cpuid_entry(vcpu, 0x80000002 + i);
		memcpy(&e->eax, &buf[16 * i], 4);
		memcpy(&e->ebx, &buf[16 * i + 4], 4);
		memcpy(&e->ecx, &buf[16 * i + 8], 4);
		memcpy(&e->edx, &buf[16 * i + 12], 4);
	}
	vcpu_set_cpuid(vcpu);
}

static void map_mmio(uint64_t gpa, uint64_t size)
{
	virt_map(vm, gpa + PHYS_OFFSET, gpa, size / vm->page_size);
}

static void help(const char *name)
{
	printf("usage: %s [-t legacy|sev-es|tdx] [-s seed] [-a key=value]...\n"
	       " -t: the VM type (default: legacy)\n"
	       " -s: the test device's seed (default: random)\n"
	       " -a: a guest command-line key, e.g. -a cvmprobe.filter=io,mmio\n", name);
}

int main(int argc, char *argv[])
{
	struct userspace_mem_region *slot0;
	enum vm_kind kind = VM_LEGACY;
	char brand[48], args[768] = "";
	struct kvm_vcpu *vcpu;
	pthread_t memslot_thread;
	vm_vaddr_t gva;
	int opt, v;

	TEST_ASSERT_EQ(getrandom(&seed, sizeof(seed), 0), sizeof(seed));
	while ((opt = getopt(argc, argv, "t:s:a:h")) != -1) {
		switch (opt) {
		case 't':
			for (v = 0; v < ARRAY_SIZE(vm_kind_name); v++)
				if (!strcmp(optarg, vm_kind_name[v]))
					break;
			TEST_ASSERT(v < ARRAY_SIZE(vm_kind_name), "Unknown VM type '%s'", optarg);
			kind = v;
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'a':
			TEST_ASSERT(strlen(args) + strlen(optarg) + 2 < sizeof(args),
				    "Command line too long");
			strcat(args, " ");
			strcat(args, optarg);
			break;
		case 'h':
		default:
			help(argv[0]);
			exit(KSFT_SKIP);
		}
	}

	require_vm_kind(kind);
	ksft_print_header();

	vm = create_vm(kind, &vcpu);
	run = vcpu->run;
	/* Each exit's RIP for the access log; SEV-ES and TDX vCPUs keep their registers. */
	if (kind == VM_LEGACY)
		run->kvm_valid_regs = KVM_SYNC_X86_REGS;
	for (v = 0; v < 32; v++)
		vm_install_exception_handler(vm, v, guest_trap);
	for (v = 0; v < CVMPROBE_IRQ_COUNT; v++)
		vm_install_exception_handler(vm, CVMPROBE_IRQ_BASE + v, guest_trap);
	vm_install_exception_handler(vm, CVMPROBE_SPURIOUS_VECTOR, guest_trap);

	/* All of slot 0 (the guest's image, stacks, page tables) at PHYS_OFFSET. */
	slot0 = memslot2region(vm, 0);
	ram_end = slot0->region.guest_phys_addr + slot0->region.memory_size;
	virt_map(vm, PHYS_OFFSET + slot0->region.guest_phys_addr,
		 slot0->region.guest_phys_addr, slot0->region.memory_size / vm->page_size);

	/* A normal VM reaches MMIO with plain accesses; SEV-ES and TDX ask the host by GPA. */
	if (kind == VM_LEGACY) {
		map_mmio(CVMPROBE_TESTDEV_MMIO_BASE, CVMPROBE_TESTDEV_MMIO_LEN);
		map_mmio(LAPIC_GPA, vm->page_size);
	}

	/* The memslot page: RAM with a pattern the guest knows, mapped shared. */
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, CVMPROBE_MEMSLOT_GPA,
				    MEMSLOT_SLOT, CVMPROBE_MEMSLOT_SIZE / vm->page_size, 0);
	map_mmio(CVMPROBE_MEMSLOT_GPA, CVMPROBE_MEMSLOT_SIZE);
	memslot_hva = addr_gpa2hva(vm, CVMPROBE_MEMSLOT_GPA);

	gva = vm_vaddr_alloc_shared(vm, vm->page_size, KVM_UTIL_MIN_VADDR, MEM_REGION_TEST_DATA);
	channel = (struct channel *)gva;
	host_channel = addr_gva2hva(vm, gva);
	shared_page = vm_vaddr_alloc_shared(vm, vm->page_size, KVM_UTIL_MIN_VADDR,
					    MEM_REGION_TEST_DATA);
	c_bit = vm->arch.c_bit;
	paging_levels = vm->pgtable_levels;

	/* A brand string per run: the cpuid suite checks it against cvmprobe.brand=. */
	snprintf(brand, sizeof(brand), "cvmprobe selftest %016lx", seed);
	set_cpuid(vcpu, brand);
	for (v = 0; brand[v]; v++)
		if (brand[v] == ' ')
			brand[v] = '_';
	snprintf(cmdline, sizeof(cmdline), "cvmprobe.platform=%s cvmprobe.brand=%s%s",
		 vm_kind_name[kind], brand, args);

	sync_global_to_guest(vm, channel);
	sync_global_to_guest(vm, shared_page);
	sync_global_to_guest(vm, ram_end);
	sync_global_to_guest(vm, c_bit);
	sync_global_to_guest(vm, paging_levels);
	sync_global_to_guest(vm, cmdline);

	launch_vm(kind);

	/* Shared memory, written after launch. */
	for (v = 0; v < CVMPROBE_MEMSLOT_SIZE; v++)
		((uint8_t *)memslot_hva)[v] = cvmprobe_memslot_value(seed, CVMPROBE_MEMSLOT_RAM, v, 1);

	ksft_print_msg("cvmprobe_test: %s VM, seed 0x%lx, command line \"%s\"\n",
		       vm_kind_name[kind], seed, cmdline);
	sem_init(&memslot_cmd, 0, 0);
	pthread_create(&memslot_thread, NULL, memslot_worker, NULL);

	run_tables(vcpu);

	kvm_vm_free(vm);
	ksft_finished();
}
