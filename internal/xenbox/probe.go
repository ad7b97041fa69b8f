package xenbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"godm/internal/qtest"
)

// Probe is an access the test firmware makes, with, where the answer is
// a fixed fact of the platform, that answer (Known) and its source.
type Probe struct {
	Step  qtest.Step
	Known *uint64
	Why   string
}

func known(v uint64) *uint64 { return &v }

func out16(p uint16, v uint64) qtest.Step { return qtest.Step{Write: true, Port: p, Size: 2, Value: v} }
func out32(p uint16, v uint64) qtest.Step { return qtest.Step{Write: true, Port: p, Size: 4, Value: v} }
func in(p uint16, size uint8) qtest.Step  { return qtest.Step{Port: p, Size: size} }

// cfgAddr is the 0xcf8 address of a bus-0 configuration register.
func cfgAddr(dev, fn, reg uint8) uint64 {
	return 1<<31 | uint64(dev)<<11 | uint64(fn)<<8 | uint64(reg&0xfc)
}

func cfgRead(dev, fn, reg, size uint8) []Probe {
	return []Probe{{Step: out32(0xcf8, cfgAddr(dev, fn, reg))}, {Step: in(0xcfc+uint16(reg&3), size)}}
}

func cfgWrite(dev, fn, reg, size uint8, v uint64) []Probe {
	w := qtest.Step{Write: true, Port: 0xcfc + uint16(reg&3), Size: size, Value: v}
	return []Probe{{Step: out32(0xcf8, cfgAddr(dev, fn, reg))}, {Step: w}}
}

// Probes is what the test firmware does, in order, on a fresh xenfv
// machine (no hvmloader ran before it): the whole configuration space of
// each of godm's functions and of an empty slot, BAR sizing, the UART's
// registers, the i8042's self-test, the PM function's configuration as
// hvmloader does it and the PM, GPE0, hotplug and CPU-presence ports,
// and the Xen platform device's fixed ports. The same list runs on godm
// over xensim (the expected answers) and in the real guest; Known marks
// the answers that are fixed facts of the platform.
func Probes() []Probe {
	var ps []Probe
	type fnID struct{ dev, fn uint8 }
	ids := map[fnID]uint64{
		{0, 0}: 0x12378086, // i440FX host bridge
		{1, 0}: 0x70008086, // PIIX3 ISA bridge
		{1, 3}: 0x71138086, // PIIX4 ACPI
		{2, 0}: 0x00015853, // Xen platform device
		{5, 0}: 0xffffffff, // nothing there
	}
	// Slot 3 is empty under godm (no VGA) but holds the Cirrus VGA libxl
	// gives QEMU-xen: read its ID only.
	for _, id := range []fnID{{0, 0}, {1, 0}, {1, 3}, {2, 0}, {3, 0}, {5, 0}} {
		end := 256
		switch id.dev {
		case 3, 5:
			end = 4 // an empty slot: all-ones, once is enough
		}
		for reg := 0; reg < end; reg += 4 {
			p := cfgRead(id.dev, id.fn, uint8(reg), 4)
			if v, ok := ids[id]; ok && reg == 0 {
				p[1].Known = known(v)
				p[1].Why = fmt.Sprintf("vendor:device of 00:%02x.%d", id.dev, id.fn)
			}
			ps = append(ps, p...)
		}
	}
	// BAR sizing of the platform device (QEMU xen_platform.c: BAR0 256
	// bytes of I/O, BAR1 16 MiB of prefetchable memory), then restored.
	for _, bar := range []uint8{0x10, 0x14} {
		ps = append(ps, cfgWrite(2, 0, bar, 4, 0xffffffff)...)
		p := cfgRead(2, 0, bar, 4)
		if bar == 0x10 {
			p[1].Known, p[1].Why = known(0xffffff01), "BAR0 size mask: 256 bytes of I/O"
		} else {
			p[1].Known, p[1].Why = known(0xff000008), "BAR1 size mask: 16 MiB prefetchable"
		}
		ps = append(ps, p...)
		ps = append(ps, cfgWrite(2, 0, bar, 4, 0)...)
	}
	// Byte and word reads of the host bridge's header.
	ps = append(ps, cfgRead(0, 0, 0x0a, 2)...) // class: host bridge 0x0600
	ps[len(ps)-1].Known, ps[len(ps)-1].Why = known(0x0600), "host bridge class"
	ps = append(ps, cfgRead(1, 0, 0x0e, 1)...) // PIIX3 header type: multi-function
	ps[len(ps)-1].Known, ps[len(ps)-1].Why = known(0x80), "PIIX3 is multi-function"

	// COM1 (16550A): power-on registers, the divisor latch, scratch.
	for p := uint16(0x3f9); p <= 0x3ff; p++ {
		ps = append(ps, Probe{Step: in(p, 1)})
	}
	ps[len(ps)-3].Known, ps[len(ps)-3].Why = known(0x60), "LSR: THRE and TEMT"
	ps = append(ps, Probe{Step: qtest.Out(0x3fb, 0x83)}, Probe{Step: in(0x3f8, 1)}, Probe{Step: in(0x3f9, 1)},
		Probe{Step: qtest.Out(0x3fb, 0x03)}, Probe{Step: qtest.Out(0x3ff, 0xa5)}, Probe{Step: in(0x3ff, 1), Known: known(0xa5), Why: "scratch register"},
		Probe{Step: in(0x2f9, 1)}) // COM2 is not there
	// i8042: status, then the controller self-test.
	ps = append(ps, Probe{Step: in(0x64, 1)}, Probe{Step: qtest.Out(0x64, 0xaa)},
		Probe{Step: in(0x60, 1), Known: known(0x55), Why: "i8042 self-test passed"}, Probe{Step: in(0x64, 1)})
	// PIIX4 PM: what hvmloader writes (PMBA at Xen's PM1a block, I/O
	// space on), then the ports.
	ps = append(ps, cfgWrite(1, 3, 0x40, 4, 0xb001)...)
	ps = append(ps, cfgWrite(1, 3, 0x80, 1, 0x01)...)
	ps = append(ps, cfgRead(1, 3, 0x40, 4)...)
	ps = append(ps, cfgRead(1, 3, 0x80, 1)...)
	ps = append(ps, Probe{Step: in(0xb004, 2)}) // PM1a control
	for p := uint16(0xafe0); p < 0xafe4; p++ {
		ps = append(ps, Probe{Step: in(p, 1)}) // GPE0 status, enable
	}
	for p := uint16(0xae00); p < 0xae10; p += 4 {
		ps = append(ps, Probe{Step: in(p, 4)}) // PCIU, PCID, B0EJ, RMV
	}
	ps = append(ps, Probe{Step: in(0xaf00, 1)}) // PRST: CPUs present
	ps = append(ps, Probe{Step: out32(0xb044, 0x1234abcd)}, Probe{Step: in(0xb044, 4), Known: known(0x1234abcd), Why: "DG1 debug port keeps writes"})
	// Xen platform device's fixed ports (docs/misc/hvm-emulated-unplug).
	ps = append(ps, Probe{Step: in(0x10, 2), Known: known(0x49d2), Why: "unplug protocol magic"},
		Probe{Step: in(0x12, 1), Known: known(1), Why: "unplug protocol version"})
	return ps
}

