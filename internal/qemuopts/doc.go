// Package qemuopts parses QEMU's option syntax: the key=value lists of the
// command line (`-device isa-serial,chardev=s0,id=com1`) and the argument
// dictionaries of QMP commands (device_add, netdev_add), so that both reach a
// driver as the same *Opts.
//
// The syntax follows QEMU's QemuOpts (util/qemu-option.c, get_opt_name_value
// and get_opt_value):
//   - elements are separated by ','; ",," inside a value is a literal comma;
//   - an element without '=' in the first position is the value of the
//     option's implied key ("-device isa-serial" is driver=isa-serial);
//   - elsewhere an element without '=' is a flag: "foo" is foo=on and "nofoo"
//     is foo=off (QEMU's deprecated short form, still written by older
//     toolstacks as "server,nowait");
//   - "help" or "?" as a flag, or as the implied value, asks for help (Help).
//
// Unlike QemuOpts, a key given twice is refused (QemuOpts silently lets the
// last one win), an empty key is refused, and every key must be consumed by
// a getter: CheckUnused names the first one nobody asked for.
//
// Scan splits a QEMU-style argv ("-opt value", "-flag") by a table saying
// which options take a value.
package qemuopts
