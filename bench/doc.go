// Package bench holds godm's cross-package benchmarks and the physical-limit
// probes they are compared against in the same run:
//
//   - the polled floor: two OS threads ping-ponging one cache line, the least
//     a polled request/response round trip can cost on this machine;
//   - the blocking floor: two OS threads ping-ponging through eventfds, the
//     least a wake-up round trip can cost.
//
// Scenarios return Results (latency samples summarised as median, p99, p999,
// and throughput); ratios against the floors are computed by the report.
// Nothing in the product imports this package.
package bench