// Firmware line formats: the probe firmware prints "FW <index> <hex> ..."
// lines (up to six pairs each; index into Probes) for the reads, then
// "FW END <reads>" (decimal), and powers
// off through PM1a control; the spin firmware prints "FW SPIN" and
// halts with interrupts on, forever.
const (
	pm1aCnt = 0xb004
	slpEn   = 0x2000 // SLP_EN with SLP_TYP 0: \_S5 (piix4pm)
)

// fwPrelude is the C every test firmware starts with: port access, and
// COM1 output one line per ioreq.
const fwPrelude = `/* Generated by godm internal/xenbox: the real-Xen test firmware. */
typedef unsigned int u32; typedef unsigned short u16; typedef unsigned char u8;
struct op { u16 port; u8 size, write; u32 value; };
static inline void out(u16 p, u8 size, u32 v) {
	if (size == 1) __asm__ volatile("outb %b0,%w1" :: "a"(v), "Nd"(p));
	else if (size == 2) __asm__ volatile("outw %w0,%w1" :: "a"(v), "Nd"(p));
	else __asm__ volatile("outl %0,%w1" :: "a"(v), "Nd"(p));
}
static inline u32 in(u16 p, u8 size) {
	u32 v = 0;
	if (size == 1) { u8 x; __asm__ volatile("inb %w1,%b0" : "=a"(x) : "Nd"(p)); v = x; }
	else if (size == 2) { u16 x; __asm__ volatile("inw %w1,%w0" : "=a"(x) : "Nd"(p)); v = x; }
	else __asm__ volatile("inl %w1,%0" : "=a"(v) : "Nd"(p));
	return v;
}
/* A line goes out with one rep outsb: Xen hands the device model the
 * whole string as one ioreq (data_is_ptr, count = length), so printing
 * costs one round trip per line, not two per byte. */
static char line[128];
static int n;
static void putc_(char c) { if (n < (int)sizeof line) line[n++] = c; }
static void flush(void) {
	for (int i = 0; i < 100000 && !(in(0x3fd, 1) & 0x20); i++) ;
	int len = n;
	const char *p = line;
	__asm__ volatile("cld; rep outsb" : "+S"(p), "+c"(len) : "d"(0x3f8) : "memory");
	n = 0;
}
static void puts_(const char *s) { while (*s) { putc_(*s); if (*s++ == '\n') flush(); } }
static void puthex(u32 v) {
	char buf[9]; int k = 0;
	do { buf[k++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
	while (k) putc_(buf[--k]);
}
static void putdec(u32 v) {
	char buf[11]; int k = 0;
	do { buf[k++] = '0' + v % 10; v /= 10; } while (v);
	while (k) putc_(buf[--k]);
}
`

// fwStart is the firmware's entry: a stack, then fwmain. pushsection and
// popsection: the compiler does not expect a top-level asm to leave it in
// another section.
const fwStart = `__asm__(".pushsection .text.start,\"ax\"\n.globl _start\n_start:\n\tmov $stack_top, %esp\n\tcall fwmain\n1:\thlt\n\tjmp 1b\n.popsection\n"
	".pushsection .bss\n.align 16\n.skip 16384\nstack_top:\n.popsection\n");
`

// FirmwareSource returns the test firmware in freestanding 32-bit C: Xen
// starts an HVM guest's firmware (xl's firmware_override, in place of
// hvmloader) at its ELF entry in flat 32-bit protected mode without
// paging.
func FirmwareSource(ps []Probe, spin bool) string {
	var b strings.Builder
	b.WriteString(fwPrelude)
	if spin {
		b.WriteString(`void fwmain(void) {
	puts_("\nFW SPIN\n");
	for (;;) __asm__ volatile("sti; hlt");
}
`)
	} else {
		b.WriteString("static const struct op ops[] = {\n")
		for _, p := range ps {
			s := p.Step
			size := s.Size
			if size == 0 {
				size = 1
			}
			w := 0
			if s.Write {
				w = 1
			}
			fmt.Fprintf(&b, "\t{%#x, %d, %d, %#x},\n", s.Port, size, w, uint32(s.Value))
		}
		fmt.Fprintf(&b, "};\n#define NOPS %d\nstatic u32 res[NOPS];\n", len(ps))
		b.WriteString(`void fwmain(void) {
	puts_("\nFW START\n");
	/* Every access first, so that printing cannot change what is read. */
	for (int i = 0; i < NOPS; i++) {
		if (ops[i].write) out(ops[i].port, ops[i].size, ops[i].value);
		else res[i] = in(ops[i].port, ops[i].size);
	}
	u32 reads = 0, k = 0;
	for (int i = 0; i < NOPS; i++) {
		if (ops[i].write) continue;
		reads++;
		/* "FW <index> <hex>" pairs, up to 6 on a line */
		if (k == 0) puts_("FW");
		putc_(' '); putdec(i); putc_(' '); puthex(res[i]);
		if (++k == 6) { puts_("\n"); k = 0; }
	}
	if (k) puts_("\n");
	puts_("FW END "); putdec(reads); puts_("\n");
	out(` + strconv.Itoa(pm1aCnt) + `, 2, ` + strconv.Itoa(slpEn) + `);
	for (;;) __asm__ volatile("sti; hlt");
}
`)
	}
	b.WriteString(fwStart)
	return b.String()
}

// BuildFirmware compiles FirmwareSource into dir/name.elf.
func BuildFirmware(dir, name string, ps []Probe, spin bool) (string, error) {
	return compileFirmware(dir, name, FirmwareSource(ps, spin))
}

// compileFirmware compiles src into dir/name.elf with the host's gcc and
// ld (32-bit code needs no multilib: nothing is included or linked but
// the firmware itself), linked at 1 MiB like hvmloader.
func compileFirmware(dir, name, source string) (string, error) {
	src := filepath.Join(dir, name+".c")
	obj := filepath.Join(dir, name+".o")
	elf := filepath.Join(dir, name+".elf")
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		return "", err
	}
	cc := exec.Command("gcc", "-m32", "-march=i686", "-mgeneral-regs-only", "-ffreestanding", "-nostdlib",
		"-fno-pic", "-fno-pie", "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-O2", "-c", src, "-o", obj)
	if b, err := cc.CombinedOutput(); err != nil {
		return "", fmt.Errorf("xenbox: compiling the firmware: %v: %s", err, b)
	}
	ld := exec.Command("ld", "-m", "elf_i386", "-nostdlib", "-static", "-Ttext=0x100000", "-e", "_start", "-o", elf, obj)
	if b, err := ld.CombinedOutput(); err != nil {
		return "", fmt.Errorf("xenbox: linking the firmware: %v: %s", err, b)
	}
	return elf, nil
}
